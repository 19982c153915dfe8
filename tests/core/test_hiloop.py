"""The one Hi loop: policies propose, the manager enacts on the pool or rejects with a reason."""

from __future__ import annotations

from flexlab.core.hiloop import (
    Action,
    GiveBackToWaitingWork,
    HiLoop,
    Preempt,
    Prewarm,
    Reject,
    Why,
)
from flexlab.core.pool import RetagSlice, SlicePool, StartSlice
from flexlab.core.prewarm import WarmPlanner
from flexlab.core.request import Selector, SliceRequest, parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("gpu-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("t4", 1)))
QUARTER = parse_request("gpu:0.25")


def pool_with_host() -> SlicePool:
    p = SlicePool(policy="binpack")
    p.register_host(HOST)
    return p


def loop(**prewarm: object) -> HiLoop:
    planner = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=4, max_total=8)
    return HiLoop(
        [GiveBackToWaitingWork(), Prewarm(planner, **prewarm), Preempt(grace_s=5.0)],  # type: ignore[arg-type]
        hold_after_wait_s=10.0,
    )


def arrivals(hi: HiLoop, per_bucket: int, buckets: int, start: int = 0) -> None:
    for b in range(start, start + buckets):
        for i in range(per_bucket):
            hi.observe_lease(b + i * 0.01, QUARTER)


def test_forecast_moves_are_enacted_and_logged_with_their_reason() -> None:
    p, hi = pool_with_host(), loop()
    arrivals(hi, per_bucket=2, buckets=10)
    out = hi.step(p, 10.0)
    done = [o for o in out if o.done]
    assert [o.move.action for o in done] == [Action.PREWARM] * 4
    assert all(o.move.why is Why.FORECAST for o in done)
    assert len(p.warm_slices()) == 4
    assert {s.warm_for for s in p.warm_slices()} == {"gpu:0.25"}
    assert list(hi.log)[-1].as_dict()["policy"] == "prewarm"
    # a second pass with the same forecast changes nothing
    assert [o for o in hi.step(p, 10.1) if o.done] == []


def test_waiting_work_takes_the_warm_slices_back_and_holds_off_prewarming() -> None:
    p, hi = pool_with_host(), loop()
    arrivals(hi, per_bucket=2, buckets=10)
    hi.step(p, 10.0)
    out = hi.step(p, 10.5, waiting_tasks=3)
    gave = [o for o in out if o.done and o.move.action is Action.DISSOLVE]
    assert len(gave) == 4
    assert all(o.move.why is Why.WORK_WAITS for o in gave)
    held = [o for o in out if o.rejected is Reject.HOLD_OFF]
    assert held, "the forecast still asks, but the manager holds pre-warming off"
    assert not p.warm_slices()
    # after the hold-off, pre-warming resumes (arrivals went on)
    arrivals(hi, per_bucket=2, buckets=11, start=10)
    later = hi.step(p, 21.0)
    assert [o.move.action for o in later if o.done] == [Action.PREWARM] * 4
    assert hi.rejected[Reject.HOLD_OFF] >= 1


def test_no_room_is_a_rejection_not_an_error() -> None:
    p, hi = pool_with_host(), loop()
    for i in range(2):
        p.create_lease(parse_request("gpu:1"), owner=f"u{i}", ttl_s=60)
    arrivals(hi, per_bucket=2, buckets=10)
    out = hi.step(p, 10.0)
    assert out
    assert all(o.rejected is Reject.NO_ROOM for o in out)
    assert not p.warm_slices()


def test_reserve_only_keeps_warm_slices_in_the_arrival_mix_without_a_forecast() -> None:
    p = pool_with_host()
    planner = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=4, max_total=8)
    hi = HiLoop([Prewarm(planner, reserve=0.25, forecast=False)])
    for _ in range(3):
        hi.observe_lease(0.0, QUARTER)
    hi.observe_lease(0.0, parse_request("gpu:0.5"))
    out = hi.step(p, 100.0)  # long after the arrivals: the forecast would be ~0
    # 25% of 2,000 milli = 500 milli, split 3:1 by arrivals: 375 -> 2 x 0.25, 125 -> 0 x 0.5
    assert sorted(o.move.request for o in out if o.done) == ["gpu:0.25", "gpu:0.25"]
    assert all(o.move.why is Why.RESERVE for o in out)


def test_a_lease_past_its_grace_preempts_the_lowest_priority_youngest_first() -> None:
    p, hi = pool_with_host(), loop()
    t = [0.0]
    p.clock = lambda: t[0]
    low_old = p.create_lease(parse_request("gpu:1"), owner="a", ttl_s=600, priority=0)
    t[0] = 1.0
    low_young = p.create_lease(parse_request("gpu:1"), owner="b", ttl_s=600, priority=0)
    for s in list(p.slices.values()):
        p.slice_ready(s.slice_id, f"w-{s.slice_id}")
    high = p.create_lease(parse_request("gpu:1"), owner="c", ttl_s=600, priority=5)
    assert high.state == "pending"
    assert not [o for o in hi.step(p, 2.0) if o.move.action is Action.PREEMPT]  # within grace
    out = [o for o in hi.step(p, 8.0) if o.move.action is Action.PREEMPT]
    assert [(o.move.lease_id, o.move.for_lease) for o in out] == [(low_young.lease_id, high.lease_id)]
    assert p.leases[low_young.lease_id].state == "pending"
    assert p.leases[low_old.lease_id].state == "active"
    assert high.slice_id in p.slices
    assert hi.preempted == 1


def test_a_request_whose_text_does_not_parse_back_is_prewarmed_as_asked() -> None:
    # A selector of two models describes itself as "gpu/p100/t4:50%", which the request
    # grammar cannot parse: the move carries the request itself.
    p = pool_with_host()
    planner = WarmPlanner(bucket_s=1.0, horizon=2, max_per_class=4, max_total=8)
    hi = HiLoop([Prewarm(planner)])
    two_models = SliceRequest(
        selector=Selector(kinds=frozenset({"gpu"}), models=frozenset({"t4", "p100"})),
        compute_milli=500,
        host_cpu_milli=2000,
    )
    for b in range(10):
        hi.observe_lease(float(b), two_models)
    done = [o for o in hi.step(p, 10.0) if o.done]
    assert [o.move.request for o in done] == ["gpu/p100/t4:50%", "gpu/p100/t4:50%"]
    warm = p.warm_slices()
    assert [(s.warm_for, s.compute_milli) for s in warm] == [("gpu/p100/t4:50%", 500)] * 2
    lease = p.create_lease(two_models, owner="u", ttl_s=60)
    assert lease.slice_id in {s.slice_id for s in warm}


def _ready_all(p: SlicePool) -> None:
    """The agents: every started worker is up."""
    for cmd in p.take_commands(HOST.name):
        if isinstance(cmd, StartSlice):
            p.slice_ready(cmd.slice_id, f"w-{cmd.slice_id}")


def test_a_lease_slice_that_ends_is_recycled_while_the_hi_loop_wants_warm_slices() -> None:
    p, hi = pool_with_host(), loop(reserve=0.25, forecast=False)  # 2 quarter slices warm
    a = p.create_lease(QUARTER, owner="ana", ttl_s=600)
    _ready_all(p)
    assert a.state == "active"
    hi.observe_lease(0.0, QUARTER)
    hi.step(p, 1000.0)
    assert p.warm.wanted == {"gpu:0.25": 2}
    assert len(p.warm_slices()) == 2
    _ready_all(p)
    taken = [p.create_lease(QUARTER, owner="cy", ttl_s=600) for _ in range(2)]
    assert all(x.state == "active" for x in taken)
    assert not p.warm_slices()  # both taken: fewer than wanted
    sid = a.slice_id or ""
    worker = p.slices[sid].worker
    p.release_lease(a.lease_id, "ana")
    # kept, not stopped: a warm slice again, its running worker retagged for a new lease id
    s = p.slices[sid]
    assert (s.warm_for, s.lease_id, s.state) == ("gpu:0.25", None, "starting")
    nxt = s.next_lease
    assert nxt is not None
    assert nxt != a.lease_id
    (cmd,) = p.take_commands(HOST.name)
    assert isinstance(cmd, RetagSlice)
    assert cmd.worker == worker
    assert cmd.drop == (f"flexlab-lease-{a.lease_id}",)
    assert f"flexlab-lease-{nxt}" in cmd.resources
    assert f"flexlab-lease-{a.lease_id}" not in cmd.resources
    p.ledger.check_invariants()
    # the next lease of that request takes it, under the id its worker now serves, and is
    # active once the agent says the worker was handed over; no worker is started for it
    b = p.create_lease(QUARTER, owner="bea", ttl_s=600)
    assert (b.slice_id, b.lease_id, b.state) == (sid, nxt, "pending")
    p.slice_ready(sid, worker or "")
    assert b.state == "active"
    assert not p.take_commands(HOST.name)
    # work still naming the ended lease fails; the new lease's binds to its own resource
    assert p.bind_lease_task("k-old", a.lease_id, "ana").status == "fail"
    assert p.bind_lease_task("k-new", b.lease_id, "bea").resources == {f"flexlab-lease-{nxt}": 1.0}
    # a second release, with a warm slice of the request still wanted, is recycled again
    p.release_lease(b.lease_id, "bea")
    assert p.slices[sid].warm_for == "gpu:0.25"
    assert p.slices[sid].next_lease not in (a.lease_id, nxt)


def test_nothing_is_recycled_when_no_warm_slice_is_wanted_or_the_runtime_says_no() -> None:
    p = pool_with_host()
    a = p.create_lease(QUARTER, owner="ana", ttl_s=600)
    _ready_all(p)
    p.release_lease(a.lease_id, "ana")  # wanted: nothing (no Hi loop)
    assert a.slice_id not in p.slices
    b = p.create_lease(QUARTER, owner="bea", ttl_s=600)
    _ready_all(p)
    p.want_warm({"gpu:0.25": 3})
    p.reusable = lambda s: False  # e.g. its worker still holds results
    p.release_lease(b.lease_id, "bea")
    assert b.slice_id not in p.slices
    assert not p.warm_slices()


def test_the_safety_stock_grows_with_the_forecast_error() -> None:
    """``service_z``: beyond the expected arrivals, warm slices for the error the forecast
    made; a steady class (errors only while the forecast warms up) gets at most one more,
    an erratic one with the same mean several."""

    def targets(counts: list[int], z: float) -> dict[str, int]:
        wp = WarmPlanner(bucket_s=1.0, horizon=4, max_per_class=100, max_total=100, service_z=z)
        for b, n in enumerate(counts):
            for i in range(n):
                wp.observe(b + i / (n + 1), QUARTER)
        wp.propose(float(len(counts)), {})
        return wp.targets

    steady, erratic = [4] * 12, [0, 8] * 6
    assert targets(steady, 1.65)["gpu:0.25"] - targets(steady, 0.0)["gpu:0.25"] <= 1
    base, safe = targets(erratic, 0.0)["gpu:0.25"], targets(erratic, 1.65)["gpu:0.25"]
    assert safe >= base + 4, (base, safe)


def test_a_lease_takes_a_larger_ready_warm_slice_within_the_tolerance() -> None:
    p = SlicePool(policy="binpack", warm_oversize=1.25)
    p.register_host(HOST)
    whole = p.prewarm(parse_request("gpu:1"), "test")
    half = p.prewarm(parse_request("gpu:0.5"), "test")
    assert whole is not None
    assert half is not None
    _ready_all(p)
    # 0.45 -> the 0.5 slice (1.11x), as it is; 0.3 -> neither (1.67x, 3.3x): a new slice
    a = p.create_lease(parse_request("gpu:0.45"), owner="ana", ttl_s=600)
    assert (a.slice_id, a.state) == (half.slice_id, "active")
    assert p.slices[half.slice_id].compute_milli == 500  # not resized
    b = p.create_lease(parse_request("gpu:0.3"), owner="bea", ttl_s=600)
    assert b.slice_id not in (whole.slice_id, half.slice_id)
    assert b.state == "pending"
    # 0.85 -> the whole device; an exact request of its own would have come first
    c = p.create_lease(parse_request("gpu:0.85"), owner="cy", ttl_s=600)
    assert c.slice_id == whole.slice_id
    # recycled, the slice is kept warm for what it was carved for, not the smaller lease
    p.want_warm({"gpu:0.5": 1, "gpu:0.45": 1})
    p.release_lease(a.lease_id, "ana")
    assert p.slices[half.slice_id].warm_for == "gpu:0.5"
    # the default takes exact requests only
    p3 = pool_with_host()
    assert p3.prewarm(parse_request("gpu:0.5"), "test") is not None
    _ready_all(p3)
    assert p3.warm.slice_for(parse_request("gpu:0.45")) is None
