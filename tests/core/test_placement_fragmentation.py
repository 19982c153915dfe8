"""Fragmentation: the vectorised, incremental model against a direct transcription of the
definition, on random pools and random placement sequences (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexlab.core.placement import (
    FGDScore,
    FlexlabScore,
    FragmentationModel,
    Shape,
    ShapeDistribution,
    apply,
    make_profile,
    place,
)
from flexlab.core.placement.framework import Candidates
from flexlab.core.placement.testing import ModelSpec, Req, Sel, build_pool
from flexlab.core.snapshot import PoolArrays

MODELS = (ModelSpec("g2", granularity=1), ModelSpec("t4", granularity=1))


def direct_frag(pool: PoolArrays, host: int, dist: ShapeDistribution) -> float:
    """FGD's node fragmentation, written as the paper states it."""
    devs = range(int(pool.host_dev_start[host]), int(pool.host_dev_start[host + 1]))
    left = [int(pool.dev_compute_free[d]) for d in devs]
    models = [pool.model_keys[pool.dev_model[d]] for d in devs]
    cpu = int(pool.host_cpu_free[host])
    total = sum(left)
    frag = 0.0
    for shape, w in zip(dist.shapes, dist.weights, strict=True):
        if shape.devices == 0:
            frag += w * total  # a CPU-only request never uses accelerator compute
            continue
        usable = [
            lft >= shape.compute_milli and (not shape.models or m in shape.models)
            for lft, m in zip(left, models, strict=True)
        ]
        if sum(usable) >= shape.devices and cpu >= shape.host_cpu_milli:
            frag += w * sum(lft for lft, ok in zip(left, usable, strict=True) if not ok)
        else:
            frag += w * total
    return frag


shapes = st.builds(
    Shape,
    host_cpu_milli=st.sampled_from([0, 2000, 8000, 12000]),
    compute_milli=st.sampled_from([110, 250, 470, 810, 1000]),
    devices=st.sampled_from([1, 1, 1, 2, 4]),
    models=st.sampled_from([frozenset(), frozenset({"t4"}), frozenset({"g2"})]),
).map(
    lambda s: (
        s if s.compute_milli == 1000 or s.devices == 1 else Shape(s.host_cpu_milli, 1000, s.devices, s.models)
    )
)
cpu_shape = st.just(Shape(4000, 0, 0))


@st.composite
def distributions(draw: st.DrawFn) -> ShapeDistribution:
    chosen = draw(st.lists(st.one_of(shapes, cpu_shape), min_size=1, max_size=5, unique=True))
    weights = draw(st.lists(st.floats(0.05, 1.0), min_size=len(chosen), max_size=len(chosen)))
    total = sum(weights)
    return ShapeDistribution(tuple(chosen), tuple(w / total for w in weights))


@st.composite
def pools(draw: st.DrawFn) -> PoolArrays:
    n_hosts = draw(st.integers(1, 5))
    hosts = []
    for h in range(n_hosts):
        n = draw(st.sampled_from([1, 2, 4, 8]))
        model = draw(st.sampled_from(["g2", "t4"]))
        hosts.append((f"h{h}", draw(st.sampled_from([8000, 16000, 96000])), 1 << 20, [model] * n))
    pool = build_pool(hosts, MODELS)
    frees = draw(
        st.lists(st.sampled_from([0, 60, 190, 530, 1000]), min_size=pool.n_devices, max_size=pool.n_devices)
    )
    pool.dev_compute_free[:] = frees
    pool.host_cpu_free[:] = [draw(st.integers(0, int(c))) for c in pool.host_cpu_total]
    return pool


@settings(max_examples=60, deadline=None)
@given(pool=pools(), dist=distributions())
def test_host_fragmentation_matches_the_definition(pool: PoolArrays, dist: ShapeDistribution) -> None:
    model = FragmentationModel(dist)
    model.sync(pool)
    for h in range(pool.n_hosts):
        assert model.host_frag[h] == pytest.approx(direct_frag(pool, h, dist), abs=1e-6)
    assert model.cluster() == pytest.approx(
        sum(direct_frag(pool, h, dist) for h in range(pool.n_hosts)), abs=1e-6
    )


@settings(max_examples=60, deadline=None)
@given(
    pool=pools(),
    dist=distributions(),
    comp=st.sampled_from([110, 470, 810, 1000]),
    cpu=st.sampled_from([0, 3000]),
)
def test_device_delta_matches_recomputing_after_the_placement(
    pool: PoolArrays, dist: ShapeDistribution, comp: int, cpu: int
) -> None:
    fgd = FGDScore(dist)
    devs = np.arange(pool.n_devices)
    hosts = pool.dev_host.astype(np.int64)
    cands = Candidates("device", devs, hosts, np.full(devs.size, comp), np.zeros(devs.size, np.int64), 1)
    deltas = fgd.delta(request=Req(compute_milli=comp, host_cpu_milli=cpu), pool=pool, candidates=cands)
    for d in devs:
        h = int(hosts[d])
        if pool.dev_compute_free[d] < comp or pool.host_cpu_free[h] < cpu:
            continue
        before = direct_frag(pool, h, dist)
        pool.dev_compute_free[d] -= comp
        pool.host_cpu_free[h] -= cpu
        after = direct_frag(pool, h, dist)
        pool.dev_compute_free[d] += comp
        pool.host_cpu_free[h] += cpu
        assert deltas[d] == pytest.approx(before - after, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    pool=pools(), dist=distributions(), order=st.lists(st.sampled_from([0, 1, 2, 3]), min_size=1, max_size=25)
)
def test_incremental_caches_equal_a_fresh_computation(
    pool: PoolArrays, dist: ShapeDistribution, order: list[int]
) -> None:
    """Placing a sequence through a long-lived profile gives the same deltas as a new one."""
    menu = [
        Req(compute_milli=470, host_cpu_milli=1000),
        Req(compute_milli=1000, host_cpu_milli=4000),
        Req(compute_milli=1000, devices=2, host_cpu_milli=2000),
        Req(compute_milli=0, host_cpu_milli=3000),
    ]
    live = make_profile("flexlab", distribution=dist)
    for i in order:
        d = place(menu[i], pool, live)
        if d.ok:
            apply(pool, d)
        fresh = make_profile("flexlab", distribution=dist)
        for req in menu:
            a, b = place(req, pool, live), place(req, pool, fresh)
            assert (a.host, a.devices) == (b.host, b.devices)
            assert a.score == pytest.approx(b.score)


def test_distribution_keeps_the_most_frequent_shapes_up_to_coverage() -> None:
    a, b, c, d = (Shape(1000, m, 1) for m in (100, 200, 300, 400))
    dist = ShapeDistribution.from_counts({a: 50, b: 30, c: 15, d: 5}, coverage=0.95)
    assert dist.shapes == (a, b, c)
    assert dist.weights == pytest.approx((50 / 95, 30 / 95, 15 / 95))
    assert ShapeDistribution.from_counts({}, coverage=0.95).shapes == ()


def test_distribution_from_requests_memory_modes() -> None:
    reqs = [
        Req(compute_milli=500, host_cpu_milli=1000, host_memory_mib=1000),
        Req(compute_milli=500, host_cpu_milli=1000, host_memory_mib=3000),
        Req(compute_milli=0, host_cpu_milli=2000, host_memory_mib=500),
        Req(selector=Sel(models=frozenset({"t4"})), compute_milli=1000, devices=2, host_cpu_milli=4000),
    ]
    ignore = ShapeDistribution.from_requests(reqs, coverage=1.0)
    assert ignore.shapes[0] == Shape(1000, 500, 1)
    assert ignore.weights[0] == pytest.approx(0.5)
    mean = ShapeDistribution.from_requests(reqs, coverage=1.0, memory="mean")
    assert mean.shapes[0] == Shape(1000, 500, 1, frozenset(), 2000)
    exact = ShapeDistribution.from_requests(reqs, coverage=1.0, memory="exact")
    assert len(exact) == 4
    acc = mean.accelerator_only()
    assert [s.devices for s in acc.shapes] == [1, 2]
    assert acc.weights == pytest.approx((2 / 3, 1 / 3))
    assert Shape(4000, 1000, 2, frozenset({"t4"})) in ignore.shapes


def test_changing_the_distribution_resets_the_caches() -> None:
    pool = build_pool(
        [("a", 8000, 65536, ["t4"]), ("b", 8000, 65536, ["t4"])], [ModelSpec("t4", granularity=1)]
    )
    pool.dev_compute_free[0] = 600
    score = FlexlabScore(ShapeDistribution((Shape(0, 500, 1),), (1.0,)))
    cands = Candidates("device", np.arange(2), np.arange(2), np.full(2, 500), np.zeros(2, np.int64), 1)
    req = Req(compute_milli=500)
    assert score.delta(request=req, pool=pool, candidates=cands).tolist() == [-100.0, 0.0]
    score.distribution = ShapeDistribution((Shape(0, 600, 1),), (1.0,))
    assert score.delta(request=req, pool=pool, candidates=cands).tolist() == [-100.0, -500.0]


def test_merging_memory_variants_and_taking_the_top() -> None:
    exact = ShapeDistribution(
        (Shape(1000, 500, 1, frozenset(), 1000), Shape(1000, 500, 1, frozenset(), 4000), Shape(2000, 0, 0)),
        (0.5, 0.25, 0.25),
    )
    mean = exact.merged(memory="mean")
    assert mean.shapes == (Shape(1000, 500, 1, frozenset(), 2000), Shape(2000, 0, 0))
    assert mean.weights == pytest.approx((0.75, 0.25))
    assert exact.merged(memory="ignore").shapes[0] == Shape(1000, 500, 1)
    assert exact.merged(memory="exact") is exact
    assert mean.top(0.7).shapes == (Shape(1000, 500, 1, frozenset(), 2000),)
    assert mean.top(0.7).weights == (1.0,)
