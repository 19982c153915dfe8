"""The scheduler does not keep an event topic per worker it ever had, nor a task group per
burst of work it forgot (issue 15, the soak's memory): once distributed has emptied a gone
worker's topic, or forgotten a group, the plugin drops what still refers to it."""

from __future__ import annotations

import asyncio
from typing import Any

import dask
from distributed import Client, Event, Scheduler, Worker
from distributed import span as dask_span
from distributed.utils_test import gen_cluster
from flexlab_dask import FlexScheduler
from flexlab_dask.housekeeping import (
    key_split_memo_size,
    prune_event_topics,
    prune_forgotten_groups,
    prune_nthreads_history,
    prune_span_metadata,
    prune_stealing,
    trim_key_split_memo,
)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=60)
async def test_topics_of_gone_workers_are_dropped_and_nothing_else(c: Client, s: Scheduler, w: Any) -> None:
    with dask.config.set({"distributed.scheduler.events-cleanup-delay": "50ms"}):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.05)
        await s.register_scheduler_plugin(plugin, idempotent=False)
        gone: list[str] = []
        for _ in range(5):
            async with Worker(s.address, nthreads=1) as extra:
                gone.append(extra.address)
        # A custom topic that still holds events, and one somebody subscribes to, stay.
        s.log_event("my-topic", {"x": 1})
        s._broker.subscribe("watched", c.id)
        for _ in range(100):  # distributed empties them after the clean-up delay
            if all(not s._broker._topics[a].events for a in gone):
                break
            await asyncio.sleep(0.05)
        topics = s._broker._topics
        assert set(gone) <= set(topics)
        assert all(not topics[a].events for a in gone)

        dropped = prune_event_topics(s)

        assert dropped >= len(gone)
        assert not set(gone) & set(topics)
        assert {"all", "my-topic", "watched", w.address, c.id} <= set(topics)
        assert s.get_events("my-topic")[0][1] == {"x": 1}
        # A dropped topic comes back, empty, when read or written again.
        assert s.get_events(gone[0]) == ()
        s.log_event(gone[1], {"again": True})
        assert len(s.get_events(gone[1])) == 1
        assert plugin.errors == []


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=60)
async def test_the_plugin_prunes_on_its_own_tick(c: Client, s: Scheduler, w: Any) -> None:
    with dask.config.set(
        {"distributed.scheduler.events-cleanup-delay": "50ms", "flexlab.history-length": "100ms"}
    ):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.05)
        await s.register_scheduler_plugin(plugin, idempotent=False)
        for _ in range(2):
            async with Worker(s.address, nthreads=1) as extra:
                addr = extra.address
        for i in range(3):  # three submissions: three metadata entries in the default span
            assert await c.submit(abs, -i) == i
        await asyncio.sleep(0.2)  # the threads history's entries are older than its horizon
        for _ in range(100):
            if not s._broker._topics[addr].events:
                break
            await asyncio.sleep(0.05)
        plugin._pruned_at = 0.0  # due now
        for _ in range(100):
            if addr not in s._broker._topics:
                break
            await asyncio.sleep(0.05)
        assert addr not in s._broker._topics
        assert plugin.topics_pruned >= 1
        assert plugin.nthreads_pruned >= 3
        assert plugin.metadata_pruned >= 2
        assert len(s.total_nthreads_history) <= 2
        assert plugin.errors == []


def test_a_scheduler_without_a_broker_table_is_left_alone() -> None:
    class Bare:
        def __init__(self) -> None:
            self.workers: dict[str, Any] = {}
            self.clients: dict[str, Any] = {}

    assert prune_event_topics(Bare()) == 0


def inc(x: int) -> int:
    return x + 1


def wait_for(name: str) -> None:
    Event(name).wait(60)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 2)], timeout=60)
async def test_forgotten_task_groups_are_dropped_from_a_busy_schedulers_computation_and_span(
    c: Client, s: Scheduler, w: Any
) -> None:
    plugin = FlexScheduler(state_file=":memory:", loop_interval=0.05)
    await s.register_scheduler_plugin(plugin, idempotent=False)
    release = Event("release-the-blocker")
    blocker = c.submit(wait_for, "release-the-blocker", pure=False)  # the scheduler is never idle
    spans = s.extensions["spans"]
    for i in range(40):  # one task at a time: its group is forgotten before the next comes
        assert await c.submit(inc, i) == i + 1
        for _ in range(100):
            if not any(tg.name.startswith("inc") for tg in s.task_groups.values()):
                break
            await asyncio.sleep(0.01)
    computation = s.computations[-1]
    span = spans.spans_search_by_name["default",][-1]
    # the scheduler was never idle: its computation and default span held every group
    assert sum(tg.name.startswith("inc") for tg in computation.groups) >= 30
    assert sum(tg.name.startswith("inc") for tg in span.groups) >= 30
    stop, start, done = computation.stop, span.start, span.done

    dropped = prune_forgotten_groups(s)

    assert dropped >= 2 * 28
    live = set(s.task_groups.values())
    assert sum(tg not in live for tg in computation.groups) <= 2  # the first started, the last stopped
    assert sum(tg not in live for tg in span.groups) <= 2
    assert (computation.stop, span.start, span.done) == (stop, start, done)
    assert [tg for tg in computation.groups if tg in live]  # the blocker's group stays
    assert prune_forgotten_groups(s) == 0
    await release.set()
    await blocker
    assert plugin.errors == []


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=60)
async def test_gone_workers_are_dropped_from_work_stealing(c: Client, s: Scheduler, w: Any) -> None:
    plugin = FlexScheduler(state_file=":memory:", loop_interval=3600)  # no tick of its own here
    await s.register_scheduler_plugin(plugin, idempotent=False)
    stealing = s.extensions["stealing"]
    gone = []
    for _ in range(3):
        async with Worker(s.address, nthreads=1) as extra:
            ws = s.workers[extra.address]
            stealing._combined_nprocessing(ws)  # what its balancing reads for every worker
            stealing._combined_occupancy(ws, occupancies={ws: 0.0})
            gone.append(ws)
    live = s.workers[w.address]
    stealing._combined_nprocessing(live)
    # distributed kept every worker that left in the in-flight tables
    assert all(ws in stealing.in_flight_tasks for ws in gone)

    dropped = prune_stealing(s)

    assert dropped >= len(gone)
    assert not any(ws in stealing.in_flight_tasks or ws in stealing.in_flight_occupancy for ws in gone)
    assert live in stealing.in_flight_tasks  # a live worker's entry stays
    assert prune_stealing(s) == 0
    # stealing still works on what is left
    assert await c.submit(sum, [1, 2]) == 3
    assert plugin.errors == []


@gen_cluster(client=True, nthreads=[("127.0.0.1", 2)], timeout=60)
async def test_old_thread_counts_are_dropped_and_recent_spans_read_the_same(
    c: Client, s: Scheduler, w: Any
) -> None:
    history = s.total_nthreads_history
    assert await c.submit(sum, [0]) == 0  # the default span begins before the churn
    release = Event()
    with dask_span("long"):  # a span still running across the horizon
        running = c.submit(release.wait, 30)
    for _ in range(3):  # workers that come and go: two entries each
        async with Worker(s.address, nthreads=2):
            pass
    horizon = len(history)
    with dask_span("recent"):  # a span that begins after those entries
        assert await c.submit(sum, [1, 2]) == 3
    for _ in range(2):
        async with Worker(s.address, nthreads=3):
            pass
    spans = s.extensions["spans"].spans
    recent = next(x for x in spans.values() if x.name[-1] == "recent")
    first = next(x for x in spans.values() if x.name == ("default",))
    assert first.done
    assert first._total_nthreads_offset < horizon - 1
    before = {x.id: list(x._nthreads_timeseries()) for x in (recent, first)}
    cut = history[horizon - 1][0]

    dropped = prune_nthreads_history(s, keep_s=10.0, now=cut + 10.0)

    # everything before the last entry older than the cut went; that one stays
    assert dropped == horizon - 2
    assert history[0][0] < cut <= history[1][0]
    # a span newer than the horizon, and one that finished before it, read as before
    assert list(recent._nthreads_timeseries()) == before[recent.id]
    assert list(first._nthreads_timeseries()) == before[first.id]
    assert first._total_nthreads_history is not history
    assert recent._total_nthreads_history is history
    # a span running since before the horizon reads from the horizon on
    long = next(x for x in spans.values() if x.name[-1] == "long")
    assert not long.done
    assert long._total_nthreads_offset == 0
    assert next(iter(long._nthreads_timeseries())) == (max(long.enqueued, history[0][0]), history[0][1])
    await release.set()
    assert await running is True
    assert prune_nthreads_history(s, keep_s=10.0, now=cut + 10.0) == 0
    # the scheduler keeps appending to the same list
    async with Worker(s.address, nthreads=1):
        assert history[-1][1] == sum(ws.nthreads for ws in s.workers.values())


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=60)
async def test_a_span_keeps_distinct_metadata_not_one_entry_per_submission(
    c: Client, s: Scheduler, w: Any
) -> None:
    with dask_span("busy"):
        futures = [c.submit(abs, -i) for i in range(30)]  # one submission each
        assert await c.gather(futures) == list(range(30))
    busy = next(x for x in s.extensions["spans"].spans.values() if x.name[-1] == "busy")
    entries = busy.metadata["collections"]
    assert len(entries) == 30  # distributed: one {"type": "Future"} per submission
    entries.insert(0, {"type": "Array", "chunks": 3})  # an older, different one stays

    dropped = prune_span_metadata(s)

    assert dropped == 29
    assert busy.metadata["collections"] == [{"type": "Array", "chunks": 3}, {"type": "Future"}]
    assert prune_span_metadata(s) == 0
    assert prune_span_metadata(s, keep=1) == 1
    assert busy.metadata["collections"] == [{"type": "Future"}]  # the latest is kept
    # the span takes new metadata as before
    with dask_span("busy"):
        assert await c.submit(abs, -5) == 5


def test_the_key_split_memo_is_emptied_only_when_it_holds_too_many() -> None:
    from dask.utils import key_split

    key_split.cache_clear()
    for i in range(20):
        key_split(f"task-{i}-abcdef0123456789abcdef0123456789")
    assert trim_key_split_memo(keep=100) == 0
    assert key_split_memo_size() == key_split.cache_info().currsize == 20
    assert trim_key_split_memo(keep=10) == 20
    assert key_split_memo_size() == 0
    assert key_split("task-1-abcdef0123456789abcdef0123456789") == "task"  # computed again
