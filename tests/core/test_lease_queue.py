"""A new lease whose request already waits takes its turn after it, without a placement of
its own: first come, first served for one request, and cheap under a burst of requests."""

from __future__ import annotations

from flexlab.core.pool import SlicePool
from flexlab.core.pool.audit import audit
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("one", 16_000, 64 * 1024, (DeviceSpec("t4", 0),))


def full_pool() -> tuple[SlicePool, str]:
    p = SlicePool(clock=lambda: 0.0)
    p.register_host(HOST)
    first = p.create_lease(parse_request("gpu:1"), owner="ana", ttl_s=600)
    for sid in list(p.slices):
        p.slice_ready(sid, f"tcp://w-{sid}")
    assert first.state == "active"
    return p, first.lease_id


def test_a_request_that_already_waits_queues_the_new_lease_behind_it_without_placing() -> None:
    p, first = full_pool()
    b = p.create_lease(parse_request("gpu:1"), owner="bob", ttl_s=600)
    assert b.state == "pending"
    assert "waits its turn" not in b.reason
    placed: list[str] = []
    real_place = p.book.place
    p.book.place = lambda lease: placed.append(lease.lease_id) or real_place(lease)  # type: ignore[method-assign]
    c = p.create_lease(parse_request("gpu:1"), owner="cy", ttl_s=600)
    d = p.create_lease(parse_request("gpu:1"), owner="dee", ttl_s=600)
    assert placed == []  # neither asked placement: it would fail as b's did
    assert c.state == d.state == "pending"
    assert c.reason.startswith(f"waits its turn after lease {b.lease_id}")
    assert d.reason.startswith(f"waits its turn after lease {c.lease_id}")
    assert b.reason in c.reason  # why the one ahead waits, said once (not nested)
    assert c.reason.count("waits its turn") == d.reason.count("waits its turn") == 1
    p.book.place = real_place  # type: ignore[method-assign]
    p.release_lease(first, "ana")
    assert [x.lease_id for x in p.leases.values() if x.slice_id in p.slices] == [b.lease_id]  # b first
    assert audit(p) == []


def test_other_requests_and_higher_priorities_do_not_queue_behind() -> None:
    p, _ = full_pool()
    b = p.create_lease(parse_request("gpu:1"), owner="bob", ttl_s=600)
    half = p.create_lease(parse_request("gpu:0.5"), owner="cy", ttl_s=600)
    urgent = p.create_lease(parse_request("gpu:1"), owner="dee", ttl_s=600, priority=5)
    assert b.state == half.state == urgent.state == "pending"
    assert "waits its turn" not in half.reason  # another request: placed on its own
    assert "waits its turn" not in urgent.reason  # a higher priority never waits behind a lower one
    low = p.create_lease(parse_request("gpu:1"), owner="eli", ttl_s=600, priority=-1)
    assert low.reason.startswith("waits its turn after lease ")


def test_giving_up_a_lease_that_still_waits_frees_nothing_and_places_nothing() -> None:
    p, first = full_pool()
    waiting = [p.create_lease(parse_request("gpu:0.5"), owner=f"u{i}", ttl_s=600) for i in range(5)]
    placed: list[str] = []
    real_place = p.book.place
    p.book.place = lambda lease: placed.append(lease.lease_id) or real_place(lease)  # type: ignore[method-assign]
    for lease in waiting[:4]:
        p.release_lease(lease.lease_id, lease.owner, reason="the call gave up")
    assert placed == []  # nothing was freed, so nothing was tried
    p.release_lease(first, "ana")  # a whole T4 back: the one still waiting is placed
    assert placed == [waiting[4].lease_id]
    assert waiting[4].slice_id in p.slices
    p.book.place = real_place  # type: ignore[method-assign]
    assert audit(p) == []
