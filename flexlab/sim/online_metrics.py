"""What one online run measured: per-pod waits, utilisation, warm slices, forecast error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def wait_stats(wait: F64) -> dict[str, float]:
    """n, mean, p50, p95 and p99 of the waits that are not NaN (NaN figures when none).

    >>> wait_stats(np.array([0.0, 10.0, np.nan]))["mean"]
    5.0
    """
    w = wait[~np.isnan(wait)]
    if w.size == 0:
        return {"n": 0, "mean": math.nan, "p50": math.nan, "p95": math.nan, "p99": math.nan}
    p50, p95, p99 = (float(x) for x in np.percentile(w, [50, 95, 99]))
    return {"n": int(w.size), "mean": float(w.mean()), "p50": p50, "p95": p95, "p99": p99}


@dataclass
class OnlineResult:
    """What one online run measured."""

    mode: str
    #: The placement policy the pool placed with (the mode's, or the fallback).
    policy: str
    jobs: int
    completed: int
    #: Per pod: from its arrival until its lease was first active (s); NaN if never (or
    #: skipped).
    wait: F64
    priority: I64
    #: Pods not replayed, by reason (``multi-device``, ``cpu-only``, ``unschedulable``).
    skipped: dict[str, int]
    preemptions: int
    #: Sampled every sample period while pods arrive: share of the pool's compute that
    #: running pods asked for (after their slice start-up; not idle warm slices).
    samples_t: F64
    util: F64
    #: Share of the pool's compute held by idle warm slices, on the same samples.
    warm_share: F64
    completed_work_gpu_s: float
    makespan_s: float
    arrival_end_s: float
    #: Warm slices: carved by the Hi loop, given back by it, reclaimed by the pool for a
    #: lease that fitted nowhere else, taken by a lease (and of those, ready at once).
    warm_carved: int = 0
    warm_given_back: int = 0
    warm_reclaimed: int = 0
    warm_claims: int = 0
    warm_claims_ready: int = 0
    #: Slices of ended leases kept warm for the next lease (their workers retagged).
    warm_recycled: int = 0
    #: Leases that took an idle shared slice's running worker (``WarmSlices.take_standing``).
    standing_taken: int = 0
    slices_started: int = 0
    #: Moves the Hi loop's manager rejected, by reason.
    hi_rejected: dict[str, int] = field(default_factory=dict)
    forecast_mape: float = math.nan
    forecast_smape: float = math.nan
    #: Against the seasonal-naive forecast (the previous bucket when there is no season).
    forecast_mase: float = math.nan
    seconds: float = 0.0

    def wait_stats(self, prio: int | None = None) -> dict[str, float]:
        return wait_stats(self.wait if prio is None else self.wait[self.priority == prio])

    def _mean(self, x: F64) -> float:
        sel = self.samples_t <= self.arrival_end_s
        return float(x[sel].mean()) if sel.any() else math.nan

    def summary(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "policy": self.policy,
            "jobs": self.jobs,
            "completed": self.completed,
            "skipped": dict(self.skipped),
            "wait_all": self.wait_stats(),
            "wait_high": self.wait_stats(1),
            "wait_low": self.wait_stats(0),
            "utilisation_mean": self._mean(self.util),
            "warm_share_mean": self._mean(self.warm_share),
            "completed_work_gpu_s": self.completed_work_gpu_s,
            "makespan_s": self.makespan_s,
            "preemptions": self.preemptions,
            "warm_carved": self.warm_carved,
            "warm_given_back": self.warm_given_back,
            "warm_reclaimed": self.warm_reclaimed,
            "warm_claims": self.warm_claims,
            "warm_claims_ready": self.warm_claims_ready,
            "warm_recycled": self.warm_recycled,
            "standing_taken": self.standing_taken,
            "slices_started": self.slices_started,
            "hi_rejected": dict(self.hi_rejected),
            "forecast_mape": self.forecast_mape,
            "forecast_smape": self.forecast_smape,
            "forecast_mase": self.forecast_mase,
            "seconds": self.seconds,
        }
