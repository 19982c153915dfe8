"""Warm slices: carved ahead of forecast leases.

A warm slice's worker starts with the lease resource of a lease id reserved for it, runs
nobody's tasks, and is handed to the next lease asking for exactly its request, which is
then active at once instead of waiting for a worker to start. ``dissolve`` gives it back.

**Recycling.** A lease's slice whose lease ends is kept as a warm slice of the lease's
request, instead of being stopped, while warm slices of that request are fewer than
:attr:`WarmSlices.wanted` (the Hi loop's targets; empty: never) and the runtime's
:attr:`WarmSlices.reusable` lets its worker go to someone else (the plugin: it runs and
holds nothing). Its worker keeps running: a ``RetagSlice`` command makes it offer the lease
resource of a new lease id instead of the ended lease's (whose queued work can then run
nowhere and fails), and the slice is ready again once its agent says so.

**A larger slice.** A lease with no ready warm slice of its request takes a ready one of
another request that it fits in and that is at most :attr:`WarmSlices.max_oversize` times
its size (its devices' model accepted, memory and host CPU and RAM enough), the smallest
first, as it is: it holds more than it asked (the slice's worker was started for that size
and is not resized), instead of waiting for a worker to start. 1.0: exact requests only.

**A standing worker.** Where devices are carved into shared slices as their hosts register
(``carve_on_register``), every idle device already runs a worker: its shared slice. A lease
with no ready warm slice of its own takes the smallest idle shared slice it fits in whose
worker is up and holds nothing, of at most :attr:`WarmSlices.max_oversize` its size as for
a larger warm slice (:meth:`WarmSlices.take_standing`), as it is, the worker retagged
(``RetagSlice``) instead of stopped and another started: the lease is active once the
agent has retagged it, not after a worker's start-up. A slice exactly its size (``gpu:1``
on an idle device, a MIG instance of its profile) costs nothing; a larger one is held
whole (up to ``max_oversize`` times what the lease asked) until the lease ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from flexlab.core.errors import LedgerConflict
from flexlab.core.ledger import default_memory_mib
from flexlab.core.pool.leases import LeaseBook, start_ttl
from flexlab.core.pool.model import (
    LEASE_PREFIX,
    LIVE,
    PREWARM_OWNER,
    SHARED,
    LeaseInfo,
    RetagSlice,
    SliceInfo,
)
from flexlab.core.pool.slices import SliceTable
from flexlab.core.request import SliceRequest


class WarmSlices:
    """Carve, hand over and give back warm slices."""

    def __init__(self, table: SliceTable, book: LeaseBook, *, max_oversize: float = 1.0) -> None:
        self.table = table
        self.book = book
        #: Warm slices wanted per request text (set by the Hi loop each pass): a lease's
        #: slice that ends while its request has fewer is recycled. Empty: never.
        self.wanted: dict[str, int] = {}
        #: The runtime's say: may this slice's worker serve another lease? None: yes.
        self.reusable: Callable[[SliceInfo], bool] | None = None
        #: A lease takes a ready warm slice of another request, or an idle shared slice's
        #: running worker, up to this many times its size when none of its own is ready
        #: (1.0: exact sizes only).
        self.max_oversize = max_oversize

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

    def recycle(self, s: SliceInfo, lease: LeaseInfo, reason: str) -> bool:
        """Keep the slice of ``lease`` (ending) warm for the next lease of its request, its
        worker retagged; False (nothing changed) when that request has the warm slices it
        wants, the worker is not up, or the runtime will not let it go to someone else."""
        text = s.carved_for or lease.request.describe()
        # A shared slice a smaller lease took whole goes back to shared use.
        want = 0 if text == SHARED else self.wanted.get(text, 0)
        if want <= 0 or s.state != "ready" or s.worker is None or s.lease_id != lease.lease_id:
            return False
        if sum(1 for w in self.table.warm() if w.warm_for == text) >= want:
            return False
        if self.reusable is not None and not self.reusable(s):
            return False
        nxt = self.book.new_id(taken=self.table.slices)
        ledger = self.table.ledger
        old = ledger.release(s.alloc_id)
        if old is not None:  # the same grants under the warm slice's id and owner
            ledger.reinstate(replace(old, alloc_id=f"lease-{nxt}", owner=PREWARM_OWNER))
            s.alloc_id = f"lease-{nxt}"
        s.lease_id = s.owner = None
        s.warm_for, s.next_lease, s.state = text, nxt, "starting"
        self.table.version += 1
        self.table.send(
            RetagSlice(
                slice_id=s.slice_id,
                host=s.host,
                worker=s.worker,
                resources=s.worker_resources(self.table.slice_threads),
                drop=(f"{LEASE_PREFIX}{lease.lease_id}",),
            )
        )
        self.table.emit(
            "prewarm",
            f"slice {s.slice_id} of lease {lease.lease_id} kept warm for {text} (recycled: {want} "
            f"wanted): its worker goes to the next lease ({reason})",
            slice_id=s.slice_id,
            lease_id=lease.lease_id,
            host=s.host,
        )
        return True

    def slice_for(self, req: SliceRequest) -> SliceInfo | None:
        """The warm slice a lease of ``req`` takes: of its request, a ready one (the
        oldest); else a ready larger one within :attr:`max_oversize` (the smallest); else
        the oldest of its request whose worker is starting."""
        text = req.describe()
        warm = [s for s in self.table.warm() if s.state in LIVE]
        own = sorted((s for s in warm if s.warm_for == text), key=lambda s: (s.state != "ready", s.created))
        if own and own[0].state == "ready":
            return own[0]
        if self.max_oversize > 1.0:
            larger = [s for s in warm if s.state == "ready" and s.warm_for != text and self._fits(s, req)]
            if larger:
                return min(larger, key=lambda s: (s.compute_milli, s.memory_mib, s.created))
        return own[0] if own else None

    def standing_for(self, req: SliceRequest) -> SliceInfo | None:
        """The idle shared slice a lease of ``req`` takes whole: ready, running and holding
        nothing, of a model the request accepts, with room for it and at most
        :attr:`max_oversize` its size (as a larger warm slice); the smallest (then the
        oldest). None when there is none (or the pool carves no shared slices)."""
        if not self.table.carve_on_register or req.devices != 1:
            return None
        ledger = self.table.ledger
        best: SliceInfo | None = None
        for s in self.table.slices.values():
            if s.lease_id is not None or s.warm_for is not None or s.state != "ready" or s.tasks:
                continue
            if best is not None and (s.compute_milli, s.memory_mib) >= (best.compute_milli, best.memory_mib):
                continue
            if req.profile is not None:
                model = ledger.device_spec(s.devices[0]).catalog
                if s.profile != req.profile or not req.selector.matches(model):
                    continue
            elif s.profile is not None or not self._share_fits(s, req):
                continue
            if s.worker is None or (self.reusable is not None and not self.reusable(s)):
                continue
            best = s
        return best

    def take_standing(self, lease: LeaseInfo, s: SliceInfo | None = None) -> bool:
        """``lease`` takes the idle shared slice ``s`` (default: :meth:`standing_for`) whole,
        its running worker retagged to offer the lease's resource; False (nothing changed)
        when none fits or its host has no room for the lease's host CPU and RAM, and for a
        private lease (its worker joins its owner's scheduler, not the pool's)."""
        if lease.private is not None:
            return False
        if s is None:
            s = self.standing_for(lease.request)
        if s is None or s.lease_id is not None or s.warm_for is not None:
            return False
        req = lease.request
        ledger = self.table.ledger
        old = ledger.release(s.alloc_id)
        if old is None:
            return False
        mine = replace(
            old,
            alloc_id=f"lease-{lease.lease_id}",
            owner=lease.owner,
            host_cpu_milli=req.host_cpu_milli,
            host_memory_mib=req.host_memory_mib,
            request=req.describe(),
        )
        try:
            ledger.reinstate(mine)
        except LedgerConflict:
            ledger.reinstate(old)
            return False
        spec = ledger.device_spec(s.devices[0])
        exact = req.profile is not None or (
            s.compute_milli == req.compute_milli
            and s.memory_mib
            == (req.memory_mib or default_memory_mib(req.compute_milli, spec.total_memory_mib))
        )
        s.alloc_id = mine.alloc_id
        self.table.assign(s, lease)
        # Kept warm for its lease's request only when it is that request's size; a larger
        # one goes back to shared use when the lease ends.
        s.carved_for = req.describe() if exact else SHARED
        s.state = "starting"
        g = mine.slices[0]
        lease.placed_on = (s.host, s.devices, g.start)
        lease.slice_id = s.slice_id
        lease.reason = "its slice's running worker is being handed over"
        self.table.send(
            RetagSlice(
                slice_id=s.slice_id,
                host=s.host,
                worker=s.worker or "",
                resources=s.worker_resources(self.table.slice_threads),
                drop=(),
            )
        )
        held = "" if exact else f", holding all of it ({s.compute_milli / 10:g}%) for {req.describe()}"
        self.table.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} took the idle shared slice {s.slice_id} on "
            f"{', '.join(s.devices)}, its worker running{held}",
            lease_id=lease.lease_id,
            owner=lease.owner,
            slice_id=s.slice_id,
            host=s.host,
        )
        return True

    def _fits(self, s: SliceInfo, req: SliceRequest) -> bool:
        """``req`` fits in the warm slice ``s``, which is at most ``max_oversize`` its size."""
        if s.profile is not None or req.profile is not None or len(s.devices) != req.devices:
            return False
        if not self._share_fits(s, req):
            return False
        ledger = self.table.ledger
        alloc = ledger.get(s.alloc_id) if s.alloc_id in ledger else None
        return alloc is not None and (
            alloc.host_cpu_milli >= req.host_cpu_milli and alloc.host_memory_mib >= req.host_memory_mib
        )

    def _share_fits(self, s: SliceInfo, req: SliceRequest) -> bool:
        """The fraction ``req`` fits in the fraction slice ``s`` (a model it accepts, memory
        enough), which is at most ``max_oversize`` its size: for a larger warm slice and for
        an idle shared one alike."""
        if not req.compute_milli <= s.compute_milli <= req.compute_milli * self.max_oversize:
            return False
        spec = self.table.ledger.device_spec(s.devices[0])
        if not req.selector.matches(spec.catalog):
            return False
        need = req.memory_mib or default_memory_mib(req.compute_milli, spec.total_memory_mib)
        return s.memory_mib >= need

    def adopt(self, lease: LeaseInfo, s: SliceInfo) -> None:
        """``lease`` takes the warm slice ``s`` (active at once when its worker is ready)."""
        self.table.assign(s, lease)
        s.next_lease = None
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
        larger = "" if s.carved_for == lease.request.describe() else f", carved for {s.carved_for}"
        self.table.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} took the pre-warmed slice {s.slice_id} on "
            f"{', '.join(s.devices)} ({'ready' if s.state == 'ready' else 'its worker is starting'}{larger})",
            lease_id=lease.lease_id,
            owner=lease.owner,
            slice_id=s.slice_id,
            host=s.host,
        )
