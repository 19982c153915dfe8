"""The preemptor: which lower-priority leases give up their slices for a lease that waits,
and taking a lease's slice away. A preempted lease is not lost: it waits (``pending``) with
the reason and is placed again when capacity frees up; Dask re-runs its tasks there."""

from __future__ import annotations

from flexlab.core.pool.leases import LeaseBook
from flexlab.core.pool.model import LeaseInfo
from flexlab.core.pool.slices import SliceTable
from flexlab.core.pool.whatif import WhatIf


class Preemptor:
    """Choose victims (asking placement on a copy) and preempt them."""

    def __init__(self, table: SliceTable, book: LeaseBook, whatif: WhatIf) -> None:
        self.table = table
        self.book = book
        self.whatif = whatif

    def victims(self, lease: LeaseInfo) -> list[LeaseInfo]:
        """Lower-priority active leases whose slices, once given up, let ``lease`` fit: the
        lowest priority and youngest first, as few as that order allows. Empty when
        preempting them all would not help. Changes nothing."""
        slices = self.table.slices
        lower = [
            x
            for x in self.book.leases.values()
            if x.priority < lease.priority and x.state == "active" and x.slice_id in slices
        ]
        lower.sort(key=lambda x: (x.priority, -x.created))
        # Idle shared and warm slices are given up first anyway.
        freed = [s.alloc_id for s in self.table.idle(warm=True)]
        chosen: list[LeaseInfo] = []
        for victim in lower:
            freed.append(slices[victim.slice_id or ""].alloc_id)
            chosen.append(victim)
            if self.whatif.place(lease.request, freed).ok:
                return chosen
        return []

    def preempt(self, lease_id: str, reason: str) -> LeaseInfo:
        """Take a lease's slice away for higher-priority work; the lease waits again."""
        lease = self.book.get(lease_id)
        self.table.drop(lease.slice_id, f"preempted: {reason}")
        lease.state = "pending"
        lease.reason = f"preempted: {reason}"
        lease.placed_on = None
        lease.preemptions += 1
        self.table.emit(
            "preempt",
            f"lease {lease_id} of {lease.owner} preempted: {reason}; it waits to be placed again",
            lease_id=lease_id,
            owner=lease.owner,
            slice_id=lease.slice_id,
        )
        return lease
