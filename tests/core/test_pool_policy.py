"""The live pool places with its named policy (``flexlab`` by default), learns request
shapes as they come, records which policy placed what, takes multi-device leases and
forgets ended leases after their retention."""

from __future__ import annotations

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.placement.live import LivePolicy
from flexlab.core.placement.policies import POLICIES, distribution_for
from flexlab.core.pool import SlicePool
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOSTS = [
    HostSpec("four", 64_000, 256 * 1024, tuple(DeviceSpec("v100s-32gb", i) for i in range(4))),
    HostSpec("one", 16_000, 64 * 1024, (DeviceSpec("t4", 0),)),
]


def pool(**kwargs: object) -> SlicePool:
    p = SlicePool(**kwargs)  # type: ignore[arg-type]
    for h in HOSTS:
        p.register_host(h)
    return p


def test_the_default_is_flexlab_and_it_learns_from_leases_and_task_submissions() -> None:
    p = pool()
    assert p.live_policy.name == "flexlab"
    assert p.profile.name == "flexlab"
    before = p.live_policy.observations
    p.create_lease(parse_request("gpu:0.5"), owner="ana", ttl_s=60)
    p.bind_many(list(range(50)), parse_request("gpu:0.25"))  # one submission, one observation
    p.bind("x", parse_request("gpu:0.1"))
    assert p.live_policy.observations == before + 3


@pytest.mark.parametrize("name", sorted(POLICIES), ids=sorted(POLICIES))
def test_every_policy_runs_live_and_is_recorded_on_what_it_placed(name: str) -> None:
    p = pool(policy=name, carve_on_register=False)
    lease = p.create_lease(parse_request("gpu:0.5"), owner="ana", ttl_s=60)
    s = p.slices[lease.slice_id or ""]
    assert (s.policy, lease.policy) == (name, name)
    p.bind("t", parse_request("gpu:0.25"))
    carved = [x for x in p.slices.values() if x.lease_id is None]
    assert carved
    assert all(x.policy == name for x in carved)


def test_slices_carved_to_fill_a_device_name_no_policy() -> None:
    p = pool()  # carve_on_register: every device's shared slice fills it, no decision
    assert {s.policy for s in p.slices.values()} == {None}


def test_a_lease_may_hold_several_devices_of_one_host() -> None:
    p = pool(carve_on_register=False)
    lease = p.create_lease(parse_request("gpu:devices=2"), owner="ana", ttl_s=60)
    s = p.slices[lease.slice_id or ""]
    assert s.host == "four"
    assert len(s.devices) == 2
    assert s.compute_milli == 1000
    free = [int(x) for x in p.ledger.pool.dev_compute_free]
    assert sorted(free) == [0, 0, 1000, 1000, 1000]
    p.release_lease(lease.lease_id, "ana")
    assert [int(x) for x in p.ledger.pool.dev_compute_free] == [1000] * 5


def test_seeded_policy_places_against_the_given_shapes_and_learns_nothing() -> None:
    dist = distribution_for("flexlab", [parse_request("gpu:1")])
    live = LivePolicy.seeded("flexlab", dist)
    p = pool(live_policy=live, carve_on_register=False)
    p.create_lease(parse_request("gpu:0.25"), owner="ana", ttl_s=60)
    assert live.distribution is dist
    assert live.state()["seeded"] is True


def test_ended_leases_are_forgotten_after_their_retention() -> None:
    t = [1000.0]
    p = pool(clock=lambda: t[0], carve_on_register=False)
    old = p.create_lease(parse_request("gpu:0.5"), owner="ana", ttl_s=600)
    live = p.create_lease(parse_request("gpu:0.5"), owner="bob", ttl_s=6000)
    p.release_lease(old.lease_id, "ana")
    t[0] += 100
    assert p.forget_ended(3600) == []
    t[0] += 3600
    assert p.forget_ended(3600) == [old.lease_id]
    assert set(p.leases) == {live.lease_id}


def test_a_lease_ttl_counts_from_when_it_is_active_not_while_it_waits() -> None:
    t = [0.0]
    p = pool(clock=lambda: t[0], carve_on_register=False)
    lease = p.create_lease(parse_request("t4:0.5"), owner="ana", ttl_s=10)
    t[0] = 50.0  # its worker took long to start (or it waited in the queue)
    assert p.expire() == []
    p.slice_ready(lease.slice_id or "", "w1")
    assert (lease.active_since, lease.expires_at) == (50.0, 60.0)
    t[0] = 59.0
    assert p.expire() == []
    t[0] = 61.0
    assert [x.lease_id for x in p.expire()] == [lease.lease_id]


def test_a_cpu_only_lease_is_refused_cleanly_and_changes_nothing() -> None:
    p = pool(carve_on_register=False)
    before = (p.ledger.pool.host_cpu_free.tolist(), dict(p.leases))
    with pytest.raises(InvalidRequest, match="at least one accelerator"):
        p.create_lease(parse_request("cpu:cpu=4,ram=8GiB"), owner="ana", ttl_s=60)
    assert (p.ledger.pool.host_cpu_free.tolist(), dict(p.leases)) == before


def test_an_idle_slice_whose_host_cpu_a_lease_took_is_given_up_not_a_crash() -> None:
    """Reclaiming gives idle slices back and puts back those the lease did not need; one
    whose host CPU the lease took on another device cannot come back, and simply goes."""
    host = HostSpec("two", 8_000, 64 * 1024, (DeviceSpec("t4", 0), DeviceSpec("v100s-32gb", 1)))
    p = SlicePool(policy="binpack", carve_on_register=False)
    p.register_host(host)
    warm = p.prewarm(parse_request("t4:0.5,cpu=6"), "test")
    assert warm is not None
    lease = p.create_lease(parse_request("v100s:1,cpu=6"), owner="ana", ttl_s=60)
    assert lease.slice_id in p.slices
    assert warm.slice_id not in p.slices
    assert any("its host's CPU or RAM went to lease" in e.message for e in p.events)
    p.ledger.check_invariants()


def test_a_release_tries_each_waiting_shape_once_and_keeps_priority_order() -> None:
    p = pool(carve_on_register=False)
    holders = [p.create_lease(parse_request("v100s:1"), owner=f"h{i}", ttl_s=60) for i in range(4)]
    waiting = [p.create_lease(parse_request("v100s:1"), owner=f"w{i}", ttl_s=60) for i in range(30)]
    high = p.create_lease(parse_request("v100s:1"), owner="boss", ttl_s=60, priority=5)
    assert all(x.state == "pending" for x in [*waiting, high])
    calls: list[str] = []
    place = p.book.place

    def counting(lease: object) -> bool:
        calls.append(lease.lease_id)  # type: ignore[attr-defined]
        return place(lease)  # type: ignore[arg-type]

    p.book.place = counting  # type: ignore[method-assign]
    p.release_lease(holders[0].lease_id, "h0")
    # the high-priority lease takes the device; the first low one fails and the other 29
    # of that shape are not tried again in that pass
    assert calls == [high.lease_id, waiting[0].lease_id]
    assert high.slice_id in p.slices
    assert all(x.slice_id is None for x in waiting)
