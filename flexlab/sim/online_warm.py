"""Warm slices for the online simulator: the planner's pre-warming, claims, recycling and
give-back.

A warm slice is an idle slice whose worker is started (or starting: it is ready
``slice_start_s`` after the planner carved it). Every ``bucket_s`` the planner tops the warm
slices of each size bucket up to an upper quantile of the arrivals forecast over the
start-up lead time plus one bucket (a periodic-review base stock), or up to a standing
reserve in the arrival mix, within ``prewarm_budget`` of the capacity. A job claims a ready
slice of its size bucket, else of a larger one (shrunk to the request), else the soonest
ready one (it waits the rest of that slice's start-up). A departing job's slice is kept
warm when the planner wants more of its size. Warm slices never block work: those in the
way of a job that fits nowhere else are given back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flexlab.core.forecast import (
    ClassForecaster,
    lead_buckets,
    reserve_by_size,
    size_bucket,
    upper_demand_by_size,
)
from flexlab.core.placement.framework import Decision
from flexlab.core.planner import DeviceLayout, Move, SliceLayout, plan
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays

if TYPE_CHECKING:
    from flexlab.sim.online import _Sim


def claim_warm(sim: _Sim, req: SliceRequest, now: float) -> tuple[int, float] | None:
    """An idle warm slice where the job fits, released: (device, seconds until its worker is
    ready). Ready slices first, then the smallest size bucket at least the request's (a
    larger slice is shrunk to the request, its remainder goes back to free capacity), then
    the soonest ready."""
    if sim.mode != "flexlab+forecast" or req.devices != 1 or req.compute_milli == 0:
        return None
    size = size_bucket(req.compute_milli)
    p = sim.pool
    allowed = req.selector.models
    best: tuple[tuple[bool, int, float], int] | None = None
    for sid, (d, s, ready) in sim.warm.items():
        if s < size:
            continue
        key = (ready > now, s, ready)
        if best is not None and key >= best[0]:
            continue
        h = int(p.dev_host[d])
        if allowed and p.model_keys[int(p.dev_model[d])] not in allowed:
            continue
        if p.host_cpu_free[h] < req.host_cpu_milli or p.host_mem_free[h] < req.host_memory_mib:
            continue
        best = (key, sid)
    if best is None:
        return None
    d, s, ready = sim.warm.pop(best[1])
    hold(p, d, s, -1)
    return d, max(0.0, ready - now)


def recycle(sim: _Sim, req: SliceRequest, decision: Decision, now: float) -> None:
    """Keep a departing single-device job's slice as a ready warm slice of its size bucket
    when the forecast wants more of that size than are warm, within the budget."""
    if req.devices != 1 or req.compute_milli == 0 or len(decision.devices) != 1:
        return
    size = size_bucket(req.compute_milli)
    have = sum(1 for _d, s, _r in sim.warm.values() if s == size)
    if have >= sim.warm_target.get(size, 0.0):
        return
    p = sim.pool
    budget = int(sim.cfg.prewarm_budget * p.n_devices * WHOLE) - sum(s for _d, s, _r in sim.warm.values())
    d = decision.devices[0]
    if budget < size or int(p.dev_compute_free[d]) < size or not p.dev_schedulable[d]:
        return
    hold(p, d, size, +1)
    sim.next_warm += 1
    sim.warm[sim.next_warm] = (d, size, now)
    sim.recycled += 1


def on_device(sim: _Sim, req: SliceRequest, d: int) -> Decision:
    from flexlab.core.placement.status import Status

    return Decision(
        Status.success("prewarm"),
        host=int(sim.pool.dev_host[d]),
        devices=(d,),
        compute_milli=(req.compute_milli,),
        memory_mib=(-(-req.compute_milli * int(sim.pool.dev_mem_total[d]) // WHOLE),),
        host_cpu_milli=req.host_cpu_milli,
        host_memory_mib=req.host_memory_mib,
    )


def free_warm_for(sim: _Sim, req: SliceRequest) -> bool:
    """Give back the idle warm slices that keep a job from fitting (warm slices never block
    work): those of the first device, or of enough devices of the first host, where the job
    would fit without them. False when giving all of them back would not make it fit."""
    if not sim.warm or req.compute_milli == 0:
        return False
    p = sim.pool
    on_dev: dict[int, list[int]] = {}
    for sid, (d, _s, _r) in sim.warm.items():
        on_dev.setdefault(d, []).append(sid)
    allowed = req.selector.models
    need = WHOLE if req.devices > 1 else req.compute_milli
    ok: dict[int, list[int]] = {}  # host -> devices that would fit
    for d, sids in on_dev.items():
        h = int(p.dev_host[d])
        if not p.dev_schedulable[d] or (allowed and p.model_keys[int(p.dev_model[d])] not in allowed):
            continue
        if p.host_cpu_free[h] < req.host_cpu_milli or p.host_mem_free[h] < req.host_memory_mib:
            continue
        if int(p.dev_compute_free[d]) + sum(sim.warm[x][1] for x in sids) >= need:
            ok.setdefault(h, []).append(d)
    for h, devs in ok.items():
        if req.devices > 1:
            lo, hi = int(p.host_dev_start[h]), int(p.host_dev_start[h + 1])
            whole_free = [e for e in range(lo, hi) if p.dev_schedulable[e] and p.dev_compute_free[e] >= WHOLE]
            if len(whole_free) + len(devs) < req.devices:
                continue
        take = devs[: max(req.devices - len(whole_free), 0)] if req.devices > 1 else devs[:1]
        for d in take:
            for sid in on_dev[d]:
                hold(p, d, sim.warm.pop(sid)[1], -1)
        return True
    return False


def hold(p: PoolArrays, d: int, size: int, sign: int) -> None:
    """Hold (+1) or give back (-1) an idle warm slice's compute and proportional memory."""
    p.dev_compute_free[d] -= sign * size
    p.dev_mem_free[d] -= sign * (-(-size * int(p.dev_mem_total[d]) // WHOLE))


def prewarm(sim: _Sim, forecaster: ClassForecaster, now: float) -> None:
    """Top the warm slices of each size (ready or starting) up to an upper quantile of the
    arrivals forecast over the start-up lead time plus one planner period."""
    cfg = sim.cfg
    horizon = max(cfg.horizon, lead_buckets(cfg.slice_start_s, cfg.bucket_s))
    demand = upper_demand_by_size(
        forecaster.forecast_peak(horizon, cfg.peak_window), kind="gpu", quantile=cfg.prewarm_quantile
    )
    floor = reserve_by_size(forecaster.size_mix("gpu"), int(cfg.reserve * sim.pool.n_devices * WHOLE))
    for size, n in floor.items():
        demand[size] = max(demand.get(size, 0.0), n)
    sim.warm_target = demand
    p = sim.pool
    budget = int(cfg.prewarm_budget * p.n_devices * WHOLE) - sum(s for _d, s, _r in sim.warm.values())
    if budget <= 0 or not demand:
        return
    by_dev: dict[int, list[SliceLayout]] = {}
    for sid, (d, s, _r) in sim.warm.items():
        by_dev.setdefault(d, []).append(SliceLayout(str(sid), s, False))
    # Only devices whose host can still take a typical job's CPU and RAM: a warm slice on a
    # host without them could never be claimed.
    host_ok = (p.host_cpu_free >= sim.warm_cpu) & (p.host_mem_free >= sim.warm_mem)
    has_warm = np.zeros(p.n_devices, dtype=bool)
    has_warm[list(by_dev)] = True
    free = np.flatnonzero((p.dev_schedulable & (p.dev_compute_free > 0) & host_ok[p.dev_host]) | has_warm)
    layouts = [
        DeviceLayout(
            str(int(d)),
            p.model_keys[int(p.dev_model[d])],
            int(p.dev_compute_free[d]),
            tuple(by_dev.get(int(d), ())),
        )
        for d in free
    ]
    for move in plan(demand, layouts, max_new_milli=budget):
        enact_sim(sim, move, now)


def enact_sim(sim: _Sim, move: Move, now: float) -> None:
    """The sim's manager: release idle warm slices, carve the new ones, or reject."""
    d = int(move.device)
    if any(int(sid) not in sim.warm for sid in move.release):
        sim.rejected += 1
        return
    freed = sum(sim.warm[int(sid)][1] for sid in move.release)
    if int(sim.pool.dev_compute_free[d]) + freed < sum(move.create):
        sim.rejected += 1
        return
    for sid in move.release:
        hold(sim.pool, d, sim.warm.pop(int(sid))[1], -1)
    for size in move.create:
        hold(sim.pool, d, size, +1)
        sim.next_warm += 1
        sim.warm[sim.next_warm] = (d, size, now + sim.cfg.slice_start_s)
    sim.moves += 1
