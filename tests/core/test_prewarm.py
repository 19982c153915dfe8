"""The Hi loop's decisions (``WarmPlanner``) and the pool's warm slices and preemption."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.pool import LEASE_PREFIX, PREWARM_OWNER, SlicePool, StartSlice, StopSlice
from flexlab.core.prewarm import WarmPlanner, preemption_due
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("gpu-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("t4", 1)))
QUARTER = parse_request("gpu:0.25")


def steady(wp: WarmPlanner, per_bucket: int, buckets: int, request: str = "gpu:0.25") -> None:
    req = parse_request(request)
    for b in range(buckets):
        for i in range(per_bucket):
            wp.observe(b * wp.bucket_s + i * 0.01, req)


def test_steady_arrivals_give_rate_times_horizon_warm_slices() -> None:
    wp = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=8, max_total=8)
    steady(wp, per_bucket=2, buckets=10)
    moves = wp.propose(10.0, {"gpu:0.25": 1})
    assert [(m.action, m.request, m.count, m.target) for m in moves] == [("prewarm", "gpu:0.25", 3, 4)]
    assert "4.0 leases of gpu:0.25 forecast in 2 s" in moves[0].reason
    # forecast against actual, per class, for the pool state
    (view,) = wp.view(10.0)
    assert view.request == "gpu:0.25"
    assert view.request_class == "gpu:250m:p0"
    assert view.last_bucket == 2.0
    assert view.predicted_last == pytest.approx(2.0, abs=0.01)
    assert view.target == 4
    assert view.forecast == pytest.approx(4.0, abs=0.01)


def test_texts_of_one_class_split_its_forecast_by_how_often_each_was_asked() -> None:
    # gpu:0.25 and gpu:0.2 are one class (size bucket 250 m): 3 arrivals a bucket, 2 and 1.
    wp = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=8, max_total=8)
    for b in range(10):
        for i, text in enumerate(("gpu:0.25", "gpu:0.25", "gpu:0.2")):
            wp.observe(b + i * 0.01, parse_request(text))
    moves = wp.propose(10.0, {})
    # 6 expected over the horizon: 4 for one text, 2 for the other (a lease takes only a
    # warm slice of its own text, so the latest text alone would be wrong 1 time in 3).
    assert {(m.action, m.request, m.target) for m in moves} == {
        ("prewarm", "gpu:0.25", 4),
        ("prewarm", "gpu:0.2", 2),
    }
    req = wp.request_for("gpu:0.2")
    assert req is not None
    assert req.compute_milli == 200
    assert wp.request_for("gpu:0.3") is None


def test_quiet_classes_are_dissolved_and_caps_hold() -> None:
    wp = WarmPlanner(bucket_s=1.0, horizon=5, max_per_class=3, max_total=4)
    steady(wp, per_bucket=2, buckets=6, request="gpu:0.25")
    steady(wp, per_bucket=2, buckets=6, request="npu:0.5")
    moves = {m.request: m for m in wp.propose(6.0, {})}
    assert moves["gpu:0.25"].target + moves["npu:0.5"].target == 4  # max_total
    assert max(m.target for m in moves.values()) == 3  # max_per_class
    # nobody asks any more: after the forecast decays, every warm slice is given back
    moves = wp.propose(40.0, {"gpu:0.25": 3, "npu:0.5": 1})
    assert {(m.action, m.request, m.count, m.target) for m in moves} == {
        ("dissolve", "gpu:0.25", 3, 0),
        ("dissolve", "npu:0.5", 1, 0),
    }


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="horizon"):
        WarmPlanner(horizon=0)
    with pytest.raises(InvalidRequest, match="bucket"):
        WarmPlanner(bucket_s=0)
    assert preemption_due(10.0, 40.0, 30.0)
    assert not preemption_due(10.0, 39.0, 30.0)


def pool() -> SlicePool:
    ticks = iter(range(100, 10**6))
    p = SlicePool(policy="binpack", clock=lambda: float(next(ticks)))
    p.register_host(HOST)
    for s in list(p.slices.values()):
        p.slice_ready(s.slice_id, f"w-{s.slice_id}")
    p.take_commands(HOST.name)
    return p


def test_a_lease_takes_a_warm_slice_and_is_active_at_once() -> None:
    p = pool()
    warm = p.prewarm(QUARTER, "test")
    assert warm is not None
    assert warm.warm_for == "gpu:0.25"
    assert warm.reserved
    start = [c for c in p.take_commands(HOST.name) if isinstance(c, StartSlice)]
    assert [c.slice_id for c in start if c.slice_id == warm.slice_id]
    (cmd,) = [c for c in start if c.slice_id == warm.slice_id]
    assert cmd.resources[f"{LEASE_PREFIX}{warm.slice_id}"] == 8.0  # the future lease's resource
    assert cmd.compute_milli == 250
    # shared tasks never land on a warm slice
    b = p.bind("k1", QUARTER)
    assert b.status == "bound"
    assert b.slice_id != warm.slice_id
    p.slice_ready(warm.slice_id, "w-warm")
    lease = p.create_lease(QUARTER, owner="ann", ttl_s=60)
    assert lease.lease_id == warm.slice_id
    assert lease.slice_id == warm.slice_id
    assert lease.state == "active"
    assert warm.owner == "ann"
    assert warm.warm_for is None
    assert lease.resource == f"{LEASE_PREFIX}{warm.slice_id}"
    assert p.warm_slices() == []
    assert not [c for c in p.take_commands(HOST.name) if isinstance(c, StartSlice)]  # no new worker
    # a different request text does not take it (and a second lease gets a new slice)
    other = p.create_lease(parse_request("gpu:0.5"), owner="bob", ttl_s=60)
    assert other.slice_id == other.lease_id != warm.slice_id
    p.ledger.check_invariants()


def test_dissolving_a_warm_slice_gives_its_capacity_back() -> None:
    p = pool()
    free_before = p.ledger.pool.dev_compute_free.copy()
    shared_before = sum(s.compute_milli for s in p.slices.values())
    warm = p.prewarm(QUARTER, "test")
    assert warm is not None
    p.take_commands(HOST.name)
    assert p.dissolve_warm(warm.slice_id, "nobody came")
    assert not p.dissolve_warm(warm.slice_id, "twice")
    cmds = p.take_commands(HOST.name)
    assert any(isinstance(c, StopSlice) and c.slice_id == warm.slice_id for c in cmds)
    assert sum(s.compute_milli for s in p.slices.values()) == shared_before  # all shared again
    assert list(p.ledger.pool.dev_compute_free) == list(free_before)
    assert any(e.kind == "prewarm" and "given back: nobody came" in e.message for e in p.events)
    p.ledger.check_invariants()


def test_preemption_moves_a_low_priority_lease_back_to_waiting() -> None:
    p = pool()
    low = [p.create_lease(parse_request("t4:1.0"), owner=f"low{i}", ttl_s=60, priority=0) for i in range(2)]
    for x in low:
        p.slice_ready(x.slice_id or "", f"w-{x.lease_id}")
    assert [x.state for x in low] == ["active", "active"]
    high = p.create_lease(parse_request("t4:0.5"), owner="hi", ttl_s=60, priority=5)
    assert high.state == "pending"
    assert high.slice_id is None
    allocs_before = len(p.ledger.allocations())
    victims = p.preemption_victims(high)
    assert [v.lease_id for v in victims] == [low[1].lease_id]  # one is enough: the youngest
    assert len(p.ledger.allocations()) == allocs_before  # asking changed nothing
    p.preempt_lease(victims[0].lease_id, "test")
    p.retry_leases()
    assert high.slice_id is not None
    assert high.state == "pending"
    assert low[1].state == "pending"
    assert low[1].preemptions == 1
    assert "preempted" in low[1].reason
    assert low[1].lease_id in p.leases  # not lost
    # equal or higher priority is never a victim
    peer = p.create_lease(parse_request("t4:1.0"), owner="peer", ttl_s=60, priority=0)
    assert p.preemption_victims(peer) == []
    p.ledger.check_invariants()
    assert any(e.kind == "preempt" for e in p.events)


def test_prewarm_owner_never_appears_on_a_lease() -> None:
    p = pool()
    warm = p.prewarm(QUARTER, "test")
    assert warm is not None
    assert warm.owner is None
    assert all(le.owner != PREWARM_OWNER for le in p.leases.values())


def test_speed_aware_binding_sends_a_measured_class_to_its_faster_model() -> None:
    from flexlab.core.speed import ThroughputTable

    host = HostSpec("mixed", 64_000, 256 * 1024, (DeviceSpec("t4", 0), DeviceSpec("v100s-32gb", 1)))
    p = SlicePool(policy="binpack", speed=ThroughputTable(alpha=1.0))
    p.register_host(host)
    t4, v100s = sorted(p.slices.values(), key=lambda s: s.model)
    assert (t4.model, v100s.model) == ("t4", "v100s-32gb")
    req = replace(parse_request("gpu:0.25"), workload_class="train")
    # never measured: the catalog's prior (peak FP16: the V100S about twice the T4) already
    # sends more to the faster model; without a workload class, committed share alone counts
    first = p.bind_many([f"a{i}" for i in range(8)], req)
    assert [b.slice_id for b in first].count(v100s.slice_id) > [b.slice_id for b in first].count(t4.slice_id)
    for i in range(8):
        p.task_finished(f"a{i}")
    plain = p.bind_many([f"p{i}" for i in range(8)], parse_request("gpu:0.25"))
    assert [b.slice_id for b in plain].count(t4.slice_id) == 4
    for i in range(8):
        p.task_finished(f"p{i}")
    # measured: 10 s on a quarter of the T4, 2 s on a quarter of the V100S (5x)
    p.learn("train", t4.slice_id, 0.25, 10.0)
    p.learn("train", v100s.slice_id, 0.25, 2.0)
    assert p.speed is not None
    assert p.speed.rate("train", "v100s-32gb") == pytest.approx(5 * p.speed.rate("train", "t4"))
    second = p.bind_many([f"b{i}" for i in range(12)], req)
    on_v100s = sum(b.slice_id == v100s.slice_id for b in second)
    assert on_v100s >= 9, on_v100s  # finish-time balance: about five to one
    for i in range(12):
        p.task_finished(f"b{i}")
    # another class, never measured, is still spread evenly
    other = p.bind_many([f"c{i}" for i in range(4)], replace(req, workload_class="infer"))
    assert {b.slice_id for b in other} == {t4.slice_id, v100s.slice_id}
    # learning ignores what it cannot use
    p.learn("train", "no-such-slice", 0.25, 1.0)
    p.learn("train", t4.slice_id, 0.0, 1.0)
    assert p.speed.samples[("train", "t4")] == 1


def test_forecast_series_for_the_dashboard() -> None:
    wp = WarmPlanner(bucket_s=2.0, horizon=3)
    steady(wp, per_bucket=4, buckets=10)
    series = wp.series(20.0)
    assert list(series) == ["gpu:0.25"]
    times = [t for t, _ in series["gpu:0.25"]]
    assert times == [21.0, 23.0, 25.0]  # the middle of each of the next three buckets
    assert all(rate == pytest.approx(2.0, abs=0.05) for _, rate in series["gpu:0.25"])  # 4 per 2 s


def test_compute_left_without_memory_is_not_carved_into_a_shared_slice() -> None:
    """A lease that takes a device's memory but not all its compute leaves compute no task
    can use: neither releasing nor pre-warming may try to carve it (the ledger would refuse
    a proportional share of memory that is not there)."""
    p = pool()
    t4_mib = int(p.ledger.pool.dev_mem_total[0])
    greedy = p.create_lease(parse_request(f"t4:0.5,{t4_mib}MiB"), owner="ann", ttl_s=60)
    p.slice_ready(greedy.slice_id or "", "w-greedy")
    assert greedy.state == "active"
    dev = greedy.placed_on[1][0] if greedy.placed_on else ""
    assert not [s for s in p.slices.values() if s.devices == (dev,) and s.lease_id is None]
    warm = p.prewarm(QUARTER, "test")  # goes to the other T4; nothing raises
    assert warm is not None
    assert warm.devices != (dev,)
    p.ledger.check_invariants()


def test_a_target_that_wobbles_by_one_stops_no_worker() -> None:
    wp = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=8, max_total=8)
    steady(wp, per_bucket=2, buckets=10)  # target 4
    assert wp.propose(10.0, {"gpu:0.25": 5}) == []  # one over: kept
    (move,) = wp.propose(10.0, {"gpu:0.25": 6})
    assert (move.action, move.count, move.target) == ("dissolve", 2, 4)


def test_a_lease_reclaims_slices_the_runtime_would_keep_only_as_a_last_resort() -> None:
    p = pool()
    shared = sorted(p.slices.values(), key=lambda s: s.devices)  # one per T4, both idle
    kept = shared[0]
    p.keep = lambda s: s.slice_id == kept.slice_id  # e.g. its worker holds results
    lease = p.create_lease(QUARTER, owner="ann", ttl_s=60)
    stopped = {c.slice_id for c in p.take_commands(HOST.name) if isinstance(c, StopSlice)}
    assert stopped == {shared[1].slice_id}
    assert kept.slice_id in p.slices
    assert lease.placed_on is not None
    assert lease.placed_on[1] == shared[1].devices
    # Only the kept slice can make room now: it goes rather than the lease waiting.
    big = p.create_lease(parse_request("t4:0.9"), owner="bob", ttl_s=60)
    assert big.slice_id is not None, big.reason
    assert kept.slice_id not in p.slices
    assert big.placed_on is not None
    assert big.placed_on[1] == kept.devices
    assert p.ledger.pool.dev_compute_free.min() >= 0
