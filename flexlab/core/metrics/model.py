"""What a metric family is, in plain data: the pool's collector builds these and the Dask
adapter only translates them into ``prometheus_client`` families.

Names follow Prometheus conventions: the ``flexlab_`` prefix, base units in the name
(``_seconds``, ``_bytes``), ``_total`` on counters. Accelerator compute is counted in
device-equivalents (1 = one whole device), a unit-less quantity, so its names carry no unit.

>>> h = HistogramCounter((0.1, 1.0))
>>> h.observe(0.05); h.observe(0.5); h.observe(7.0)
>>> h.value().buckets
((0.1, 1), (1.0, 2), (inf, 3))
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from flexlab.core.errors import InvalidRequest

MetricKind = Literal["gauge", "counter", "histogram"]
PREFIX = "flexlab_"


@dataclass(frozen=True)
class HistogramValue:
    """A histogram's state: cumulative counts per upper bound (the last is +Inf), sum, count."""

    buckets: tuple[tuple[float, int], ...]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0


Value = float | HistogramValue


@dataclass
class Family:
    """One metric family: its samples are (label values in ``labels`` order, value)."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], Value]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name.startswith(PREFIX):
            raise InvalidRequest("metric name", self.name, f"a name that starts with {PREFIX!r}")
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise InvalidRequest("metric name", self.name, "a name that ends in _total exactly for a counter")

    def add(self, labels: tuple[str, ...], value: Value) -> None:
        self.samples.append((labels, value))

    def series(self) -> int:
        """Series this family exposes (a histogram: one per bucket, plus its sum and count)."""
        if self.kind != "histogram":
            return len(self.samples)
        return sum(len(v.buckets) + 2 for _, v in self.samples if isinstance(v, HistogramValue))


class HistogramCounter:
    """Observations counted into fixed buckets (upper bounds, ascending; +Inf is added)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if not bounds or any(b <= a for a, b in itertools.pairwise(bounds)):
            raise InvalidRequest("histogram buckets", bounds, "ascending upper bounds")
        self.bounds = (*bounds, math.inf)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.bounds):
            if value <= b:
                self.counts[i] += 1
                break
        self.total += value

    def value(self) -> HistogramValue:
        cum = 0
        out = []
        for b, n in zip(self.bounds, self.counts, strict=True):
            cum += n
            out.append((b, cum))
        return HistogramValue(tuple(out), self.total)
