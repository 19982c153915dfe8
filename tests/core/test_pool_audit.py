"""``audit`` finds nothing on a pool in use, and names each kind of breach it is shown."""

from __future__ import annotations

import dataclasses

from flexlab.core.pool import SlicePool
from flexlab.core.pool.audit import audit
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("four", 64_000, 256 * 1024, tuple(DeviceSpec("v100s-32gb", i) for i in range(4)))


def busy_pool() -> SlicePool:
    p = SlicePool(clock=lambda: 0.0)
    p.register_host(HOST)
    for owner in ("ana", "bob", "cy"):
        p.create_lease(parse_request("gpu:0.5"), owner=owner, ttl_s=60)
    p.bind_many(list(range(20)), parse_request("gpu:0.25"))
    for sid in list(p.slices):
        p.slice_ready(sid, f"tcp://w-{sid}")
    return p


def test_a_pool_in_use_breaks_nothing_and_audit_changes_nothing() -> None:
    p = busy_pool()
    before = (dict(p.slices), dict(p.leases), dict(p.task_slice))
    assert audit(p) == []
    assert (dict(p.slices), dict(p.leases), dict(p.task_slice)) == before
    for lease in list(p.leases.values())[:2]:
        p.release_lease(lease.lease_id, lease.owner)
    assert audit(p) == []


def test_a_slice_claimed_by_two_leases_is_reported() -> None:
    p = busy_pool()
    a, b = [x for x in p.leases.values() if x.state == "active"][:2]
    p.leases[b.lease_id] = dataclasses.replace(b, slice_id=a.slice_id)
    broken = audit(p)
    assert any(f"claimed by leases {a.lease_id} and {b.lease_id}" in line for line in broken), broken
    assert any(f"active lease {b.lease_id} on slice {a.slice_id}" in line for line in broken), broken


def test_a_task_on_a_slice_that_is_gone_and_a_ledger_breach_are_reported() -> None:
    p = busy_pool()
    key = next(iter(p.task_slice))
    p.task_slice[key] = ("no-such-slice", 100)
    p.ledger.pool.dev_compute_free[0] -= 1  # the arrays disagree with the grants
    broken = audit(p)
    assert any("tasks bound to slices that are gone" in line for line in broken), broken
    assert any(line.startswith("ledger:") for line in broken), broken
