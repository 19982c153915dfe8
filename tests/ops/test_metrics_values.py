"""The pool's metric values, computed without Dask or Prometheus (``flexlab.core.metrics``)."""

from __future__ import annotations

import math

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.metrics import (
    Family,
    HistogramCounter,
    HistogramValue,
    MetricLimits,
    MetricsRecorder,
    RuntimeFacts,
    collect,
)
from flexlab.core.metrics.pool import OTHER_OWNER
from flexlab.core.pool import SlicePool
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

GIB = 1 << 30


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def values(families: list[Family], name: str) -> dict[tuple[tuple[str, str], ...], float | HistogramValue]:
    """Samples of family ``name`` keyed by their (label, value) pairs."""
    (fam,) = [f for f in families if f.name == name]
    return {tuple(zip(fam.labels, lab, strict=True)): v for lab, v in fam.samples}


def one(families: list[Family], name: str, **labels: str) -> float:
    """The value of one sample; the labels given must pick exactly one."""
    hits = [
        v for k, v in values(families, name).items() if all(dict(k).get(a) == b for a, b in labels.items())
    ]
    assert len(hits) == 1, f"{name} {labels}: {hits}"
    assert isinstance(hits[0], float)
    return hits[0]


@pytest.fixture
def pool() -> tuple[SlicePool, Clock]:
    """Two T4 on h1, a V100S on h2; alice holds two half T4 leases (one active, 40% busy),
    bob a whole T4 whose worker starts, a task holds a quarter of the V100S, carol waits."""
    clock = Clock()
    p = SlicePool(policy="firstfit", carve_on_register=False, clock=clock)
    p.register_host(HostSpec("h1", 32000, 131072, (DeviceSpec("t4", 0), DeviceSpec("t4", 1))))
    p.register_host(HostSpec("h2", 32000, 131072, (DeviceSpec("v100s-32gb", 0),)))
    a1 = p.create_lease(parse_request("gpu:0.5"), owner="alice", ttl_s=3600)
    p.create_lease(parse_request("gpu:0.5"), owner="alice", ttl_s=3600)
    p.create_lease(parse_request("gpu:1"), owner="bob", ttl_s=3600)
    clock.t += 2.0
    p.slice_ready(a1.slice_id or "", "tcp://w-a1")
    p.telemetry(a1.slice_id or "", utilisation=0.4, memory_used_mib=1024)
    assert p.bind("task-1", parse_request("gpu:0.25")).status == "bound"
    p.create_lease(parse_request("gpu:1"), owner="carol", ttl_s=3600)
    return p, clock


def test_devices_owners_and_leases(pool: tuple[SlicePool, Clock]) -> None:
    p, clock = pool
    fams = collect(p, MetricsRecorder(started=0.0), now=clock.t)
    t4 = {"model": "t4", "vendor": "nvidia"}
    # alice's two halves share t4#0, bob's whole lease holds t4#1, the task a quarter of the V100S
    assert one(fams, "flexlab_device_compute_allocated", device="h1/t4#0", **t4) == 1.0
    assert one(fams, "flexlab_device_compute_allocated", device="h1/t4#1", **t4) == 1.0
    assert one(fams, "flexlab_device_compute_allocated", device="h2/v100s-32gb#0") == 0.25
    assert one(fams, "flexlab_device_compute_used", device="h1/t4#0") == pytest.approx(0.2)
    assert one(fams, "flexlab_device_memory_used_bytes", device="h1/t4#0") == 1024 * (1 << 20)
    assert one(fams, "flexlab_device_memory_capacity_bytes", device="h1/t4#0") == 16 * GIB
    assert sum(values(fams, "flexlab_device_compute_capacity").values()) == 3.0  # type: ignore[arg-type]
    assert one(fams, "flexlab_owner_compute_leased", owner="alice") == 1.0
    assert one(fams, "flexlab_owner_compute_busy", owner="alice") == pytest.approx(0.2)
    assert one(fams, "flexlab_owner_compute_leased", owner="bob") == 1.0
    assert "carol" not in {dict(k)["owner"] for k in values(fams, "flexlab_owner_compute_leased")}
    states = {dict(k)["state"]: v for k, v in values(fams, "flexlab_leases").items()}
    assert states == {"pending": 3.0, "active": 1.0, "recovering": 0.0, "released": 0.0, "expired": 0.0}
    assert one(fams, "flexlab_owner_leases", owner="carol", state="pending") == 1.0
    assert one(fams, "flexlab_hosts") == 2.0


def test_waiting_work_has_structured_reasons(pool: tuple[SlicePool, Clock]) -> None:
    p, clock = pool
    rec = MetricsRecorder(started=0.0)
    rec.observe(p, clock.t)
    p.bind("task-big", parse_request("t4:1"))  # both T4 are held: it waits
    clock.t += 30.0
    rec.observe(p, clock.t, plain_waiting=3)
    fams = collect(p, rec, now=clock.t, facts=RuntimeFacts(plain_waiting=3))
    waiting = {
        (dict(k)["kind"], dict(k)["reason"]): v for k, v in values(fams, "flexlab_waiting_work").items()
    }
    assert waiting == {
        ("lease", "WORKER_STARTING"): 2.0,  # alice's second and bob's: carved, workers starting
        ("lease", "INSUFFICIENT_COMPUTE"): 1.0,  # carol's: nothing has a whole device free
        ("task", "INSUFFICIENT_COMPUTE"): 1.0,
        ("plain_task", "NO_OPEN_WORKER"): 3.0,
    }
    oldest = {dict(k)["kind"]: v for k, v in values(fams, "flexlab_waiting_oldest_seconds").items()}
    # leases were seen waiting at the first pass, the task and the plain tasks at the second
    assert oldest == {"lease": 30.0, "task": 0.0, "plain_task": 0.0}


def test_owner_label_is_capped_with_the_rest_summed(pool: tuple[SlicePool, Clock]) -> None:
    p, clock = pool
    fams = collect(p, MetricsRecorder(started=0.0), now=clock.t, limits=MetricLimits(max_owners=1))
    leased = {dict(k)["owner"]: v for k, v in values(fams, "flexlab_owner_compute_leased").items()}
    assert leased == {"alice": 1.0, OTHER_OWNER: 1.0}  # alice before bob: equal holdings, by name
    leases = {
        (dict(k)["owner"], dict(k)["state"]): v for k, v in values(fams, "flexlab_owner_leases").items()
    }
    assert leases == {("alice", "active"): 1.0, ("alice", "pending"): 1.0, (OTHER_OWNER, "pending"): 2.0}


@pytest.mark.parametrize(
    ("limit", "per_slice"), [(0, False), (3, False), (4, True)], ids=["off", "below", "at"]
)
def test_per_slice_series_only_while_few(pool: tuple[SlicePool, Clock], limit: int, per_slice: bool) -> None:
    p, clock = pool
    fams = collect(p, MetricsRecorder(started=0.0), now=clock.t, limits=MetricLimits(max_slice_series=limit))
    names = {f.name for f in fams}
    assert ("flexlab_slice_compute_capacity" in names) is per_slice
    holders = {dict(k)["holder"]: v for k, v in values(fams, "flexlab_slices").items()}
    assert holders == {"shared": 1.0, "lease": 3.0, "warm": 0.0}
    if per_slice:
        shared = values(fams, "flexlab_slice_compute_allocated")
        assert {dict(k)["slice"]: v for k, v in shared.items() if dict(k)["holder"] == "shared"} == {
            "s1": 0.25
        }
        owners = {dict(k)["owner"] for k in shared if dict(k)["holder"] == "lease"}
        assert owners == {"alice", "bob"}
        mem_cap = values(fams, "flexlab_slice_memory_capacity_bytes")
        mem_held = values(fams, "flexlab_slice_memory_allocated_bytes")
        cap = values(fams, "flexlab_slice_compute_capacity")
        for k, v in mem_held.items():  # a lease's all of it; the shared one's by its tasks' share
            share = shared[k] / cap[k] if dict(k)["holder"] == "shared" else 1.0
            assert v == pytest.approx(mem_cap[k] * share)
        (s1,) = [k for k in mem_held if dict(k)["slice"] == "s1"]
        assert 0 < mem_held[s1] < mem_cap[s1]


def test_lease_wait_is_observed_once_by_how_it_was_served() -> None:
    clock = Clock(100.0)
    p = SlicePool(policy="firstfit", carve_on_register=False, clock=clock)
    p.register_host(HostSpec("h1", 32000, 131072, (DeviceSpec("t4", 0),)))
    rec = MetricsRecorder(started=50.0)
    lease = p.create_lease(parse_request("gpu:0.5"), owner="alice", ttl_s=60)
    rec.lease_asked("gpu:500m:p0", "placed", lease.lease_id)
    clock.t += 2.0
    p.slice_ready(lease.slice_id or "", "tcp://w")
    rec.observe(p, clock.t)
    rec.observe(p, clock.t + 5)  # seen once
    h = rec.lease_wait["carved"].value()
    assert (h.count, h.sum) == (1, 2.0)
    assert dict(h.buckets)[1.0] == 0
    assert dict(h.buckets)[2.5] == 1
    assert rec.lease_wait["warm"].value().count == 0
    fams = collect(p, rec, now=clock.t)
    assert one(fams, "flexlab_lease_requests_total", **{"class": "gpu:500m:p0", "outcome": "placed"}) == 1.0
    events = {dict(k)["kind"]: v for k, v in values(fams, "flexlab_pool_events_total").items()}
    assert events["host"] == 1.0
    assert events["lease"] >= 1.0
    assert events["carve"] == 1.0


def test_leases_asked_before_the_recorder_started_are_not_observed() -> None:
    clock = Clock(100.0)
    p = SlicePool(policy="firstfit", carve_on_register=False, clock=clock)
    p.register_host(HostSpec("h1", 32000, 131072, (DeviceSpec("t4", 0),)))
    lease = p.create_lease(parse_request("gpu:0.5"), owner="alice", ttl_s=60)
    rec = MetricsRecorder(started=150.0)  # e.g. a lease restored from disk
    p.slice_ready(lease.slice_id or "", "tcp://w")
    rec.observe(p, 200.0)
    assert rec.lease_wait["carved"].value().count == 0


def test_stranded_compute_is_idle_compute_no_expected_shape_fits() -> None:
    p = SlicePool(policy="firstfit", carve_on_register=False)
    p.register_host(HostSpec("h1", 32000, 131072, (DeviceSpec("t4", 0), DeviceSpec("t4", 1))))
    p.create_lease(parse_request("gpu:0.9"), owner="alice", ttl_s=60)  # leaves 10% of t4#0
    fams = collect(p, MetricsRecorder(started=0.0), now=0.0)
    # firstfit learns no shapes: the prior's smallest is a quarter device, so the 10% is stranded
    assert one(fams, "flexlab_compute_idle", model="t4") == pytest.approx(1.1)
    assert one(fams, "flexlab_compute_stranded", model="t4") == pytest.approx(0.1)


def test_hi_loop_and_runtime_facts() -> None:
    from flexlab.core.hiloop import HiLoop, Prewarm
    from flexlab.core.prewarm import WarmPlanner

    clock = Clock(0.0)
    p = SlicePool(policy="firstfit", clock=clock)
    p.register_host(HostSpec("h1", 32000, 131072, (DeviceSpec("t4", 0), DeviceSpec("t4", 1))))
    planner = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=2)
    hi = HiLoop([Prewarm(planner)], hold_after_wait_s=0)
    for t in range(6):
        clock.t = float(t)
        hi.observe_lease(clock.t, parse_request("gpu:0.25"))
    hi.step(p, clock.t)
    facts = RuntimeFacts(
        policy="firstfit", plugin_errors=2, agents_last_seen={"h1": 5.0, "gone": 1.0}, hi=hi, warm=planner
    )
    fams = collect(p, MetricsRecorder(started=0.0), now=clock.t, facts=facts)
    assert one(fams, "flexlab_warm_slices", **{"class": "gpu:250m:p0"}) == 2.0
    assert one(fams, "flexlab_warm_slices_target", **{"class": "gpu:250m:p0"}) == 2.0
    assert one(fams, "flexlab_lease_arrivals_forecast_per_second", **{"class": "gpu:250m:p0"}) > 0
    assert one(fams, "flexlab_plugin_errors_total") == 2.0
    assert values(fams, "flexlab_host_agent_last_seen_timestamp_seconds") == {(("host", "h1"),): 5.0}
    assert one(fams, "flexlab_pool_info", policy="firstfit") == 1.0


def test_every_family_is_named_by_the_conventions(pool: tuple[SlicePool, Clock]) -> None:
    p, clock = pool
    fams = collect(p, MetricsRecorder(started=0.0), now=clock.t)
    names = [f.name for f in fams]
    assert len(names) == len(set(names))
    for f in fams:
        assert f.name.startswith("flexlab_")
        assert f.help
        assert f.name.endswith("_total") == (f.kind == "counter")
        assert not any(f.name.endswith(s) for s in ("_mib", "_milli", "_ms", "_percent"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Family("devices", "gauge", "no prefix"),
        lambda: Family("flexlab_errors", "counter", "a counter without _total"),
        lambda: Family("flexlab_x_total", "gauge", "a gauge with _total"),
        lambda: HistogramCounter((1.0, 0.5)),
        lambda: MetricLimits(max_owners=0),
        lambda: MetricLimits(max_slice_series=-1),
    ],
    ids=["prefix", "counter-suffix", "gauge-suffix", "buckets", "owners", "slices"],
)
def test_bad_definitions_are_refused(make: object) -> None:
    with pytest.raises(InvalidRequest):
        make()  # type: ignore[operator]


def test_histogram_counts_cumulatively() -> None:
    h = HistogramCounter((1.0, 10.0))
    for v in (0.5, 1.0, 3.0, 50.0):
        h.observe(v)
    assert h.value() == HistogramValue(((1.0, 2), (10.0, 3), (math.inf, 4)), 54.5)


def test_the_docs_list_every_family(pool: tuple[SlicePool, Clock]) -> None:
    import re
    from pathlib import Path

    p, clock = pool
    fams = collect(p, MetricsRecorder(started=0.0), now=clock.t)
    doc = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"^\| `(flexlab_\w+)` \|", doc, re.M))
    assert listed == {f.name for f in fams}


def test_text_exposition_escapes_labels_and_writes_histograms() -> None:
    from flexlab.core.metrics.exposition import render_text

    g = Family("flexlab_owner_compute_leased", "gauge", "held\nby owner", ("owner", "vendor"))
    g.add(('a"b\\c\nd', "nvidia"), 0.5)
    c = Family("flexlab_plugin_errors_total", "counter", "errors")
    c.add((), 3.0)
    h = Family("flexlab_lease_wait_seconds", "histogram", "wait", ("source",))
    hc = HistogramCounter((1.0,))
    hc.observe(0.5)
    hc.observe(2.0)
    h.add(("carved",), hc.value())
    assert render_text([g, c, h]).splitlines() == [
        "# HELP flexlab_owner_compute_leased held\\nby owner",
        "# TYPE flexlab_owner_compute_leased gauge",
        'flexlab_owner_compute_leased{owner="a\\"b\\\\c\\nd",vendor="nvidia"} 0.5',
        "# HELP flexlab_plugin_errors_total errors",
        "# TYPE flexlab_plugin_errors_total counter",
        "flexlab_plugin_errors_total 3.0",
        "# HELP flexlab_lease_wait_seconds wait",
        "# TYPE flexlab_lease_wait_seconds histogram",
        'flexlab_lease_wait_seconds_bucket{source="carved",le="1.0"} 1.0',
        'flexlab_lease_wait_seconds_bucket{source="carved",le="+Inf"} 2.0',
        'flexlab_lease_wait_seconds_sum{source="carved"} 2.5',
        'flexlab_lease_wait_seconds_count{source="carved"} 2.0',
    ]
