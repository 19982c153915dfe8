"""A private lease's worker started as a system account of its own (``HostAgent(private_user=
"{owner}")``): the owner's code then runs as that account and cannot read the pool's
certificates, which every slice worker running as the agent's account could. Needs root
(the test creates the account) and a system Python of this minor version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from flexlab_dask import FlexCluster

import flexlab
from tests.private.conftest import wait_until

pytestmark = pytest.mark.slow

SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "starting a worker as another account needs root"
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        return "useradd/userdel are missing"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing"
    return None


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[str, str]]:
    """A fresh system account and a Python it can run that sees the project's packages."""
    why = _unavailable()
    if why:
        pytest.skip(why)
    name = f"flexpriv{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
    )
    venv = Path(tempfile.mkdtemp(prefix="flexlab-private-venv-"))
    try:
        os.chmod(venv, 0o755)
        subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv / "v")], check=True, timeout=120
        )
        site = Path(sysconfig.get_paths()["purelib"])
        lib = venv / "v" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        (lib / "flexlab-project.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
        yield name, str(venv / "v" / "bin" / "python")
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=60)
        shutil.rmtree(venv, ignore_errors=True)


def test_the_worker_runs_as_the_owners_account(
    process_pool: FlexCluster, pool_tls: Path, account: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, python = account
    agent = process_pool.agents[0]
    monkeypatch.setattr(agent, "private_user", "{owner}")
    monkeypatch.setattr(agent, "private_python", python)
    import pwd

    uid = pwd.getpwnam(name).pw_uid
    with Client(process_pool) as client:
        with flexlab.lease("t4:0.5", owner=name, client=client, private=True, timeout=120) as lease:
            assert lease.submit(os.getuid).result(timeout=60) == uid
            # the pool's certificates are the agent account's: out of the owner's reach
            with pytest.raises(PermissionError):
                lease.submit(lambda p: Path(p).read_bytes(), str(pool_tls / "worker-key.pem")).result(
                    timeout=30
                )
            run = agent.running[str(lease.info["slice_id"])]
            assert run.private is not None
            workdir = run.private.workdir
            assert workdir is not None
            assert workdir.stat().st_uid == uid
        wait_until("the worker's scratch folder is deleted", lambda: not workdir.exists())
        # an owner without an account on the host: the lease ends with the reason
        lease = flexlab.lease(
            "t4:0.5", owner="nobody-has-this-account", client=client, private=True, wait=False
        )
        wait_until("the lease ends", lambda: lease.refresh()["state"] == "released")
        assert "a system account on host gpu-host" in lease.info["reason"]
