"""The slice table: the slices carved from the ledger, the workers serving them, the
commands for the host agents and the event log.

Every change to the table bumps :attr:`SliceTable.version`; whatever caches a view of the
slices (the binder's fitting slices) keys it on that number instead of being cleared by
hand wherever a slice comes or goes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable

from flexlab.core.errors import LedgerConflict
from flexlab.core.ledger import Allocation, Ledger
from flexlab.core.pool.model import (
    LIVE,
    SHARED,
    Command,
    Event,
    LeaseInfo,
    SliceInfo,
    StartSlice,
    StopSlice,
    shape,
)
from flexlab.core.topology import PROFILE, HostSpec


class SliceTable:
    """Slices by id, their workers, the agents' outbox and the events of the pool."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        default_layouts: dict[str, tuple[str, ...]],
        carve_on_register: bool,
        slice_threads: int,
        max_events: int,
        policy: str = "",
    ) -> None:
        self.ledger = ledger
        #: Name of the placement policy, recorded on every slice a placement decided.
        self.policy = policy
        self.clock = clock
        self.default_layouts = default_layouts
        #: Layout a host registered for a profile device (device id -> profiles), kept to
        #: carve the device again after a lease or a lost slice gives capacity back.
        self.layouts: dict[str, tuple[str, ...]] = {}
        self.carve_on_register = carve_on_register
        self.slice_threads = slice_threads
        self.slices: dict[str, SliceInfo] = {}
        self.outbox: dict[str, list[Command]] = {}
        self.events: deque[Event] = deque(maxlen=max_events)
        #: Bumped on every change of the slices or the hosts (see the module docstring).
        self.version = 0
        #: Hosts the pool expects may still register (after a scheduler restart): a request
        #: that cannot fit the hosts registered so far waits instead of failing as never.
        self.settling = False
        self._seq = itertools.count(1)
        self._slice_ids = itertools.count(1)
        self._by_worker: dict[str, str] = {}

    # -- events and commands -------------------------------------------------------------
    def emit(self, kind: str, message: str, **fields: object) -> Event:
        ev = Event(seq=next(self._seq), time=self.clock(), kind=kind, message=message, **fields)  # type: ignore[arg-type]
        self.events.append(ev)
        return ev

    def send(self, cmd: Command) -> None:
        self.outbox.setdefault(cmd.host, []).append(cmd)

    def take_commands(self, host: str) -> list[Command]:
        """Commands waiting for the agent of ``host`` (removed from the outbox)."""
        return self.outbox.pop(host, [])

    def start_command(self, s: SliceInfo) -> StartSlice:
        """The command that starts a worker serving ``s``."""
        return StartSlice(
            slice_id=s.slice_id,
            host=s.host,
            devices=s.devices,
            model=s.model,
            compute_milli=s.compute_milli,
            memory_mib=s.memory_mib,
            profile=s.profile,
            lease_id=s.lease_id,
            owner=s.owner,
            resources=s.worker_resources(self.slice_threads),
            nthreads=self.slice_threads,
        )

    def restart_unserved(self, host: str, running: Iterable[str]) -> list[str]:
        """Send again the start of every slice of ``host`` still waiting for a worker that its
        agent, which just registered running ``running``, does not run (the start went to an
        agent that died); returns their ids."""
        have = set(running)
        have |= {c.slice_id for c in self.outbox.get(host, []) if isinstance(c, StartSlice)}
        again = [
            s
            for s in self.slices.values()
            if s.host == host and s.state == "starting" and s.slice_id not in have
        ]
        for s in again:
            self.send(self.start_command(s))
        return [s.slice_id for s in again]

    # -- hosts ---------------------------------------------------------------------------
    def add_host(self, spec: HostSpec) -> bool:
        """Add (or re-add) a host to the ledger; True when it was known already."""
        known = spec.name in self.ledger.hosts
        self.ledger.add_host(spec)
        self.version += 1
        self.emit("host", f"host {spec.name} registered with {len(spec.devices)} devices", host=spec.name)
        return known

    def leave(self, name: str) -> list[SliceInfo]:
        """Take a host out of the ledger (its allocations go with it) and return its
        slices, marked lost, for the caller to drop one by one. The host goes first so
        that nothing is carved on it again while its slices go."""
        self.ledger.remove_host(name)
        gone = [s for s in self.slices.values() if s.host == name]
        for s in gone:
            s.state = "lost"
        self.version += 1
        return gone

    def left(self, name: str) -> None:
        """The host's slices are gone: forget what was queued for its agent."""
        self.outbox.pop(name, None)
        self.emit("host", f"host {name} left the pool", host=name)

    def carve_layouts(self, spec: HostSpec, layouts: dict[str, tuple[str, ...]]) -> None:
        """Keep the layouts a host registered and carve its devices into shared slices."""
        for dev in spec.devices:
            did = spec.device_id(dev)
            if did in layouts:
                self.layouts[did] = tuple(layouts[did])
        self.recarve_shared(spec.name, [spec.device_id(dev) for dev in spec.devices])

    # -- slices --------------------------------------------------------------------------
    def carve(
        self,
        alloc: Allocation,
        *,
        lease: LeaseInfo | None,
        slice_id: str | None = None,
        warm_for: str | None = None,
    ) -> SliceInfo:
        """A new slice on ``alloc``: for ``lease``, warm for a request text, else shared.
        Its agent is told to start a worker for it."""
        g = alloc.slices[0]
        model = self.ledger.device_spec(g.device).catalog
        sid = slice_id or f"s{next(self._slice_ids)}"
        s = SliceInfo(
            slice_id=sid,
            alloc_id=alloc.alloc_id,
            host=alloc.host,
            devices=tuple(x.device for x in alloc.slices),
            model=model.key,
            kind=model.kind,
            vendor=model.vendor,
            compute_milli=g.compute_milli,
            memory_mib=g.memory_mib,
            profile=g.profile,
            lease_id=lease.lease_id if lease else None,
            owner=lease.owner if lease else None,
            created=self.clock(),
            warm_for=warm_for,
            policy=self.policy if alloc.decision_id else None,
            carved_for=warm_for or (lease.request.describe() if lease else None),
        )
        if lease is not None and s.policy is not None:
            lease.policy = s.policy
        self.slices[sid] = s
        self.version += 1
        self.send(self.start_command(s))
        what = f"lease {lease.lease_id} of {lease.owner}" if lease else "shared use"
        if warm_for is not None:
            what = f"the next lease of {warm_for} (pre-warmed)"
        self.emit(
            "carve",
            f"carved {sid} on {', '.join(s.devices)}: {shape(s)} for {what}",
            slice_id=sid,
            host=s.host,
            lease_id=s.lease_id,
            owner=s.owner,
            decision_id=alloc.decision_id,
        )
        return s

    def drop(self, slice_id: str | None, reason: str, *, lost: bool = False) -> SliceInfo | None:
        """Stop a slice: its capacity back to the ledger, its worker told to stop. The one
        place a slice goes (``lost``: its worker died)."""
        s = self.slices.pop(slice_id, None) if slice_id else None
        if s is not None:
            if lost:
                s.state = "lost"
            self.ledger.release(s.alloc_id)
            if s.worker:
                self._by_worker.pop(s.worker, None)
            self.send(StopSlice(s.slice_id, s.host, reason))
            self.version += 1
        return s

    def assign(self, s: SliceInfo, lease: LeaseInfo) -> None:
        """Hand a warm slice to ``lease``."""
        s.warm_for = None
        s.lease_id = lease.lease_id
        s.owner = lease.owner
        self.version += 1

    def mark_ready(self, slice_id: str, worker: str) -> SliceInfo | None:
        """``worker`` serves the slice now; None when the slice is gone."""
        s = self.slices.get(slice_id)
        if s is None or s.state in ("lost", "stopped"):
            return None
        s.state = "ready"
        s.worker = worker
        self._by_worker[worker] = slice_id
        return s

    def slice_of_worker(self, worker: str) -> SliceInfo | None:
        sid = self._by_worker.get(worker)
        return self.slices.get(sid) if sid else None

    def forget_worker(self, worker: str) -> SliceInfo | None:
        """``worker`` is gone: the live slice it served, if any."""
        sid = self._by_worker.pop(worker, None)
        s = self.slices.get(sid) if sid else None
        return None if s is None or s.state in ("lost", "stopped") else s

    def telemetry(self, slice_id: str, *, utilisation: float, memory_used_mib: int) -> None:
        s = self.slices.get(slice_id)
        if s is not None:
            s.utilisation = max(0.0, min(1.0, utilisation))
            s.memory_used_mib = max(0, memory_used_mib)

    def idle(self, *, warm: bool) -> list[SliceInfo]:
        """Live shared slices with no task bound, and warm slices too when ``warm``."""
        return [
            s
            for s in self.slices.values()
            if s.lease_id is None and s.tasks == 0 and (warm or s.warm_for is None) and s.state in LIVE
        ]

    def warm(self) -> list[SliceInfo]:
        return [s for s in self.slices.values() if s.warm_for is not None]

    # -- shared capacity -----------------------------------------------------------------
    def recarve_shared(self, host: str, devices: Iterable[str]) -> None:
        """Put what is free on ``devices`` into shared use: on a fraction device one slice
        of all its free compute and memory; on a profile device (MIG, vNPU) the instances
        of its layout (registered, else the model's default) that still fit beside what
        is held, in layout order."""
        for did in devices:
            spec = self.ledger.device_spec(did)
            if spec.mode == PROFILE:
                for prof in self._layout_left(
                    did, self.layouts.get(did) or self.default_layouts.get(spec.model, ())
                ):
                    try:
                        alloc = self.ledger.reserve(host=host, devices=[did], profile=prof, request=prof)
                    except LedgerConflict:
                        continue
                    self.carve(alloc, lease=None)
                continue
            i = self.ledger.device_index(did)
            free = int(self.ledger.pool.dev_compute_free[i])
            mem = int(self.ledger.pool.dev_mem_free[i])
            # Compute left without memory (others took more than their share) serves nobody;
            # and 0 MiB would mean "a proportional share" to the ledger.
            if free > 0 and mem > 0:
                alloc = self.ledger.reserve(
                    host=host, devices=[did], compute_milli=free, memory_mib=mem, request=SHARED
                )
                self.carve(alloc, lease=None)

    def _layout_left(self, device: str, layout: tuple[str, ...]) -> list[str]:
        """The instances of ``layout`` a device lacks: its shared slices already count."""
        have = [s.profile for s in self.slices.values() if device in s.devices and s.lease_id is None]
        left = list(layout)
        for prof in have:
            if prof in left:
                left.remove(prof)
        return left
