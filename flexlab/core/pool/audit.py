"""The pool's invariants, checked from its state: what load, fault and soak runs poll.

``audit(pool)`` returns one line per broken invariant (an empty list when all hold). It reads
and never changes the pool, so a running scheduler can be audited as often as wanted:

* the ledger agrees with itself (no device or host beyond its capacity, free arrays equal to
  what is granted: ``Ledger.check_invariants``);
* every slice is one ledger allocation and every allocation one slice;
* no lease on two slices, no slice claimed by two live leases, no ended lease holding a
  slice, and every active lease on a live slice of its own;
* no bound task on a slice that is gone.

The Hypothesis state machine of the pool (``tests/core/test_pool_machine.py``) checks these
and more after every step; this is the subset that needs no model of what the test did.
"""

from __future__ import annotations

from flexlab.core.errors import LedgerConflict
from flexlab.core.pool.facade import SlicePool
from flexlab.core.pool.model import ENDED


def audit(pool: SlicePool) -> list[str]:
    """The broken invariants of ``pool``, in words (empty: all hold)."""
    broken: list[str] = []
    try:
        pool.ledger.check_invariants()
    except LedgerConflict as exc:
        broken.append(f"ledger: {exc}")
    slices = pool.slices
    allocs = {a.alloc_id for a in pool.ledger.allocations()}
    held = {s.alloc_id for s in slices.values()}
    if held != allocs:
        broken.append(
            f"slices and allocations differ: {len(held - allocs)} slices without an allocation, "
            f"{len(allocs - held)} allocations without a slice"
        )
    per_lease: dict[str, list[str]] = {}
    for sid, s in slices.items():
        if s.lease_id is not None:
            per_lease.setdefault(s.lease_id, []).append(sid)
    for lease_id, sids in per_lease.items():
        if len(sids) > 1:
            broken.append(f"lease {lease_id} on {len(sids)} slices: {sorted(sids)}")
        lease = pool.leases.get(lease_id)
        if lease is not None and lease.state in ENDED:
            broken.append(f"lease {lease_id} is {lease.state} but still holds slice {sids[0]}")
    claimed: dict[str, str] = {}
    for lease in pool.leases.values():
        if lease.state in ENDED or lease.slice_id is None or lease.slice_id not in slices:
            continue
        other = claimed.setdefault(lease.slice_id, lease.lease_id)
        if other != lease.lease_id:
            broken.append(f"slice {lease.slice_id} claimed by leases {other} and {lease.lease_id}")
    for lease in pool.leases.values():
        if lease.state != "active":
            continue
        own = slices.get(lease.slice_id or "")
        if own is None:
            broken.append(f"active lease {lease.lease_id} has no slice ({lease.slice_id})")
        elif own.lease_id != lease.lease_id:
            broken.append(f"active lease {lease.lease_id} on slice {own.slice_id} of {own.lease_id}")
    gone = [key for key, (sid, _) in pool.task_slice.items() if sid not in slices]
    if gone:
        broken.append(f"{len(gone)} tasks bound to slices that are gone, e.g. {gone[0]}")
    return broken
