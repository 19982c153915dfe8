"""Each policy's choice on small pools, with the scores worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flexlab.core.placement import (
    FGDScore,
    FlexlabScore,
    ModelPressure,
    PlacementProfile,
    Shape,
    ShapeDistribution,
    make_profile,
    place,
)
from flexlab.core.placement.framework import Candidates
from flexlab.core.placement.scores import BestFitScore
from flexlab.core.placement.testing import ModelSpec, Req, Sel, build_pool, three_t4_hosts
from flexlab.core.snapshot import PoolArrays

T4 = ModelSpec("t4", granularity=1, memory_mib=15360)
A10 = ModelSpec("a10", granularity=1, memory_mib=23028)


def three_hosts() -> PoolArrays:
    return three_t4_hosts(T4)


def one_shape(
    cpu: int, compute: int, devices: int = 1, models: frozenset[str] = frozenset()
) -> ShapeDistribution:
    return ShapeDistribution((Shape(cpu, compute, devices, models),), (1.0,))


HALF = Req(compute_milli=500, host_cpu_milli=1000)


@pytest.mark.parametrize(
    ("policy", "host", "device"),
    [("firstfit", 0, 0), ("bestfit", 2, 4), ("binpack", 2, 4), ("spread", 0, 0)],
    ids=["firstfit-first-host", "bestfit-tightest-host", "binpack-fullest", "spread-emptiest"],
)
def test_fresh_pool_choice(policy: str, host: int, device: int) -> None:
    d = place(HALF, three_hosts(), make_profile(policy))
    assert (d.host, d.devices, d.compute_milli) == (host, (device,), (500,))


def test_bestfit_score_values() -> None:
    pool = three_hosts()
    cands = Candidates(
        "device", np.arange(6), pool.dev_host.astype(np.int64), np.full(6, 500), np.zeros(6, np.int64), 1
    )
    raw = BestFitScore().score(request=HALF, pool=pool, candidates=cands)
    # 100 * (1 - (0.5 * cpu_left / 32000 + 0.5 * gpu_left / 2000)), gpu_left = 1500 everywhere
    expected = [
        100 * (1 - (0.5 * c / 32000 + 0.5 * 1500 / 2000)) for c in (31000, 31000, 15000, 15000, 7000, 7000)
    ]
    assert raw.tolist() == pytest.approx(expected)
    assert BestFitScore(quantize=True).score(request=HALF, pool=pool, candidates=cands).tolist() == [
        14,
        14,
        39,
        39,
        51,
        51,
    ]


def test_bestfit_and_binpack_pick_the_tightest_device_spread_the_emptiest() -> None:
    pool = three_hosts()
    pool.dev_compute_free[4] = 600  # the small host's first T4 is partly used
    assert place(HALF, pool, make_profile("bestfit")).devices == (4,)
    assert place(HALF, pool, make_profile("binpack")).devices == (4,)
    assert place(HALF, pool, make_profile("spread")).devices == (0,)
    # first-fit keeps node-list order; inside the host, the tightest device that fits
    pool.dev_compute_free[1] = 700
    assert place(HALF, pool, make_profile("firstfit")).devices == (1,)


def two_single_gpu_hosts(free0: int) -> PoolArrays:
    pool = build_pool([("a", 8000, 65536, ["t4"]), ("b", 8000, 65536, ["t4"])], [T4])
    pool.dev_compute_free[0] = free0
    return pool


@pytest.mark.parametrize(
    ("typical", "host", "deltas"),
    [
        # next request 500: a 100 sliver on host a is a fragment; host b stays usable
        (500, 1, [-100.0, 0.0]),
        # next request 600: host a's 600 is exactly used; host b would keep an unusable 500
        (600, 0, [-100.0, -500.0]),
    ],
    ids=["typical-500-keeps-a", "typical-600-fills-a"],
)
def test_fgd_follows_the_distribution(typical: int, host: int, deltas: list[float]) -> None:
    pool = two_single_gpu_hosts(600)
    fgd = FGDScore(one_shape(0, typical))
    req = Req(compute_milli=500)
    cands = Candidates("device", np.arange(2), np.arange(2), np.full(2, 500), np.zeros(2, np.int64), 1)
    assert fgd.delta(request=req, pool=pool, candidates=cands).tolist() == deltas
    quantized = FGDScore(one_shape(0, typical), quantize=True).score(request=req, pool=pool, candidates=cands)
    assert quantized.tolist() == [math.floor(100 / (1 + math.exp(-d / 1000))) for d in deltas]
    profile = PlacementProfile(
        "fgd", ((FGDScore(one_shape(0, typical), quantize=True), 1.0),), device_choice="first"
    )
    assert place(req, pool, profile).host == host


def test_fgd_picks_the_device_that_fragments_least_inside_a_host() -> None:
    pool = build_pool([("a", 8000, 65536, ["t4", "t4"])], [T4])
    pool.dev_compute_free[1] = 600
    profile = make_profile("fgd", distribution=one_shape(0, 600))
    # on device 0 (1000 -> 500) a 500 sliver is left; on device 1 (600 -> 100) only 100
    assert place(Req(compute_milli=500), pool, profile).devices == (1,)


@pytest.mark.parametrize(("rank", "host"), [([0, 1], 0), ([1, 0], 1)], ids=["rank-a-first", "rank-b-first"])
def test_fgd_ties_follow_the_host_rank(rank: list[int], host: int) -> None:
    pool = two_single_gpu_hosts(1000)
    profile = make_profile("fgd", distribution=one_shape(0, 500), host_rank=np.array(rank))
    assert place(Req(compute_milli=500), pool, profile).host == host


def test_flexlab_sees_cpu_stranding_that_fgd_does_not() -> None:
    """A CPU-only request: host 0 (24 cores) could feed two 12-core GPU requests and would
    keep only one; host 1 (100 cores) loses nothing. FGD sees no difference."""
    pool = build_pool([("lean", 24000, 1 << 20, ["t4", "t4"]), ("rich", 100000, 1 << 20, ["t4", "t4"])], [T4])
    dist = one_shape(12000, 1000)
    req = Req(compute_milli=0, host_cpu_milli=12000)
    cands = Candidates("host", np.arange(2), np.arange(2), np.zeros(2, np.int64), np.zeros(2, np.int64), 0)
    assert FGDScore(dist).delta(request=req, pool=pool, candidates=cands).tolist() == [0.0, 0.0]
    # usable after on host 0: 2000 - 0.1 * (2000 - 1 * 1000) = 1900 -> fragment 100
    assert FlexlabScore(dist).delta(request=req, pool=pool, candidates=cands).tolist() == pytest.approx(
        [-100.0, 0.0]
    )
    assert place(req, pool, make_profile("fgd", distribution=dist)).host == 0
    assert place(req, pool, make_profile("flexlab", distribution=dist)).host == 1


def test_flexlab_leaves_scarce_models_to_the_requests_that_need_them() -> None:
    pool = build_pool(
        [("t4s", 64000, 1 << 20, ["t4", "t4"]), ("a10s", 64000, 1 << 20, ["a10", "a10"])], [T4, A10]
    )
    dist = ShapeDistribution(
        (Shape(1000, 1000, 1, frozenset({"t4"})), Shape(1000, 1000, 1)),
        (0.5, 0.5),
    )
    pressure = ModelPressure(dist)
    # half the demand needs t4, which holds half the free capacity: 0.5 * 4000 / 2000
    assert pressure.pressure(pool).tolist() == [1.0, 0.0]
    pool.dev_compute_free[0] = 0
    assert pressure.pressure(pool).tolist() == [1.5, 0.0]  # 0.5 * 3000 / 1000: it grows as t4 fills
    pool.dev_compute_free[0] = 1000
    req = Req(compute_milli=1000, host_cpu_milli=1000)
    score = FlexlabScore(dist, reservation=0.5)
    cands = Candidates(
        "device", np.arange(4), pool.dev_host.astype(np.int64), np.full(4, 1000), np.zeros(4, np.int64), 1
    )
    # a10: the t4-only shape's fragment (all of an a10 host) shrinks by 1000 * 0.5;
    # t4: nothing changes, but the reservation costs 0.5 * 1.0 * 1000
    assert score.delta(request=req, pool=pool, candidates=cands).tolist() == pytest.approx(
        [-500, -500, 500, 500]
    )
    assert place(req, pool, make_profile("flexlab", distribution=dist)).host == 1
    t4_only = Req(selector=Sel(models=frozenset({"t4"})), compute_milli=1000, host_cpu_milli=1000)
    assert place(t4_only, pool, make_profile("flexlab", distribution=dist)).host == 0


def test_flexlab_keeps_whole_hosts_for_multi_device_requests() -> None:
    pool = build_pool(
        [("eight-a", 96000, 1 << 20, ["t4"] * 8), ("eight-b", 96000, 1 << 20, ["t4"] * 8)], [T4]
    )
    pool.dev_compute_free[0] = 0  # host a already runs something
    dist = ShapeDistribution((Shape(12000, 1000, 1), Shape(96000, 1000, 8)), (0.9, 0.1))
    d = place(Req(compute_milli=1000, host_cpu_milli=12000), pool, make_profile("flexlab", distribution=dist))
    assert d.host == 0  # breaking host b would cost the 8-device shape all of it
    d8 = place(
        Req(compute_milli=1000, devices=8, host_cpu_milli=96000),
        pool,
        make_profile("flexlab", distribution=dist),
    )
    assert (d8.host, d8.devices) == (1, tuple(range(8, 16)))


def test_policies_need_a_distribution_and_known_names() -> None:
    with pytest.raises(ValueError, match="needs a distribution"):
        make_profile("fgd")
    with pytest.raises(ValueError, match="allowed: firstfit"):
        make_profile("worstfit")


@pytest.mark.parametrize("policy", ["firstfit", "bestfit", "fgd", "flexlab", "binpack", "spread"])
def test_every_policy_scores_within_0_and_100(policy: str) -> None:
    pool = three_hosts()
    pool.dev_compute_free[[1, 4]] = [300, 800]
    pool.host_cpu_free[2] = 1500
    dist = ShapeDistribution((Shape(1000, 500, 1), Shape(4000, 1000, 1), Shape(2000, 0, 0)), (0.5, 0.3, 0.2))
    profile = make_profile(policy, distribution=dist)
    for req in (HALF, Req(compute_milli=1000, devices=2), Req(compute_milli=0, host_cpu_milli=500)):
        d = place(req, pool, profile)
        assert d.ok
        assert 0.0 <= d.score <= 100.0


def large_and_standard_hosts() -> tuple[PoolArrays, ShapeDistribution]:
    """Two 128-core hosts are the only ones an 8-device, 120-core request fits; two 96-core
    hosts take only the common one-device request."""
    pool = build_pool(
        [
            ("big-0", 128000, 786432, ["t4"] * 8),
            ("big-1", 128000, 786432, ["t4"] * 8),
            ("std-2", 96000, 393216, ["t4"] * 8),
            ("std-3", 96000, 393216, ["t4"] * 8),
        ],
        [T4],
    )
    small = Shape(12000, 1000, 1, frozenset(), 32768)
    large = Shape(120000, 1000, 8, frozenset(), 640000)
    return pool, ShapeDistribution((small, large), (0.95, 0.05))


SMALL = Req(compute_milli=1000, host_cpu_milli=12000, host_memory_mib=32768)
LARGE = Req(compute_milli=1000, devices=8, host_cpu_milli=120000, host_memory_mib=640000)


def test_flexlab_reserves_the_only_hosts_that_fit_rare_large_requests() -> None:
    """With no headroom a common one-device request goes to the 96-core hosts at once
    (first-fit would not)."""
    pool, dist = large_and_standard_hosts()
    score = FlexlabScore(dist, headroom=0)
    per_gpu, per_cpu = score._capacity.cost_per_class(pool)
    # classes sorted by (cpu, memory, devices): the 96-core hosts first
    assert score._capacity.host_class.tolist() == [1, 1, 0, 0]
    # GPU: the large shape's share of GPU demand (400 of 1350) x free 32000 / free on big hosts 16000
    assert per_gpu.tolist() == pytest.approx([0.0, 400 / 1350 * 2])
    # CPU: its share of CPU demand (6000 of 17400) x 448000 / 256000, at 32000 GPU milli per 448000 CPU milli
    assert per_cpu.tolist() == pytest.approx([0.0, 6000 / 17400 * 448 / 256 * 32 / 448])
    flexlab = PlacementProfile("flexlab", ((score, 1.0),), device_choice="tightest")
    assert place(SMALL, pool, make_profile("firstfit")).host == 0
    assert place(SMALL, pool, flexlab).host == 2
    assert place(LARGE, pool, flexlab).host == 0


def test_host_reservation_waits_until_the_large_hosts_are_scarce() -> None:
    """The default headroom (10) holds nothing back while the large hosts keep more than a
    tenth of the free capacity; past that the cost grows as they fill."""
    pool, dist = large_and_standard_hosts()
    score = FlexlabScore(dist)
    assert score.headroom == 10.0
    per_gpu, per_cpu = score._capacity.cost_per_class(pool)
    assert per_gpu.tolist() == [0.0, 0.0]  # free 32000 / 16000 on big hosts = 2 < 10
    assert per_cpu.tolist() == [0.0, 0.0]
    pool.dev_compute_free[:15] = 0  # one device left free on the big hosts
    per_gpu, _ = score._capacity.cost_per_class(pool)
    # free 17000, of it 1000 where the large shape fits: 400 / 1350 x (17 - 10)
    assert per_gpu.tolist() == pytest.approx([0.0, 400 / 1350 * 7])
    with pytest.raises(ValueError, match="headroom must be >= 0"):
        FlexlabScore(dist, headroom=-1)


def test_flexlab_scores_are_integers_unless_asked_otherwise() -> None:
    pool, dist = large_and_standard_hosts()
    cands = Candidates(
        "device", np.arange(32), pool.dev_host.astype(np.int64), np.full(32, 1000), np.zeros(32, np.int64), 1
    )
    exact = FlexlabScore(dist, headroom=0, quantize=False).score(request=SMALL, pool=pool, candidates=cands)
    cut = FlexlabScore(dist, headroom=0).score(request=SMALL, pool=pool, candidates=cands)
    assert cut.tolist() == np.floor(exact).tolist()
    assert (exact[:16] != np.floor(exact[:16])).all()  # the big hosts' reservation cost
    assert cut[:16].max() < cut[16:].min()
