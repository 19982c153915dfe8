"""General score plugins: first-fit, best-fit (as in the openb simulator), binpack, spread.

Every plugin returns a float array in 0..100 over the candidates, higher is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.framework import Candidates
from flexlab.core.placement.request_view import RequestView
from flexlab.core.snapshot import WHOLE, PoolArrays

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def host_sum(pool: PoolArrays, per_device: npt.NDArray[Any]) -> I64:
    """Sum a per-device array over the devices of each host (CSR segments)."""
    csum = np.concatenate(([0], np.cumsum(per_device, dtype=np.int64)))
    out: I64 = csum[pool.host_dev_start[1:]] - csum[pool.host_dev_start[:-1]]
    return out


def host_free_compute(pool: PoolArrays) -> I64:
    """Free compute milli per host over its schedulable devices."""
    return host_sum(pool, np.where(pool.dev_schedulable, pool.dev_compute_free, 0))


def _request_compute(candidates: Candidates) -> I64:
    if candidates.level == "device":
        return candidates.compute
    return (
        candidates.compute * max(candidates.count, 1)
        if candidates.count
        else np.zeros(len(candidates), np.int64)
    )


class FirstFitScore:
    """Every candidate scores the same: the framework's tie-break keeps node-list order."""

    name = "FirstFit"

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        return np.full(len(candidates), 100.0)


class BestFitScore:
    """The openb simulator's best fit: least host CPU and accelerator compute left over.

    ``100 * (1 - (0.5 * cpu_left / max_cpu + 0.5 * compute_left / max_compute))`` after the
    placement, with ``max_*`` the largest host of the pool (128 cores, 8 GPUs on openb).
    ``quantize`` truncates to integers like the reference (its ties then go to the
    profile's tie-break).
    """

    name = "BestFit"

    def __init__(self, *, quantize: bool = False) -> None:
        self.quantize = quantize

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        h = candidates.host
        max_cpu = float(max(int(pool.host_cpu_total.max(initial=0)), 1))
        per_host_devs = np.diff(pool.host_dev_start)
        max_comp = float(max(int(per_host_devs.max(initial=0)) * WHOLE, 1))
        cpu_left = pool.host_cpu_free[h] - request.host_cpu_milli
        comp_left = host_free_compute(pool)[h] - _request_compute(candidates)
        s = (1.0 - (0.5 * cpu_left / max_cpu + 0.5 * comp_left / max_comp)) * 100.0
        s = np.clip(s, 0.0, 100.0)
        return np.floor(s) if self.quantize else s


class BinpackScore:
    """Prefer the fullest device and host after the placement (consolidate, keep others free)."""

    name = "Binpack"

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        h = candidates.host
        cpu_tot = np.maximum(pool.host_cpu_total[h], 1)
        mem_tot = np.maximum(pool.host_mem_total[h], 1)
        cpu_used = 1.0 - (pool.host_cpu_free[h] - request.host_cpu_milli) / cpu_tot
        mem_used = 1.0 - (pool.host_mem_free[h] - request.host_memory_mib) / mem_tot
        if candidates.level == "device":
            d = candidates.index
            dev_used = 1.0 - (pool.dev_compute_free[d] - candidates.compute) / WHOLE
        else:
            n_dev = np.maximum(np.diff(pool.host_dev_start)[h], 1)
            dev_used = 1.0 - (host_free_compute(pool)[h] - _request_compute(candidates)) / (n_dev * WHOLE)
        out: F64 = np.clip(100.0 * (2.0 * dev_used + cpu_used + mem_used) / 4.0, 0.0, 100.0)
        return out


class SpreadScore:
    """Prefer the emptiest device and host after the placement (isolation, headroom)."""

    name = "Spread"

    def __init__(self) -> None:
        self._binpack = BinpackScore()

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        out: F64 = 100.0 - self._binpack.score(request=request, pool=pool, candidates=candidates)
        return out
