"""The Hi loop's decisions (``WarmPlanner``) and the pool's warm slices and preemption."""

from __future__ import annotations

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
    assert view.request == "gpu:0.25" and view.request_class == "gpu:250m:p0"
    assert view.last_bucket == 2.0 and view.predicted_last == pytest.approx(2.0, abs=0.01)
    assert view.target == 4 and view.forecast == pytest.approx(4.0, abs=0.01)


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
    assert preemption_due(10.0, 40.0, 30.0) and not preemption_due(10.0, 39.0, 30.0)


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
    assert warm is not None and warm.warm_for == "gpu:0.25" and warm.reserved
    start = [c for c in p.take_commands(HOST.name) if isinstance(c, StartSlice)]
    assert [c.slice_id for c in start if c.slice_id == warm.slice_id]
    (cmd,) = [c for c in start if c.slice_id == warm.slice_id]
    assert cmd.resources[f"{LEASE_PREFIX}{warm.slice_id}"] == 8.0  # the future lease's resource
    assert cmd.compute_milli == 250
    # shared tasks never land on a warm slice
    b = p.bind("k1", QUARTER)
    assert b.status == "bound" and b.slice_id != warm.slice_id
    p.slice_ready(warm.slice_id, "w-warm")
    lease = p.create_lease(QUARTER, owner="ann", ttl_s=60)
    assert lease.lease_id == warm.slice_id and lease.slice_id == warm.slice_id
    assert lease.state == "active" and warm.owner == "ann" and warm.warm_for is None
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
    assert high.state == "pending" and high.slice_id is None
    allocs_before = len(p.ledger.allocations())
    victims = p.preemption_victims(high)
    assert [v.lease_id for v in victims] == [low[1].lease_id]  # one is enough: the youngest
    assert len(p.ledger.allocations()) == allocs_before  # asking changed nothing
    p.preempt_lease(victims[0].lease_id, "test")
    p.retry_leases()
    assert high.slice_id is not None and high.state == "pending"  # placed, its worker starting
    assert low[1].state == "pending" and low[1].preemptions == 1 and "preempted" in low[1].reason
    assert low[1].lease_id in p.leases  # not lost
    # equal or higher priority is never a victim
    peer = p.create_lease(parse_request("t4:1.0"), owner="peer", ttl_s=60, priority=0)
    assert p.preemption_victims(peer) == []
    p.ledger.check_invariants()
    assert any(e.kind == "preempt" for e in p.events)


def test_prewarm_owner_never_appears_on_a_lease() -> None:
    p = pool()
    warm = p.prewarm(QUARTER, "test")
    assert warm is not None and warm.owner is None
    assert all(le.owner != PREWARM_OWNER for le in p.leases.values())
