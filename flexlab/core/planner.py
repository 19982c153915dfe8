"""The re-slicing planner: from forecast demand and the current layout, moves toward a target.

``plan`` proposes; ``enact`` (the one manager) checks each proposal against the ledger and
carries it out or rejects it with a reason. A move only ever releases idle slices: a busy
slice is never carved, merged or released (the planner skips it, the manager re-checks).

* ``PREWARM``: carve an idle slice of a size about to be asked for from free capacity.
* ``CARVE``: replace one idle slice nobody is forecast to want by a smaller wanted one.
* ``MERGE``: replace idle unwanted slices of one device (plus its free capacity) by one
  larger wanted slice.

>>> dev = DeviceLayout("h/t4#0", "t4", free_milli=1000, slices=())
>>> [(m.action.name, m.create) for m in plan({500: 0.8}, [dev])]
[('PREWARM', (500,))]
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from flexlab.core.errors import LedgerConflict
from flexlab.core.ledger import Allocation, Ledger

logger = logging.getLogger(__name__)
#: Owner of the slices the planner carves ahead of demand.
PREWARM_OWNER = "flexlab-prewarm"
_ids = itertools.count(1)


class Action(Enum):
    PREWARM = "prewarm"
    CARVE = "carve"
    MERGE = "merge"


class Why(Enum):
    """Why a move is proposed."""

    FORECAST_DEFICIT = 1  # more requests of this size forecast than idle slices of it


class Rejection(Enum):
    """Why the manager refused a move."""

    SLICE_BUSY = 1
    SLICE_GONE = 2
    LEDGER_CONFLICT = 3


@dataclass(frozen=True)
class SliceLayout:
    """One carved slice of a device: its ledger allocation id, size and whether work runs on it."""

    slice_id: str
    size_milli: int
    busy: bool


@dataclass(frozen=True)
class DeviceLayout:
    """A device as the planner sees it: uncarved free compute and its slices."""

    device: str
    model: str
    free_milli: int
    slices: tuple[SliceLayout, ...] = ()


@dataclass(frozen=True)
class Move:
    """One proposed change on one device: release ``release`` (idle slices), carve ``create``."""

    action: Action
    device: str
    create: tuple[int, ...]
    release: tuple[str, ...] = ()
    reason: Why = Why.FORECAST_DEFICIT
    detail: str = ""
    decision_id: str = field(default_factory=lambda: f"plan-{next(_ids)}")


@dataclass
class _Dev:
    layout: DeviceLayout
    free: int
    spare: list[SliceLayout]  # idle slices nobody is forecast to want


def plan(
    demand: Mapping[int, float],
    layouts: Iterable[DeviceLayout],
    *,
    max_new_milli: int | None = None,
    models: frozenset[str] | None = None,
) -> list[Move]:
    """Moves that bring the idle slices up to the forecast ``demand`` (size milli -> expected
    requests over the horizon, rounded up), largest sizes first.

    ``max_new_milli`` caps the compute carved in all; ``models`` limits the devices used.
    Pre-warming from free capacity is preferred (the tightest device that fits), then
    carving a spare idle slice, then merging spare idle slices of one device.
    """
    devs = [d for d in layouts if models is None or d.model in models]
    want = {s: math.ceil(v - 1e-9) for s, v in demand.items() if s > 0 and v > 0}
    idle: dict[int, list[SliceLayout]] = {}
    for d in devs:
        for s in d.slices:
            if not s.busy:
                idle.setdefault(s.size_milli, []).append(s)
    spare_ids = {s.slice_id for size, lst in idle.items() for s in lst[want.get(size, 0) :]}
    state = [_Dev(d, d.free_milli, [s for s in d.slices if s.slice_id in spare_ids]) for d in devs]
    budget = max_new_milli if max_new_milli is not None else 10**18
    moves: list[Move] = []
    for size in sorted(want, reverse=True):
        deficit = want[size] - len(idle.get(size, []))
        while deficit > 0 and budget >= size:
            move = _prewarm(state, size) or _carve(state, size) or _merge(state, size)
            if move is None:
                break
            moves.append(move)
            budget -= size
            deficit -= 1
    return moves


def _detail(size: int) -> str:
    return f"{size}m forecast, too few idle slices of it"


def _prewarm(state: Sequence[_Dev], size: int) -> Move | None:
    fits = [d for d in state if d.free >= size]
    if not fits:
        return None
    d = min(fits, key=lambda x: x.free)
    d.free -= size
    return Move(Action.PREWARM, d.layout.device, (size,), (), detail=_detail(size))


def _carve(state: Sequence[_Dev], size: int) -> Move | None:
    best: tuple[_Dev, SliceLayout] | None = None
    for d in state:
        for s in d.spare:
            if s.size_milli > size and (best is None or s.size_milli < best[1].size_milli):
                best = (d, s)
    if best is None:
        return None
    d, s = best
    d.spare.remove(s)
    d.free += s.size_milli - size
    return Move(Action.CARVE, d.layout.device, (size,), (s.slice_id,), detail=_detail(size))


def _merge(state: Sequence[_Dev], size: int) -> Move | None:
    for d in state:
        if d.free + sum(s.size_milli for s in d.spare) < size:
            continue
        taken: list[SliceLayout] = []
        room = d.free
        for s in sorted(d.spare, key=lambda x: -x.size_milli):
            if room >= size:
                break
            taken.append(s)
            room += s.size_milli
        if len(taken) < 1:
            continue
        for s in taken:
            d.spare.remove(s)
        d.free = room - size
        return Move(
            Action.MERGE, d.layout.device, (size,), tuple(s.slice_id for s in taken), detail=_detail(size)
        )
    return None


@dataclass(frozen=True)
class Rejected:
    move: Move
    reason: Rejection
    detail: str


@dataclass
class EnactReport:
    """What the manager did: applied moves with the new allocation ids, rejected ones with why."""

    applied: list[tuple[Move, tuple[str, ...]]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def rejection_counts(self) -> dict[Rejection, int]:
        out: dict[Rejection, int] = {}
        for r in self.rejected:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out


def host_of(device: str) -> str:
    """The host of a pool-wide device id ``host/model#index``."""
    return device.split("/", 1)[0]


def enact(moves: Iterable[Move], ledger: Ledger, *, busy: Callable[[str], bool]) -> EnactReport:
    """Carry out ``moves`` on ``ledger``, all-or-nothing per move; a move that would touch a
    busy or vanished slice, or that the ledger refuses, is rejected and logged with its reason
    (the ledger is then as before that move)."""
    report = EnactReport()
    for move in moves:
        reject = _check(move, ledger, busy)
        if reject is not None:
            report.rejected.append(reject)
            logger.info(
                "reject %s %s: %s (%s)",
                move.decision_id,
                move.action.value,
                reject.reason.name,
                reject.detail,
            )
            continue
        released: list[Allocation] = []
        for sid in move.release:
            alloc = ledger.release(sid)
            if alloc is not None:
                released.append(alloc)
        made: list[str] = []
        try:
            for size in move.create:
                a = ledger.reserve(
                    host=host_of(move.device),
                    devices=[move.device],
                    compute_milli=size,
                    owner=PREWARM_OWNER,
                    decision_id=move.decision_id,
                    request=f"{move.action.value}:{size}m",
                )
                made.append(a.alloc_id)
        except LedgerConflict as exc:
            for aid in made:
                ledger.release(aid)
            for old in released:
                _restore(ledger, old)
            report.rejected.append(Rejected(move, Rejection.LEDGER_CONFLICT, str(exc)))
            logger.info("reject %s %s: LEDGER_CONFLICT (%s)", move.decision_id, move.action.value, exc)
            continue
        report.applied.append((move, tuple(made)))
        logger.info("%s %s on %s: %s", move.decision_id, move.action.value, move.device, move.detail)
    return report


def _check(move: Move, ledger: Ledger, busy: Callable[[str], bool]) -> Rejected | None:
    for sid in move.release:
        if sid not in ledger:
            return Rejected(move, Rejection.SLICE_GONE, f"slice {sid} is no longer in the ledger")
        if busy(sid):
            return Rejected(move, Rejection.SLICE_BUSY, f"slice {sid} runs work")
    return None


def _restore(ledger: Ledger, alloc: Allocation) -> None:
    g = alloc.slices[0] if alloc.slices else None
    ledger.reserve(
        host=alloc.host,
        devices=[s.device for s in alloc.slices],
        compute_milli=g.compute_milli if g else 0,
        memory_mib=g.memory_mib if g else 0,
        host_cpu_milli=alloc.host_cpu_milli,
        host_memory_mib=alloc.host_memory_mib,
        owner=alloc.owner,
        decision_id=alloc.decision_id,
        request=alloc.request,
        alloc_id=alloc.alloc_id,
    )
