from __future__ import annotations

import numpy as np
import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.placement import PlacementProfile, place
from flexlab.core.placement.testing import ModelSpec, build_pool
from flexlab.core.request import parse_request
from flexlab.core.snapshot import PoolArrays
from flexlab.core.speed import (
    AdvantageDispatcher,
    ExpectedFinishScore,
    PendingTask,
    ThroughputTable,
    prior_rate,
)


@pytest.mark.parametrize(
    ("model", "rate"),
    [("v100s-32gb", 1.0), ("t4", 0.5), ("a100-80gb", 2.4), ("h100-80gb", 989.0 / 130.0), ("openb-g2", 1.0)],
    ids=["reference", "t4", "a100", "h100", "undisclosed-fallback"],
)
def test_prior_rate_is_peak_over_reference(model: str, rate: float) -> None:
    assert prior_rate(model) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("observations", "want"),
    [
        ([], 2.4),  # cold start: the catalog prior
        ([(10.0, 5.0, 1.0)], 2.0),  # first measurement replaces the prior
        ([(10.0, 5.0, 1.0), (10.0, 2.5, 1.0)], 0.5 * 4.0 + 0.5 * 2.0),  # EWMA
        ([(10.0, 10.0, 0.5)], 2.0),  # half a device: per-device throughput is doubled
    ],
    ids=["prior", "first", "ewma", "share"],
)
def test_throughput_table_learns(observations: list[tuple[float, float, float]], want: float) -> None:
    t = ThroughputTable(alpha=0.5)
    for work, dur, share in observations:
        t.observe("training", "a100-80gb", work=work, duration_s=dur, share=share)
    assert t.rate("training", "a100-80gb") == pytest.approx(want)
    assert t.rate("inference", "a100-80gb") == pytest.approx(2.4)  # other classes untouched
    assert t.expected_s("training", "a100-80gb", 12.0, share=0.5) == pytest.approx(24.0 / want)


@pytest.mark.parametrize(
    ("work", "dur", "share"),
    [(0.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0, 1.5)],
    ids=["work", "dur", "share"],
)
def test_throughput_table_rejects_bad_measurements(work: float, dur: float, share: float) -> None:
    with pytest.raises(InvalidRequest):
        ThroughputTable().observe("x", "t4", work=work, duration_s=dur, share=share)


def test_blind_table_ignores_measurements() -> None:
    t = ThroughputTable(prior=lambda _m: 1.0, learn=False)
    t.observe("x", "t4", work=1.0, duration_s=10.0)
    assert t.rate("x", "t4") == 1.0


def _pool() -> PoolArrays:
    """Host 0: one T4 (device 0); host 1: one A100 (device 1)."""
    return build_pool(
        [("slow", 16000, 65536, ["t4"]), ("fast", 16000, 65536, ["a100-80gb"])],
        [ModelSpec("t4"), ModelSpec("a100-80gb", memory_mib=81920)],
    )


@pytest.mark.parametrize(
    ("ready", "learned", "device"),
    [
        (None, None, 1),  # prior: A100 2.4 vs T4 0.5
        (np.array([0.0, 100.0]), None, 0),  # A100 busy 100 s: 10/2.4+100 > 10/0.5
        (np.array([0.0, 5.0]), None, 1),  # 4.2 + 5 < 20
        (None, 0.25, 0),  # learned: this class runs at 0.25 on the A100
    ],
    ids=["prior", "fast-busy-long", "fast-busy-short", "learned"],
)
def test_expected_finish_score_places_by_finish_time(
    ready: np.ndarray | None, learned: float | None, device: int
) -> None:
    table = ThroughputTable(alpha=1.0)
    if learned is not None:
        table.observe("inference", "a100-80gb", work=learned, duration_s=1.0)
    req = parse_request("gpu:1", workload_class="inference", expected_duration_s=10.0)
    profile = PlacementProfile("eft", ((ExpectedFinishScore(table, ready_at=ready), 1.0),))
    d = place(req, _pool(), profile)
    assert d.ok
    assert d.devices == (device,)


def test_expected_finish_score_values() -> None:
    from flexlab.core.placement.framework import Candidates

    pool = _pool()
    idx = np.array([0, 1], dtype=np.int64)
    cands = Candidates("device", idx, idx, np.array([500, 1000]), np.zeros(2, dtype=np.int64), 1)
    req = parse_request("gpu:0.5", expected_duration_s=12.0)
    s = ExpectedFinishScore(ThroughputTable())
    finish = s.finish_s(request=req, pool=pool, candidates=cands)
    assert finish.tolist() == pytest.approx([12.0 / (0.5 * 0.5), 12.0 / 2.4])
    assert s.score(request=req, pool=pool, candidates=cands).tolist() == pytest.approx(
        [100.0 * (12.0 / 2.4) / 48.0, 100.0]
    )


def _rates(table: dict[tuple[str, str], float]) -> ThroughputTable:
    t = ThroughputTable(alpha=1.0)
    for (cls, model), r in table.items():
        t.observe(cls, model, work=r, duration_s=1.0)
    return t


TWO_CLASSES = {
    ("train", "a100-80gb"): 4.0,
    ("train", "t4"): 0.5,
    ("infer", "a100-80gb"): 1.2,
    ("infer", "t4"): 0.8,
}


def test_advantage_is_rate_over_best_other_model() -> None:
    d = AdvantageDispatcher(_rates(TWO_CLASSES))
    models = ["a100-80gb", "t4"]
    assert d.advantage("train", "a100-80gb", models) == pytest.approx(8.0)
    assert d.advantage("infer", "t4", models) == pytest.approx(0.8 / 1.2)
    assert d.advantage("train", "t4", ["t4"]) == 1.0  # no alternative


@pytest.mark.parametrize(
    ("model", "pending", "busy", "want"),
    [
        # The fast device takes training (8x there) even though the inference task is longer.
        ("a100-80gb", [("infer", 900.0), ("train", 100.0)], {"t4": [0.0]}, 1),
        # The slow device takes inference (it loses least there), the longest first.
        ("t4", [("train", 100.0), ("infer", 50.0), ("infer", 80.0)], {"a100-80gb": [10.0]}, 2),
        # Only training left and the A100 frees in 10 s: 100 / 0.5 = 200 s here vs 10 + 25
        # there, so the T4 stays idle.
        ("t4", [("train", 100.0)], {"a100-80gb": [10.0]}, None),
        # ... but with a backlog ahead of it on the A100 (4 x 400 / 4 = 400 s) it runs here.
        ("t4", [("train", 400.0)] * 4 + [("train", 50.0)], {"a100-80gb": [0.0]}, 4),
    ],
    ids=["fast-takes-training", "slow-takes-inference", "idle-rather-than-slower", "backlog"],
)
def test_dispatcher_picks_by_comparative_advantage(
    model: str, pending: list[tuple[str, float]], busy: dict[str, list[float]], want: int | None
) -> None:
    d = AdvantageDispatcher(_rates(TWO_CLASSES))
    tasks = [PendingTask(c, w) for c, w in pending]
    assert d.pick(model, 0.0, tasks, busy) == want


def test_blind_dispatcher_is_longest_first() -> None:
    d = AdvantageDispatcher(ThroughputTable(prior=lambda _m: 1.0, learn=False))
    tasks = [PendingTask("a", 5.0), PendingTask("b", 9.0), PendingTask("a", 7.0)]
    assert d.pick("t4", 0.0, tasks, {"a100-80gb": [0.0], "t4": [0.0]}) == 1
