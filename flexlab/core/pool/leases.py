"""The lease book: leases asked, placed, renewed, expired, released and brought back.

A lease reserves a slice for one owner until released or expired. Placing it reserves its
slice in the ledger (where it was before, if it had a place), reclaiming idle shared and
warm slices when nothing else makes room; when nothing does, it waits (``pending``) with
placement's reasons.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container
from dataclasses import replace

from flexlab.core.errors import InvalidRequest, LedgerConflict, NotOwner, UnknownName, Unschedulable
from flexlab.core.ledger import Allocation, Ledger
from flexlab.core.placement.framework import PlacementProfile, explain, place
from flexlab.core.placement.status import Code
from flexlab.core.pool.model import (
    ENDED,
    PREWARM_OWNER,
    Binding,
    LeaseInfo,
    LeaseState,
    SliceInfo,
    reason_counts,
    reason_text,
)
from flexlab.core.pool.slices import SliceTable
from flexlab.core.pool.whatif import WhatIf
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE


class LeaseBook:
    """Leases by id, and how each one gets (and gives back) its slice."""

    def __init__(self, table: SliceTable, profile: PlacementProfile, whatif: WhatIf) -> None:
        self.table = table
        self.ledger: Ledger = table.ledger
        self.profile = profile
        self.whatif = whatif
        self.leases: dict[str, LeaseInfo] = {}
        #: Idle shared slices to reclaim only as a last resort (the runtime's say, e.g.
        #: those whose worker holds results Dask would have to recompute); None: any.
        self.keep: Callable[[SliceInfo], bool] | None = None
        #: Hands a lease placed anew the running worker of an idle shared slice when one
        #: fits (``WarmSlices.take_standing``, set by the pool); False: none did.
        self.standing: Callable[[LeaseInfo], bool] | None = None
        self._lease_ids = itertools.count(1)

    def new_id(self, *, taken: Container[str] = ()) -> str:
        """A lease id no lease (and nothing in ``taken``) has."""
        lid = f"L{next(self._lease_ids)}"
        while lid in self.leases or lid in taken:
            lid = f"L{next(self._lease_ids)}"
        return lid

    def get(self, lease_id: str, actor: str | None = None) -> LeaseInfo:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise UnknownName("lease", lease_id)
        if actor is not None and actor != lease.owner:
            raise NotOwner(f"lease {lease_id}", lease.owner, actor)
        return lease

    # -- asking --------------------------------------------------------------------------
    def admit(self, request: SliceRequest, *, owner: str, ttl_s: float, priority: int) -> SliceRequest:
        """The request of a new lease, checked: ``InvalidRequest`` for a bad one,
        ``Unschedulable`` when it could not fit even with every shared slice given back."""
        if not owner:
            raise InvalidRequest("owner", owner, "a non-empty user name")
        if not ttl_s > 0:
            raise InvalidRequest("ttl", ttl_s, "a positive number of seconds")
        if request.devices < 1 or (request.compute_milli <= 0 and request.profile is None):
            raise InvalidRequest(
                "request",
                request.describe(),
                "a share of at least one accelerator (a lease holds a slice of a device; "
                "CPU-only work runs as plain Dask tasks)",
            )
        req = replace(request, owner=owner, priority=priority)
        shared = [s.alloc_id for s in self.table.slices.values() if s.lease_id is None]
        ex = self.whatif.fits_ever(req, freed=shared)
        if ex.code is Code.UNRESOLVABLE and not self.table.settling:
            raise Unschedulable(
                f"{req.describe()} can never fit this pool:\n{ex.describe()}",
                code="UNRESOLVABLE",
                reasons=reason_counts(ex),
            )
        return req

    def open(
        self,
        req: SliceRequest,
        *,
        owner: str,
        ttl_s: float,
        lease_id: str | None,
        private: str | None = None,
    ) -> LeaseInfo:
        """Record a new lease of an admitted request, under ``lease_id`` unless a lease
        has it (then, or without one, under a new id); ``private``: the address of the
        owner's scheduler its worker joins (a private lease)."""
        now = self.table.clock()
        lid = lease_id if lease_id and lease_id not in self.leases else self.new_id()
        lease = LeaseInfo(
            lease_id=lid,
            owner=owner,
            request=req,
            ttl_s=ttl_s,
            priority=req.priority,
            created=now,
            expires_at=now + ttl_s,
            private=private,
        )
        self.leases[lid] = lease
        what = "a private lease" if private else "lease"
        self.table.emit(
            "lease", f"{what} {lid} asked by {owner}: {req.describe()}", lease_id=lid, owner=owner
        )
        return lease

    def bind_task(self, key: object, lease_id: str, owner: str | None) -> Binding:
        """A task submitted to a lease runs on its slice (``fail`` when it ended or is
        someone else's)."""
        lease = self.leases.get(lease_id)
        if lease is None or lease.state in ENDED:
            state = lease.state if lease else "unknown"
            return Binding("fail", reason=f"lease {lease_id} is {state}", code=Code.UNRESOLVABLE)
        if owner is not None and owner != lease.owner:
            return Binding(
                "fail",
                reason=f"lease {lease_id} belongs to {lease.owner!r}, not {owner!r}",
                code=Code.UNRESOLVABLE,
            )
        return Binding("bound", slice_id=lease.slice_id, resources={lease.resource: 1.0})

    # -- placing -------------------------------------------------------------------------
    def place(self, lease: LeaseInfo) -> bool:
        """Reserve and carve ``lease``'s slice; when it does not fit now it waits with
        placement's reasons."""
        req = lease.request
        if lease.placed_on is None and self.standing is not None and self.standing(lease):
            return True
        alloc = self.make_room(lease)
        if alloc is None:
            ex = explain(req, self.ledger.pool, self.profile)
            lease.reason = (
                "preempted; " if lease.placed_on is None and lease.preemptions else ""
            ) + reason_text(ex)
            if lease.state != "recovering":
                lease.state = "pending"
            self.table.emit(
                "wait",
                f"lease {lease.lease_id} waits: {lease.reason}",
                lease_id=lease.lease_id,
                owner=lease.owner,
            )
            return False
        g = alloc.slices[0]
        lease.placed_on = (alloc.host, tuple(x.device for x in alloc.slices), g.start)
        s = self.table.carve(alloc, lease=lease, slice_id=f"{lease.lease_id}")
        lease.slice_id = s.slice_id
        if lease.state != "recovering":
            lease.state = "pending"
        lease.reason = "starting its worker"
        return True

    def retry(self) -> None:
        """Place waiting leases that fit now: higher priority first, then the oldest.

        Within one pass capacity only shrinks (each placement takes some), so once a shape
        failed, later leases of the same shape would fail too and are not tried again: a
        release costs one placement per waiting shape, not one per waiting lease. Leases
        that go back to where they were (``placed_on``) are always tried."""
        failed: set[tuple[object, ...]] = set()
        for lease in sorted(self.leases.values(), key=lambda x: (-x.priority, x.created)):
            if lease.state not in ("pending", "recovering") or lease.slice_id in self.table.slices:
                continue
            shape = _shape(lease.request)
            if lease.placed_on is None and shape in failed:
                continue
            if not self.place(lease) and lease.placed_on is None:
                failed.add(shape)

    def queued_behind(self, lease: LeaseInfo) -> LeaseInfo | None:
        """An earlier lease of the same request that still waits for room (never placed,
        no slice) at the same or a higher priority, if any.

        A new lease takes its turn after it (first come, first served for one request)
        without a placement of its own: that placement would fail as the earlier one's
        did (capacity freed since would have been offered to the earlier one by
        :meth:`retry`), and with a thousand requests at once the failing placements and
        their explanations were most of the scheduler's time."""
        shape = _shape(lease.request)
        for x in reversed(self.leases.values()):
            if (
                x is not lease
                and x.state == "pending"
                and x.placed_on is None
                and x.priority >= lease.priority
                and x.slice_id not in self.table.slices
                and _shape(x.request) == shape
            ):
                return x
        return None

    def wait_behind(self, lease: LeaseInfo, ahead: LeaseInfo) -> None:
        """``lease`` waits its turn after ``ahead`` (see :meth:`queued_behind`)."""
        lease.state = "pending"
        lease.reason = f"waits its turn after lease {ahead.lease_id} (the same request, asked earlier): " + (
            ahead.reason.split(": ", 1)[1] if ahead.reason.startswith("waits its turn") else ahead.reason
        )
        self.table.emit(
            "wait",
            f"lease {lease.lease_id} waits: {lease.reason}",
            lease_id=lease.lease_id,
            owner=lease.owner,
        )

    def host_back(self, host: str) -> None:
        """A host (re)joined: place the leases that were on it there again."""
        for lease in self.leases.values():
            if lease.state in ("pending", "recovering") and lease.placed_on and lease.placed_on[0] == host:
                self.place(lease)

    def make_room(self, lease: LeaseInfo, *, strict: bool = False) -> Allocation | None:
        """Reserve ``lease``'s slice, releasing idle shared and warm slices where needed.
        Those :attr:`keep` keeps go only if the others do not make room, and never when
        ``strict`` (pre-warming is never worth a recomputation)."""
        alloc = self._reserve_for(lease)
        if alloc is not None:
            return alloc
        idle = self.table.idle(warm=lease.owner != PREWARM_OWNER)
        keep = self.keep
        if keep is None:
            return self._reclaim_for(lease, idle)
        first = [s for s in idle if not keep(s)]
        if strict or len(first) == len(idle):
            return self._reclaim_for(lease, first)
        return self._reclaim_for(lease, first) or self._reclaim_for(lease, idle)

    def _reclaim_for(self, lease: LeaseInfo, idle: list[SliceInfo]) -> Allocation | None:
        """Release ``idle`` slices, reserve ``lease``'s slice, and put back those it did
        not need; the reclaimed ones are stopped and their devices' rest carved again.
        (A transaction, not a "what if": it ends in a reservation when one fits.)"""
        if not idle:
            return None
        if len(idle) > 1:
            # Only the slices of the host placement would choose with all of them given
            # back (asked on a copy) are released: in a pool carved into shared slices
            # every device holds one, and releasing thousands per lease was most of the
            # time of a replay. The host it was on before is kept, to go back there.
            d = self.whatif.place(lease.request, [s.alloc_id for s in idle])
            if not d.ok:
                return None
            hosts = {self.ledger.pool.host_names[d.host]}
            if lease.placed_on is not None:
                hosts.add(lease.placed_on[0])
            idle = [s for s in idle if s.host in hosts]
        saved = {s.slice_id: self.ledger.release(s.alloc_id) for s in idle}
        alloc = self._reserve_for(lease)
        used = {g.device for g in alloc.slices} if alloc else set()
        for s in idle:
            old = saved[s.slice_id]
            if old is None:
                continue
            if alloc is not None and set(s.devices) & used:
                self._reclaimed(s, lease, "reclaimed for")
            else:
                try:
                    self.ledger.reinstate(old)
                except LedgerConflict:
                    # The lease took what it held beside its device (host CPU or RAM, on
                    # another device of the same host): it was idle, so it simply goes.
                    self._reclaimed(s, lease, "given up: its host's CPU or RAM went to")
        if alloc is not None:
            self.table.recarve_shared(alloc.host, [x.device for x in alloc.slices])
        return alloc

    def _reclaimed(self, s: SliceInfo, lease: LeaseInfo, what: str) -> None:
        """Stop an idle slice whose capacity (already released) went to ``lease``."""
        self.table.drop(s.slice_id, f"{what} lease {lease.lease_id}")
        self.table.emit(
            "reclaim",
            f"idle slice {s.slice_id} {what} lease {lease.lease_id}",
            slice_id=s.slice_id,
            lease_id=lease.lease_id,
            host=s.host,
        )

    def _reserve_for(self, lease: LeaseInfo) -> Allocation | None:
        """Reserve ``lease``'s slice where it was, else where placement says; None when
        it fits nowhere now."""
        req = lease.request
        if lease.placed_on is not None and lease.placed_on[0] in self.ledger.hosts:
            host, devs, start = lease.placed_on
            try:
                return self._reserve(req, host, list(devs), lease, start=start)
            except (LedgerConflict, UnknownName, InvalidRequest):
                pass  # the old place is taken or gone: place it anew
        d = place(req, self.ledger.pool, self.profile)
        if not d.ok:
            return None
        host = self.ledger.pool.host_names[d.host]
        return self._reserve(
            req, host, [self.ledger.device_at(i) for i in d.devices], lease, decision_id=d.decision_id
        )

    def _reserve(
        self,
        req: SliceRequest,
        host: str,
        devs: list[str],
        lease: LeaseInfo,
        *,
        start: int = -1,
        decision_id: str = "",
    ) -> Allocation:
        return self.ledger.reserve(
            host=host,
            devices=devs,
            compute_milli=req.compute_milli if req.profile is None else WHOLE,
            memory_mib=req.memory_mib,
            profile=req.profile,
            host_cpu_milli=req.host_cpu_milli,
            host_memory_mib=req.host_memory_mib,
            owner=lease.owner,
            decision_id=decision_id,
            request=req.describe(),
            alloc_id=f"lease-{lease.lease_id}",
            start=start if (req.profile is not None and start >= 0) else None,
        )

    # -- its slice's worker --------------------------------------------------------------
    def slice_ready(self, s: SliceInfo) -> None:
        """The worker of ``s`` started: its lease is active."""
        lease = self.leases.get(s.lease_id or "")
        if lease is None:
            return
        was = lease.state
        lease.state = "active"
        lease.reason = ""
        start_ttl(lease, self.table.clock())
        if was == "recovering":
            self.table.emit(
                "lease",
                f"lease {lease.lease_id} is back on {s.slice_id}",
                lease_id=lease.lease_id,
                owner=lease.owner,
                slice_id=s.slice_id,
            )

    def slice_lost(self, s: SliceInfo, why: str) -> bool:
        """``s`` was lost: its lease (False: it has none) recovers, placed again."""
        lease = self.leases.get(s.lease_id or "")
        if lease is None:
            return False
        lease.state = "recovering"
        lease.reason = why
        self.table.emit(
            "lease",
            f"lease {lease.lease_id}: its slice was lost ({why}); placing it again",
            lease_id=lease.lease_id,
            owner=lease.owner,
            slice_id=s.slice_id,
        )
        self.place(lease)
        return True

    # -- ending and keeping --------------------------------------------------------------
    def end(self, lease: LeaseInfo, *, reason: str, state: LeaseState, keep_slice: bool = False) -> None:
        """Release or expire a lease that holds (or waits for) a slice: its slice is
        stopped and its capacity goes back into shared use (``keep_slice``: its slice was
        recycled, kept warm for the next lease)."""
        lease.state = state
        lease.reason = reason
        lease.ended_at = self.table.clock()
        s = None if keep_slice else self.table.drop(lease.slice_id, reason)
        if s is not None and self.table.carve_on_register:
            self.table.recarve_shared(s.host, s.devices)
        self.table.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} {state}: {reason}",
            lease_id=lease.lease_id,
            owner=lease.owner,
            slice_id=lease.slice_id,
        )

    def forget_ended(self, before: float) -> list[str]:
        """Forget the leases that ended before ``before`` (their owners had their events;
        the scheduler's memory must not grow with every lease ever made)."""
        gone = [
            lid
            for lid, x in self.leases.items()
            if x.state in ENDED and (x.ended_at if x.ended_at is not None else x.expires_at) < before
        ]
        for lid in gone:
            del self.leases[lid]
        return gone

    def renew(self, lease_id: str, actor: str | None, ttl_s: float) -> LeaseInfo:
        if not ttl_s > 0:
            raise InvalidRequest("ttl", ttl_s, "a positive number of seconds")
        lease = self.get(lease_id, actor)
        if lease.state in ENDED:
            raise LedgerConflict(f"lease {lease_id} is {lease.state}; ask for a new one")
        lease.expires_at = self.table.clock() + ttl_s
        lease.ttl_s = ttl_s
        self.table.emit(
            "lease", f"lease {lease_id} renewed for {ttl_s:g} s", lease_id=lease_id, owner=lease.owner
        )
        return lease

    def due(self) -> list[LeaseInfo]:
        """Leases past their TTL whose slice runs nothing (time-sharing): to expire."""
        now = self.table.clock()
        out = []
        for lease in list(self.leases.values()):
            if lease.state in ENDED or lease.active_since is None or now < lease.expires_at:
                continue  # ended, never active yet (its TTL has not started), or in time
            s = self.table.slices.get(lease.slice_id or "")
            if s is not None and s.utilisation > 0.0 and s.tasks > 0:
                continue
            out.append(lease)
        return out

    def restore(self, lease: LeaseInfo) -> None:
        """Bring back a lease kept on disk (scheduler restart); it is placed again where it
        was as soon as its host is registered."""
        self.leases[lease.lease_id] = lease
        self.table.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} restored from disk",
            lease_id=lease.lease_id,
            owner=lease.owner,
        )
        if lease.placed_on is None or lease.placed_on[0] in self.ledger.hosts:
            self.place(lease)


def start_ttl(lease: LeaseInfo, now: float) -> None:
    """The first time ``lease`` is active, its TTL starts."""
    if lease.active_since is None:
        lease.active_since = now
        lease.expires_at = now + lease.ttl_s


def _shape(r: SliceRequest) -> tuple[object, ...]:
    """What makes two lease requests place alike (owner and priority aside)."""
    return (
        r.selector,
        r.compute_milli,
        r.memory_mib,
        r.profile,
        r.devices,
        r.host_cpu_milli,
        r.host_memory_mib,
    )
