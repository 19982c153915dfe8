"""The front's parts without a Hub: the command's errors, the error mapping of the
kernel-side client, when a process is user tier, and the redaction of other owners' slices."""

from __future__ import annotations

from typing import Any

import pytest
from flexlab_jupyter.manager import _private
from flexlab_jupyter.models import HIDDEN, OTHER_OWNER, redact_host

from flexlab.cli import main
from flexlab.core.errors import InvalidRequest, NotOwner, QuotaExceeded, UnknownName, Unschedulable
from flexlab.front import FrontClient, FrontRejected, FrontUnavailable, error_of, front_mode


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FLEXLAB_SCHEDULER",
        "FLEXLAB_TLS",
        "DASK_FLEXLAB__TLS",
        "FLEXLAB_FRONT",
        "JUPYTERHUB_API_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["front"], "--scheduler"),
        (["front", "--scheduler", "tls://127.0.0.1:1"], "--tls"),
        (
            ["front", "--scheduler", "tcp://127.0.0.1:1", "--url", "http://127.0.0.1:1"],
            "JUPYTERHUB_API_TOKEN",
        ),
        (["front", "--scheduler", "tcp://127.0.0.1:1"], "JUPYTERHUB_SERVICE_URL"),
    ],
)
def test_flexlab_front_says_what_is_missing(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("flexlab: error:")
    assert says in err


def test_flexlab_front_help_names_the_hub_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["front", "--help"])
    out = capsys.readouterr().out
    assert "c.JupyterHub.services" in out
    assert "FlexlabJupyter.front_url" in out


@pytest.mark.parametrize(
    ("status", "model", "cls", "text"),
    [
        (
            401,
            {"error": "Unauthorized", "message": "log in"},
            FrontRejected,
            "did not accept this kernel's token",
        ),
        (
            403,
            {"error": "NotOwner", "message": "lease L1 is not yours"},
            NotOwner,
            "not your lease: lease L1",
        ),
        (404, {"error": "UnknownName", "message": "unknown lease 'L9'"}, UnknownName, "unknown lease 'L9'"),
        (
            400,
            {"error": "InvalidRequest", "message": "invalid ttl", "field": "ttl"},
            InvalidRequest,
            "invalid ttl",
        ),
        (409, {"error": "Unschedulable", "message": "never", "code": "UNRESOLVABLE"}, Unschedulable, "never"),
        (429, {"error": "QuotaExceeded", "message": "too many"}, QuotaExceeded, "too many"),
        (503, {"error": "PoolUnavailable", "message": "no pool"}, FrontUnavailable, "no pool"),
        (500, {}, FrontUnavailable, "HTTP 500"),
    ],
)
def test_the_fronts_errors_are_flexlabs(status: int, model: dict[str, Any], cls: type, text: str) -> None:
    err = error_of(status, model, "http://front/")
    assert isinstance(err, cls)
    assert text in str(err)
    if isinstance(err, InvalidRequest):
        assert err.field == "ttl"
    if isinstance(err, Unschedulable):
        assert err.code == "UNRESOLVABLE"


def test_an_unreachable_front_is_unavailable_and_a_bad_url_invalid() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(FrontUnavailable, match="cannot reach the flexlab front"):
        FrontClient(f"http://127.0.0.1:{port}/services/flexlab/", "t", timeout=5).info()
    with pytest.raises(InvalidRequest, match="http"):
        FrontClient("ftp://example.org/", "t")
    with pytest.raises(InvalidRequest, match="FLEXLAB_FRONT"):
        FrontClient()


def test_a_process_is_user_tier_with_a_front_and_no_pool_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    assert not front_mode()
    monkeypatch.setenv("FLEXLAB_FRONT", "http://127.0.0.1:1/services/flexlab/")
    assert front_mode()
    monkeypatch.setenv("FLEXLAB_TLS", str(tmp_path))
    assert not front_mode()  # pool credentials: the trusted tier talks to the pool itself


def host_with(*slices: tuple[str | None, str | None]) -> Any:
    return {
        "name": "h",
        "devices": [
            {
                "slices": [
                    {
                        "slice_id": f"s{i}",
                        "lease_id": lease,
                        "owner": owner,
                        "compute_milli": 250,
                        "utilisation": 0.5,
                    }
                    for i, (lease, owner) in enumerate(slices)
                ]
            }
        ],
    }


def test_the_user_tier_sees_other_owners_slices_without_their_lease_details() -> None:
    host = redact_host(host_with((None, None), ("L1", "ana"), ("L2", "bob")), "bob")
    shared, anas, bobs = host["devices"][0]["slices"]
    assert shared["slice_id"] == "s0"
    assert shared["lease_id"] is None
    assert shared["owner"] is None
    assert (anas["slice_id"], anas["lease_id"], anas["owner"]) == (HIDDEN, HIDDEN, OTHER_OWNER)
    assert (anas["compute_milli"], anas["utilisation"]) == (250, 0.5)  # the occupancy stays
    assert (bobs["slice_id"], bobs["lease_id"], bobs["owner"]) == ("s2", "L2", "bob")


def test_private_credentials_are_checked_before_anything_is_sent() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    good = {"scheduler": "tls://127.0.0.1:1", "ca": pem, "cert": pem, "key": pem}
    assert _private(good) == good
    for bad, field in (
        ("tls://x", "private"),
        ({**good, "scheduler": "tcp://127.0.0.1:1"}, "private.scheduler"),
        ({**good, "ca": "not a pem"}, "private.ca"),
        ({**good, "extra": "x"}, "private.extra"),
        ({k: v for k, v in good.items() if k != "key"}, "private.key"),
    ):
        with pytest.raises(InvalidRequest) as info:
            _private(bad)
        assert info.value.field == field


def test_the_example_hub_config_loads_and_wires_the_front() -> None:
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader

    import flexlab

    path = Path(flexlab.__file__).parent / "ops" / "jupyterhub_config.py"
    c = PyFileConfigLoader(path.name, str(path.parent)).load_config()
    (service,) = c.JupyterHub.services
    assert service["name"] == "flexlab"
    assert service["command"][:2] == ["flexlab", "front"]
    assert "--tls" in service["command"]
    port = service["url"].rsplit(":", 1)[1]
    assert c.Spawner.args == [f"--FlexlabJupyter.front_url=http://127.0.0.1:{port}/services/flexlab/"]
    assert "access:services!service=flexlab" in c.Spawner.server_token_scopes
    assert "access:services!service=flexlab" in c.JupyterHub.load_roles[0]["scopes"]
