"""``place()`` and ``explain()``: Filter, Score and pick, in the scheduler framework's terms.

Candidates are devices for single-device requests (a share, a profile or one whole device)
and hosts for CPU-only and multi-device requests (the devices are then picked inside the
chosen host). Filters reject candidates with reasons; a ``PlacementProfile`` (a named,
weighted list of score plugins) ranks the rest; the best host wins (ties: node-list
order, or a seeded random pick), then the best device inside it.

``place`` reserves nothing. ``apply`` is the one function that writes a decision into a
``PoolArrays`` (the simulator's stand-in for the ledger).

>>> from flexlab.core.placement.testing import tiny_pool, Req
>>> pool = tiny_pool()
>>> d = place(Req(compute_milli=250, host_cpu_milli=1000), pool, FIRST_FIT_PROFILE)
>>> d.ok, d.host, d.devices, d.compute_milli
(True, 0, (0,), (250,))
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.filters import (
    DEFAULT_FILTERS,
    FilterPlugin,
    Level,
    Need,
    compute_need,
    first_reason,
)
from flexlab.core.placement.incremental import host_device_matrix
from flexlab.core.placement.request_view import RequestView, is_cpu_only
from flexlab.core.placement.status import Code, Reason, Status
from flexlab.core.snapshot import WHOLE, PoolArrays

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]

DeviceChoice = Literal["tightest", "first"]
TieBreak = Literal["first", "random"]

_ids = itertools.count(1)
#: Upper bound of ``Reason`` values, for counting tables.
_N_REASON = 64
_PID = os.getpid()


def new_decision_id() -> str:
    """A causality id for one placement, like distributed's ``stimulus_id``."""
    return f"place-{_PID}-{next(_ids)}"


@dataclass(frozen=True)
class Candidates:
    """The feasible candidates of one request, as parallel arrays."""

    level: Level
    #: Device indices (``level == "device"``) or host indices.
    index: I64
    #: Host of each candidate.
    host: I64
    #: Compute milli and memory MiB the request takes per device, per candidate.
    compute: I64
    memory: I64
    #: Devices the request takes on one host (0 for CPU-only requests).
    count: int

    def __len__(self) -> int:
        return int(self.index.shape[0])


class ScorePlugin(Protocol):
    """Ranks feasible candidates: a float array in 0..100, higher is better."""

    name: str

    def score(
        self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any
    ) -> F64: ...


@dataclass(frozen=True)
class PlacementProfile:
    """A named, weighted list of score plugins and how ties are settled.

    ``device_choice`` picks among equally scored devices inside the chosen host:
    ``tightest`` (least free compute that fits, Open-GPU-Share's "best" GPU) or ``first``.
    ``tie_break`` picks among equally scored hosts: ``first`` takes the lowest
    ``host_rank`` (node-list order when it is None; the reference simulator ranks hosts
    by a seeded random permutation), ``random`` draws uniformly from ``rng``
    (upstream Kubernetes' ``selectHost``).
    """

    name: str
    scores: tuple[tuple[ScorePlugin, float], ...] = ()
    device_choice: DeviceChoice = "tightest"
    tie_break: TieBreak = "first"
    rng: np.random.Generator | None = field(default=None, compare=False)
    host_rank: I64 | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Decision:
    """Where a request goes (or why it goes nowhere). Reserves nothing by itself."""

    status: Status
    host: int = -1
    devices: tuple[int, ...] = ()
    compute_milli: tuple[int, ...] = ()
    memory_mib: tuple[int, ...] = ()
    profile: str | None = None
    host_cpu_milli: int = 0
    host_memory_mib: int = 0
    decision_id: str = ""
    score: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status.code is Code.SUCCESS


@dataclass(frozen=True)
class Explanation:
    """``place()`` without committing: where it would go, and if nowhere, why."""

    decision: Decision
    level: Level
    #: Candidates considered and how many passed every filter.
    considered: int
    feasible: int
    #: Counted first-failing reasons per device class (catalog model key).
    reasons_by_class: dict[str, dict[Reason, int]]

    @property
    def code(self) -> Code:
        return self.decision.status.code

    @property
    def reasons(self) -> dict[Reason, int]:
        """Counted first-failing reasons over all candidates (also when one fits)."""
        out: dict[Reason, int] = {}
        for per_class in self.reasons_by_class.values():
            for r, n in per_class.items():
                out[r] = out.get(r, 0) + n
        return out

    def describe(self) -> str:
        """One line per device class, e.g. ``a100-80gb: 3 INSUFFICIENT_MEMORY``."""
        d = self.decision
        head = (
            f"{d.status.code.value}: host {d.host}, devices {list(d.devices)}"
            if d.ok
            else d.status.describe()
        )
        lines = [head]
        for cls, reasons in sorted(self.reasons_by_class.items()):
            parts = ", ".join(f"{n} {r.name}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
            lines.append(f"  {cls}: {parts}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Filtered:
    level: Level
    #: First-failing reason per candidate (devices or hosts); 0 = feasible.
    reason: I8
    #: Device-level reasons (also for multi-device requests), None for CPU-only ones.
    dev_reason: I8 | None
    need: Need


def _run_filters(request: RequestView, pool: PoolArrays, filters: Sequence[FilterPlugin]) -> _Filtered:
    need = compute_need(request, pool)
    ordered = [f for f in filters if f.static] + [f for f in filters if not f.static]
    cpu_only = is_cpu_only(request)
    if cpu_only:
        reason = np.zeros(pool.n_hosts, dtype=np.int8)
        for f in ordered:
            if f.level == "host":
                reason = first_reason(reason, f.filter(request=request, pool=pool, need=need))
        return _Filtered("host", reason, None, need)
    if request.devices <= 1:
        reason = np.zeros(pool.n_devices, dtype=np.int8)
        for f in ordered:
            r = f.filter(request=request, pool=pool, need=need)
            if r is not None and f.level == "host":
                r = r[pool.dev_host]
            reason = first_reason(reason, r)
        return _Filtered("device", reason, reason, need)
    # Several whole devices on one host: filter devices, then count them per host.
    dev_reason = np.zeros(pool.n_devices, dtype=np.int8)
    host_static = np.zeros(pool.n_hosts, dtype=np.int8)
    host_dynamic = np.zeros(pool.n_hosts, dtype=np.int8)
    for f in ordered:
        r = f.filter(request=request, pool=pool, need=need)
        if f.level == "device":
            dev_reason = first_reason(dev_reason, r)
        elif f.static:
            host_static = first_reason(host_static, r)
        else:
            host_dynamic = first_reason(host_dynamic, r)
    n = request.devices
    could = np.bincount(
        pool.dev_host[(dev_reason == 0) | (dev_reason >= Reason.DEVICE_UNSCHEDULABLE)], minlength=pool.n_hosts
    )
    free = np.bincount(pool.dev_host[dev_reason == 0], minlength=pool.n_hosts)
    reason = host_static
    reason = first_reason(
        reason, np.where(could < n, np.int8(Reason.NOT_ENOUGH_DEVICES), np.int8(0)).astype(np.int8)
    )
    reason = first_reason(reason, host_dynamic)
    reason = first_reason(
        reason, np.where(free < n, np.int8(Reason.NOT_ENOUGH_WHOLE_DEVICES), np.int8(0)).astype(np.int8)
    )
    return _Filtered("host", reason, dev_reason, need)


def _candidates(request: RequestView, pool: PoolArrays, flt: _Filtered) -> Candidates:
    idx = np.flatnonzero(flt.reason == 0).astype(np.int64)
    if flt.level == "device":
        return Candidates(
            "device", idx, pool.dev_host[idx].astype(np.int64), flt.need.compute[idx], flt.need.memory[idx], 1
        )
    count = 0 if is_cpu_only(request) else request.devices
    comp = np.full(idx.shape[0], WHOLE if count else 0, dtype=np.int64)
    return Candidates("host", idx, idx, comp, np.zeros(idx.shape[0], dtype=np.int64), count)


def _total_score(request: RequestView, pool: PoolArrays, profile: PlacementProfile, cands: Candidates) -> F64:
    total = np.zeros(len(cands), dtype=np.float64)
    for plugin, weight in profile.scores:
        if weight:
            total += weight * plugin.score(request=request, pool=pool, candidates=cands)
    return total


def _pick(
    pool: PoolArrays, profile: PlacementProfile, cands: Candidates, total: F64, flt: _Filtered
) -> tuple[int, tuple[int, ...], float]:
    best = float(total.max())
    tied = np.flatnonzero(total >= best - 1e-9)
    if tied.size == 1:
        host = int(cands.host[tied[0]])
    elif profile.tie_break == "random" and profile.rng is not None:
        hosts = np.unique(cands.host[tied])
        host = int(hosts[int(profile.rng.integers(hosts.size))])
    elif profile.host_rank is not None:
        th = cands.host[tied]
        host = int(th[int(np.argmin(profile.host_rank[th]))])
    else:
        host = int(cands.host[tied[0]])
    if cands.level == "host":
        if cands.count == 0:
            return host, (), best
        devs = np.arange(pool.host_dev_start[host], pool.host_dev_start[host + 1])
        assert flt.dev_reason is not None
        ok = devs[flt.dev_reason[devs] == 0]
        return host, tuple(int(d) for d in ok[: cands.count]), best
    in_host = tied[cands.host[tied] == host]
    devs = cands.index[in_host]
    if profile.device_choice == "tightest" and devs.size > 1:
        free = pool.dev_compute_free[devs]
        devs = devs[free == free.min()]
    return host, (int(devs[0]),), best


def _decide(
    request: RequestView,
    pool: PoolArrays,
    profile: PlacementProfile,
    filters: Sequence[FilterPlugin],
    decision_id: str | None,
) -> tuple[Decision, _Filtered]:
    did = decision_id or new_decision_id()
    flt = _run_filters(request, pool, filters)
    cands = _candidates(request, pool, flt)
    if len(cands) == 0:
        counts = np.bincount(flt.reason.astype(np.int64), minlength=_N_REASON)
        reasons = {Reason(int(r)): int(n) for r, n in enumerate(counts) if n and r}
        status = Status.from_reasons(reasons, plugin="filter")
        return Decision(status, profile=request.profile, decision_id=did), flt
    total = _total_score(request, pool, profile, cands)
    host, devs, best = _pick(pool, profile, cands, total, flt)
    comp = tuple(int(flt.need.compute[d]) for d in devs)
    mem = tuple(int(flt.need.memory[d]) for d in devs)
    decision = Decision(
        Status.success(profile.name),
        host=host,
        devices=devs,
        compute_milli=comp,
        memory_mib=mem,
        profile=request.profile,
        host_cpu_milli=int(request.host_cpu_milli),
        host_memory_mib=int(request.host_memory_mib),
        decision_id=did,
        score=best,
    )
    return decision, flt


def place(
    request: RequestView,
    pool: PoolArrays,
    profile: PlacementProfile,
    *,
    filters: Sequence[FilterPlugin] = DEFAULT_FILTERS,
    decision_id: str | None = None,
) -> Decision:
    """Choose where ``request`` goes in ``pool``. Pure: reserves nothing.

    On failure the decision's status is UNSCHEDULABLE or UNRESOLVABLE with the counted
    first-failing reasons of all candidates.
    """
    return _decide(request, pool, profile, filters, decision_id)[0]


def _host_class(pool: PoolArrays, dev_reason: I8 | None) -> I64:
    """Per host: the model of its first device the request could use (else its first
    device's model; ``len(model_keys)`` for a host without devices)."""
    starts, ends = pool.host_dev_start[:-1], pool.host_dev_start[1:]
    has = ends > starts
    cls = np.full(pool.n_hosts, len(pool.model_keys), dtype=np.int64)
    cls[has] = pool.dev_model[starts[has]]
    if dev_reason is not None and pool.n_devices:
        lay = host_device_matrix(pool)
        usable = (dev_reason == 0) | (dev_reason >= Reason.DEVICE_UNSCHEDULABLE)
        mask = (lay >= 0) & usable[np.maximum(lay, 0)]
        first = lay[np.arange(pool.n_hosts), np.argmax(mask, axis=1)]
        found = mask.any(axis=1)
        cls[found] = pool.dev_model[first[found]]
    return cls


def explain(
    request: RequestView,
    pool: PoolArrays,
    profile: PlacementProfile,
    *,
    filters: Sequence[FilterPlugin] = DEFAULT_FILTERS,
    decision_id: str | None = None,
) -> Explanation:
    """Where ``request`` would go, and the counted reasons per device class if nowhere.

    Classes are catalog model keys; for host-level requests (CPU-only, several devices)
    a host counts under its first device's model, or ``"no-accelerator"``.
    """
    decision, flt = _decide(request, pool, profile, filters, decision_id)
    n_reason = _N_REASON
    cls = pool.dev_model.astype(np.int64) if flt.level == "device" else _host_class(pool, flt.dev_reason)
    names = [*pool.model_keys, "no-accelerator"]
    table = np.bincount(cls * n_reason + flt.reason.astype(np.int64), minlength=len(names) * n_reason)
    table = table.reshape(len(names), n_reason)
    by_class: dict[str, dict[Reason, int]] = {}
    for c, row in enumerate(table):
        found = {Reason(int(r)): int(n) for r, n in enumerate(row) if n and r}
        if found:
            by_class[names[c]] = found
    return Explanation(
        decision=decision,
        level=flt.level,
        considered=int(flt.reason.shape[0]),
        feasible=int(np.count_nonzero(flt.reason == 0)),
        reasons_by_class=by_class,
    )


def apply(pool: PoolArrays, decision: Decision) -> None:
    """Write a successful decision into ``pool`` (the one place the simulator mutates it).

    Fraction, whole-device and CPU-only decisions only: profile-sliced devices change
    their free-profile menu, which only the ledger (it knows the layouts) can recompute.
    """
    if not decision.ok:
        raise ValueError(f"cannot apply a failed decision ({decision.status.describe()})")
    if decision.profile is not None:
        raise ValueError("profile placements are reserved through the Ledger, which tracks layouts")
    h = decision.host
    pool.host_cpu_free[h] -= decision.host_cpu_milli
    pool.host_mem_free[h] -= decision.host_memory_mib
    for dev, comp, mem in zip(decision.devices, decision.compute_milli, decision.memory_mib, strict=True):
        pool.dev_compute_free[dev] -= comp
        pool.dev_mem_free[dev] -= mem


def release(pool: PoolArrays, decision: Decision) -> None:
    """Undo ``apply`` (the caller makes sure it is applied once and released once)."""
    if not decision.ok or decision.profile is not None:
        raise ValueError("only applied fraction, whole-device or CPU-only decisions can be released")
    h = decision.host
    pool.host_cpu_free[h] += decision.host_cpu_milli
    pool.host_mem_free[h] += decision.host_memory_mib
    for dev, comp, mem in zip(decision.devices, decision.compute_milli, decision.memory_mib, strict=True):
        pool.dev_compute_free[dev] += comp
        pool.dev_mem_free[dev] += mem


#: Node-list order, no score: the first feasible host, its tightest device.
FIRST_FIT_PROFILE = PlacementProfile("firstfit")
