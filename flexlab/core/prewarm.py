"""The live Hi Scheduler's decisions: how many warm slices to keep, and which lease to preempt.

The scheduler plugin feeds :class:`WarmPlanner` every lease request as it arrives and asks
it, every few seconds, for moves (:class:`WarmMove`): keep ``target`` idle slices warm for
each request class whose forecast says it will be asked for within the horizon, dissolve the
rest. The plugin (the one manager) enacts them on the pool and logs each with its reason.

A warm slice turns a lease's wait for a worker to start (a process start, an import, a
CUDA context) into a table lookup; holding it costs only capacity nobody is using, and the
plugin gives it back whenever real work waits.

>>> from flexlab.core.request import parse_request
>>> wp = WarmPlanner(bucket_s=1.0, horizon=3)
>>> for t in range(6):
...     wp.observe(float(t), parse_request("gpu:0.25"))
>>> [(m.action, m.request, m.target) for m in wp.propose(6.0, {})]
[('prewarm', 'gpu:0.25', 3)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from flexlab.core.errors import InvalidRequest
from flexlab.core.forecast import ClassForecaster, RequestClass, classify
from flexlab.core.request import SliceRequest

WarmAction = Literal["prewarm", "dissolve"]


@dataclass(frozen=True)
class WarmMove:
    """Carve (``prewarm``) or give back (``dissolve``) ``count`` warm slices of ``request``."""

    action: WarmAction
    request: str
    count: int
    target: int
    reason: str


@dataclass(frozen=True)
class ClassView:
    """What the pool state shows per request class: forecast against actual arrivals."""

    request_class: str
    request: str
    forecast: float  # expected arrivals over the horizon
    last_bucket: float  # arrivals in the last closed bucket
    predicted_last: float  # what was forecast for that bucket
    target: int  # warm slices wanted


@dataclass
class WarmPlanner:
    """Per request class: a Holt forecaster of lease arrivals and the warm slices to hold.

    ``target`` for a request text = its share of its class's expected arrivals over the
    next ``horizon`` buckets (the class's arrivals split over the texts asked in it, by how
    often each was asked so far: a warm slice is taken only by a lease asking exactly its
    text), rounded up once above ``threshold``, capped at ``max_per_class``; ``max_total``
    caps all texts.

    Expected arrivals: the Holt (or, with ``season``, Holt-Winters) forecast; without a
    season, never less than the class's smoothed mean rate (``level_alpha``) times the
    horizon. Holt alone follows its trend down in the quiet buckets between bursts and
    would give the warm slices back just before the next burst; the mean rate is the floor
    that keeps them for a class that keeps coming back.
    """

    bucket_s: float = 2.0
    horizon: int = 5
    season: int = 0
    threshold: float = 0.5
    max_per_class: int = 4
    max_total: int = 8
    level_alpha: float = 0.3
    #: Safety stock from the forecast's own error: ``service_z`` standard deviations of
    #: the one-bucket-ahead error over the horizon (errors taken as independent:
    #: ``z * sigma * sqrt(horizon)``, sigma from a smoothed mean absolute error, x1.25
    #: as for a normal error). 0: none (the forecast alone); 1.65: 95% of horizons
    #: covered when errors are normal.
    service_z: float = 0.0
    forecaster: ClassForecaster | None = field(default=None, init=False)
    examples: dict[RequestClass, SliceRequest] = field(default_factory=dict)
    targets: dict[str, int] = field(default_factory=dict)
    #: Request text -> the latest request asked with it; per class, arrivals per text.
    requests: dict[str, SliceRequest] = field(default_factory=dict)
    mix: dict[RequestClass, dict[str, int]] = field(default_factory=dict)
    #: Arrivals per class in the open bucket, and (actual, forecast) of the last closed one.
    _counts: dict[RequestClass, int] = field(default_factory=dict)
    _next1: dict[RequestClass, float] = field(default_factory=dict)
    _last: dict[RequestClass, tuple[float, float]] = field(default_factory=dict)
    _level: dict[RequestClass, float] = field(default_factory=dict)
    #: Smoothed absolute one-bucket-ahead error per class (for ``service_z``).
    _mae: dict[RequestClass, float] = field(default_factory=dict)
    _bucket: int = 0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise InvalidRequest("horizon", self.horizon, "at least 1 bucket")
        if self.max_per_class < 0 or self.max_total < 0:
            raise InvalidRequest("max warm slices", (self.max_per_class, self.max_total), ">= 0")
        if not self.bucket_s > 0:
            raise InvalidRequest("bucket", self.bucket_s, "a positive number of seconds")

    def _advance(self, now: float) -> ClassForecaster | None:
        fc = self.forecaster
        if fc is None:
            return None
        bucket = int((now - fc.start) // self.bucket_s)
        if bucket > self._bucket:  # the open bucket closed: keep its actual and its forecast
            self._last = {c: (float(self._counts.get(c, 0)), self._next1.get(c, 0.0)) for c in fc.models}
            a = self.level_alpha
            for c, (actual, predicted) in self._last.items():
                mae = self._mae.get(c, 0.0)
                self._mae[c] = mae + a * (abs(actual - predicted) - mae)
            for c in fc.models:
                level = self._level.get(c, 0.0)
                for i in range(min(bucket - self._bucket, 1000)):  # then empty buckets, if any
                    level += a * ((self._counts.get(c, 0) if i == 0 else 0) - level)
                self._level[c] = level
            self._counts = {}
            fc.advance(now)
            self._next1 = {c: float(v[0]) for c, v in fc.forecast(1).items()}
            self._bucket = bucket
        return fc

    def request_for(self, text: str) -> SliceRequest | None:
        """The latest request observed whose text is ``text`` (None: none was)."""
        return self.requests.get(text)

    def observe(self, now: float, request: SliceRequest) -> None:
        """A lease asked for ``request`` at ``now`` (seconds, increasing)."""
        if self.forecaster is None:
            self.forecaster = ClassForecaster(bucket_s=self.bucket_s, season=self.season, start=now)
        fc = self._advance(now)
        assert fc is not None
        cls = classify(request)
        self.examples[cls] = request
        text = request.describe()
        self.requests[text] = request
        texts = self.mix.setdefault(cls, {})
        texts[text] = texts.get(text, 0) + 1
        fc.observe(now, cls)
        self._counts[cls] = self._counts.get(cls, 0) + 1

    def expected(self, now: float) -> dict[RequestClass, float]:
        """Expected arrivals over the horizon per class (closing buckets up to ``now``)."""
        fc = self._advance(now)
        if fc is None:
            return {}
        out = {c: float(v.sum()) for c, v in fc.forecast(self.horizon).items()}
        if self.season <= 1:
            for c, level in self._level.items():
                out[c] = max(out.get(c, 0.0), level * self.horizon)
        return out

    def safety(self, cls: RequestClass) -> float:
        """Warm slices of ``cls`` beyond its expected arrivals (see ``service_z``)."""
        return self.service_z * 1.25 * self._mae.get(cls, 0.0) * math.sqrt(self.horizon)

    def propose(self, now: float, warm: Mapping[str, int]) -> list[WarmMove]:
        """Moves from ``warm`` (request text -> idle warm slices held) to the targets."""
        per_text: dict[str, float] = {}
        for cls, expected in self.expected(now).items():
            n = expected + self.safety(cls)
            texts = self.mix.get(cls, {})
            asked = sum(texts.values())
            for text, k in texts.items():
                per_text[text] = per_text.get(text, 0.0) + n * k / asked
        wanted: dict[str, tuple[int, float]] = {
            text: (min(self.max_per_class, math.ceil(n - 1e-9)), n)
            for text, n in sorted(per_text.items(), key=lambda kv: -kv[1])
            if n >= self.threshold
        }
        total = 0
        self.targets = {}
        for text, (want, _) in wanted.items():
            k = min(want, self.max_total - total)
            total += k
            if k > 0:
                self.targets[text] = k
        moves: list[WarmMove] = []
        within = f"forecast in {self.horizon * self.bucket_s:g} s"
        for text, k in self.targets.items():
            have = warm.get(text, 0)
            if have < k:
                n = wanted[text][1]
                moves.append(WarmMove("prewarm", text, k - have, k, f"{n:.1f} leases of {text} {within}"))
        for text, have in warm.items():
            k = self.targets.get(text, 0)
            # One slice of slack: a target that wobbles by one (3, 4, 3) must not stop and
            # start a worker every pass.
            if have > k + 1 or (have > k and k == 0):
                n = wanted.get(text, (0, 0.0))[1]
                moves.append(
                    WarmMove(
                        "dissolve",
                        text,
                        have - k,
                        k,
                        f"only {n:.1f} leases of {text} {within}",
                    )
                )
        return moves

    def view(self, now: float) -> list[ClassView]:
        """Forecast against actual per class, for the pool state and the dashboard."""
        expected = self.expected(now)
        out = []
        for cls, n in sorted(expected.items(), key=lambda kv: -kv[1]):
            req = self.examples.get(cls)
            text = req.describe() if req is not None else ""
            actual = self._last.get(cls, (0.0, 0.0))
            out.append(
                ClassView(
                    request_class=cls.describe(),
                    request=text,
                    forecast=round(n, 3),
                    last_bucket=actual[0],
                    predicted_last=round(actual[1], 3),
                    target=self.targets.get(text, 0),
                )
            )
        return out

    def series(self, now: float) -> dict[str, list[tuple[float, float]]]:
        """Per request text: (time, expected arrivals per second) at the middle of each of
        the next ``horizon`` buckets, for charts of forecast against actual."""
        fc = self._advance(now)
        if fc is None:
            return {}
        start = fc.start + self._bucket * self.bucket_s  # the open bucket is the first forecast
        out: dict[str, list[tuple[float, float]]] = {}
        for cls, values in fc.forecast(self.horizon).items():
            req = self.examples.get(cls)
            if req is None:
                continue
            floor = self._level.get(cls, 0.0) if self.season <= 1 else 0.0
            out[req.describe()] = [
                (start + (k + 0.5) * self.bucket_s, max(float(v), floor) / self.bucket_s)
                for k, v in enumerate(values)
            ]
        return out

    def errors(self) -> tuple[float, float]:
        """(MAPE, sMAPE) of the one-bucket-ahead forecasts so far, pooled over classes."""
        return self.forecaster.errors() if self.forecaster is not None else (math.nan, math.nan)

    def mase(self) -> float:
        """MASE of the one-bucket-ahead forecasts so far, pooled over classes, against the
        seasonal-naive forecast (the previous bucket's count when ``season`` is 0)."""
        return self.forecaster.mase() if self.forecaster is not None else math.nan


def preemption_due(waiting_since: float, now: float, grace_s: float) -> bool:
    """A higher-priority lease may preempt once it has waited ``grace_s`` seconds."""
    return now - waiting_since >= grace_s
