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
from collections.abc import Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class PendingTask:
    """A task waiting for a device: its workload class and work (reference device-seconds)."""

    workload_class: str | None
    work: float


@dataclass
class AdvantageDispatcher:
    """Pull dispatch by comparative advantage: when a device frees, it takes the waiting
    task that gains most there relative to its best alternative model.

    A task's advantage on model ``m`` is its class's throughput on ``m`` over its best
    throughput on any other model in the pool (``ThroughputTable`` rates, so learned online).
    A device takes a task only when the task would finish no later there than on its best
    alternative, where the alternative's finish counts the backlog of waiting tasks that
    rank higher for that model, spread over its devices (a fluid estimate); ties go to the
    longest work (LPT). With every rate equal (a heterogeneity-blind table) every advantage
    is 1 and this is longest-work-first list scheduling.
    """

    table: ThroughputTable
    #: A task goes to this device when its finish here is at most ``slack`` x its
    #: alternative's (1.0: no later than there).
    slack: float = 1.0

    def advantage(self, workload_class: str | None, model: str, models: Sequence[str]) -> float:
        others = [self.table.rate(workload_class, m) for m in models if m != model]
        if not others:
            return 1.0
        return self.table.rate(workload_class, model) / max(others)

    def pick(
        self,
        model: str,
        now: float,
        pending: Sequence[PendingTask],
        busy_until: Mapping[str, Sequence[float]],
    ) -> int | None:
        """Index in ``pending`` of the task a freed device of ``model`` should run now, or
        None (leave it idle: every task finishes sooner elsewhere). ``busy_until`` maps
        every model of the pool to when each of its other devices is expected to be free
        (absolute time; ``now`` or earlier for an idle one)."""
        if not pending:
            return None
        models = list(busy_until)
        if model not in models:
            models.append(model)
        # Fluid finish on each other model: its devices' remaining busy time plus the
        # backlog of waiting tasks that rank at least as high there, spread over them.
        alt = np.full(len(pending), np.inf)
        for m in models:
            if m == model or not busy_until.get(m):
                continue
            devs = np.maximum(np.asarray(busy_until[m], dtype=np.float64) - now, 0.0)
            n = len(devs)
            run = np.array([self.table.expected_s(t.workload_class, m, t.work) for t in pending])
            adv = np.array([self.advantage(t.workload_class, m, models) for t in pending])
            order = np.lexsort((-run, -adv))  # highest advantage first, longest first
            ahead = np.empty(len(pending))
            ahead[order] = np.concatenate(([0.0], np.cumsum(run[order])[:-1]))
            start = np.maximum(float(devs.min()), (float(devs.sum()) + ahead) / n)
            alt = np.minimum(alt, now + start + run)
        own = np.array([now + self.table.expected_s(t.workload_class, model, t.work) for t in pending])
        ok = own <= self.slack * alt + 1e-9
        if not ok.any():
            return None
        adv_here = np.array([self.advantage(t.workload_class, model, models) for t in pending])
        work = np.array([t.work for t in pending])
        cand = np.flatnonzero(ok)
        best = cand[np.lexsort((-work[cand], -adv_here[cand]))[0]]
        return int(best)
