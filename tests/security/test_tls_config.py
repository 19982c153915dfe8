"""Which TLS folder a part of the pool uses, which files it needs, and when plain TCP is refused."""

from __future__ import annotations

from pathlib import Path

import dask.config
import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.tls import (
    TLS_ENV,
    InsecureListen,
    check_listen,
    is_loopback,
    pool_address,
    pool_security,
    role_files,
    tls_dir,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.0.0.5", False),
        ("gpu-a.example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_listen_refuses_plain_tcp_beyond_loopback_unless_insecure() -> None:
    assert check_listen("the scheduler", "127.0.0.1", tls=False, insecure=False) is None
    assert check_listen("the scheduler", "0.0.0.0", tls=True, insecure=False) is None
    with pytest.raises(InsecureListen, match=r"refusing to listen on 0\.0\.0\.0 .*--tls DIR.*--insecure"):
        check_listen("the scheduler", "0.0.0.0", tls=False, insecure=False)
    warning = check_listen("the scheduler", "10.0.0.5", tls=False, insecure=True)
    assert warning is not None
    assert "without TLS (--insecure)" in warning
    assert "10.0.0.5" in warning


def test_tls_dir_argument_then_environment_then_dask_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TLS_ENV, raising=False)
    with dask.config.set({"flexlab.tls": ""}):
        assert tls_dir() is None
    with dask.config.set({"flexlab.tls": "/from/config"}):
        assert tls_dir() == "/from/config"
        monkeypatch.setenv(TLS_ENV, "/from/env")
        assert tls_dir() == "/from/env"
        assert tls_dir("/from/arg") == "/from/arg"


def test_the_shipped_default_is_no_tls() -> None:
    import flexlab_dask.config  # noqa: F401  (loads flexlab.yaml's defaults)

    assert dask.config.get("flexlab.tls") == ""


def test_role_files_name_what_is_missing(tmp_path: Path, pool_tls: Path) -> None:
    ca, cert, key = role_files(str(pool_tls), "agent")
    assert (Path(ca).name, Path(cert).name, Path(key).name) == ("ca.pem", "agent.pem", "agent-key.pem")
    partial = tmp_path / "client-only"
    partial.mkdir()
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (partial / name).write_bytes((pool_tls / name).read_bytes())
    role_files(str(partial), "client")
    with pytest.raises(InvalidRequest, match=r"missing: worker\.pem, worker-key\.pem"):
        role_files(str(partial), "worker")
    with pytest.raises(InvalidRequest, match="a folder written by `flexlab certs DIR`"):
        role_files(str(tmp_path / "nowhere"), "client")
    with pytest.raises(InvalidRequest, match="TLS role"):
        role_files(str(pool_tls), "admin")


def test_pool_security_requires_encryption_with_each_roles_certificate(pool_tls: Path) -> None:
    sec = pool_security(str(pool_tls), client="agent", worker="worker")
    assert sec.require_encryption is True
    assert sec.tls_ca_file == str(pool_tls / "ca.pem")
    assert sec.tls_client_cert == str(pool_tls / "agent.pem")
    assert sec.tls_worker_key == str(pool_tls / "worker-key.pem")
    assert sec.tls_scheduler_cert is None  # a role left out has no certificate
    with pytest.raises(InvalidRequest):
        pool_security(str(pool_tls))


@pytest.mark.parametrize(
    ("address", "tls", "expected"),
    [
        ("10.0.0.5:8786", True, "tls://10.0.0.5:8786"),
        ("10.0.0.5:8786", False, "tcp://10.0.0.5:8786"),
        ("tls://10.0.0.5:8786", True, "tls://10.0.0.5:8786"),
        ("tcp://10.0.0.5:8786", False, "tcp://10.0.0.5:8786"),
    ],
)
def test_pool_address_adds_the_scheme(address: str, tls: bool, expected: str) -> None:
    assert pool_address(address, tls=tls) == expected


def test_pool_address_refuses_a_scheme_that_contradicts_tls() -> None:
    with pytest.raises(InvalidRequest, match=r"tls://10\.0\.0\.5:8786"):
        pool_address("tcp://10.0.0.5:8786", tls=True)
    with pytest.raises(InvalidRequest, match=r"the pool's TLS folder .*uses TLS"):
        pool_address("tls://10.0.0.5:8786", tls=False)
