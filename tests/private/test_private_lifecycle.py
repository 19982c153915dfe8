"""Private leases end to end on a TLS pool whose slice workers are processes: the lease's
worker joins the owner's own scheduler with the owner's credentials, runs the owner's work,
reports telemetry to the pool through its agent, and is gone with its credentials when the
lease ends; work still running or queued then fails with the cause."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import urllib.request
from pathlib import Path

import pytest
from distributed import Client
from flexlab_dask import FlexCluster
from flexlab_dask import agent_private as agent_module

import flexlab
from flexlab.core.errors import LeaseEnded
from flexlab.mock.workloads import kernel
from tests.private.conftest import wait_until

pytestmark = pytest.mark.slow

#: Seconds from a lease's end until its owner's unfinished futures have failed.
END_BOUND_S = 5.0


def _slice_state(client: Client, slice_id: str) -> dict[str, object]:
    for host in flexlab.PoolClient(client).state()["hosts"]:
        for dev in host["devices"]:
            for s in dev["slices"]:
                if s["slice_id"] == slice_id:
                    return dict(s)
    return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_private_lease_lifecycle(process_pool: FlexCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = process_pool.agents[0]
    deleted: dict[str, dict[str, int]] = {}  # folder -> its files' and its own modes
    rmtree = shutil.rmtree

    def recording_rmtree(path: str | Path, *args: object, **kwargs: object) -> None:
        p = Path(path)
        if p.is_dir() and p.name.startswith("flexlab-private-"):
            deleted[str(p)] = {f.name: stat.S_IMODE(f.stat().st_mode) for f in p.iterdir()}
            deleted[str(p)]["."] = stat.S_IMODE(p.stat().st_mode)
        rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(agent_module.shutil, "rmtree", recording_rmtree)
    with Client(process_pool) as client:
        lease = flexlab.lease("t4:0.5", owner="ana", client=client, private=True, timeout=120)
        try:
            ps = lease.private
            assert ps is not None
            assert lease.state == "active"
            assert lease.info["private"] is True
            assert lease.info["scheduler"] == ps.address
            assert ps.address.startswith("tls://127.0.0.1:")
            # the pool shows where the worker went, never the credentials
            wire = json.dumps(client.sync(client.scheduler.flexlab_lease_list))
            assert "PRIVATE KEY" not in wire
            assert "CERTIFICATE" not in wire
            assert ps.address in wire
            # the worker joined the owner's scheduler, not the pool's
            resource = f"flexlab-lease-{lease.lease_id}"
            assert not any(resource in w["resources"] for w in client.scheduler_info()["workers"].values())
            own = lease.client.scheduler_info()["workers"]
            assert [w["resources"].get(resource) for w in own.values()] == [8.0]
            assert lease.client is ps.client()
            assert lease.client is not client

            run = agent.running[str(lease.info["slice_id"])]
            assert run.process is not None
            assert run.private is not None
            pid, folder = run.process.pid, run.private.folder
            # the agent wrote the credentials 0600 in a 0700 folder, deleted once the worker
            # joined (it holds them in memory; other slice workers run as the same user)
            assert deleted[str(folder)] == {
                ".": 0o700,
                "ca.pem": 0o600,
                "worker.pem": 0o600,
                "worker-key.pem": 0o600,
            }
            assert not folder.exists()

            assert lease.submit(os.getpid).result(timeout=30) == pid  # the slice worker process
            assert [f.result(timeout=30) for f in lease.map(lambda x: x * 2, [1, 2, 3])] == [2, 4, 6]

            # its telemetry reaches the pool through the agent: a mock kernel holding 1 GiB
            fut = lease.submit(kernel, work=1.5, demand=0.5, memory="1GiB")
            sid = str(lease.info["slice_id"])
            wait_until(
                "the pool sees the private slice busy",
                lambda: (
                    float(_slice_state(client, sid).get("utilisation") or 0) > 0
                    and int(_slice_state(client, sid).get("memory_used_mib") or 0) >= 1024
                ),
            )
            port = process_pool.scheduler.http_server.port
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            assert 'flexlab_slices{holder="lease"} 1' in metrics
            used = [
                line
                for line in metrics.splitlines()
                if line.startswith("flexlab_slice_memory_used_bytes{") and f'slice="{sid}"' in line
            ]
            assert len(used) == 1
            assert 'holder="lease"' in used[0]
            assert 'owner="ana"' in used[0]
            assert float(used[0].rsplit(" ", 1)[1]) >= 1024 * 2**20
            assert fut.result(timeout=60).elapsed_s > 0
        finally:
            lease.release()
        assert lease.state == "released"
        wait_until("the private worker's process exits", lambda: not _alive(pid))
        assert sid not in agent.running
        assert lease.client.scheduler_info()["workers"] == {}
        # work sent to it afterwards fails with the cause instead of waiting
        with pytest.raises(LeaseEnded, match="released by its owner"):
            lease.submit(sum, [1, 2]).result(timeout=10)
        assert process_pool.flex_plugin.private.credentials == {}


def test_ttl_end_fails_running_and_queued_work(process_pool: FlexCluster) -> None:
    with Client(process_pool) as client:
        lease = flexlab.lease("t4:0.5", owner="ana", client=client, private=True, ttl="4s", timeout=120)
        try:
            expires = float(lease.info["expires_at"])
            # 8 threads: eight run, the ninth waits for one of them
            futs = [lease.submit(time.sleep, 120, pure=False) for _ in range(9)]
            wait_until(
                "eight tasks run",
                lambda: (
                    list(lease.client.run(lambda dask_worker: len(dask_worker.state.executing)).values())
                    == [8]
                ),
            )
            for f in futs:
                with pytest.raises(LeaseEnded, match="expired: its TTL ran out"):
                    f.result(timeout=30)
            # the clock of the pool and of this process are one clock here
            late = time.time() - expires
            print(f"work of the expired private lease failed {late:.2f} s after its TTL ran out")
            assert late < END_BOUND_S
            assert lease.refresh()["state"] == "expired"
        finally:
            lease.release()


def test_a_private_worker_that_dies_is_replaced_and_its_work_runs(process_pool: FlexCluster) -> None:
    """Handled like a lease worker that dies: the lease is placed again, a new worker joins
    the owner's scheduler, and the work that was running reruns there."""
    agent = process_pool.agents[0]
    with Client(process_pool) as client:
        lease = flexlab.lease("t4:0.5", owner="ana", client=client, private=True, timeout=120)
        try:
            sid = str(lease.info["slice_id"])
            first = agent.running[sid].process
            assert first is not None
            fut = lease.submit(lambda: (time.sleep(3), os.getpid())[1], pure=False)
            wait_until("the task runs", lambda: lease.client.processing() != {} and fut.status == "pending")
            time.sleep(0.5)
            first.kill()
            wait_until(
                "a new worker runs the slice",
                lambda: (
                    sid in agent.running
                    and agent.running[sid].process is not first
                    and lease.refresh()["state"] == "active"
                ),
                timeout=90,
            )
            second = agent.running[sid].process
            assert second is not None
            assert fut.result(timeout=60) == second.pid
            events = [e["message"] for e in lease.events()]
            assert any("its worker was lost" in m or "was lost" in m for m in events), events
        finally:
            lease.release()
