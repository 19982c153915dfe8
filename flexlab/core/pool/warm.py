"""Warm slices: carved ahead of forecast leases.

A warm slice's worker starts with the lease resource of a lease id reserved for it, runs
nobody's tasks, and is handed to the next lease asking for exactly its request, which is
then active at once instead of waiting for a worker to start. ``dissolve`` gives it back.
"""

from __future__ import annotations

from dataclasses import replace

from flexlab.core.pool.leases import LeaseBook, start_ttl
from flexlab.core.pool.model import LIVE, PREWARM_OWNER, LeaseInfo, SliceInfo
from flexlab.core.pool.slices import SliceTable
from flexlab.core.request import SliceRequest


class WarmSlices:
    """Carve, hand over and give back warm slices."""

    def __init__(self, table: SliceTable, book: LeaseBook) -> None:
        self.table = table
        self.book = book

    def prewarm(self, request: SliceRequest, reason: str) -> SliceInfo | None:
        """Carve a warm slice for the next lease asking exactly ``request`` (from free
        capacity or idle shared slices, never those the book's ``keep`` keeps); None when
        it does not fit now. ``reason`` is logged."""
        req = replace(request, owner=PREWARM_OWNER)
        lid = self.book.new_id(taken=self.table.slices)
        clock = self.table.clock
        probe = LeaseInfo(
            lease_id=lid, owner=PREWARM_OWNER, request=req, ttl_s=1.0, priority=-1, created=clock(),
            expires_at=clock(),
        )  # fmt: skip
        alloc = self.book.make_room(probe, strict=True)
        if alloc is None:
            return None
        s = self.table.carve(alloc, lease=None, slice_id=lid, warm_for=request.describe())
        self.table.emit(
            "prewarm",
            f"pre-warmed {lid} on {', '.join(s.devices)} for {request.describe()}: {reason}",
            slice_id=lid,
            host=s.host,
        )
        return s

    def dissolve(self, slice_id: str, reason: str) -> bool:
        """Give an unclaimed warm slice back to shared use (False: it is not warm any more)."""
        s = self.table.slices.get(slice_id)
        if s is None or s.warm_for is None:
            return False
        self.table.drop(slice_id, reason)
        self.table.emit(
            "prewarm",
            f"warm slice {slice_id} for {s.warm_for} given back: {reason}",
            slice_id=slice_id,
            host=s.host,
        )
        if self.table.carve_on_register and s.host in self.table.ledger.hosts:
            self.table.recarve_shared(s.host, s.devices)
        return True

    def slice_for(self, req: SliceRequest) -> SliceInfo | None:
        """The warm slice a lease of ``req`` takes: a ready worker first, then the oldest."""
        text = req.describe()
        ready = [s for s in self.table.warm() if s.warm_for == text and s.state in LIVE]
        ready.sort(key=lambda s: (s.state != "ready", s.created))
        return ready[0] if ready else None

    def adopt(self, lease: LeaseInfo, s: SliceInfo) -> None:
        """``lease`` takes the warm slice ``s`` (active at once when its worker is ready)."""
        self.table.assign(s, lease)
        ledger = self.table.ledger
        start = ledger.get(s.alloc_id).slices[0].start if s.alloc_id in ledger else -1
        lease.placed_on = (s.host, s.devices, start)
        lease.slice_id = s.slice_id
        if s.state == "ready":
            lease.state = "active"
            start_ttl(lease, self.table.clock())
            lease.reason = ""
        else:
            lease.reason = "starting its worker (pre-warmed)"
        self.table.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} took the pre-warmed slice {s.slice_id} on "
            f"{', '.join(s.devices)} ({'ready' if s.state == 'ready' else 'its worker is starting'})",
            lease_id=lease.lease_id,
            owner=lease.owner,
            slice_id=s.slice_id,
            host=s.host,
        )
