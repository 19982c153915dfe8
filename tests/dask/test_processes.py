"""A real multi-process pool on 127.0.0.1: ``dask scheduler --preload flexlab_dask.scheduler``,
two ``flexlab agent`` processes with mock specs, slice workers as their own processes.

Covers: one pool from two agents, placement by kind/model/profile across them, lease
isolation, a SIGKILLed slice worker (no task lost, capacity back within 5 s, the lease
holder told), and a scheduler restart (leases kept in SQLite, agents register again).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

import flexlab
from flexlab.client import PoolClient
from flexlab.dask_client import open_client

from .conftest import slice_of, where

pytestmark = pytest.mark.slow

SPEC_A = """
version: 1
hosts:
  - name: npu-host
    cpu: 32
    memory: 128GiB
    devices:
      - model: ascend-910b3
      - model: ascend-910b3
        vnpu: [vir10_3c_32g, vir05_1c_16g]
"""
SPEC_B = """
version: 1
hosts:
  - name: gpu-host
    cpu: 32
    memory: 128GiB
    devices:
      - model: t4
      - model: a100-80gb
        mig: [3g.40gb, 1g.10gb]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.state = str(tmp / "leases.sqlite")
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.agents: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "DASK_FLEXLAB__STATE_FILE": self.state,
            "DASK_FLEXLAB__LOOP_INTERVAL": "0.2s",
        }

    def start_scheduler(self) -> None:
        log = (self.tmp / f"scheduler-{time.time():.0f}.log").open("wb")
        self.scheduler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--preload",
                "flexlab_dask.scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
                "--dashboard-address",
                "127.0.0.1:0",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_agent(self, name: str, spec: str) -> None:
        path = self.tmp / f"{name}.yaml"
        path.write_text(spec)
        log = (self.tmp / f"agent-{name}.log").open("wb")
        self.agents.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flexlab.cli",
                    "agent",
                    self.address,
                    "--provider",
                    "mock",
                    "--spec",
                    str(path),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def stop(self) -> None:
        for p in [*self.agents, self.scheduler]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*self.agents, self.scheduler]:
            if p is not None:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(self.tmp.glob("*.log")))


def wait_for(pred: Any, timeout: float, what: str, procs: Procs) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except (OSError, TimeoutError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")


def pool_ready(client: Client, hosts: int, slices: int) -> bool:
    st = PoolClient(client).state()
    ready = [s for h in st["hosts"] for d in h["devices"] for s in d["slices"] if s["state"] == "ready"]
    return len(st["hosts"]) == hosts and len(ready) >= slices


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    p.start_scheduler()
    p.start_agent("a", SPEC_A)
    p.start_agent("b", SPEC_B)
    try:
        yield p
    finally:
        p.stop()


def plugin_errors(client: Client) -> list[str]:
    return list(client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["flexlab"].errors))


def test_two_agents_one_pool_faults_and_restart(procs: Procs) -> None:
    client = wait_for(lambda: open_client(procs.address, timeout="2s"), 60, "the scheduler", procs)
    wait_for(lambda: pool_ready(client, hosts=2, slices=6), 90, "two hosts and six slices", procs)

    # Placement across machines: only fitting slices.
    cases = {
        "npu:0.25": lambda s: s["kind"] == "npu",
        "gpu:0.25": lambda s: s["kind"] == "gpu",
        "t4:0.5": lambda s: s["model"] == "t4",
        "a100:3g.40gb": lambda s: s["profile"] == "3g.40gb",
        "ascend910b3:vir05_1c_16g": lambda s: s["profile"] == "vir05_1c_16g",
    }
    for spec, fits in cases.items():
        with flexlab.request(spec):
            names = client.gather(client.map(lambda i: where(), range(6), pure=False))
        st = PoolClient(client).state()
        assert all(fits(slice_of(st, n)) for n in names), (spec, names)

    # A lease on the other machine runs only its owner's tasks.
    lease = flexlab.lease("t4:0.4", ttl="1h", owner="ana", client=client, timeout=60)
    assert lease.info["host"] == "gpu-host"
    assert set(client.gather(lease.map(lambda i: where(), range(4), pure=False))) == {
        f"flexlab-slice-{lease.lease_id}"
    }

    # SIGKILL a busy shared slice worker: no task is lost, capacity is back within 5 s.
    def work(i: int) -> int:
        from flexlab.mock.workloads import kernel

        kernel(work=0.2, demand=0.25)
        return i * i

    with flexlab.request("npu:0.25"):
        futures = client.map(work, range(40), pure=False)
    wait_for(lambda: sum(f.status == "finished" for f in futures) >= 3, 30, "work to start", procs)
    st = PoolClient(client).state()
    victim = next(
        s
        for h in st["hosts"]
        for d in h["devices"]
        for s in d["slices"]
        if d["mode"] == "fraction" and d["kind"] == "npu" and s["worker"]
    )
    pid = client.run(os.getpid, workers=[victim["worker"]])[victim["worker"]]
    since = max(e["seq"] for e in PoolClient(client).events())
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    lost = wait_for(
        lambda: [
            e
            for e in PoolClient(client).events(since=since)
            if e["kind"] == "lost" and e["slice_id"] == victim["slice_id"]
        ],
        5,
        "the lost slice's capacity to come back",
        procs,
    )
    assert time.monotonic() - killed_at < 5
    assert "capacity released" in lost[0]["message"]
    assert client.gather(futures) == [i * i for i in range(40)]

    # Kill the lease's worker: the holder sees it, and the lease comes back.
    lw = lease.refresh()["worker"]
    lpid = client.run(os.getpid, workers=[lw])[lw]
    os.kill(lpid, signal.SIGKILL)
    wait_for(
        lambda: any("lost" in e["message"] for e in lease.events()), 5, "the lease holder's event", procs
    )
    wait_for(
        lambda: lease.refresh()["state"] == "active" and lease.info["worker"] != lw,
        60,
        "the lease back on a new worker",
        procs,
    )
    assert plugin_errors(client) == []
    client.close()

    # Restart the scheduler: the lease survives (SQLite), agents register again.
    assert procs.scheduler is not None
    procs.scheduler.send_signal(signal.SIGTERM)
    procs.scheduler.wait(20)
    procs.start_scheduler()
    client = wait_for(lambda: open_client(procs.address, timeout="2s"), 60, "the restarted scheduler", procs)
    wait_for(lambda: pool_ready(client, hosts=2, slices=5), 90, "agents to register again", procs)
    leases = wait_for(
        lambda: [le for le in PoolClient(client).leases(owner="ana") if le["state"] == "active"],
        60,
        "the lease to be active again",
        procs,
    )
    assert [le["lease_id"] for le in leases] == [lease.lease_id]
    assert leases[0]["host"] == "gpu-host"
    lease.client = client
    assert set(client.gather(lease.map(lambda i: where(), range(3), pure=False))) == {
        f"flexlab-slice-{lease.lease_id}"
    }
    lease.release()
    assert plugin_errors(client) == []
    client.close()
