"""The runtime fixes the fault tests led to, each tested without namespaces (these run
wherever the suite runs, root or not):

* a slice worker stops when the agent that started it dies (none is orphaned);
* the scheduler declares a host lost once its agent is silent for ``agent-timeout``: its
  leases wait to be placed again and their owners are told;
* an agent that reports a lease's slice id which now lives on another host is told to stop
  its worker (a lease keeps its slice id when it is placed again elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import dask.config
import pytest
from distributed import Client, LocalCluster
from flexlab_dask import FlexCluster
from flexlab_dask.agent import HostAgent

import flexlab
from flexlab.client import PoolClient
from flexlab.core.errors import Unschedulable
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices

from .harness import wait_for

HOSTS = [HostSpec(f"t{i}", 8_000, 32 * 1024, (DeviceSpec("t4", 0),)) for i in (1, 2)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1][0] != "Z"


@pytest.mark.slow
def test_slice_worker_stops_when_its_agent_dies() -> None:
    """An agent SIGKILLed (no chance to stop its workers): its slice worker exits by itself."""
    cmd = {
        "slice_id": "s9",
        "devices": ["t1/t4#0"],
        "model": "t4",
        "compute_milli": 1000,
        "memory_mib": 16384,
        "resources": {"flexlab-slice-s9": 1000.0},
        "nthreads": 1,
    }
    with (
        LocalCluster(
            n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        # The "agent": a process that starts one slice worker as the host agent does.
        agent_code = textwrap.dedent(
            f"""
            import os, subprocess, sys, time
            p = subprocess.Popen([sys.executable, "-m", "flexlab_dask", {cluster.scheduler_address!r},
                                  "--slice", {json.dumps(cmd)!r}, "--interval", "0",
                                  "--agent-pid", str(os.getpid())])
            print(p.pid, flush=True)
            time.sleep(600)
            """
        )
        agent = subprocess.Popen([sys.executable, "-c", agent_code], stdout=subprocess.PIPE, text=True)
        worker_pid = 0
        try:
            assert agent.stdout is not None
            worker_pid = int(agent.stdout.readline())
            wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 60, "the slice worker")
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            wait_for(lambda: not _alive(worker_pid), 10, "the slice worker to stop with its agent")
            wait_for(lambda: not client.scheduler_info()["workers"], 10, "the worker to leave the scheduler")
        finally:
            for pid in (agent.pid, worker_pid):
                if pid and _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            agent.wait(10)


@pytest.fixture
def quick_timeout() -> Any:
    yield from _pool("1.5s")


@pytest.fixture
def long_timeout() -> Any:
    yield from _pool("60s")


def _pool(agent_timeout: str) -> Any:
    reset_mock_devices()
    with (
        dask.config.set({"flexlab.agent-timeout": agent_timeout}),
        FlexCluster(HOSTS, loop_interval=0.2, telemetry_interval=0.2) as cluster,
        Client(cluster) as c,
    ):
        yield cluster, c
        assert cluster.flex_plugin.errors == []


def test_host_of_a_silent_agent_is_lost_and_its_lease_owner_told(quick_timeout: Any) -> None:
    cluster, client = quick_timeout
    lease = flexlab.lease("t4:0.5", ttl="1h", owner="ana", client=client, timeout=30)
    host = lease.info["host"]
    agent = next(a for a in cluster.agents if a.host.name == host)
    # The agent stops without a word to the scheduler (as a killed one would).
    cluster.sync(agent.close, leave=False)
    cluster.agents.remove(agent)
    wait_for(
        lambda: host not in {h["name"] for h in PoolClient(client).state()["hosts"]},
        10,
        f"{host} to be declared lost",
    )
    topic = [msg["message"] for _, msg in client.get_events("flexlab-ana")]
    told = [m for m in topic if f"its host {host} was lost" in m]
    assert told, topic
    assert "agent-timeout 1.5 s" in told[0]
    # The lease is placed again on the other host, where its work runs.
    info = wait_for(lambda: lease.refresh()["state"] == "active" and lease.info, 30, "the lease placed again")
    assert info["host"] != host
    assert lease.submit(lambda: 42).result(timeout=30) == 42
    lease.release()


def test_agent_reporting_a_lease_slice_that_moved_is_told_to_stop_it(quick_timeout: Any) -> None:
    cluster, client = quick_timeout
    lease = flexlab.lease("t4:0.5", ttl="1h", owner="ana", client=client, timeout=30)
    other = next(h.name for h in HOSTS if h.name != lease.info["host"])
    # The other host's agent still runs a worker named for the lease's slice (it was there
    # before the lease was placed again): its next poll says so.
    reply = cluster.sync(
        cluster.flex_plugin.handle_agent_poll, host=other, running=[lease.lease_id], timeout=0
    )
    stops = [c["slice_id"] for c in reply["commands"] if c["op"] == "stop"]
    assert stops == [lease.lease_id], reply
    # The lease itself is untouched.
    assert lease.refresh()["state"] == "active"
    lease.release()


def test_lost_hosts_workers_are_evicted_so_its_lease_starts_elsewhere(quick_timeout: Any) -> None:
    """A host cut off: its agent is silent but its workers still hold their Dask names. Once
    the host is lost they are removed from Dask, so the lease's new worker elsewhere (same
    slice id, same worker name) can register; without that Dask refuses it ("name taken")
    and the lease never becomes active again."""
    cluster, client = quick_timeout
    lease = flexlab.lease("t4:0.5", ttl="1h", owner="ana", client=client, timeout=30)
    host, old_worker = lease.info["host"], lease.info["worker"]
    agent = next(a for a in cluster.agents if a.host.name == host)
    assert agent._task is not None
    cluster.loop.add_callback(agent._task.cancel)  # silent agent; its workers keep running
    info = wait_for(
        lambda: lease.refresh()["state"] == "active" and lease.info["host"] != host and lease.info,
        30,
        "the lease active on the other host",
    )
    assert info["worker"] != old_worker
    assert old_worker not in client.scheduler_info()["workers"]
    assert lease.submit(lambda: 42).result(timeout=30) == 42
    lease.release()


def test_agent_restarted_at_once_gets_the_starts_its_dead_predecessor_was_sent(long_timeout: Any) -> None:
    """An agent dies and is started again before ``agent-timeout`` (systemd restarts it):
    the host stays known. The starts of its slices (lost with their workers) went to the dead
    agent's poll; the new agent's registration gets them again, so the capacity comes back."""
    cluster, client = long_timeout
    lease = flexlab.lease("t4:0.5", ttl="1h", owner="ana", client=client, timeout=30)
    host = lease.info["host"]
    agent = next(a for a in cluster.agents if a.host.name == host)
    cluster.sync(agent.close, leave=False)  # its workers stop; it tells the scheduler nothing
    cluster.agents.remove(agent)
    wait_for(lambda: lease.refresh()["state"] != "active", 10, "the lease to lose its worker")
    time.sleep(1)  # the starts of its slices are queued (and taken by the dead agent's poll)
    again = HostAgent(cluster.scheduler.address, agent.host, provider="mock", processes=False)
    cluster.agents.append(cluster.sync(again.start))
    info = wait_for(lambda: lease.refresh()["state"] == "active" and lease.info, 30, "the lease back")
    assert info["host"] == host
    state = PoolClient(client).state()
    served = [s for h in state["hosts"] if h["name"] == host for d in h["devices"] for s in d["slices"]]
    assert served, state["hosts"]
    assert all(s["state"] == "ready" for s in served), served
    assert lease.submit(lambda: 42).result(timeout=30) == 42
    lease.release()


def test_an_agent_in_a_long_poll_is_not_silent(quick_timeout: Any) -> None:
    """Agents wait in long polls of 5 s, longer than this pool's agent-timeout (1.5 s): a host
    whose agent waits in a poll is heard from, and no healthy host is lost."""
    _cluster, client = quick_timeout
    time.sleep(6)
    state = PoolClient(client).state()
    assert sorted(h["name"] for h in state["hosts"]) == [h.name for h in HOSTS]
    assert not [e for e in PoolClient(client).events() if "left the pool" in e["message"]]


def test_work_sent_to_a_restarted_scheduler_waits_for_its_hosts(tmp_path: Any) -> None:
    """A restarted scheduler has no host until the agents register again: a client that
    sends its work at once (it reconnected first) must not see it fail as never fitting."""
    reset_mock_devices()
    state = str(tmp_path / "leases.sqlite")
    with FlexCluster(HOSTS, state_file=state, loop_interval=0.2, telemetry_interval=0.2, cpu_workers=0) as c:
        wait_for(lambda: c.flex_plugin.store.hosts() == ["t1", "t2"], 10, "the hosts in the state file")
    with (
        FlexCluster([], state_file=state, loop_interval=0.2, cpu_workers=0) as cluster,
        Client(cluster) as client,
    ):
        with flexlab.request("t4:0.5"):
            future = client.submit(lambda: 42, pure=False)
        time.sleep(1)
        assert future.status == "pending", future
        for spec in HOSTS:
            agent = HostAgent(cluster.scheduler.address, spec, provider="mock", processes=False)
            cluster.agents.append(cluster.sync(agent.start))
        assert future.result(timeout=30) == 42
        # Settled: what can never fit fails at once again.
        wait_for(lambda: not cluster.flex_plugin.pool.settling, 10, "the pool to settle")
        with flexlab.request("a100:0.5"):
            never = client.submit(lambda: 1, pure=False)
        with pytest.raises(Unschedulable):
            never.result(timeout=30)
        assert cluster.flex_plugin.errors == []


def test_an_agent_busy_with_slow_commands_is_not_silent(quick_timeout: Any) -> None:
    """Starting and stopping slice workers can take an agent longer than agent-timeout
    (1.5 s here) under load, and it does not poll meanwhile: it keeps itself heard, and no
    busy host is lost (under 1,000 lease requests every host of the pool was)."""
    cluster, client = quick_timeout
    for agent in cluster.agents:
        real = agent.start_slice

        async def slow(cmd: dict[str, Any], real: Any = real) -> None:
            await asyncio.sleep(4.0)  # a worker process that is slow to start
            await real(cmd)

        agent.start_slice = slow  # type: ignore[method-assign]
    leases = [flexlab.lease("t4:0.25", ttl="1h", owner="ana", client=client, wait=False) for _ in range(2)]
    time.sleep(6)
    state = PoolClient(client).state()
    assert sorted(h["name"] for h in state["hosts"]) == [h.name for h in HOSTS]
    assert not [e for e in PoolClient(client).events() if "was lost" in e["message"]]
    for lease in leases:
        wait_for(lambda lease=lease: lease.refresh()["state"] == "active", 30, "the lease active")
        lease.release()
