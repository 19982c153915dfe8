"""What the scheduler would otherwise keep forever: event topics of workers long gone.

distributed logs events under each worker's and client's address (``Scheduler.log_event``)
and, ``distributed.scheduler.events-cleanup-delay`` after the worker or client has gone,
empties that topic. It never drops the topic itself, so a scheduler keeps one object per
worker it ever had. A pool starts and stops a slice worker per lease and per re-carve: in
the 30-minute soak that was 1,381 topics, growing without bound.

:func:`prune_event_topics` drops the topics that distributed has already emptied, that
nobody subscribes to, and whose worker or client is gone. Nothing observable changes: a
topic is created again, empty, the moment anything publishes to it, subscribes to it or
reads it (the broker's table is a ``defaultdict``).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("flexlab.dask")

#: Topics distributed itself writes to for the whole life of the scheduler.
KEEP = frozenset({"all", "scheduler"})


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
