"""What one online run measured: per-job waits, utilisation and fragmentation samples."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class OnlineResult:
    """What one online run measured."""

    mode: str
    jobs: int
    completed: int
    #: Per job: first start minus arrival (seconds); NaN if it never started.
    wait: F64
    priority: I64
    preemptions: int
    #: Sampled every ``bucket_s``: time, share of capacity jobs asked for and hold (the
    #: requested compute, not whole-device rounding or idle warm slices), fragmented share.
    samples_t: F64
    util: F64
    frag: F64
    completed_work_gpu_s: float
    makespan_s: float
    arrival_end_s: float
    prewarm_claims: int = 0
    prewarm_moves: int = 0
    rejected_moves: int = 0
    forecast_mape: float = math.nan
    forecast_smape: float = math.nan
    seconds: float = 0.0
    #: As ``util`` but counting jobs from when they hold their slice (slice start-up included).
    util_held: F64 = field(default_factory=lambda: np.zeros(0))
    #: Departing jobs' slices kept warm for the next job of their size.
    recycled: int = 0

    def wait_stats(self, prio: int | None = None) -> dict[str, float]:
        w = self.wait if prio is None else self.wait[self.priority == prio]
        w = w[~np.isnan(w)]
        if w.size == 0:
            return {"n": 0, "mean": math.nan, "p95": math.nan, "p99": math.nan}
        return {
            "n": int(w.size),
            "mean": float(w.mean()),
            "p95": float(np.percentile(w, 95)),
            "p99": float(np.percentile(w, 99)),
        }

    def mean_util(self) -> float:
        """Mean busy share while jobs were still arriving."""
        sel = self.samples_t <= self.arrival_end_s
        return float(self.util[sel].mean()) if sel.any() else math.nan

    def summary(self) -> dict[str, object]:
        sel = self.samples_t <= self.arrival_end_s
        return {
            "mode": self.mode,
            "jobs": self.jobs,
            "completed": self.completed,
            "wait_all": self.wait_stats(),
            "wait_high": self.wait_stats(1),
            "wait_low": self.wait_stats(0),
            "utilisation_mean": self.mean_util(),
            "utilisation_held_mean": float(self.util_held[sel].mean())
            if sel.any() and self.util_held.size
            else math.nan,
            "fragmentation_mean": float(self.frag[sel].mean()) if sel.any() else math.nan,
            "completed_work_gpu_s": self.completed_work_gpu_s,
            "makespan_s": self.makespan_s,
            "preemptions": self.preemptions,
            "prewarm_moves": self.prewarm_moves,
            "prewarm_claims": self.prewarm_claims,
            "recycled": self.recycled,
            "rejected_moves": self.rejected_moves,
            "forecast_mape": self.forecast_mape,
            "forecast_smape": self.forecast_smape,
            "seconds": self.seconds,
        }
