from __future__ import annotations

import math

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.forecast import (
    ClassForecaster,
    Holt,
    RequestClass,
    classify,
    mape,
    mase,
    size_bucket,
    smape,
)
from flexlab.core.request import parse_request


@pytest.mark.parametrize(
    ("series", "alpha", "beta", "horizon", "expected"),
    [
        # A straight line is followed exactly once the trend is initialised.
        ([5.0 + 2 * t for t in range(10)], 0.3, 0.2, 3, [25.0, 27.0, 29.0]),
        ([7.0] * 6, 0.5, 0.5, 2, [7.0, 7.0]),
        # A burst: level 10, then 100 with alpha 0.5, beta 0.1 -> level 55, trend 4.5.
        ([10.0, 10.0, 10.0, 100.0], 0.5, 0.1, 2, [59.5, 64.0]),
        ([3.0], 0.5, 0.5, 2, [3.0, 3.0]),
        ([], 0.5, 0.5, 2, [0.0, 0.0]),
    ],
    ids=["trend", "constant", "burst", "one-point", "empty"],
)
def test_holt_forecast(
    series: list[float], alpha: float, beta: float, horizon: int, expected: list[float]
) -> None:
    h = Holt(alpha=alpha, beta=beta)
    for y in series:
        h.update(y)
    assert h.forecast(horizon).tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pattern", "repeats", "horizon", "expected"),
    [
        ([1.0, 5.0, 1.0, 5.0], 3, 4, [1.0, 5.0, 1.0, 5.0]),
        ([0.0, 0.0, 12.0], 4, 5, [0.0, 0.0, 12.0, 0.0, 0.0]),
    ],
    ids=["period-4", "daily-peak"],
)
def test_holt_winters_periodic(
    pattern: list[float], repeats: int, horizon: int, expected: list[float]
) -> None:
    h = Holt(alpha=0.3, beta=0.1, season=len(pattern), gamma=0.3)
    for y in pattern * repeats:
        h.update(y)
    assert h.forecast(horizon).tolist() == pytest.approx(expected, abs=1e-9)


def test_holt_winters_warmup_forecasts_the_mean() -> None:
    h = Holt(season=4)
    h.update(2.0)
    h.update(4.0)
    assert h.forecast(2).tolist() == [3.0, 3.0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"alpha": 1.5}, "alpha"), ({"beta": -0.1}, "beta"), ({"season": -1}, "season")],
    ids=["alpha", "beta", "season"],
)
def test_holt_rejects_bad_parameters(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        Holt(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("actual", "predicted", "want_mape", "want_smape"),
    [
        ([10.0, 20.0], [12.0, 15.0], 22.5, 100 * (2 * 2 / 22 + 2 * 5 / 35) / 2),
        ([0.0, 10.0], [5.0, 10.0], 0.0, 100.0),
        ([0.0, 0.0], [0.0, 0.0], math.nan, 0.0),
        ([4.0], [4.0], 0.0, 0.0),
    ],
    ids=["plain", "zero-actual", "all-zero", "exact"],
)
def test_error_metrics(
    actual: list[float], predicted: list[float], want_mape: float, want_smape: float
) -> None:
    got = mape(actual, predicted)
    assert (math.isnan(got) and math.isnan(want_mape)) or got == pytest.approx(want_mape)
    assert smape(actual, predicted) == pytest.approx(want_smape)


@pytest.mark.parametrize(
    ("compute", "devices", "bucket"),
    [(0, 1, 0), (80, 1, 100), (250, 1, 250), (460, 1, 500), (600, 1, 750), (1000, 1, 1000), (1000, 4, 4000)],
    ids=["cpu", "tiny", "edge", "half", "large", "whole", "four"],
)
def test_size_bucket(compute: int, devices: int, bucket: int) -> None:
    assert size_bucket(compute, devices) == bucket


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("gpu:0.3", RequestClass("gpu", 500, 0)),
        ("npu:0.25,priority=5", RequestClass("npu", 250, 1)),
        ("any:1", RequestClass("any", 1000, 0)),
        ("cpu:2", RequestClass("cpu", 0, 0)),
    ],
    ids=["gpu-share", "npu-high", "any-whole", "cpu"],
)
def test_classify(spec: str, cls: RequestClass) -> None:
    assert classify(parse_request(spec)) == cls


def test_class_forecaster_counts_buckets_and_scores_itself() -> None:
    a = RequestClass("gpu", 500, 0)
    b = RequestClass("gpu", 1000, 1)
    f = ClassForecaster(bucket_s=10.0, alpha=0.5, beta=0.0)
    # Class a: 2 arrivals per bucket for 4 buckets; class b appears in bucket 2 only.
    for k in range(4):
        f.observe(10.0 * k + 1, a, 2)
        if k == 2:
            f.observe(10.0 * k + 2, b)
    f.advance(40.0)
    fc = f.forecast(3)
    assert fc[a].tolist() == pytest.approx([2.0, 2.0, 2.0])
    # b: zeros for buckets 0, 1 (back-filled), then 1, then 0 -> level 0.5 * 0 + 0.5 * (1 + ...)
    assert f.models[b].seen == 4
    assert fc[b][0] >= 0.0
    m, s = f.errors([a])
    assert (m, s) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("series", "season", "want"),
    [
        # Forecast errs 1 and 0 on points 1, 2; the naive forecast (previous value) 2 and 0.
        ([([1.0, 3.0, 3.0], [0.0, 2.0, 3.0])], 1, 0.5),
        # Pooled over series: errors 2 + 1 = 3, naive 2 + 4 = 6.
        ([([0.0, 2.0], [9.0, 0.0]), ([5.0, 1.0], [0.0, 0.0])], 1, 0.5),
        # Season 2: naive says "two buckets ago": |4-1| + |1-4| = 6; forecast errs 0 + 3.
        ([([1.0, 4.0, 4.0, 1.0], [0.0, 0.0, 4.0, 4.0])], 2, 0.5),
        # The forecast that is the naive one scores exactly 1.
        ([([1.0, 5.0, 2.0], [0.0, 1.0, 5.0])], 1, 1.0),
        # No naive error (a constant series): undefined.
        ([([3.0, 3.0, 3.0], [0.0, 3.0, 2.0])], 1, math.nan),
        # Too short for one seasonal-naive point.
        ([([3.0, 4.0], [3.0, 4.0])], 2, math.nan),
    ],
    ids=["one-series", "pooled", "season-2", "naive-itself", "constant", "too-short"],
)
def test_mase_against_seasonal_naive(
    series: list[tuple[list[float], list[float]]], season: int, want: float
) -> None:
    got = mase(series, season)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want)


def test_mase_refuses_a_season_below_one() -> None:
    with pytest.raises(InvalidRequest, match="season"):
        mase([([1.0, 2.0], [1.0, 2.0])], 0)


def test_class_forecaster_mase_uses_the_previous_bucket_without_a_season() -> None:
    a = RequestClass("gpu", 500, 0)
    f = ClassForecaster(bucket_s=1.0, alpha=1.0, beta=0.0)
    for k, n in enumerate((2, 4, 4, 1)):
        f.observe(k + 0.5, a, n)
    f.advance(4.0)
    # alpha 1, beta 0: scored buckets 4, 4, 1 against one-step forecasts 2 (the first
    # value), 6 and 6 (last value plus the first difference, 2). Naive (previous bucket):
    # scored from the second point on, |4 - 4| + |1 - 4| = 3; the forecast's there 2 + 5.
    assert f.mase() == pytest.approx(7 / 3)
    assert math.isnan(f.mase([RequestClass("gpu", 1000, 0)]))  # a class never seen


def test_class_forecaster_rejects_bad_bucket() -> None:
    with pytest.raises(InvalidRequest, match="bucket"):
        ClassForecaster(bucket_s=0.0)
