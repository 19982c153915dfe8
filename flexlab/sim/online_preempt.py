"""Preemption for the online simulator: an index of low-priority work per device and host,
and the eviction search a waiting high-priority job runs once its grace has passed.

The search is vectorised over the pool: a device can host the job once its low-priority
work is evicted when its free compute plus that work covers the request, on a host whose
free CPU and RAM plus its low-priority jobs' cover the job's. Single-device jobs take the
device with the least low-priority compute to evict; a job of ``k`` whole devices takes the
host with ``k`` such devices and the least to evict. Victims are requeued with their
remaining running time (checkpointed: no work is lost).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.framework import Decision, release
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays

if TYPE_CHECKING:
    from flexlab.sim.online import _Sim

I64 = npt.NDArray[np.int64]


@dataclass
class LowIndex:
    """Running low-priority jobs per device and host, and what they hold there."""

    n_devices: int
    n_hosts: int
    on_dev: dict[int, set[int]] = field(default_factory=dict)
    on_host: dict[int, set[int]] = field(default_factory=dict)
    comp: I64 = field(init=False)
    cpu: I64 = field(init=False)
    mem: I64 = field(init=False)

    def __post_init__(self) -> None:
        self.comp = np.zeros(self.n_devices, dtype=np.int64)
        self.cpu = np.zeros(self.n_hosts, dtype=np.int64)
        self.mem = np.zeros(self.n_hosts, dtype=np.int64)

    @classmethod
    def of(cls, pool: PoolArrays) -> LowIndex:
        return cls(pool.n_devices, pool.n_hosts)

    def add(self, job: int, d: Decision) -> None:
        self._track(job, d, +1)

    def remove(self, job: int, d: Decision) -> None:
        self._track(job, d, -1)

    def _track(self, job: int, d: Decision, sign: int) -> None:
        for dev, milli in zip(d.devices, d.compute_milli, strict=False):
            jobs = self.on_dev.setdefault(dev, set())
            if sign > 0:
                jobs.add(job)
            else:
                jobs.discard(job)
            self.comp[dev] += sign * milli
        hj = self.on_host.setdefault(d.host, set())
        if sign > 0:
            hj.add(job)
        else:
            hj.discard(job)
        self.cpu[d.host] += sign * d.host_cpu_milli
        self.mem[d.host] += sign * d.host_memory_mib


def eviction_plan(sim: _Sim, req: SliceRequest) -> list[int] | None:
    """The low-priority jobs to evict so that ``req`` fits, or None when no device (no host
    for a multi-device job) would fit even with all its low-priority work evicted."""
    if req.compute_milli == 0 or sim.low is None:
        return None
    p, low = sim.pool, sim.low
    ok = p.dev_schedulable.copy()
    if req.selector.models:
        keys = np.array([k in req.selector.models for k in p.model_keys], dtype=bool)
        ok &= keys[p.dev_model]
    host_ok = (p.host_cpu_free + low.cpu >= req.host_cpu_milli) & (
        p.host_mem_free + low.mem >= req.host_memory_mib
    )
    need = WHOLE if req.devices > 1 else req.compute_milli
    cand = ok & host_ok[p.dev_host] & (p.dev_compute_free + low.comp >= need)
    if req.devices <= 1:
        cand &= low.comp > 0
        idx = np.flatnonzero(cand)
        if idx.size == 0:
            return None
        devices = [int(idx[int(np.argmin(low.comp[idx]))])]
    else:
        counts = np.bincount(p.dev_host[cand], minlength=p.n_hosts)
        best: tuple[int, list[int]] | None = None
        for host in np.flatnonzero(counts >= req.devices):
            lo, hi = int(p.host_dev_start[host]), int(p.host_dev_start[host + 1])
            devs = [e for e in range(lo, hi) if cand[e]]
            devs.sort(key=lambda e: int(low.comp[e]))
            take = devs[: req.devices]
            cost = sum(int(low.comp[e]) for e in take)
            if cost > 0 and (best is None or cost < best[0]):
                best = (cost, take)
        if best is None:
            return None
        devices = best[1]
    h = int(p.dev_host[devices[0]])
    victims = sorted({v for d in devices for v in low.on_dev.get(d, set()) if v in sim.running})
    cpu = int(p.host_cpu_free[h]) + sum(sim.running[v].decision.host_cpu_milli for v in victims)
    mem = int(p.host_mem_free[h]) + sum(sim.running[v].decision.host_memory_mib for v in victims)
    # Short of host CPU or RAM: also evict other low-priority jobs of the host (CPU-only
    # ones included), largest CPU first.
    taken = set(victims)
    others = sorted(
        (v for v in low.on_host.get(h, set()) if v not in taken and v in sim.running),
        key=lambda v: -sim.running[v].decision.host_cpu_milli,
    )
    for v in others:
        if cpu >= req.host_cpu_milli and mem >= req.host_memory_mib:
            break
        victims.append(v)
        cpu += sim.running[v].decision.host_cpu_milli
        mem += sim.running[v].decision.host_memory_mib
    if cpu < req.host_cpu_milli or mem < req.host_memory_mib:
        return None
    return victims


def evict(sim: _Sim, victims: list[int], now: float, requeue: Callable[[int], None]) -> None:
    """Stop ``victims``, free what they hold and requeue each with its remaining time."""
    for v in victims:
        r = sim.running.pop(v)
        release(sim.pool, r.decision)
        sim.epoch += 1
        if sim.low is not None:
            sim.low.remove(v, r.decision)
        done = max(0.0, now - r.start)
        sim.remaining[v] = max(r.work_left - done, 1e-6)
        sim.work_done += (r.work_left - sim.remaining[v]) * sim.useful[int(sim.wl.shape[v])] / WHOLE
        sim.enqueued_at[v] = now
        requeue(v)
        sim.preemptions += 1


def preempt_for(sim: _Sim, req: SliceRequest, now: float) -> bool:
    """Evict the low-priority work that keeps ``req`` from fitting; False when none would."""
    victims = eviction_plan(sim, req)
    if not victims:
        return False

    def requeue(v: int) -> None:
        bisect.insort(sim.queue, (0, float(sim.wl.arrival[v]), v))

    evict(sim, victims, now, requeue)
    return True
