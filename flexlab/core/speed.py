"""Throughput per (workload class, device model), learned online, and a score that places
by expected finish time.

Work is counted in reference device-seconds (the V100S = 1.0 convention of
``flexlab.mock.speed``): a task of work ``w`` on a device of throughput ``r`` at compute
share ``c`` runs ``w / (r * c)`` seconds. Before any measurement a model's throughput is
its catalog peak FP16 over the reference's (fallback 1.0 when the figure is not published);
each measured duration updates an exponentially weighted mean of ``work / duration``.

>>> t = ThroughputTable(alpha=0.5)
>>> round(t.rate("training", "t4"), 3)  # prior: 65 / 130 TFLOP/s
0.5
>>> t.observe("training", "t4", work=10.0, duration_s=40.0)  # the first replaces the prior
>>> t.observe("training", "t4", work=10.0, duration_s=20.0)  # then 0.5 * 0.5 + 0.5 * 0.25
>>> t.rate("training", "t4")
0.375
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from flexlab.core.catalog import get_model
from flexlab.core.errors import InvalidRequest
from flexlab.core.placement.framework import Candidates
from flexlab.core.placement.request_view import RequestView
from flexlab.core.snapshot import WHOLE, PoolArrays

F64 = npt.NDArray[np.float64]

#: The device whose throughput is 1.0 (as in ``flexlab.mock.speed``).
REFERENCE_MODEL = "v100s-32gb"
#: Throughput of a model without a published peak FP16 figure.
FALLBACK_RATE = 1.0
#: Workload class of a request that names none.
DEFAULT_CLASS = "default"


def prior_rate(model_key: str, reference: str = REFERENCE_MODEL) -> float:
    """Cold-start throughput: catalog peak FP16 over the reference's, else ``FALLBACK_RATE``."""
    peak = get_model(model_key).peak_tflops_fp16
    ref = get_model(reference).peak_tflops_fp16
    if peak is None or ref is None:
        return FALLBACK_RATE
    return peak / ref


@dataclass
class ThroughputTable:
    """Throughput per (workload class, model): EWMA of measured ``work / duration``."""

    alpha: float = 0.3
    reference: str = REFERENCE_MODEL
    #: Throughput used before any measurement (default: ``prior_rate``); a flat
    #: ``lambda _: 1.0`` gives a heterogeneity-blind table.
    prior: Callable[[str], float] | None = None
    learn: bool = True
    rates: dict[tuple[str, str], float] = field(default_factory=dict)
    samples: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise InvalidRequest("alpha", self.alpha, "a smoothing factor in (0, 1]")

    def prior_of(self, model_key: str) -> float:
        return self.prior(model_key) if self.prior is not None else prior_rate(model_key, self.reference)

    def rate(self, workload_class: str | None, model_key: str) -> float:
        """Throughput of ``model_key`` for a class (learned, else the prior)."""
        return self.rates.get((workload_class or DEFAULT_CLASS, model_key), self.prior_of(model_key))

    def observe(
        self,
        workload_class: str | None,
        model_key: str,
        *,
        work: float,
        duration_s: float,
        share: float = 1.0,
    ) -> None:
        """Learn from one finished task: ``work`` reference-seconds in ``duration_s`` on a
        ``share`` (0..1] of one device."""
        if not (work > 0 and duration_s > 0 and 0 < share <= 1) or not math.isfinite(work / duration_s):
            raise InvalidRequest(
                "measurement", (work, duration_s, share), "work, duration > 0, share in (0, 1]"
            )
        if not self.learn:
            return
        key = (workload_class or DEFAULT_CLASS, model_key)
        measured = work / (duration_s * share)
        old = self.rates.get(key)
        self.rates[key] = measured if old is None else self.alpha * measured + (1 - self.alpha) * old
        self.samples[key] = self.samples.get(key, 0) + 1

    def expected_s(
        self, workload_class: str | None, model_key: str, work: float, share: float = 1.0
    ) -> float:
        """Expected running time of ``work`` on a ``share`` of one device of ``model_key``."""
        return work / (self.rate(workload_class, model_key) * share)


class ExpectedFinishScore:
    """Score plugin: earliest expected finish time wins (100 for the best candidate).

    The work of a request is its ``expected_duration_s`` (reference device-seconds; 1.0
    when absent) and its class its ``workload_class``. ``ready_at`` (optional, seconds
    from now, per device) is when a device can start, for callers that queue per device.
    """

    name = "ExpectedFinish"

    def __init__(self, table: ThroughputTable, *, ready_at: F64 | None = None) -> None:
        self.table = table
        self.ready_at = ready_at

    def finish_s(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates) -> F64:
        """Expected finish time (seconds from now) per candidate."""
        cls = getattr(request, "workload_class", None)
        work = getattr(request, "expected_duration_s", None) or 1.0
        if candidates.level == "device":
            devs = candidates.index
        else:  # host candidates: the host's first device stands for its model
            devs = pool.host_dev_start[candidates.index]
            devs = np.minimum(devs, max(pool.n_devices - 1, 0))
        if pool.n_devices == 0 or len(candidates) == 0:
            return np.zeros(len(candidates))
        rates = np.array([self.table.rate(cls, key) for key in pool.model_keys], dtype=np.float64)
        share = np.maximum(candidates.compute, 1) / WHOLE if candidates.level == "device" else 1.0
        run: F64 = work / (rates[pool.dev_model[devs]] * share)
        if self.ready_at is not None:
            run = run + self.ready_at[devs]
        return run

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        finish = self.finish_s(request=request, pool=pool, candidates=candidates)
        if finish.size == 0:
            return finish
        out: F64 = 100.0 * float(finish.min()) / np.maximum(finish, 1e-12)
        return out
