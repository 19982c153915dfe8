"""``LivePolicy``: every policy runs live; fgd and flexlab learn the shapes they measure
fragmentation against, from a prior at first and from a rolling window of requests after."""

from __future__ import annotations

import json

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.placement import POLICIES, ShapeDistribution, distribution_for, place
from flexlab.core.placement.live import PRIOR_MIX, LivePolicy, fixed_state
from flexlab.core.placement.testing import ModelSpec, Req, Sel, build_pool, three_t4_hosts
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import PoolArrays

T4 = ModelSpec("t4", granularity=10, memory_mib=16000)


def three_hosts() -> PoolArrays:
    return three_t4_hosts(T4)


def one_host_quarter_used() -> PoolArrays:
    """One host, two T4s; device 0 has 750 milli free, device 1 is whole."""
    pool = build_pool([("h", 32000, 65536, ["t4", "t4"])], [T4])
    pool.dev_compute_free[0] = 750
    pool.dev_mem_free[0] = 12000
    return pool


HALF = Req(compute_milli=500, host_cpu_milli=1000)
QUARTER = Req(compute_milli=250)
THREE_QUARTERS = Req(compute_milli=750)


@pytest.mark.parametrize(
    ("policy", "host", "device"),
    [
        ("firstfit", 0, 0),
        ("bestfit", 2, 4),
        ("fgd", 0, 0),
        ("flexlab", 0, 0),
        ("binpack", 2, 4),
        ("spread", 0, 0),
    ],
    ids=str,
)
def test_every_policy_places_live(policy: str, host: int, device: int) -> None:
    live = LivePolicy(policy)
    live.observe(HALF)
    d = place(HALF, three_hosts(), live.profile)
    assert (d.ok, d.host, d.devices, d.compute_milli) == (True, host, (device,), (500,))
    assert d.status.plugin == policy
    assert live.profile.name == policy
    assert live.profile.host_rank is None
    assert live.observations == 1
    assert live.learns is (policy in ("fgd", "flexlab"))


@pytest.mark.parametrize("policy", ["fgd", "flexlab"])
def test_cold_start_places_by_the_prior_then_by_what_it_learned(policy: str) -> None:
    """Prior (mostly whole devices): a quarter goes to the used device, keeping device 1
    whole. After 300 three-quarter requests (the prior is gone after 200) it goes to the
    whole device: 750 + 750 free serve two of them, 500 + 1000 only one."""
    live = LivePolicy(policy)
    assert live.state()["shapes_total"] == len(PRIOR_MIX)
    assert place(QUARTER, one_host_quarter_used(), live.profile).devices == (0,)
    for _ in range(300):
        live.observe(THREE_QUARTERS)
    assert live.prior_weight_left == 0.0
    assert place(QUARTER, one_host_quarter_used(), live.profile).devices == (1,)


def shapes_of(live: LivePolicy) -> dict[int, float]:
    return {s["compute_milli"]: s["weight"] for s in live.state()["shapes"]}


@pytest.mark.parametrize(
    ("policy", "observed", "expected"),
    [
        # flexlab keeps every shape: 100 observations of 0.3 against 100 left of the prior
        ("flexlab", 100, {300: 0.5, 1000: 0.275, 750: 0.1, 500: 0.075, 250: 0.05}),
        # FGD keeps the typical shapes covering 95%: the quarter's 5% falls out
        ("fgd", 100, {300: 0.5263, 1000: 0.2895, 750: 0.1053, 500: 0.0789}),
        ("flexlab", 150, {300: 0.75, 1000: 0.1375, 750: 0.05, 500: 0.0375, 250: 0.025}),
        ("flexlab", 500, {300: 1.0}),
        ("fgd", 500, {300: 1.0}),
    ],
    ids=["flexlab-half-prior", "fgd-half-prior", "flexlab-quarter-prior", "flexlab-learned", "fgd-learned"],
)
def test_the_distribution_follows_the_requests(
    policy: str, observed: int, expected: dict[int, float]
) -> None:
    live = LivePolicy(policy, rebuild_every=1)
    for _ in range(observed):
        live.observe(Req(compute_milli=300))
    assert shapes_of(live) == pytest.approx(expected, abs=1e-4)
    assert live.prior_weight_left == max(0.0, 200.0 - observed)


def test_the_window_rolls() -> None:
    live = LivePolicy("flexlab", window=50, prior_weight=0, rebuild_every=1)
    for _ in range(50):
        live.observe(Req(compute_milli=300))
    for _ in range(30):
        live.observe(Req(compute_milli=600))
    assert shapes_of(live) == pytest.approx({300: 0.4, 600: 0.6})
    s = live.state()
    assert (s["observations"], s["in_window"], s["window"]) == (80, 50, 50)
    for _ in range(50):
        live.observe(Req(compute_milli=600))
    assert shapes_of(live) == {600: 1.0}
    # the window holds one object per distinct shape, and forgets a shape that left it
    assert len({id(x) for x in live._shapes}) == 1
    assert list(live._interned) == [live._shapes[0]]


def test_flexlab_counts_host_memory_and_models_fgd_does_not() -> None:
    a100 = Sel(models=frozenset({"a100-80gb"}))
    reqs = [Req(compute_milli=500, host_memory_mib=m, selector=a100) for m in (1024, 2048, 2048, 4096)]
    flex = LivePolicy("flexlab", prior_weight=0, rebuild_every=1)
    fgd = LivePolicy("fgd", prior_weight=0, rebuild_every=1)
    for r in reqs:
        flex.observe(r)
        fgd.observe(r)
    assert sorted((s["host_memory_mib"], s["weight"]) for s in flex.state()["shapes"]) == [
        (1024, 0.25),
        (2048, 0.5),
        (4096, 0.25),
    ]
    assert [(s["host_memory_mib"], s["models"], s["weight"]) for s in fgd.state()["shapes"]] == [
        (0, ["a100-80gb"], 1.0)
    ]


def test_rebuilds_are_paced() -> None:
    """Every ``rebuild_every`` observations, or ``new_shape_gap`` after a new shape."""
    live = LivePolicy("flexlab", rebuild_every=100, new_shape_gap=10)
    assert live.rebuilds == 1  # the prior
    for _ in range(99):
        live.observe(Req(compute_milli=1000))  # a shape of the prior: nothing new
    assert live.rebuilds == 1
    live.observe(Req(compute_milli=1000))
    assert live.rebuilds == 2
    live.observe(Req(compute_milli=300))  # new: taken in 10 observations after the rebuild
    for _ in range(8):
        live.observe(Req(compute_milli=1000))
    assert live.rebuilds == 2
    assert 300 not in shapes_of(live)
    live.observe(Req(compute_milli=1000))
    assert live.rebuilds == 3
    assert 300 in shapes_of(live)
    profile = live.profile
    live.rebuild()
    assert live.profile is profile  # the pool may keep a reference


def test_policies_that_learn_nothing_only_count() -> None:
    live = LivePolicy("binpack")
    for _ in range(5):
        live.observe(HALF)
    s = live.state()
    assert (
        s["name"],
        s["learns"],
        s["observations"],
        s["in_window"],
        s["shapes"],
        s["prior_weight_left"],
    ) == (
        "binpack",
        False,
        5,
        0,
        [],
        0.0,
    )
    assert s["description"] == POLICIES["binpack"]


def test_state_is_json_and_fixed_state_has_the_same_fields() -> None:
    live = LivePolicy("flexlab")
    live.observe(SliceRequest(compute_milli=250, host_cpu_milli=2000, host_memory_mib=8192))
    s = json.loads(json.dumps(live.state()))
    assert s["name"] == "flexlab"
    assert s["description"] == POLICIES["flexlab"]
    assert (s["window"], s["observations"], s["prior_weight"], s["prior_weight_left"]) == (
        2000,
        1,
        200.0,
        199.0,
    )
    assert s["shapes"][0] == {
        "compute_milli": 1000,
        "devices": 1,
        "host_cpu_milli": 0,
        "host_memory_mib": 0,
        "models": [],
        "weight": 0.55,
    }
    assert set(fixed_state("binpack")) == set(s)
    assert fixed_state("binpack")["description"] == POLICIES["binpack"]


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"name": "worstfit"}, "policy", "worstfit"),
        ({"name": ""}, "policy", ""),
        ({"name": "flexlab", "window": 0}, "policy-window", 0),
        ({"name": "fgd", "prior_weight": -1}, "policy-prior-weight", -1),
    ],
    ids=["unknown", "empty", "no-window", "negative-prior"],
)
def test_bad_arguments_name_the_field_and_what_is_allowed(
    kwargs: dict[str, object], field: str, value: object
) -> None:
    with pytest.raises(InvalidRequest) as info:
        LivePolicy(**kwargs)  # type: ignore[arg-type]
    assert (info.value.field, info.value.value) == (field, value)
    if field == "policy":
        assert info.value.allowed == ", ".join(POLICIES)
        assert "fgd, flexlab, binpack" in str(info.value)


def test_names_are_case_insensitive() -> None:
    assert LivePolicy(" FlexLab ").name == "flexlab"


@pytest.mark.parametrize("policy", ["fgd", "flexlab"])
def test_distribution_for_counts_as_before(policy: str) -> None:
    """``distribution_for`` (the benchmark's) and the live counts agree with
    ``ShapeDistribution.from_requests``, which the benchmark used before."""
    reqs = [
        Req(compute_milli=c, host_cpu_milli=cpu, host_memory_mib=m)
        for c, cpu, m in [(500, 1000, 10), (500, 1000, 20), (1000, 4000, 10), (250, 0, 0)] * 3 + [(100, 0, 0)]
    ]
    memory = "exact" if policy == "flexlab" else "ignore"
    coverage = 1.0 if policy == "flexlab" else 0.95
    assert distribution_for(policy, reqs) == ShapeDistribution.from_requests(
        reqs, coverage=coverage, memory=memory
    )
    live = LivePolicy(policy, prior_weight=0, rebuild_every=1)
    for r in reqs:
        live.observe(r)
    assert live.distribution == distribution_for(policy, reqs)


@pytest.mark.parametrize(
    ("spec", "milli", "models"),
    [
        ("a100:1g.10gb", 142, ["a100-40gb", "a100-80gb"]),  # 1 of 7 MIG slices
        ("a100:3g.40gb", 428, ["a100-40gb", "a100-80gb"]),
        ("npu:vir05_1c_16g", 250, []),  # 5 of the 910B3's 20 AI cores
    ],
    ids=["mig-1g", "mig-3g", "vnpu"],
)
def test_profile_requests_count_as_their_compute_share(spec: str, milli: int, models: list[str]) -> None:
    from flexlab.core.request import parse_request

    live = LivePolicy("fgd", prior_weight=0, rebuild_every=1)
    live.observe(parse_request(spec))
    [shape] = live.state()["shapes"]
    assert (shape["compute_milli"], shape["devices"], shape["models"], shape["weight"]) == (
        milli,
        1,
        models,
        1.0,
    )
