"""Replay one ordered list of requests against a pool: place, apply, record.

Nothing leaves and failures are skipped (the openb protocol). After each request the
arrived GPU request, the allocated GPU and the pool's fragmentation are recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.fragmentation import FragmentationModel, ShapeDistribution
from flexlab.core.placement.framework import PlacementProfile, apply, place
from flexlab.core.placement.request_view import RequestView
from flexlab.core.snapshot import WHOLE, PoolArrays

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Called with (requests done, requests in all) every ``progress_every`` requests.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplayRecord:
    """What happened after each request of one replay (arrays of one entry per request)."""

    arrived_milli: I64
    allocated_milli: I64
    frag_milli: F64
    placed: npt.NDArray[np.bool_]
    #: Wall-clock and CPU seconds spent in ``place`` and ``apply`` (not in recording).
    seconds: float
    cpu_seconds: float = 0.0
    #: The host (index into the pool) each request went to, -1 where it was not placed.
    host: I64 | None = None

    @property
    def decisions(self) -> int:
        return int(self.placed.shape[0])

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else float("inf")


def replay(
    pool: PoolArrays,
    requests: Sequence[RequestView],
    order: I64,
    profile: PlacementProfile,
    *,
    frag_distribution: ShapeDistribution | None = None,
    progress: Progress | None = None,
    progress_every: int = 256,
    skip: npt.NDArray[np.bool_] | None = None,
) -> ReplayRecord:
    """Place ``requests[order[i]]`` for each i in turn, mutating ``pool``.

    ``frag_distribution`` is the distribution the recorded fragmentation is measured
    against (the workload's, as in the reference); the time it takes is not counted in
    ``seconds``, which covers placement and ``apply`` only. Where ``skip[i]`` is true the
    request arrives but is not placed (the live replay's mirror: requests the lease API
    refused).
    """
    n = int(order.shape[0])
    arrived = np.zeros(n, dtype=np.int64)
    allocated = np.zeros(n, dtype=np.int64)
    frag = np.zeros(n, dtype=np.float64)
    placed = np.zeros(n, dtype=np.bool_)
    hosts = np.full(n, -1, dtype=np.int64)
    meter = FragmentationModel(frag_distribution) if frag_distribution is not None else None
    ask = np.array(
        [0 if r.compute_milli == 0 else r.compute_milli * r.devices for r in requests], dtype=np.int64
    )
    total_arrived = 0
    total_alloc = 0
    spent = 0.0
    cpu = 0.0
    for i in range(n):
        j = int(order[i])
        req = requests[j]
        total_arrived += int(ask[j])
        if skip is None or not skip[i]:
            t0, c0 = time.perf_counter(), time.process_time()
            decision = place(req, pool, profile)
            if decision.ok:
                apply(pool, decision)
            spent += time.perf_counter() - t0
            cpu += time.process_time() - c0
            if decision.ok:
                placed[i] = True
                hosts[i] = decision.host
                total_alloc += sum(decision.compute_milli)
        arrived[i] = total_arrived
        allocated[i] = total_alloc
        if meter is not None:
            meter.sync(pool)
            frag[i] = meter.cluster()
        if progress is not None and (i + 1) % progress_every == 0:
            progress(i + 1, n)
    if progress is not None:
        progress(n, n)
    return ReplayRecord(arrived, allocated, frag, placed, spent, cpu, hosts)


def capacity_milli(pool: PoolArrays) -> int:
    """The pool's accelerator capacity in compute milli."""
    return int(pool.n_devices) * WHOLE
