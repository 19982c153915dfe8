"""Work is never stranded: plain tasks after a lost worker or under warm slices, futures on
a lease that ends, and leases made by a call that gave up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
import pytest
from distributed import Client, wait
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.client import PoolClient, _call
from flexlab.core.errors import LeaseEnded
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices

from .conftest import assert_no_plugin_errors

ONE_T4 = [HostSpec("t4-host", 16_000, 64 * 1024, (DeviceSpec("t4", 0),))]


@contextmanager
def t4_pool(*, hi: bool = False, **settings: Any) -> Iterator[tuple[FlexCluster, Client]]:
    """One T4 and no CPU workers: plain tasks can only run on its shared slice."""
    reset_mock_devices()
    cfg = {"flexlab.hi.interval": "0.2s", "flexlab.hi.bucket": "1s", "flexlab.hi.horizon": 3, **settings}
    with dask.config.set(cfg):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=hi)
    with (
        FlexCluster(ONE_T4, plugin=plugin, cpu_workers=0, telemetry_interval=0.2) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client
        assert_no_plugin_errors(cluster)


def shared_worker(cluster: FlexCluster) -> str:
    shared = [s for s in cluster.pool.slices.values() if not s.reserved and s.state == "ready"]
    assert len(shared) == 1, shared
    assert shared[0].worker is not None
    return shared[0].worker


def crash(client: Client, address: str) -> None:
    """Remove a worker from the scheduler as a crash would (no graceful hand-over)."""

    async def remove(dask_scheduler: Any) -> None:
        await dask_scheduler.remove_worker(address=address, stimulus_id="test-crash", close=True)

    client.run_on_scheduler(remove)


def test_plain_tasks_run_after_the_worker_they_were_sent_to_is_lost() -> None:
    """With a lease held, plain tasks may only use the shared slice's worker; that worker is
    lost; the pool carves a new shared slice and every plain task runs there."""
    with t4_pool() as (cluster, client):
        lease = flexlab.lease("gpu:0.3", owner="ana", client=client, timeout=20)
        first = shared_worker(cluster)
        futures = client.map(lambda i: (time.sleep(0.05), i)[1], range(20), pure=False)
        crash(client, first)
        wait(futures, timeout=30)
        assert [f.result() for f in futures] == list(range(20))
        assert shared_worker(cluster) != first
        lease.release()


def test_warm_slices_give_the_device_back_to_waiting_plain_tasks() -> None:
    """Pre-warming took the whole T4 (no shared slice left) while plain tasks wait: the Hi
    loop gives the warm slices back and the plain tasks run."""
    with t4_pool(hi=True, **{"flexlab.hi.max-warm": 4}) as (cluster, client):
        plugin = cluster.flex_plugin
        # a lease first, so that plain tasks are kept off reserved workers from now on
        lease = flexlab.lease("gpu:0.2", owner="ana", client=client, timeout=20)
        req = flexlab.parse_request("gpu:0.4,6GiB")

        def warm_all() -> int:
            n = 0
            while plugin.pool.prewarm(req, "test: fill the device") is not None:
                n += 1
            plugin._flush_commands()
            return n

        # The Hi loop paused while the device fills and the tasks come: otherwise it may give
        # the warm slices back as surplus (nobody forecast them) before any task waits.
        client.sync(_on_loop, lambda: setattr(plugin, "hi_enabled", False))
        assert client.sync(_on_loop, warm_all) == 2
        assert not [s for s in cluster.pool.slices.values() if not s.reserved]
        futures = client.map(lambda i: i * 2, range(20), pure=False)
        deadline = time.monotonic() + 20
        while client.sync(_on_loop, plugin.plain_waiting) == 0:
            assert time.monotonic() < deadline, "the plain tasks never counted as waiting"
            time.sleep(0.05)
        client.sync(_on_loop, lambda: setattr(plugin, "hi_enabled", True))
        wait(futures, timeout=30)
        assert sum(f.result() for f in futures) == 380
        moves = plugin.hi_state()["moves"]
        assert any(m["action"] == "dissolve" and "wait for capacity" in m["reason"] for m in moves)
        lease.release()


async def _on_loop(fn: Any) -> Any:
    return fn()


def _sleep(s: float) -> str:
    time.sleep(s)
    return "done"


@pytest.mark.parametrize("how", ["release", "ttl"])
def test_futures_on_a_lease_that_ends_fail_with_the_cause(how: str) -> None:
    """Running and queued tasks on a lease that ends (released, TTL) resolve at once with
    ``LeaseEnded`` naming the lease and why: none waits for a slice that is gone."""
    with t4_pool() as (cluster, client):
        ttl = 1.5 if how == "ttl" else 3600
        lease = flexlab.lease("gpu:0.5", ttl=ttl, owner="ana", client=client, timeout=20)
        threads = cluster.flex_plugin.slice_threads
        # every thread of the slice busy, and two more queued behind them
        futures = lease.map(_sleep, [6.0] * (threads + 2), pure=False)
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and sum(f.status == "pending" for f in futures)
            and not any(s.startswith("processing") for s in _states(client, futures))
        ):
            time.sleep(0.05)
        t0 = time.monotonic()
        if how == "release":
            lease.release()
        wait(futures, timeout=15)
        took = time.monotonic() - t0
        for f in futures:
            with pytest.raises(LeaseEnded, match=f"lease {lease.lease_id} ended") as info:
                f.result()
            assert ("released" if how == "release" else "expired") in str(info.value)
        # release: within a few loop passes; TTL: the TTL plus a few passes, not the 6 s task
        assert took < (3.0 if how == "release" else 4.5), took
        stats = PoolClient(client).state()["plugin"]["stats"]
        assert stats["failed"] >= len(futures)


def _states(client: Client, futures: list[Any]) -> list[str]:
    keys = [f.key for f in futures]

    def states(dask_scheduler: Any) -> list[str]:
        return [dask_scheduler.tasks[k].state for k in keys if k in dask_scheduler.tasks]

    return list(client.run_on_scheduler(states))


def _live(client: Client, owner: str) -> list[dict[str, Any]]:
    return [x for x in PoolClient(client).leases(owner) if x["state"] not in ("released", "expired")]


def test_leases_of_calls_that_time_out_are_given_back() -> None:
    """50 lease calls at once, each giving up after 0.5 s: those that time out leave no lease
    behind (the pool has room for only a few of them)."""
    from concurrent.futures import ThreadPoolExecutor

    with t4_pool() as (_cluster, client):

        def ask(i: int) -> str:
            try:
                got = flexlab.lease("gpu:0.3", owner=f"user{i % 10}", client=client, timeout=0.5)
            except TimeoutError:
                return "timeout"
            return got.lease_id

        with ThreadPoolExecutor(16) as ex:
            outcomes = list(ex.map(ask, range(50)))
        granted = [o for o in outcomes if o != "timeout"]
        assert 1 <= len(granted) <= 3, outcomes  # a T4 holds three slices of 0.3
        live = [x for i in range(10) for x in _live(client, f"user{i}")]
        assert sorted(x["lease_id"] for x in live) == sorted(granted)
        for lid in granted:
            _call(
                client,
                "flexlab_lease_release",
                lease_id=lid,
                owner=next(x["owner"] for x in live if x["lease_id"] == lid),
            )
        assert not [x for i in range(10) for x in _live(client, f"user{i}")]


def test_a_lease_whose_caller_disconnects_before_it_is_handed_over_is_given_back() -> None:
    with t4_pool() as (cluster, client):
        hog = flexlab.lease("gpu:1", owner="ana", client=client, timeout=20)
        other = Client(cluster.scheduler_address)
        resp = _call(
            other,
            "flexlab_lease_create",
            request="gpu:0.5",
            owner="bob",
            ttl="1h",
            client_id=other.id,
            token="t1",
        )
        assert resp["lease"]["state"] == "pending"
        # a handle that was handed over (claimed) survives its client's departure
        kept = flexlab.lease("gpu:0.5", owner="carl", client=other, wait=False)
        other.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _live(client, "bob"):
            time.sleep(0.05)
        assert not _live(client, "bob")
        assert [x["lease_id"] for x in _live(client, "carl")] == [kept.lease_id]
        gone = PoolClient(client).leases("bob")[0]
        assert "left before the lease was handed over" in gone["reason"]
        hog.release()


def test_an_exception_in_the_transition_hook_is_counted_and_fails_the_suite(
    fail_on_plugin_exceptions: Any,
) -> None:
    """``transition`` is guarded like every other hook; and the suite-wide fixture sees a
    plugin exception that distributed itself logs only at INFO."""
    with t4_pool() as (cluster, client):
        plugin = cluster.flex_plugin
        original = plugin.pool.task_finished

        def broken(key: object) -> None:
            raise RuntimeError("boom in task_finished")

        plugin.pool.task_finished = broken  # type: ignore[method-assign]
        try:
            with flexlab.request("gpu:0.1"):
                assert client.submit(lambda: 7, pure=False).result(timeout=10) == 7
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not plugin.errors:
                time.sleep(0.05)
        finally:
            plugin.pool.task_finished = original  # type: ignore[method-assign]
        assert any("boom in task_finished" in e for e in plugin.errors)
        assert any("transition" in r.getMessage() for r in fail_on_plugin_exceptions.records)
        plugin.errors.clear()
        fail_on_plugin_exceptions.records.clear()

    # distributed's own INFO record of a raising transition hook is caught as well
    import logging

    try:
        raise RuntimeError("flexlab transition failed")
    except RuntimeError:
        logging.getLogger("distributed.scheduler").info("Plugin failed with exception", exc_info=True)
    assert fail_on_plugin_exceptions.records, "an INFO record with a flexlab traceback must count"
    fail_on_plugin_exceptions.records.clear()


TWO_T4 = [HostSpec(f"t4-{i}", 16_000, 64 * 1024, (DeviceSpec("t4", 0),)) for i in range(2)]


def test_a_preempted_lease_whose_ttl_runs_out_fails_its_waiting_work_with_the_cause() -> None:
    """Preempted, a lease waits to be placed again; when its TTL runs out first, the tasks
    queued on it fail with LeaseEnded, never hang. (Tasks are submitted once it is preempted:
    an in-process slice worker cannot kill a running thread, so a running task would finish
    before the worker stops; with worker processes it is killed and comes back queued.)"""
    with t4_pool(hi=True, **{"flexlab.hi.preempt-grace": "0.3s"}) as (cluster, client):
        low = flexlab.lease("gpu:1", ttl=6, owner="low", priority=0, client=client, timeout=20)
        high = flexlab.lease("gpu:1", ttl="1h", owner="high", priority=5, client=client, timeout=20)
        assert low.refresh()["preemptions"] == 1
        assert low.info["state"] == "pending"
        threads = cluster.flex_plugin.slice_threads
        futures = low.map(_sleep, [20.0] * (threads + 1), pure=False)
        wait(futures, timeout=20)  # the TTL (6 s from activation) plus a few loop passes
        for f in futures:
            with pytest.raises(LeaseEnded, match="expired"):
                f.result()
        assert low.refresh()["state"] == "expired"
        high.release()


def test_work_on_a_lease_whose_host_is_lost_runs_where_the_lease_is_placed_again() -> None:
    reset_mock_devices()
    with (
        FlexCluster(TWO_T4, cpu_workers=0, loop_interval=0.1, telemetry_interval=0.2) as cluster,
        Client(cluster) as client,
    ):
        lease = flexlab.lease("gpu:0.5", ttl="1h", owner="ana", client=client, timeout=20)
        first = lease.info["host"]
        threads = cluster.flex_plugin.slice_threads
        futures = lease.map(_sleep, [1.0] * (threads + 2), pure=False)
        time.sleep(0.3)  # some running, two queued
        agent = next(a for a in cluster.agents if a.host.name == first)
        client.sync(agent.close)  # the host leaves the pool for good
        wait(futures, timeout=30)
        assert [f.result() for f in futures] == ["done"] * len(futures)
        assert lease.refresh()["host"] != first
        assert lease.info["state"] == "active"
        lease.release()
        assert_no_plugin_errors(cluster)


def test_plain_tasks_that_find_no_open_worker_say_why_and_run_once_one_opens() -> None:
    with t4_pool() as (_cluster, client):
        lease = flexlab.lease("gpu:1", owner="ana", client=client, timeout=20)  # the whole T4
        futures = client.map(lambda i: i + 1, range(5), pure=False)
        deadline = time.monotonic() + 10
        waiting: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(waiting) < 5:
            waiting = PoolClient(client).state()["waiting"]
            time.sleep(0.1)
        assert len(waiting) == 5
        assert all("serves no lease" in w["reason"] for w in waiting)
        assert not any(f.done() for f in futures)
        lease.release()  # its capacity is carved into a shared slice again
        wait(futures, timeout=30)
        assert [f.result() for f in futures] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_preempted_lease_with_a_task_running_and_one_queued_resolves_both_with_the_cause() -> None:
    """Slice workers as processes, so preemption really stops the task that runs: it comes
    back queued beside the other one, the lease waits to be placed again, and when its TTL
    runs out first both fail with LeaseEnded saying it expired, within the TTL plus a few
    loop passes (never the 60 s the tasks would take)."""
    reset_mock_devices()
    cfg = {"flexlab.hi.interval": "0.2s", "flexlab.hi.preempt-grace": "0.3s"}
    with dask.config.set(cfg):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=True)
    with (
        FlexCluster(ONE_T4, plugin=plugin, cpu_workers=0, processes=True, telemetry_interval=0.2) as cluster,
        Client(cluster) as client,
    ):
        low = flexlab.lease("gpu:1", ttl=12, owner="low", priority=0, client=client, timeout=60)
        threads = cluster.flex_plugin.slice_threads
        futures = low.map(_sleep, [60.0] * (threads + 1), pure=False)  # all threads busy, one queued
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "processing" not in _states(client, futures):
            time.sleep(0.1)
        assert "processing" in _states(client, futures)
        high = flexlab.lease("gpu:1", ttl="1h", owner="high", priority=5, client=client, timeout=60)
        assert low.refresh()["preemptions"] == 1
        t0 = time.monotonic()
        wait(futures, timeout=30)
        took = time.monotonic() - t0
        for f in futures:
            with pytest.raises(LeaseEnded, match=f"lease {low.lease_id} ended.*expired"):
                f.result()
        assert took < 15, took  # what is left of the 12 s TTL plus a few passes
        assert low.refresh()["state"] == "expired"
        high.release()
        assert_no_plugin_errors(cluster)
