"""What the metrics cannot read from the pool as it is now: counts of what happened.

The runtime (the Dask plugin) tells :class:`MetricsRecorder` about each task placement and
each lease request as it decides them, and calls :meth:`MetricsRecorder.observe` once per
loop pass; the recorder then reads from the pool what changed since the previous pass
(leases that became active, new events, which work still waits). Counters only grow, as
Prometheus expects of them, for the life of the plugin.

>>> from flexlab.core.pool import SlicePool
>>> rec = MetricsRecorder(started=0.0)
>>> rec.task_placed("bound", "SUCCESS")
>>> rec.observe(SlicePool(), 1.0)
>>> dict(rec.placements), rec.oldest_wait(1.0)
({('bound', 'SUCCESS'): 1}, {'task': 0.0, 'lease': 0.0, 'plain_task': 0.0})
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Literal

from flexlab.core.metrics.model import HistogramCounter

if TYPE_CHECKING:  # the pool imports nothing from here
    from flexlab.core.pool import SlicePool

LeaseOutcome = Literal["warm", "placed", "waiting", "refused"]
#: Seconds from a lease's request to its slice's worker serving it: a warm slice answers
#: in milliseconds, a worker process starts in seconds, a full pool keeps leases waiting
#: for minutes or hours.
LEASE_WAIT_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
WAIT_KINDS = ("task", "lease", "plain_task")


class MetricsRecorder:
    """Counters, the lease wait histogram and since when each waiting item waits.

    ``started``: leases asked before it (restored from disk) are not observed.
    """

    def __init__(self, *, started: float) -> None:
        self.started = started
        #: Task placements by (outcome, code): bound, wait or fail; placement's code.
        self.placements: Counter[tuple[str, str]] = Counter()
        #: Lease requests by (request class, outcome).
        self.lease_requests: Counter[tuple[str, LeaseOutcome]] = Counter()
        #: Lease wait from request to active, by how it was served: ``warm`` or ``carved``.
        self.lease_wait = {
            "warm": HistogramCounter(LEASE_WAIT_BUCKETS),
            "carved": HistogramCounter(LEASE_WAIT_BUCKETS),
        }
        #: Pool events by kind (``SlicePool.events``), and events that fell out of its
        #: bounded log before a pass read them.
        self.events: Counter[str] = Counter()
        self.events_missed = 0
        #: Hosts the runtime declared lost (their agent went silent), not those that left.
        self.hosts_lost = 0
        self._seq = 0
        self._warm_leases: set[str] = set()
        self._seen_active: set[str] = set()
        self._since: dict[str, dict[object, float]] = {k: {} for k in WAIT_KINDS}

    # -- told by the runtime -------------------------------------------------------------
    def task_placed(self, outcome: str, code: str, n: int = 1) -> None:
        self.placements[(outcome, code)] += n

    def lease_asked(self, request_class: str, outcome: LeaseOutcome, lease_id: str | None = None) -> None:
        """A lease request was answered: active at once on a ``warm`` slice, its slice
        ``placed`` (its worker starts), ``waiting`` for room, or ``refused``."""
        self.lease_requests[(request_class, outcome)] += 1
        if outcome == "warm" and lease_id is not None:
            self._warm_leases.add(lease_id)

    # -- read from the pool once a pass --------------------------------------------------
    def observe(self, pool: SlicePool, now: float, *, plain_waiting: int = 0) -> None:
        """Leases that became active (their wait is observed once), new pool events, and
        since when each task and lease waits. ``plain_waiting``: plain Dask tasks that find
        no open worker (the pool does not see them, so only their count is known)."""
        leases = pool.leases
        for lid, lease in leases.items():
            if lease.active_since is None or lid in self._seen_active:
                continue
            self._seen_active.add(lid)
            if lease.created >= self.started:
                how = "warm" if lid in self._warm_leases else "carved"
                self.lease_wait[how].observe(max(0.0, lease.active_since - lease.created))
        if len(self._seen_active) > len(leases):  # leases the pool forgot
            self._seen_active &= leases.keys()
            self._warm_leases &= leases.keys()
        evs = pool.events
        if evs and evs[-1].seq > self._seq:
            first = self._seq
            for e in reversed(evs):
                if e.seq <= self._seq:
                    break
                self.events[e.kind] += 1
                first = e.seq
            self.events_missed += max(0, first - self._seq - 1)
            self._seq = evs[-1].seq
        tasks = self._since["task"]
        self._since["task"] = {k: tasks.get(k, now) for k in pool.pending}
        waiting = self._since["lease"]
        self._since["lease"] = {
            lid: waiting.get(lid, now) for lid, x in leases.items() if x.state in ("pending", "recovering")
        }
        plain = self._since["plain_task"]
        self._since["plain_task"] = {"plain": plain.get("plain", now)} if plain_waiting > 0 else {}

    def oldest_wait(self, now: float) -> dict[str, float]:
        """Seconds the longest-waiting item of each kind has waited (0: nothing waits), as
        of the last :meth:`observe`; plain tasks: since some have waited without a break."""
        return {k: max(0.0, now - min(v.values())) if v else 0.0 for k, v in self._since.items()}
