"""A TLS pool as an operator runs it: ``flexlab up --tls DIR`` with its host agent and slice
workers as their own processes, on 127.0.0.1. The trusted client runs a task on a lease end
to end; an agent and a slice worker without the pool's certificates (none, or another CA's)
never join it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

import flexlab

pytestmark = pytest.mark.slow

SPEC = """
version: 1
hosts:
  - name: gpu-host
    cpu: 8
    memory: 32GiB
    devices:
      - model: t4
"""
INTRUDER_SPEC = SPEC.replace("gpu-host", "intruder-host")


class Pool:
    """``flexlab up --tls`` in a subprocess; its output in a log file."""

    def __init__(self, tmp: Path, tls: Path) -> None:
        self.tmp = tmp
        self.tls = tls
        (tmp / "spec.yaml").write_text(SPEC)
        self.env = {
            **os.environ,
            "DASK_FLEXLAB__STATE_FILE": ":memory:",
            "DASK_FLEXLAB__LOOP_INTERVAL": "0.2s",
            # a refused handshake is retried until this runs out
            "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
        }
        self.env.pop("FLEXLAB_TLS", None)
        self.log = tmp / "up.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flexlab.cli",
                "up",
                "--tls",
                str(tls),
                "--port",
                "0",
                "--provider",
                "mock",
                "--spec",
                str(tmp / "spec.yaml"),
            ],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.address = self._wait_address()

    def _wait_address(self) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = self.log.read_text()
            found = re.search(r"flexlab scheduler at (tls://127\.0\.0\.1:\d+)", text)
            if found and "registered with" in text:
                return found.group(1)
            time.sleep(0.2)
        raise AssertionError(f"flexlab up --tls did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, pool_tls: Path) -> Iterator[Pool]:
    p = Pool(tmp_path_factory.mktemp("tls-up"), pool_tls)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def trusted(pool: Pool) -> Iterator[Client]:
    with flexlab.connect(pool.address, tls=str(pool.tls)) as client:
        yield client
        errors = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["flexlab"].errors)
        assert errors == [], f"flexlab plugin errors: {errors}"


def whoami() -> tuple[int, str]:
    from distributed import get_worker

    return os.getpid(), str(get_worker().name)


def worker_names(client: Client) -> set[str]:
    return {str(w["name"]) for w in client.scheduler_info(n_workers=-1)["workers"].values()}


def test_a_task_runs_on_a_lease_in_a_slice_worker_process(pool: Pool, trusted: Client) -> None:
    info = trusted.scheduler_info(n_workers=-1)
    assert info["address"].startswith("tls://")
    assert all(addr.startswith("tls://") for addr in info["workers"])
    with flexlab.lease("t4:0.5", owner="ana", client=trusted, timeout=60) as lease:
        pid, name = lease.submit(whoami).result(60)
    assert lease.state == "released"
    assert name.startswith("flexlab-slice-")
    # the slice worker is a process of its own, started by the agent inside `flexlab up`
    assert pid not in (os.getpid(), pool.proc.pid)
    with open(f"/proc/{pid}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == pool.proc.pid  # its parent


def test_flexlab_status_connects_with_the_client_certificate(pool: Pool) -> None:
    status = [sys.executable, "-m", "flexlab.cli", "status", "--scheduler", pool.address, "--json"]
    code, out = run_for([*status, "--tls", str(pool.tls)], pool.env, 60)
    assert code == 0, out
    assert [h["name"] for h in json.loads(out)["hosts"]] == ["gpu-host"]
    code, out = run_for(status, pool.env, 60)
    assert code == 2, out
    assert "the pool's TLS folder" in out
    assert "Traceback" not in out


def run_for(argv: list[str], env: dict[str, str], seconds: float) -> tuple[int | None, str]:
    """Run ``argv`` for at most ``seconds``; (exit code or None if it was still running, output)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=seconds)
        return proc.returncode, out.decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return None, out.decode()


def test_an_agent_without_the_pools_certificates_cannot_join(
    pool: Pool, trusted: Client, other_tls: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "intruder.yaml"
    spec.write_text(INTRUDER_SPEC)
    base = [sys.executable, "-m", "flexlab.cli", "agent", "--provider", "mock", "--spec", str(spec)]
    # no certificate: refused before connecting, with what to pass
    code, out = run_for([*base, pool.address], pool.env, 60)
    assert code == 2, out
    assert "the pool's TLS folder" in out
    assert "Traceback" not in out
    # another pool's CA: the handshake fails, the agent gives up and says why
    other = ["--tls", str(other_tls), "--register-timeout", "4"]
    code, out = run_for([*base, pool.address, *other], pool.env, 60)
    assert code == 2, out
    assert "could not register" in out
    assert "Traceback" not in out
    # plain TCP to the TLS port, no certificate at all
    port = pool.address.rsplit(":", 1)[1]
    code, out = run_for([*base, f"tcp://127.0.0.1:{port}", "--register-timeout", "4"], pool.env, 60)
    assert code == 2, out
    assert "could not register" in out
    hosts = [h["name"] for h in flexlab.PoolClient(trusted).state()["hosts"]]
    assert hosts == ["gpu-host"]


def slice_command(slice_id: str) -> dict[str, Any]:
    return {
        "slice_id": slice_id,
        "host": "intruder-host",
        "devices": ["intruder-host/t4#0"],
        "model": "t4",
        "compute_milli": 500,
        "memory_mib": 1024,
        "nthreads": 1,
        "resources": {f"flexlab-slice-{slice_id}": 500},
    }


@pytest.mark.parametrize("certs", ["none", "another CA"])
def test_a_slice_worker_without_the_pools_certificates_cannot_join(
    pool: Pool, trusted: Client, other_tls: Path, certs: str
) -> None:
    sid = "intruder" + ("0" if certs == "none" else "1")
    argv = [sys.executable, "-m", "flexlab_dask", pool.address, "--slice", json.dumps(slice_command(sid))]
    if certs == "another CA":
        argv += ["--tls", str(other_tls)]
    proc = subprocess.Popen(argv, env=pool.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and proc.poll() is None:
            assert f"flexlab-slice-{sid}" not in worker_names(trusted)
            time.sleep(0.5)
        assert f"flexlab-slice-{sid}" not in worker_names(trusted)
        still_trying = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode()
    if certs == "none":  # refused before connecting
        assert not still_trying
        assert proc.returncode != 0
        assert "TLS expects a `ssl_context`" in out
    else:  # every handshake fails; Dask's worker keeps trying until it is stopped
        assert still_trying, out
        assert "Waiting to connect to:      " + pool.address in out
        assert "Registered to" not in out
