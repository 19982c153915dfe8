"""Online, trace-driven simulation: arrivals, a priority queue, departures, warm slices, preemption.

Jobs arrive at their time, wait in a queue ordered by (priority desc, arrival), start when
placement finds room and leave after their running time. Modes:

* ``whole``: every GPU request is rounded up to whole devices (one standing worker per
  device, so no slice start-up delay); placed by best fit.
* ``fgd`` / ``flexlab``: fractional slices placed by that policy; every new slice waits
  ``slice_start_s`` for its worker to start.
* ``flexlab+forecast``: as ``flexlab``, plus warm slices kept ahead of demand by the
  forecaster and planner (``flexlab.sim.online_warm``): a job that claims a ready one
  starts at once, one still starting waits the rest of its start-up.

Preemption (``grace_s`` not None): a high-priority job that has waited ``grace_s`` evicts
low-priority work from the device (or the devices of one host) where that makes it fit
(``flexlab.sim.online_preempt``); victims are requeued with their remaining running time
(checkpointed: no work is lost) and counted.

The sim's pool is a ``PoolArrays`` mutated only through ``apply`` / ``release`` (and the
warm slices' holds). Results: ``flexlab.sim.online_metrics``.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from flexlab.core.forecast import (
    ClassForecaster,
    classify,
)
from flexlab.core.placement.fragmentation import FragmentationModel
from flexlab.core.placement.framework import Decision, PlacementProfile, apply, place, release
from flexlab.core.placement.policies import distribution_for, make_profile
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.sim.online_metrics import OnlineResult
from flexlab.sim.online_preempt import LowIndex, preempt_for
from flexlab.sim.online_warm import claim_warm, free_warm_for, on_device, prewarm, recycle
from flexlab.sim.openb import csv_dir, load_pods

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MODES = ("whole", "fgd", "flexlab", "flexlab+forecast")
HIGH_QOS = frozenset({"LS", "Guaranteed", "Burstable"})
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Workload:
    """Jobs as parallel arrays; ``requests[shape[i]]`` is job i's request."""

    name: str
    requests: list[SliceRequest]
    shape: I64
    arrival: F64
    duration: F64
    priority: I64  # 1 high, 0 low

    def __len__(self) -> int:
        return int(self.shape.shape[0])


def load_openb_workload(
    trace_dir: str | Path,
    workload: str = "default",
    *,
    compress: float = 1.0,
    repeat: int = 1,
    repeat_low: bool = False,
) -> Workload:
    """An openb pod list as a workload: arrival ``creation_time / compress``, running time
    ``deletion_time - scheduled_time`` (``- creation_time`` for pods never scheduled), at
    least 1 s; priority 1 for qos LS / Guaranteed / Burstable, 0 for BE. ``repeat`` > 1
    submits every pod that many times at its arrival (a saturating load: the pod list
    alone asks for 98% of the GPUs). ``repeat_low``: the extra copies are low priority
    (best-effort filler behind the trace's own pods), so that high-priority demand stays
    what the trace asks while the pool is saturated."""
    pods = load_pods(trace_dir, workload)
    path = csv_dir(trace_dir) / f"openb_pod_list_{workload}.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    arr = np.array([float(r["creation_time"] or 0) for r in rows])
    dele = np.array([float(r["deletion_time"] or 0) for r in rows])
    sch = np.array([float(r["scheduled_time"]) if r.get("scheduled_time") else math.nan for r in rows])
    dur = np.maximum(np.where(np.isnan(sch), dele - arr, dele - sch), 1.0)
    prio = np.array([1 if r.get("qos", "") in HIGH_QOS else 0 for r in rows], dtype=np.int64)
    if repeat > 1:
        n = prio.shape[0]
        arr, dele, dur, prio = (np.tile(x, repeat) for x in (arr, dele, dur, prio))
        if repeat_low:
            prio[n:] = 0
    shape = np.tile(pods.shape, max(repeat, 1))
    order = np.argsort(arr, kind="stable")
    return Workload(workload, pods.requests, shape[order], arr[order] / compress, dur[order], prio[order])


def _whole(req: SliceRequest) -> SliceRequest:
    if req.compute_milli in (0, WHOLE):
        return req
    return SliceRequest(
        selector=req.selector,
        compute_milli=WHOLE,
        devices=req.devices,
        host_cpu_milli=req.host_cpu_milli,
        host_memory_mib=req.host_memory_mib,
        workload_class=req.workload_class,
    )


@dataclass
class _Running:
    decision: Decision
    start: float
    end: float
    work_left: float


@dataclass
class OnlineConfig:
    slice_start_s: float = 30.0
    bucket_s: float = 300.0
    horizon: int = 2
    prewarm_budget: float = 0.3
    #: Upper quantile of the forecast arrivals (Poisson) the planner keeps warm slices for,
    #: over the slice start-up lead time plus one bucket (a periodic-review base stock).
    prewarm_quantile: float = 0.95
    #: Buckets of recent arrivals whose peak bounds the forecast from below (0: Holt only).
    peak_window: int = 8
    #: Standing reserve: share of the capacity kept warm in the arrival mix seen so far
    #: (while free), whatever the short-term forecast says; 0 = forecast only.
    reserve: float = 0.1
    #: Keep a departing job's slice (its worker already runs) as a warm slice when the
    #: forecast wants more of its size.
    recycle: bool = True
    grace_s: float | None = None
    scan_limit: int = 24
    #: Eviction searches a scheduling pass may run (high-priority jobs past their grace).
    evictions_per_pass: int = 64
    #: Seconds between scheduling passes: arrivals and departures mark the queue for the
    #: next pass, as a scheduler's cycle would.
    pass_s: float = 1.0
    alpha: float = 0.5
    beta: float = 0.1


@dataclass
class _Sim:
    pool: PoolArrays
    wl: Workload
    mode: str
    profile: PlacementProfile
    cfg: OnlineConfig
    requests: list[SliceRequest]
    events: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, kind, seq, job)
    queue: list[tuple[int, float, int]] = field(default_factory=list)  # (-prio, arrival, job)
    running: dict[int, _Running] = field(default_factory=dict)
    #: Idle warm slices: slice id -> (device, size, time its worker is ready).
    warm: dict[int, tuple[int, int, float]] = field(default_factory=dict)
    #: Warm slices the planner wants per size bucket (the forecast's upper quantile).
    warm_target: dict[int, float] = field(default_factory=dict)
    recycled: int = 0
    low: LowIndex | None = None
    remaining: F64 = field(default_factory=lambda: np.zeros(0))
    wait: F64 = field(default_factory=lambda: np.zeros(0))
    enqueued_at: F64 = field(default_factory=lambda: np.zeros(0))
    seq: int = 0
    preemptions: int = 0
    claims: int = 0
    moves: int = 0
    rejected: int = 0
    completed: int = 0
    work_done: float = 0.0
    last_end: float = 0.0
    next_warm: int = 0
    #: Bumped whenever capacity is released; a shape that failed at this epoch is skipped.
    epoch: int = 0
    failed_at: dict[int, int] = field(default_factory=dict)
    next_pass: float = 0.0
    new_arrivals: bool = False
    dirty: bool = False
    pass_pending: bool = False
    #: Host CPU and RAM of a typical (median) single-device job: where warm slices may go.
    warm_cpu: int = 0
    warm_mem: int = 0
    #: Compute milli each request shape asks for in all (devices x share).
    useful: list[int] = field(default_factory=list)

    def push(self, t: float, kind: int, job: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, job))


ARRIVE, START, DEPART, TICK = 0, 1, 2, 3


def simulate(
    pool: PoolArrays,
    wl: Workload,
    mode: str,
    *,
    config: OnlineConfig | None = None,
    progress: Progress | None = None,
) -> OnlineResult:
    """Replay ``wl`` online on a copy of ``pool`` under ``mode`` (one of ``MODES``)."""
    import time

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    cfg = config or OnlineConfig()
    t0 = time.perf_counter()
    pool = pool.copy()
    reqs = [_whole(r) for r in wl.requests] if mode == "whole" else list(wl.requests)
    reqs = [
        SliceRequest(
            selector=r.selector,
            compute_milli=r.compute_milli,
            devices=r.devices,
            host_cpu_milli=r.host_cpu_milli,
            host_memory_mib=r.host_memory_mib,
            workload_class=r.workload_class,
        )
        for r in reqs
    ]
    policy = {"whole": "bestfit", "fgd": "fgd", "flexlab": "flexlab", "flexlab+forecast": "flexlab"}[mode]
    dist = (
        distribution_for(policy, [reqs[int(s)] for s in wl.shape]) if policy in ("fgd", "flexlab") else None
    )
    profile = make_profile(policy, distribution=dist)
    meter = FragmentationModel(dist or distribution_for("fgd", [reqs[int(s)] for s in wl.shape]))
    n = len(wl)
    sim = _Sim(pool, wl, mode, profile, cfg, reqs)
    sim.low = LowIndex.of(pool)
    sim.remaining = wl.duration.astype(np.float64).copy()
    sim.wait = np.full(n, np.nan)
    sim.enqueued_at = wl.arrival.astype(np.float64).copy()
    for j in range(n):
        sim.push(float(wl.arrival[j]), ARRIVE, j)
    end_arrivals = float(wl.arrival.max(initial=0.0))
    forecaster = ClassForecaster(cfg.bucket_s, alpha=cfg.alpha, beta=cfg.beta) if mode != "whole" else None
    sim.push(0.0, TICK, -1)
    ts: list[float] = []
    util: list[float] = []
    util_held: list[float] = []
    frag: list[float] = []
    capacity = max(pool.n_devices * WHOLE, 1)
    job_class = [classify(reqs[int(s)]) for s in wl.shape]
    # Utilisation counts what jobs asked for (not what whole-device rounding holds).
    useful = sim.useful = [r.compute_milli * r.devices for r in wl.requests]
    singles = [reqs[int(s)] for s in wl.shape if reqs[int(s)].devices == 1 and reqs[int(s)].compute_milli]
    if singles:
        sim.warm_cpu = int(np.median([r.host_cpu_milli for r in singles]))
        sim.warm_mem = int(np.median([r.host_memory_mib for r in singles]))
    now = 0.0
    while sim.events:
        now = sim.events[0][0]
        while sim.events and sim.events[0][0] == now:
            t, kind, _seq, j = heapq.heappop(sim.events)
            if kind == ARRIVE:
                bisect.insort(sim.queue, (-int(wl.priority[j]), float(wl.arrival[j]), j))
                sim.new_arrivals = True
                if cfg.grace_s is not None and wl.priority[j] == 1:
                    sim.push(t + cfg.grace_s, START, -1)  # a pass when its grace ends
                if forecaster is not None:
                    forecaster.observe(t, job_class[j])
            elif kind == DEPART:
                _depart(sim, j, t)
            elif kind == TICK:
                busy = sum(useful[int(wl.shape[k])] for k, r in sim.running.items() if r.start <= t)
                held = sum(useful[int(wl.shape[k])] for k in sim.running)
                ts.append(t)
                util.append(busy / capacity)
                util_held.append(held / capacity)
                meter.sync(sim.pool)
                frag.append(meter.cluster() / capacity)
                if forecaster is not None:
                    forecaster.advance(t)
                    if mode == "flexlab+forecast":
                        prewarm(sim, forecaster, t)
                if t < end_arrivals:
                    sim.push(t + cfg.bucket_s, TICK, -1)
            elif kind == START:
                sim.pass_pending = False
                sim.next_pass = min(sim.next_pass, t)
        sim.dirty = sim.dirty or sim.new_arrivals
        if now >= sim.next_pass:
            _schedule(sim, now)
            sim.next_pass = now + cfg.pass_s
            sim.new_arrivals = False
        if sim.queue and sim.dirty and not sim.pass_pending:
            sim.pass_pending = True
            sim.push(max(sim.next_pass, now), START, -1)
        if progress is not None:
            progress(now)
    mape_, smape_ = forecaster.errors() if forecaster is not None else (math.nan, math.nan)
    return OnlineResult(
        mode=mode,
        jobs=n,
        completed=sim.completed,
        wait=sim.wait,
        priority=wl.priority,
        preemptions=sim.preemptions,
        samples_t=np.array(ts),
        util=np.array(util),
        util_held=np.array(util_held),
        recycled=sim.recycled,
        frag=np.array(frag),
        completed_work_gpu_s=sim.work_done,
        makespan_s=sim.last_end,
        arrival_end_s=end_arrivals,
        prewarm_claims=sim.claims,
        prewarm_moves=sim.moves,
        rejected_moves=sim.rejected,
        forecast_mape=mape_,
        forecast_smape=smape_,
        seconds=time.perf_counter() - t0,
    )


def _depart(sim: _Sim, j: int, t: float) -> None:
    run = sim.running.get(j)
    if run is None or run.end != t:
        return  # a stale departure of a preempted run
    del sim.running[j]
    release(sim.pool, run.decision)
    sim.epoch += 1
    if sim.mode == "flexlab+forecast" and sim.cfg.recycle:
        recycle(sim, sim.requests[int(sim.wl.shape[j])], run.decision, t)
    sim.dirty = True
    if sim.wl.priority[j] == 0 and sim.low is not None:
        sim.low.remove(j, run.decision)
    sim.completed += 1
    sim.work_done += run.work_left * sim.useful[int(sim.wl.shape[j])] / WHOLE
    sim.last_end = max(sim.last_end, t)


def _start(sim: _Sim, j: int, decision: Decision, now: float, delay: float) -> None:
    apply(sim.pool, decision)
    if math.isnan(sim.wait[j]):
        sim.wait[j] = now + delay - float(sim.wl.arrival[j])
    end = now + delay + float(sim.remaining[j])
    sim.running[j] = _Running(decision, now + delay, end, float(sim.remaining[j]))
    if sim.wl.priority[j] == 0 and sim.low is not None:
        sim.low.add(j, decision)
    sim.push(end, DEPART, j)


def _schedule(sim: _Sim, now: float) -> None:
    sim.dirty = False
    searches = 0
    p = sim.pool
    # Cheap necessary conditions, so that a full queue costs no placement per failing job.
    warm_back = np.zeros_like(p.dev_compute_free)
    for d, sz, _r in sim.warm.values():
        warm_back[d] += sz
    free_max = (
        int((p.dev_compute_free + warm_back)[p.dev_schedulable].max(initial=0)),
        int(p.host_cpu_free.max(initial=0)),
    )
    fails = 0
    i = 0
    while i < len(sim.queue) and fails < sim.cfg.scan_limit:
        _negp, _arr, j = sim.queue[i]
        s = int(sim.wl.shape[j])
        grace_due = (
            sim.cfg.grace_s is not None
            and sim.wl.priority[j] == 1
            and now - sim.enqueued_at[j] >= sim.cfg.grace_s
        )
        if sim.failed_at.get(s) == sim.epoch and not grace_due:
            i += 1
            continue
        req = sim.requests[s]
        claim = claim_warm(sim, req, now)
        if claim is not None:
            decision = on_device(sim, req, claim[0])
            sim.claims += 1
            _start(sim, j, decision, now, claim[1])
            sim.queue.pop(i)
            continue
        if not grace_due and not _may_fit(sim, req, free_max):
            sim.failed_at[s] = sim.epoch
            i += 1
            continue
        decision = place(req, sim.pool, sim.profile)
        if not decision.ok and free_warm_for(sim, req):
            decision = place(req, sim.pool, sim.profile)
        delay = 0.0 if sim.mode == "whole" or req.compute_milli == 0 else sim.cfg.slice_start_s
        if decision.ok:
            _start(sim, j, decision, now, delay)
            sim.queue.pop(i)
            continue
        if grace_due and req.compute_milli > 0 and searches < sim.cfg.evictions_per_pass:
            searches += 1  # each search is one vectorised scan of the pool
        else:
            grace_due = False
        if grace_due and preempt_for(sim, req, now):
            decision = place(req, sim.pool, sim.profile)
            if decision.ok:
                _start(sim, j, decision, now, delay)
                sim.queue.pop(i)
                continue
        sim.failed_at[s] = sim.epoch
        fails += 1
        i += 1


def _may_fit(sim: _Sim, req: SliceRequest, free_max: tuple[int, int]) -> bool:
    """False when no device has the compute or no host the CPU (fits nowhere for sure)."""
    comp, cpu = free_max
    need = WHOLE if req.devices > 1 else req.compute_milli
    return need <= comp and req.host_cpu_milli <= cpu
