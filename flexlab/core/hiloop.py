"""The Hi Scheduler loop, written once: policies propose moves, one manager enacts them.

The shape of distributed's Active Memory Manager: every pass, each :class:`HiPolicy`
looks at a :class:`HiView` of the pool (a clock, waiting work, warm slices, waiting leases)
and proposes :class:`Move` s, each with a structured reason (:class:`Why`). The manager,
:class:`HiLoop`, checks each move against the rules that hold across policies (no
pre-warming while work waits or for ``hold_after_wait_s`` after), enacts it on the pool
(:class:`~flexlab.core.pool.SlicePool`) and returns an :class:`Outcome` per move: done,
with the slices it touched, or rejected with a :class:`Reject` code. The Dask plugin calls
:meth:`HiLoop.step` on its event loop and only carries out the pool's commands through the
agents and tells owners; the online simulator calls the same method with a virtual clock.
Nothing of this decides anywhere else.

Policies shipped:

* :class:`GiveBackToWaitingWork`: when tasks wait for capacity, every warm slice goes back.
* Recycling: after each pass the manager tells the pool how many warm slices each request
  wants (:class:`Prewarm`'s targets, none while pre-warming is held off); a lease's slice
  that ends while its request has fewer is kept warm instead of stopped
  (``SlicePool.want_warm``).
* :class:`Prewarm`: warm slices ahead of forecast lease arrivals per request class
  (:class:`~flexlab.core.prewarm.WarmPlanner`), plus an optional standing reserve (a share
  of the pool kept warm in the arrival mix seen so far, whatever the forecast); with
  ``forecast=False`` only the reserve (the benchmark's reserve-only mode).
* :class:`Preempt`: a lease that has waited ``grace_s`` preempts lower-priority leases
  (lowest priority and youngest first, as few as make it fit: ``SlicePool.preemption_victims``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from flexlab.core.prewarm import WarmPlanner, preemption_due
from flexlab.core.request import SliceRequest, parse_request

if TYPE_CHECKING:  # the pool imports nothing from here; only types flow this way
    from flexlab.core.pool import LeaseInfo, SlicePool


class Action(Enum):
    PREWARM = "prewarm"
    DISSOLVE = "dissolve"
    PREEMPT = "preempt"


class Why(Enum):
    """Why a policy proposes a move."""

    FORECAST = "forecast"  # arrivals of this request are forecast within the horizon
    RESERVE = "reserve"  # the standing reserve wants a warm slice of this size
    SURPLUS = "surplus"  # more warm slices than forecast and reserve want
    WORK_WAITS = "work-waits"  # tasks wait for capacity a warm slice holds
    PRIORITY = "priority"  # a higher-priority lease has waited past its grace


class Reject(Enum):
    """Why the manager did not enact a move."""

    HOLD_OFF = "hold-off"  # work waited recently: no pre-warming yet
    NO_ROOM = "no-room"  # nothing free or reclaimable where it would go
    GONE = "gone"  # the slice or lease changed since the proposal


@dataclass(frozen=True)
class Move:
    """One proposal. ``request``: the request text (pre-warm, dissolve); ``slice_id``: the
    warm slice to dissolve; ``lease_id``: the lease to preempt, ``for_lease`` the one that
    waits for its room. ``example``: the request to pre-warm for, as a lease asked it (its
    text may not parse back: a selector of several models, a request built in code);
    None: parse ``request``."""

    action: Action
    why: Why
    detail: str
    policy: str
    request: str = ""
    slice_id: str | None = None
    lease_id: str | None = None
    for_lease: str | None = None
    example: SliceRequest | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Outcome:
    """What the manager did with a move: ``slices`` it carved or gave back, or ``rejected``."""

    move: Move
    time: float
    slices: tuple[str, ...] = ()
    rejected: Reject | None = None

    @property
    def done(self) -> bool:
        return self.rejected is None

    def as_dict(self) -> dict[str, object]:
        m = self.move
        return {
            "time": self.time,
            "action": m.action.value,
            "why": m.why.value,
            "policy": m.policy,
            "request": m.request,
            "slice_id": m.slice_id,
            "lease_id": m.lease_id,
            "for_lease": m.for_lease,
            "slices": list(self.slices),
            "reason": m.detail,
            "rejected": self.rejected.value if self.rejected else None,
        }


@dataclass
class HiView:
    """What policies see in one pass (read the pool through it; never change it)."""

    pool: SlicePool
    now: float
    waiting_tasks: int
    #: Lease id -> when it started waiting (the manager's clock).
    waiting_since: dict[str, float]

    def warm_by_request(self) -> dict[str, list[str]]:
        """Request text -> its unclaimed warm slices, newest first."""
        out: dict[str, list[str]] = {}
        for s in sorted(self.pool.warm_slices(), key=lambda x: -x.created):
            out.setdefault(s.warm_for or "", []).append(s.slice_id)
        return out

    def waiting_leases(self) -> list[LeaseInfo]:
        """Leases without a slice, highest priority and oldest first."""
        out = [
            x
            for x in self.pool.leases.values()
            if x.state in ("pending", "recovering") and x.slice_id not in self.pool.slices
        ]
        return sorted(out, key=lambda x: (-x.priority, x.created))


class HiPolicy(Protocol):
    name: str

    def propose(self, view: HiView) -> Iterable[Move]: ...


@dataclass
class GiveBackToWaitingWork:
    """Tasks that wait for capacity get the warm slices back."""

    name: str = "give-back"

    def propose(self, view: HiView) -> Iterator[Move]:
        if not view.waiting_tasks:
            return
        detail = f"{view.waiting_tasks} tasks wait for capacity"
        for text, sids in view.warm_by_request().items():
            for sid in sids:
                yield Move(Action.DISSOLVE, Why.WORK_WAITS, detail, self.name, request=text, slice_id=sid)


@dataclass
class Prewarm:
    """Warm slices ahead of forecast lease arrivals, and a standing reserve.

    ``planner`` forecasts arrivals per request class; its targets are the forecast moves.
    ``reserve``: share of the pool's accelerator compute kept warm whatever the forecast,
    split over the request texts seen so far by their share of arrivals (each target at
    most ``planner.max_per_class``). ``forecast=False`` keeps only the reserve.

    ``scale_down_window_s``: warm slices are given back only above the highest target of
    this window (Kubernetes' HPA scale-down stabilization): a target that dips between
    two bursts must not stop workers that the next burst would have to start again.
    """

    planner: WarmPlanner
    reserve: float = 0.0
    forecast: bool = True
    scale_down_window_s: float = 60.0
    name: str = "prewarm"
    _recent: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    _arrivals: dict[str, int] = field(default_factory=dict)
    _examples: dict[str, SliceRequest] = field(default_factory=dict)
    targets: dict[str, int] = field(default_factory=dict)
    #: The highest target per request text in the scale-down window: warm slices up to
    #: this many are kept (and a lease's slice that ends is recycled up to it).
    keep: dict[str, int] = field(default_factory=dict)

    def observe(self, now: float, request: SliceRequest) -> None:
        text = request.describe()
        self._arrivals[text] = self._arrivals.get(text, 0) + 1
        self._examples[text] = request
        self.planner.observe(now, request)

    def reserve_targets(self, pool: SlicePool) -> dict[str, int]:
        """Warm slices per request text that the standing reserve wants."""
        total = sum(self._arrivals.values())
        if self.reserve <= 0 or not total:
            return {}
        capacity = 1000 * int(pool.ledger.pool.n_devices)  # milli: every device is 1000
        budget = self.reserve * capacity
        out: dict[str, int] = {}
        for text, n in self._arrivals.items():
            req = self._examples[text]
            size = max(req.compute_milli, 1) * max(req.devices, 1)
            k = math.floor(budget * n / total / size + 0.5)
            if k > 0:
                out[text] = min(k, self.planner.max_per_class)
        return out

    def propose(self, view: HiView) -> Iterator[Move]:
        forecast: dict[str, int] = {}
        if self.forecast:
            self.planner.propose(view.now, {})  # closes buckets and sets its targets
            forecast = dict(self.planner.targets)
        reserve = self.reserve_targets(view.pool)
        texts = set(forecast) | set(reserve)
        self.targets = {t: max(forecast.get(t, 0), reserve.get(t, 0)) for t in texts}
        recent = self._recent
        recent.append((view.now, self.targets))
        while recent and recent[0][0] < view.now - self.scale_down_window_s:
            recent.popleft()
        keep: dict[str, int] = {}
        for _t, targets in recent:
            for text, k in targets.items():
                keep[text] = max(keep.get(text, 0), k)
        self.keep = keep
        warm = view.warm_by_request()
        for text in sorted(self.targets):
            want, have = self.targets[text], len(warm.get(text, ()))
            why = Why.FORECAST if forecast.get(text, 0) >= reserve.get(text, 0) else Why.RESERVE
            detail = (
                f"{want} warm for {text}: forecast {forecast.get(text, 0)}, reserve {reserve.get(text, 0)}"
            )
            example = self._examples.get(text) or self.planner.request_for(text)
            for _ in range(want - have):
                yield Move(Action.PREWARM, why, detail, self.name, request=text, example=example)
        for text, sids in warm.items():
            want = keep.get(text, 0)
            # One slice of slack: a target that wobbles by one must not stop and start a
            # worker every pass.
            extra = len(sids) - want if (len(sids) > want + 1 or want == 0) else 0
            for sid in sids[: max(0, extra)]:
                detail = (
                    f"{len(sids)} warm for {text}, {want} wanted at most in {self.scale_down_window_s:g} s"
                )
                yield Move(Action.DISSOLVE, Why.SURPLUS, detail, self.name, request=text, slice_id=sid)


@dataclass
class Preempt:
    """A lease that has waited ``grace_s`` preempts lower-priority leases."""

    grace_s: float = 30.0
    name: str = "preempt"

    def propose(self, view: HiView) -> Iterator[Move]:
        taken: set[str] = set()
        for lease in view.waiting_leases():
            since = view.waiting_since.get(lease.lease_id, view.now)
            if not preemption_due(since, view.now, self.grace_s):
                continue
            victims = [v for v in view.pool.preemption_victims(lease) if v.lease_id not in taken]
            detail = f"lease {lease.lease_id} of priority {lease.priority} waited {view.now - since:.0f} s"
            for v in victims:
                taken.add(v.lease_id)
                yield Move(
                    Action.PREEMPT,
                    Why.PRIORITY,
                    detail,
                    self.name,
                    lease_id=v.lease_id,
                    for_lease=lease.lease_id,
                )


class HiLoop:
    """The one manager: runs its policies in order and enacts what they propose.

    ``hold_after_wait_s``: no pre-warming while tasks wait and for this long after (else
    slices would be carved and given back every pass, each time starting a worker).
    """

    def __init__(
        self,
        policies: Iterable[HiPolicy],
        *,
        hold_after_wait_s: float = 30.0,
        log_size: int = 200,
    ) -> None:
        self.policies = list(policies)
        self.hold_after_wait_s = hold_after_wait_s
        self.hold_until = -math.inf
        self.log: deque[Outcome] = deque(maxlen=log_size)
        self.waiting_since: dict[str, float] = {}
        self.preempted = 0
        self.rejected: dict[Reject, int] = {}

    @property
    def prewarm(self) -> Prewarm | None:
        return next((p for p in self.policies if isinstance(p, Prewarm)), None)

    def observe_lease(self, now: float, request: SliceRequest) -> None:
        """A lease asked for ``request`` (forecasters learn from it)."""
        pw = self.prewarm
        if pw is not None:
            pw.observe(now, request)

    def step(self, pool: SlicePool, now: float, *, waiting_tasks: int | None = None) -> list[Outcome]:
        """One pass: every policy proposes, the manager enacts or rejects each move.
        ``waiting_tasks``: tasks that wait for capacity (default: the pool's pending ones;
        the Dask plugin adds plain tasks that find no open worker)."""
        waiting = len(pool.pending) if waiting_tasks is None else waiting_tasks
        if waiting:
            self.hold_until = now + self.hold_after_wait_s
        live = {x.lease_id for x in pool.leases.values() if x.state in ("pending", "recovering")}
        self.waiting_since = {lid: self.waiting_since.get(lid, now) for lid in live}
        view = HiView(pool, now, waiting, self.waiting_since)
        out: list[Outcome] = []
        for policy in self.policies:
            for move in policy.propose(view):
                outcome = self._enact(pool, move, now)
                out.append(outcome)
                self.log.append(outcome)
                if outcome.rejected is not None:
                    self.rejected[outcome.rejected] = self.rejected.get(outcome.rejected, 0) + 1
        if any(o.done and o.move.action is Action.PREEMPT for o in out):
            pool.retry_leases()
        # Recycling is pre-warming with a worker that is already up: wanted as far as the
        # pre-warming targets go, and held off by the same rule.
        pw = self.prewarm
        pool.want_warm(pw.keep if pw is not None and now >= self.hold_until else {})
        return out

    def _enact(self, pool: SlicePool, move: Move, now: float) -> Outcome:
        if move.action is Action.PREWARM:
            if now < self.hold_until:
                return Outcome(move, now, rejected=Reject.HOLD_OFF)
            warm = pool.prewarm(move.example or parse_request(move.request), move.detail)
            if warm is None:
                return Outcome(move, now, rejected=Reject.NO_ROOM)
            return Outcome(move, now, slices=(warm.slice_id,))
        if move.action is Action.DISSOLVE:
            if move.slice_id is None or not pool.dissolve_warm(move.slice_id, move.detail):
                return Outcome(move, now, rejected=Reject.GONE)
            return Outcome(move, now, slices=(move.slice_id,))
        lease = pool.leases.get(move.lease_id or "")
        if lease is None or lease.state != "active":
            return Outcome(move, now, rejected=Reject.GONE)
        sid = lease.slice_id
        pool.preempt_lease(lease.lease_id, move.detail)
        self.preempted += 1
        return Outcome(move, now, slices=(sid,) if sid else ())
