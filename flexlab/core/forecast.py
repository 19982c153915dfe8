"""Forecast request arrivals per request class: Holt / additive Holt-Winters over time buckets.

A request class is (device kind, size bucket, priority class). Arrivals are counted per
fixed-length time bucket; one smoother per class predicts the counts of the next buckets.
Forecast errors are measured one bucket ahead (MAPE, sMAPE, in percent) and against the
seasonal-naive forecast (MASE: below 1 beats "the same as one season ago").

>>> h = Holt(alpha=0.5, beta=0.5)
>>> for y in (1.0, 3.0, 5.0):
...     h.update(y)
>>> [float(x) for x in h.forecast(2)]
[7.0, 9.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from flexlab.core.errors import InvalidRequest
from flexlab.core.placement.request_view import RequestView

F64 = npt.NDArray[np.float64]

#: Upper edges (milli, inclusive) of the size buckets of single-device requests.
SIZE_BUCKETS = (100, 250, 500, 750, 1000)
#: Priority at or above which a request is in the high class.
HIGH_PRIORITY = 1


@dataclass(frozen=True, order=True)
class RequestClass:
    """What the forecaster counts arrivals of: kind x size bucket x priority class.

    ``size_milli`` is the bucket's upper edge for a single-device share, ``1000 * n`` for
    ``n`` whole devices and 0 for a CPU-only request; ``priority`` is 0 (low) or 1 (high).
    """

    kind: str
    size_milli: int
    priority: int

    def describe(self) -> str:
        return f"{self.kind}:{self.size_milli}m:p{self.priority}"


def size_bucket(compute_milli: int, devices: int = 1) -> int:
    """The size bucket of a request: 0 CPU-only, the smallest edge >= a share, 1000*n."""
    if compute_milli <= 0:
        return 0
    if devices > 1:
        return 1000 * devices
    for edge in SIZE_BUCKETS:
        if compute_milli <= edge:
            return edge
    return 1000


def classify(request: RequestView) -> RequestClass:
    """The class of a request (kind: the selector's single kind, else ``any``; ``cpu``)."""
    kinds = request.selector.kinds
    if request.compute_milli == 0 and request.profile is None:
        kind = "cpu"
    else:
        kind = next(iter(kinds)) if len(kinds) == 1 else "any"
    prio = 1 if request.priority >= HIGH_PRIORITY else 0
    return RequestClass(kind, size_bucket(request.compute_milli, request.devices), prio)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise InvalidRequest(name, value, "a smoothing factor in [0, 1]")


@dataclass
class Holt:
    """Double exponential smoothing; additive Holt-Winters when ``season`` > 1.

    Initialisation: Holt takes the first value as level and the first difference as
    trend; Holt-Winters waits for one season, then takes its mean as level, zero trend
    and the deviations from the mean as seasonal terms (forecasts are that mean meanwhile).
    """

    alpha: float = 0.5
    beta: float = 0.1
    season: int = 0
    gamma: float = 0.1
    level: float = 0.0
    trend: float = 0.0
    seen: int = 0
    seasonal: list[float] = field(default_factory=list)
    _warm: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            _check_rate(name, float(getattr(self, name)))
        if self.season < 0:
            raise InvalidRequest("season", self.season, "0 (no season) or a period >= 2 buckets")

    @property
    def seasonal_mode(self) -> bool:
        return self.season > 1

    def update(self, y: float) -> None:
        """Take the next observation."""
        self.seen += 1
        if self.seasonal_mode:
            self._update_seasonal(y)
            return
        if self.seen == 1:
            self.level = y
        elif self.seen == 2:
            self.trend = y - self.level
            self.level = y
        else:
            prev = self.level
            self.level = self.alpha * y + (1 - self.alpha) * (prev + self.trend)
            self.trend = self.beta * (self.level - prev) + (1 - self.beta) * self.trend

    def _update_seasonal(self, y: float) -> None:
        m = self.season
        if self.seen <= m:
            self._warm.append(y)
            if self.seen == m:
                self.level = sum(self._warm) / m
                self.trend = 0.0
                self.seasonal = [v - self.level for v in self._warm]
            return
        i = (self.seen - 1) % m
        s = self.seasonal[i]
        prev = self.level
        self.level = self.alpha * (y - s) + (1 - self.alpha) * (prev + self.trend)
        self.trend = self.beta * (self.level - prev) + (1 - self.beta) * self.trend
        self.seasonal[i] = self.gamma * (y - self.level) + (1 - self.gamma) * s

    def forecast(self, horizon: int) -> F64:
        """The next ``horizon`` values (not clipped)."""
        h = np.arange(1, horizon + 1, dtype=np.float64)
        if self.seen == 0:
            return np.zeros(horizon)
        if self.seasonal_mode and self.seen < self.season:
            return np.full(horizon, sum(self._warm) / len(self._warm))
        out: F64 = self.level + h * self.trend
        if self.seasonal_mode:
            m = self.season
            idx = (self.seen + np.arange(horizon)) % m
            out = out + np.asarray(self.seasonal, dtype=np.float64)[idx]
        return out


def mape(actual: Sequence[float] | F64, predicted: Sequence[float] | F64) -> float:
    """Mean absolute percentage error in %, over the points whose actual is not zero
    (NaN when there is none)."""
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    nz = a != 0
    if not nz.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs(a[nz] - p[nz]) / np.abs(a[nz])))


def smape(actual: Sequence[float] | F64, predicted: Sequence[float] | F64) -> float:
    """Symmetric MAPE in % (0..200); a point where both are zero counts as 0 error."""
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if a.size == 0:
        return float("nan")
    den = np.abs(a) + np.abs(p)
    terms = np.where(den > 0, 2.0 * np.abs(a - p) / np.where(den > 0, den, 1.0), 0.0)
    return float(100.0 * np.mean(terms))


def mase(series: Iterable[tuple[Sequence[float], Sequence[float]]], season: int = 1) -> float:
    """Mean absolute scaled error of one-step forecasts, pooled over ``series`` of
    (actual, predicted): the forecast's mean absolute error over that of the seasonal-naive
    forecast, which says each value is the one ``season`` steps before (1: the previous
    value), both on the points that have such a value. Below 1 beats the naive forecast;
    NaN when the naive forecast makes no error at all (or there are no such points).

    >>> mase([([1.0, 3.0, 3.0], [0.0, 2.0, 3.0])])  # forecast errs 1, 0; naive 2, 0
    0.5
    """
    if season < 1:
        raise InvalidRequest("season", season, "at least 1 step")
    err = naive = 0.0
    for actual, predicted in series:
        a = np.asarray(actual, dtype=np.float64)
        p = np.asarray(predicted, dtype=np.float64)
        if a.size <= season:
            continue
        err += float(np.abs(a[season:] - p[season:]).sum())
        naive += float(np.abs(a[season:] - a[:-season]).sum())
    return err / naive if naive > 0 else float("nan")


@dataclass
class ClassForecaster:
    """Counts arrivals per class in buckets of ``bucket_s`` and forecasts the next ones.

    ``observe`` arrivals in time order, ``advance(now)`` closes the buckets before
    ``now``; each closed bucket is first scored against the one-step forecast made
    before it (for ``errors``), then fed to the class's smoother.
    """

    bucket_s: float
    alpha: float = 0.5
    beta: float = 0.1
    season: int = 0
    gamma: float = 0.1
    start: float = 0.0
    models: dict[RequestClass, Holt] = field(default_factory=dict)
    _counts: dict[RequestClass, int] = field(default_factory=dict)
    _closed: int = 0
    _actual: dict[RequestClass, list[float]] = field(default_factory=dict)
    _predicted: dict[RequestClass, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bucket_s > 0:
            raise InvalidRequest("bucket", self.bucket_s, "a positive number of seconds")

    def _bucket(self, t: float) -> int:
        return int((t - self.start) // self.bucket_s)

    def observe(self, t: float, cls: RequestClass, n: int = 1) -> None:
        """Count ``n`` arrivals of ``cls`` at time ``t`` (closes earlier buckets first)."""
        self.advance(t)
        self._counts[cls] = self._counts.get(cls, 0) + n
        if cls not in self.models:
            self.models[cls] = self._new_model()

    def _new_model(self) -> Holt:
        model = Holt(self.alpha, self.beta, self.season, self.gamma)
        for _ in range(self._closed):  # a class first seen now had zeros before
            model.update(0.0)
        return model

    def advance(self, now: float) -> None:
        """Close every bucket that ends at or before ``now``."""
        target = self._bucket(now)
        while self._closed < target:
            for cls, model in self.models.items():
                y = float(self._counts.get(cls, 0))
                if model.seen:
                    self._actual.setdefault(cls, []).append(y)
                    self._predicted.setdefault(cls, []).append(max(float(model.forecast(1)[0]), 0.0))
                model.update(y)
            self._counts.clear()
            self._closed += 1

    def forecast(self, horizon: int) -> dict[RequestClass, F64]:
        """Expected arrivals per class in each of the next ``horizon`` buckets (>= 0)."""
        return {cls: np.maximum(m.forecast(horizon), 0.0) for cls, m in self.models.items()}

    def errors(self, classes: Iterable[RequestClass] | None = None) -> tuple[float, float]:
        """(MAPE, sMAPE) of the one-bucket-ahead forecasts, pooled over ``classes``."""
        keys = list(self._actual) if classes is None else [c for c in classes if c in self._actual]
        a = [v for c in keys for v in self._actual[c]]
        p = [v for c in keys for v in self._predicted[c]]
        return mape(a, p), smape(a, p)

    def mase(self, classes: Iterable[RequestClass] | None = None) -> float:
        """MASE of the one-bucket-ahead forecasts, pooled over ``classes``, against the
        seasonal-naive forecast (the count one season before; the previous bucket's
        count when there is no season)."""
        keys = list(self._actual) if classes is None else [c for c in classes if c in self._actual]
        return mase(((self._actual[c], self._predicted[c]) for c in keys), max(self.season, 1))
