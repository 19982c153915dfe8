"""Faults under load on a pool spread over network namespaces (see ``harness.py``).

Each test runs the load of ``load.py`` (task-mode tasks at 4 a second, and one task at a time
on each of three owners' leases), injects one fault, ends it, and checks: every task's
result arrives, the pool invariants held at every poll, the capacity (every host's device
served by ready slices, the three leases active) is back within the bound of
``docs/runtime.md`` ("What faults do"), and stopping the pool leaves no process. The
figures are printed (``pytest -s``) and recorded in ``benchmarks/multihost.md``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .harness import wait_for
from .pool import Pool

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

#: The host whose link or agent fails: the placement packs the three leases onto h1.
VICTIM = "h1"


def lease_host(pool: Pool) -> str:
    hosts = {le["host"] for le in pool.state()["leases"]}
    return sorted(hosts)[0]


def test_link_cut_for_20_s(pool: Pool) -> None:
    """The agent's host is unreachable for 20 s: kept for the agent grace, nothing re-placed
    unless Dask lost the workers; back within 30 s of the link's return."""
    host = lease_host(pool)
    figures = pool.run_fault(
        f"cut {host}'s link for 20 s",
        lambda: pool.lab.cut(host),
        lambda: pool.lab.restore(host),
        hold_s=20,
        bound_s=30,
    )
    assert figures["completed"] == figures["submitted"]
    # Shorter than agent-timeout (45 s): the host was never given up.
    assert figures["min_hosts"] == 3, figures


@pytest.mark.parametrize("pool", [{"agent-timeout": "8s"}], indirect=True, ids=["agent-timeout-8s"])
def test_link_cut_longer_than_agent_timeout(pool: Pool) -> None:
    """Cut off past ``agent-timeout``: the host is lost (its work runs elsewhere, its leases'
    owners are told); when the link returns, the agent registers again, its stale workers are
    stopped and the capacity is back within 45 s."""
    host = lease_host(pool)
    figures = pool.run_fault(
        f"cut {host}'s link for 20 s, past agent-timeout (8 s)",
        lambda: pool.lab.cut(host),
        lambda: pool.lab.restore(host),
        hold_s=20,
        bound_s=45,
    )
    assert figures["min_hosts"] == 2, figures
    assert figures["completed"] == figures["submitted"]


def test_agent_sigkill_and_restart(pool: Pool) -> None:
    """SIGKILL an agent and start it again at once (as systemd would): its slice workers stop
    with it (none orphaned), their tasks run elsewhere, the leases there are placed again on
    the same host and their owners told; the new agent gets the starts of its host's slices.
    The host itself is kept (the restart comes well within ``agent-timeout``)."""
    host = lease_host(pool)
    agent = pool.agents[host]
    assert len(pool.lab.pids(host)) >= 2  # the agent and its slice workers

    def inject() -> None:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        wait_for(
            lambda: not pool.lab.pids(host), 10, f"{host}'s slice workers to exit with their agent", pool.lab
        )

    figures = pool.run_fault(
        f"SIGKILL {host}'s agent, restart it 2 s later",
        inject,
        lambda: pool.start_agent(host),
        hold_s=2,
        bound_s=45,
    )
    assert figures["min_hosts"] == 3, figures
    events = [m for ms in figures["lease_events"].values() for m in ms]
    assert any("was lost" in m for m in events), events


def test_scheduler_sigkill_and_restart(pool: Pool) -> None:
    """SIGKILL the scheduler and start it again from its state file: the clients reconnect,
    the leases come back with their ids, owners and TTLs, the agents register again."""
    before = {le["lease_id"]: le["owner"] for le in pool.state()["leases"]}
    figures = pool.run_fault(
        "SIGKILL the scheduler, restart it from its state file",
        pool.kill_scheduler,
        lambda: pool.lab.start_scheduler(pool.state_file),
        hold_s=2,
        bound_s=60,
    )
    assert set(figures["leases"]) == set(before)
    assert figures["resubmitted"] > 0  # the futures in flight died with the scheduler


def test_slice_worker_sigkill_mid_task(pool: Pool) -> None:
    """SIGKILL a lease's slice worker and a shared slice's worker while they run tasks: the
    tasks run again, the lease is placed again and its owner told."""
    host = lease_host(pool)
    state = pool.state()
    lease = state["leases"][0]
    busy = [
        s
        for h in state["hosts"]
        if h["name"] != host
        for d in h["devices"]
        for s in d["slices"]
        if s["lease_id"] is None and s["worker"]
    ]
    victims = [lease["worker"], busy[0]["worker"]]
    pids = [pool.pid_of_worker(w) for w in victims]

    def inject() -> None:
        wait_for(
            lambda: all(_running(pool, w) for w in victims), 20, "tasks running on the victims", pool.lab
        )
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    figures = pool.run_fault(
        "SIGKILL a lease's and a shared slice's worker mid-task",
        inject,
        lambda: time.sleep(0),
        hold_s=0,
        bound_s=30,
    )
    events = figures["lease_events"][lease["lease_id"]]
    assert any("lost" in m for m in events), events


def _running(pool: Pool, worker: str) -> bool:
    assert pool.client is not None
    processing = pool.client.processing(workers=[worker])
    return bool(processing.get(worker))
