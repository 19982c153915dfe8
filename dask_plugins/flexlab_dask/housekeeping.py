"""What the scheduler would otherwise keep forever, or far too long: event topics of workers
long gone, task groups of work long forgotten, workers in work stealing's tables, thread
counts and span metadata of long ago, and every task's key in dask's ``key_split`` memo.
The plugin calls these once a minute from its loop.

distributed logs events under each worker's and client's address (``Scheduler.log_event``)
and, ``distributed.scheduler.events-cleanup-delay`` after the worker or client has gone,
empties that topic. It never drops the topic itself, so a scheduler keeps one object per
worker it ever had. A pool starts and stops a slice worker per lease and per re-carve: in
the 30-minute soak that was 1,381 topics, growing without bound.

:func:`prune_event_topics` drops the topics that distributed has already emptied, that
nobody subscribes to, and whose worker or client is gone. Nothing observable changes: a
topic is created again, empty, the moment anything publishes to it, subscribes to it or
reads it (the broker's table is a ``defaultdict``).

distributed forgets a task group once all its tasks are forgotten, and makes a new one the
next time a task of that name comes. But the scheduler's current ``Computation`` and its
current default span hold every group they ever saw, and both stay current for as long as
the scheduler is never idle: in a pool under steady load, that is for ever. Each forgotten
group (a few KiB) stayed, one per burst of a task name, and
``Scheduler._ensure_default_span`` walks them all on every graph submitted
(distributed issue 7977, "Spans lifetime management"). :func:`prune_forgotten_groups` drops
the groups the scheduler has forgotten from computations and spans, keeping the earliest
started and the latest stopped of them so that their start, stop and ``done`` read as
before; the fine performance metrics of a span are kept apart from its groups and stay.
Spans themselves are kept (one default span per busy spell, each now holding at most two
forgotten groups).

distributed's work stealing counts steals in flight per worker in two ``defaultdict``s keyed
by ``WorkerState``, which its balancing reads for every worker it looks at, so each read
adds the worker; it empties one of them only when no steal is in flight and the other
never, and nothing drops a worker that left. Every slice worker a pool ever started stayed
there with its ``WorkerState`` (its task and memory tables): in the soak, about 45 a
minute, the scheduler's memory growing about 0.5 MiB a minute. :func:`prune_stealing` drops
the workers that are gone and are in no steal in flight.

distributed appends ``(time, threads in the cluster)`` to
``Scheduler.total_nthreads_history`` each time a worker joins or leaves, and never drops an
entry: spans read it, each from the index it had when the span began, to integrate the
threads the cluster had while the span ran. A pool that starts a worker per lease adds two
entries per lease (in the soak, about 140 a minute, 0.4 MiB in half an hour, for ever).
:func:`prune_nthreads_history` drops the entries older than a horizon (the plugin passes
``flexlab.history-length``, 1 h by default), keeping the last of them, so the thread count
in effect at the horizon is still known, and moves every span's index back by as many. A
span that finished before the horizon keeps its own copy of the entries of its life, so
it reads exactly as before. What changes: a span still running that began before the
horizon counts its threads from the horizon on (distributed's idle-thread figures of such
a span lose their part before it), and a finished span that gets new work after the
horizon does not see the thread counts after that.

distributed adds the metadata of every graph submitted to its span to that span's list
(``Span.add_metadata``: ``{"type": "Future"}`` for each ``client.submit``), and the default
span of a scheduler that is never idle never ends: one dict per submission, for ever (in
the soak, about 500 a minute). :func:`prune_span_metadata` keeps the distinct entries of
each span's list, the latest last, at most ``SPAN_METADATA_KEEP``.

dask memoises ``key_split`` (the task prefix of a key) for the last 100,000 keys it saw.
Keys are unique per task, so on a scheduler every task's key string stays in that memo
until 100,000 newer ones push it out: about 25 MiB once full, which a pool under steady
load reaches in hours. :func:`trim_key_split_memo` empties the memo once it holds more
than ``KEY_SPLIT_KEEP`` keys (it is only a cache: the next calls compute again).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from typing import Any

logger = logging.getLogger("flexlab.dask")

#: Topics distributed itself writes to for the whole life of the scheduler.
KEEP = frozenset({"all", "scheduler"})
#: Distinct metadata entries kept per span (``prune_span_metadata``).
SPAN_METADATA_KEEP = 100
#: Keys ``dask.utils.key_split`` may memoise before the memo is emptied.
KEY_SPLIT_KEEP = 10_000


def prune_event_topics(scheduler: Any) -> int:
    """Drop the empty, unsubscribed topics of workers and clients that are gone.

    Returns how many were dropped (0 where this distributed has no broker table)."""
    broker = getattr(scheduler, "_broker", None)
    topics = getattr(broker, "_topics", None)
    if not isinstance(topics, dict):
        return 0
    live = set(scheduler.workers) | set(scheduler.clients)
    gone = [
        name
        for name, topic in topics.items()
        if name not in KEEP
        and name not in live
        and not getattr(topic, "events", True)
        and not getattr(topic, "subscribers", True)
    ]
    for name in gone:
        del topics[name]
    if gone:
        logger.debug("flexlab: dropped %d empty event topics of gone workers and clients", len(gone))
    return len(gone)


def _prune(groups: set[Any], live: set[int]) -> int:
    """Drop from ``groups`` those not in ``live`` (ids), but the earliest-started and the
    latest-stopped of them. Returns how many were dropped."""
    dead = [tg for tg in groups if id(tg) not in live]
    if len(dead) <= 2:
        return 0
    keep = {id(min(dead, key=lambda tg: tg.start or float("inf"))), id(max(dead, key=lambda tg: tg.stop))}
    dropped = 0
    for tg in dead:
        if id(tg) not in keep:
            groups.discard(tg)
            dropped += 1
    return dropped


def prune_forgotten_groups(scheduler: Any) -> int:
    """Drop the task groups the scheduler has forgotten from its computations and spans
    (see the module's docstring). Returns how many references were dropped."""
    live = {id(tg) for tg in getattr(scheduler, "task_groups", {}).values()}
    dropped = 0
    for computation in getattr(scheduler, "computations", ()):
        groups = getattr(computation, "groups", None)
        if isinstance(groups, set):
            dropped += _prune(groups, live)
    spans = getattr(getattr(scheduler, "extensions", {}).get("spans"), "spans", None)
    if isinstance(spans, dict):
        for span in spans.values():
            groups = getattr(span, "groups", None)
            if isinstance(groups, set):
                dropped += _prune(groups, live)
    if dropped:
        logger.debug("flexlab: dropped %d references to forgotten task groups", dropped)
    return dropped


def prune_stealing(scheduler: Any) -> int:
    """Drop the workers that left from work stealing's in-flight tables (see the module's
    docstring). Returns how many entries were dropped (0 where stealing is off)."""
    stealing = getattr(scheduler, "extensions", {}).get("stealing")
    if stealing is None:
        return 0
    live = {id(ws) for ws in scheduler.workers.values()}
    in_flight = getattr(stealing, "in_flight", {})
    busy = {id(info.get(role)) for info in in_flight.values() for role in ("thief", "victim")}
    dropped = 0
    for name in ("in_flight_occupancy", "in_flight_tasks"):
        table = getattr(stealing, name, None)
        if not isinstance(table, dict):
            continue
        for ws in [w for w in table if id(w) not in live and id(w) not in busy]:
            del table[ws]
            dropped += 1
    if dropped:
        logger.debug("flexlab: dropped %d entries of gone workers from work stealing", dropped)
    return dropped


def prune_nthreads_history(scheduler: Any, keep_s: float, now: float | None = None) -> int:
    """Drop the entries of ``total_nthreads_history`` older than ``keep_s`` seconds but the
    last of them, and move the spans' indices into it back by as many (see the module's
    docstring). Returns how many entries were dropped."""
    found = getattr(scheduler, "total_nthreads_history", None)
    if not isinstance(found, list) or len(found) < 3:
        return 0
    history: list[tuple[float, int]] = found
    cut = (time.time() if now is None else now) - keep_s

    def at(t: float) -> int:  # entries are appended in time order
        return bisect_left(history, t, key=lambda entry: entry[0])

    drop = at(cut) - 1  # keep the last entry before the cut: the count in effect then
    if drop <= 0:
        return 0
    spans = getattr(getattr(scheduler, "extensions", {}).get("spans"), "spans", None)
    for span in spans.values() if isinstance(spans, dict) else ():
        if getattr(span, "_total_nthreads_history", None) is not history:
            continue  # a copy of its own already
        offset = span._total_nthreads_offset
        if offset >= drop:
            span._total_nthreads_offset = offset - drop
        elif span.done and span.stop < cut:
            # its whole life is before the horizon: it keeps what it reads, and only that
            span._total_nthreads_history = history[offset : at(span.stop)]
            span._total_nthreads_offset = 0
        else:
            span._total_nthreads_offset = 0
    del history[:drop]
    logger.debug("flexlab: dropped %d entries older than %.0f s from the threads history", drop, keep_s)
    return drop


def prune_span_metadata(scheduler: Any, keep: int = SPAN_METADATA_KEEP) -> int:
    """Keep the distinct entries of each span's metadata list, the latest last, at most
    ``keep`` (see the module's docstring). Returns how many entries were dropped."""
    spans = getattr(getattr(scheduler, "extensions", {}).get("spans"), "spans", None)
    dropped = 0
    for span in spans.values() if isinstance(spans, dict) else ():
        metadata = getattr(span, "_metadata", None)
        entries = metadata.get("collections") if isinstance(metadata, dict) else None
        if not isinstance(entries, list) or len(entries) <= 1:
            continue
        latest: dict[str, Any] = {}
        for entry in entries:  # the last of equal entries wins, in the order they last came
            name = repr(entry)
            latest.pop(name, None)
            latest[name] = entry
        kept = list(latest.values())[-keep:]
        if len(kept) < len(entries):
            dropped += len(entries) - len(kept)
            entries[:] = kept
    if dropped:
        logger.debug("flexlab: dropped %d repeated metadata entries from spans", dropped)
    return dropped


def key_split_memo_size() -> int:
    """Keys dask's ``key_split`` memo holds now (0 if this dask does not memoise it)."""
    from dask.utils import key_split

    info = getattr(key_split, "cache_info", None)
    return 0 if info is None else int(info().currsize)


def trim_key_split_memo(keep: int = KEY_SPLIT_KEEP) -> int:
    """Empty dask's ``key_split`` memo once it holds more than ``keep`` keys (see the
    module's docstring). Returns how many keys it held when emptied, else 0."""
    from dask.utils import key_split

    held = key_split_memo_size()
    if held <= keep:
        return 0
    key_split.cache_clear()
    return held
