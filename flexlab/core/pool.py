"""The live pool: slices carved from devices, tasks bound to slices, and leases.

``SlicePool`` is the runtime's state and decisions with no Dask in it: the scheduler plugin
translates Dask events into calls here and carries out the commands it returns
(``StartSlice`` / ``StopSlice`` for the host agents, resource restrictions for tasks).

* A **slice** is a ledger allocation served by one worker. Shared slices take any owner's
  tasks; a lease's slice takes only its owner's. Its capacity (compute milli, memory MiB per
  device) becomes the worker's Dask resources ``flexlab-slice-<id>`` and
  ``flexlab-slice-<id>-mem``, so that Dask keeps concurrent tasks inside it.
* A **task** with a request is bound to the least loaded fitting shared slice; when none
  fits, a new shared slice is carved where placement says (``place()`` on the ledger); when
  nothing can be carved now it waits with its reason; when it can never fit it fails with
  ``explain()``'s counted reasons.
* A **lease** reserves a slice for one owner until released or expired; idle shared
  slices are reclaimed to make room for it.
* A **warm** slice is carved ahead of a forecast lease (``prewarm``): its worker starts
  with the lease resource of a lease id reserved for it, runs nobody's tasks, and is handed
  to the next lease asking for exactly its request (``create_lease``), which is then active
  at once instead of waiting for a worker to start. ``dissolve_warm`` gives it back.
* A lease is **preempted** (``preempt_lease``) for higher-priority work: its slice is
  stopped, Dask re-runs the tasks that were on it once the lease is placed again, and the
  lease waits (``pending``) with the reason; it is not lost.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from flexlab.core.errors import InvalidRequest, LedgerConflict, NotOwner, UnknownName, Unschedulable
from flexlab.core.ledger import Allocation, Ledger, default_memory_mib, round_compute
from flexlab.core.placement.framework import Explanation, PlacementProfile, explain, place
from flexlab.core.placement.policies import make_profile
from flexlab.core.placement.status import Code
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.core.speed import ThroughputTable
from flexlab.core.topology import PROFILE, HostSpec

SliceState = Literal["starting", "ready", "lost", "stopped"]
LeaseState = Literal["pending", "active", "recovering", "released", "expired"]
BindStatus = Literal["bound", "wait", "fail"]
RESOURCE_PREFIX = "flexlab-slice-"
#: Owner of the warm slices carved ahead of forecast leases.
PREWARM_OWNER = "flexlab-prewarm"
LEASE_PREFIX = "flexlab-lease-"
#: Threads of a slice worker: tasks inside a slice run concurrently up to its resources.
DEFAULT_SLICE_THREADS = 8


@dataclass
class SliceInfo:
    """A carved slice and the worker that serves it."""

    slice_id: str
    alloc_id: str
    host: str
    devices: tuple[str, ...]
    model: str
    kind: str
    vendor: str
    compute_milli: int  # per device
    memory_mib: int  # per device
    profile: str | None = None
    lease_id: str | None = None
    owner: str | None = None
    state: SliceState = "starting"
    worker: str | None = None
    created: float = 0.0
    #: Compute bound to it by queued and running tasks (for balancing).
    load_milli: int = 0
    tasks: int = 0
    #: Last telemetry: utilisation 0..1 and device memory in use.
    utilisation: float = 0.0
    memory_used_mib: int = 0
    #: A warm slice: the request text of the lease it is kept for (None otherwise).
    warm_for: str | None = None

    @property
    def resource(self) -> str:
        return f"{RESOURCE_PREFIX}{self.slice_id}"

    @property
    def memory_resource(self) -> str:
        return f"{RESOURCE_PREFIX}{self.slice_id}-mem"

    def worker_resources(self, nthreads: int = DEFAULT_SLICE_THREADS) -> dict[str, float]:
        res = {self.resource: float(self.compute_milli), self.memory_resource: float(self.memory_mib)}
        if self.lease_id is not None:
            res[f"{LEASE_PREFIX}{self.lease_id}"] = float(nthreads)
        elif self.warm_for is not None:  # the id its future lease will have
            res[f"{LEASE_PREFIX}{self.slice_id}"] = float(nthreads)
        return res

    @property
    def reserved(self) -> bool:
        """Held for one owner (a lease's slice or a warm one): no shared tasks run on it."""
        return self.lease_id is not None or self.warm_for is not None


@dataclass
class LeaseInfo:
    lease_id: str
    owner: str
    request: SliceRequest
    ttl_s: float
    priority: int
    created: float
    expires_at: float
    state: LeaseState = "pending"
    slice_id: str | None = None
    reason: str = ""
    #: Where the lease's slice was last (host, devices, profile start), to restore it there.
    placed_on: tuple[str, tuple[str, ...], int] | None = None
    #: How often it was preempted for higher-priority work.
    preemptions: int = 0

    @property
    def resource(self) -> str:
        return f"{LEASE_PREFIX}{self.lease_id}"


@dataclass(frozen=True)
class StartSlice:
    """Command to a host agent: start a worker serving this slice."""

    slice_id: str
    host: str
    devices: tuple[str, ...]
    model: str
    compute_milli: int
    memory_mib: int
    profile: str | None
    lease_id: str | None
    owner: str | None
    resources: dict[str, float]
    nthreads: int


@dataclass(frozen=True)
class StopSlice:
    """Command to a host agent: stop the worker of this slice."""

    slice_id: str
    host: str
    reason: str


Command = StartSlice | StopSlice


@dataclass(frozen=True)
class Binding:
    """Where a task goes: its resource restrictions, or why it waits or fails."""

    status: BindStatus
    slice_id: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    code: Code = Code.SUCCESS
    compute_milli: int = 0


@dataclass(frozen=True)
class Event:
    """Something the pool did, with its reason; ``decision_id`` ties it to placement."""

    seq: int
    time: float
    kind: str
    message: str
    owner: str | None = None
    lease_id: str | None = None
    slice_id: str | None = None
    host: str | None = None
    decision_id: str = ""


class SlicePool:
    """The live pool. Not thread-safe: the scheduler plugin calls it from its event loop."""

    def __init__(
        self,
        *,
        policy: str = "binpack",
        clock: Callable[[], float] = time.time,
        default_layouts: dict[str, tuple[str, ...]] | None = None,
        carve_on_register: bool = True,
        slice_threads: int = DEFAULT_SLICE_THREADS,
        max_events: int = 2000,
        speed: ThroughputTable | None = None,
    ) -> None:
        self.ledger = Ledger()
        self.profile: PlacementProfile = make_profile(policy)
        self.clock = clock
        self.default_layouts = dict(default_layouts or {})
        #: Layout a host registered for a profile device (device id -> profiles), kept to
        #: carve the device again after a lease or a lost slice gives capacity back.
        self.layouts: dict[str, tuple[str, ...]] = {}
        self.carve_on_register = carve_on_register
        self.slice_threads = slice_threads
        self.slices: dict[str, SliceInfo] = {}
        self.leases: dict[str, LeaseInfo] = {}
        self.outbox: dict[str, list[Command]] = {}
        self.pending: dict[object, tuple[SliceRequest, str]] = {}
        self.task_slice: dict[object, tuple[str, int]] = {}
        self.events: deque[Event] = deque(maxlen=max_events)
        self._seq = itertools.count(1)
        self._slice_ids = itertools.count(1)
        self._lease_ids = itertools.count(1)
        self._by_worker: dict[str, str] = {}
        self._fit_cache: dict[tuple[object, ...], list[SliceInfo]] = {}
        self._rebound: list[tuple[object, Binding]] = []
        #: Speed-aware binding: throughput per (workload class, model), learned from the
        #: durations of finished tasks (``learn``); None: every device counts the same.
        self.speed = speed
        #: Work of one task of each class in reference device-seconds, fixed by its first
        #: measurement (the catalog prior's scale), so rates of all models compare.
        self.class_work: dict[str, float] = {}
        #: Idle shared slices to reclaim only as a last resort (the runtime's say, e.g.
        #: those whose worker holds results Dask would have to recompute); None: any.
        self.keep: Callable[[SliceInfo], bool] | None = None

    # -- events and commands -------------------------------------------------------------
    def emit(self, kind: str, message: str, **fields: object) -> Event:
        ev = Event(seq=next(self._seq), time=self.clock(), kind=kind, message=message, **fields)  # type: ignore[arg-type]
        self.events.append(ev)
        return ev

    def take_commands(self, host: str) -> list[Command]:
        """Commands waiting for the agent of ``host`` (removed from the outbox)."""
        return self.outbox.pop(host, [])

    def _send(self, cmd: Command) -> None:
        self.outbox.setdefault(cmd.host, []).append(cmd)

    # -- hosts ---------------------------------------------------------------------------
    def register_host(self, spec: HostSpec, *, layouts: dict[str, tuple[str, ...]] | None = None) -> None:
        """Add (or re-add) a host; carve its shared slices (profile devices: ``layouts`` by
        device id, else the model's default layout) and bring back the leases that were
        placed on it."""
        known = spec.name in self.ledger.hosts
        self.ledger.add_host(spec)
        self._fit_cache.clear()
        self.emit("host", f"host {spec.name} registered with {len(spec.devices)} devices", host=spec.name)
        if known:
            return
        for lease in self.leases.values():
            if (
                lease.state in ("pending", "recovering")
                and lease.placed_on
                and lease.placed_on[0] == spec.name
            ):
                self._try_place_lease(lease)
        if self.carve_on_register:
            self._carve_defaults(spec, layouts or {})
        self.retry_pending()

    def unregister_host(self, name: str) -> list[object]:
        """Remove a host: its slices are lost (leases wait to be placed again)."""
        lost_keys: list[object] = []
        for s in [s for s in self.slices.values() if s.host == name]:
            lost_keys += self._lose_slice(s, f"host {name} left the pool")
        self.ledger.remove_host(name)
        self._fit_cache.clear()
        self.outbox.pop(name, None)
        self.emit("host", f"host {name} left the pool", host=name)
        return lost_keys

    def _carve_defaults(self, spec: HostSpec, layouts: dict[str, tuple[str, ...]]) -> None:
        for dev in spec.devices:
            did = spec.device_id(dev)
            if did in layouts:
                self.layouts[did] = tuple(layouts[did])
        self._recarve_shared(spec.name, [spec.device_id(dev) for dev in spec.devices])

    # -- slices --------------------------------------------------------------------------
    def _new_slice(
        self,
        alloc: Allocation,
        *,
        lease: LeaseInfo | None,
        slice_id: str | None = None,
        warm_for: str | None = None,
    ) -> SliceInfo:
        g = alloc.slices[0]
        st = self.ledger.device_spec(g.device)
        model = st.catalog
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
        )
        self.slices[sid] = s
        self._fit_cache.clear()
        self._send(
            StartSlice(
                slice_id=sid,
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
        )
        what = f"lease {lease.lease_id} of {lease.owner}" if lease else "shared use"
        if warm_for is not None:
            what = f"the next lease of {warm_for} (pre-warmed)"
        self.emit(
            "carve",
            f"carved {sid} on {', '.join(s.devices)}: {_shape(s)} for {what}",
            slice_id=sid,
            host=s.host,
            lease_id=s.lease_id,
            owner=s.owner,
            decision_id=alloc.decision_id,
        )
        return s

    def slice_ready(self, slice_id: str, worker: str) -> None:
        s = self.slices.get(slice_id)
        if s is None or s.state in ("lost", "stopped"):
            return
        s.state = "ready"
        s.worker = worker
        self._by_worker[worker] = slice_id
        if s.lease_id and s.lease_id in self.leases:
            lease = self.leases[s.lease_id]
            was = lease.state
            lease.state = "active"
            lease.reason = ""
            if was == "recovering":
                self.emit(
                    "lease",
                    f"lease {lease.lease_id} is back on {slice_id}",
                    lease_id=lease.lease_id,
                    owner=lease.owner,
                    slice_id=slice_id,
                )

    def _drop_slice(self, slice_id: str | None, reason: str) -> SliceInfo | None:
        """Stop a slice: its capacity back to the ledger, its worker told to stop."""
        s = self.slices.pop(slice_id, None) if slice_id else None
        if s is not None:
            self.ledger.release(s.alloc_id)
            if s.worker:
                self._by_worker.pop(s.worker, None)
            self._send(StopSlice(s.slice_id, s.host, reason))
            self._fit_cache.clear()
        return s

    def slice_of_worker(self, worker: str) -> SliceInfo | None:
        sid = self._by_worker.get(worker)
        return self.slices.get(sid) if sid else None

    def worker_lost(self, worker: str) -> list[object]:
        """A slice's worker died: its capacity returns to the ledger, its lease (if any) is
        placed again, and the keys of tasks bound to it are returned to be bound again."""
        sid = self._by_worker.pop(worker, None)
        s = self.slices.get(sid) if sid else None
        if s is None or s.state in ("lost", "stopped"):
            return []
        return self._lose_slice(s, f"worker {worker} of slice {s.slice_id} was lost")

    def _lose_slice(self, s: SliceInfo, why: str) -> list[object]:
        s.state = "lost"
        self.ledger.release(s.alloc_id)
        self.slices.pop(s.slice_id, None)
        self._fit_cache.clear()
        if s.worker:
            self._by_worker.pop(s.worker, None)
        self._send(StopSlice(s.slice_id, s.host, why))
        keys = [k for k, (sid, _) in self.task_slice.items() if sid == s.slice_id]
        for k in keys:
            del self.task_slice[k]
        self.emit(
            "lost",
            f"{why}; {len(keys)} tasks to place again, capacity released",
            slice_id=s.slice_id,
            host=s.host,
            lease_id=s.lease_id,
            owner=s.owner,
        )
        if s.lease_id and s.lease_id in self.leases:
            lease = self.leases[s.lease_id]
            lease.state = "recovering"
            lease.reason = why
            self.emit(
                "lease",
                f"lease {lease.lease_id}: its slice was lost ({why}); placing it again",
                lease_id=lease.lease_id,
                owner=lease.owner,
                slice_id=s.slice_id,
            )
            self._try_place_lease(lease)
        elif self.carve_on_register and s.host in self.ledger.hosts:
            # Put the capacity back into shared use on the same device(s).
            self._recarve_shared(s.host, s.devices)
        self.retry_pending()
        return keys

    def _recarve_shared(self, host: str, devices: Iterable[str]) -> None:
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
                    self._new_slice(alloc, lease=None)
                continue
            i = self.ledger.device_index(did)
            free = int(self.ledger.pool.dev_compute_free[i])
            mem = int(self.ledger.pool.dev_mem_free[i])
            # Compute left without memory (others took more than their share) serves nobody;
            # and 0 MiB would mean "a proportional share" to the ledger.
            if free > 0 and mem > 0:
                alloc = self.ledger.reserve(
                    host=host, devices=[did], compute_milli=free, memory_mib=mem, request="shared"
                )
                self._new_slice(alloc, lease=None)

    def _layout_left(self, device: str, layout: tuple[str, ...]) -> list[str]:
        """The instances of ``layout`` a device lacks: its shared slices already count."""
        have = [s.profile for s in self.slices.values() if device in s.devices and s.lease_id is None]
        left = list(layout)
        for prof in have:
            if prof in left:
                left.remove(prof)
        return left

    def telemetry(self, slice_id: str, *, utilisation: float, memory_used_mib: int) -> None:
        s = self.slices.get(slice_id)
        if s is not None:
            s.utilisation = max(0.0, min(1.0, utilisation))
            s.memory_used_mib = max(0, memory_used_mib)

    # -- tasks ---------------------------------------------------------------------------
    def bind(self, key: object, request: SliceRequest) -> Binding:
        """Choose a shared slice for one task (carving one if needed)."""
        b = self._bind_existing(request)
        if b is None:
            b = self._bind_by_carving(request)
        if b.status == "bound" and b.slice_id is not None:
            s = self.slices[b.slice_id]
            s.load_milli += b.compute_milli
            s.tasks += 1
            self.task_slice[key] = (b.slice_id, b.compute_milli)
            self.pending.pop(key, None)
        elif b.status == "wait":
            self.pending[key] = (request, b.reason)
        return b

    def bind_many(self, keys: list[object], request: SliceRequest) -> list[Binding]:
        """Bind many tasks of one request at once (a ``client.map``): the candidates are
        found once and tasks are spread over them by least committed share, so the cost per
        task is a heap operation."""
        import heapq

        if not keys:
            return []
        cands: list[tuple[SliceInfo, tuple[int, int]]] = []
        for sl in self._fits(request):
            need = self._need(request, sl)
            if need is not None:
                cands.append((sl, need))
        if not cands:
            return [self.bind(k, request) for k in keys]
        shared: dict[str, Binding] = {}
        heap: list[tuple[float, int, int]] = []
        # Spread by committed share times slowness: expected finish, when speed-aware.
        slow = [self._slowness(request, sl) for sl, _ in cands]
        for i, (sl, need) in enumerate(cands):
            heap.append(((sl.load_milli + need[0]) / max(sl.compute_milli, 1) * slow[i], sl.compute_milli, i))
            shared[sl.slice_id] = Binding(
                "bound",
                slice_id=sl.slice_id,
                compute_milli=need[0],
                resources={sl.resource: float(need[0]), sl.memory_resource: float(need[1])},
            )
        heapq.heapify(heap)
        carved = False
        out: list[Binding] = []
        task_slice = self.task_slice
        pending = self.pending
        for key in keys:
            ratio, cap, i = heap[0]
            if ratio > slow[i] and not carved:
                carved = True  # every fitting slice is fully committed: carve more once
                b = self._bind_by_carving(request, quiet=True)
                if b.status == "bound" and b.slice_id is not None:
                    sl = self.slices[b.slice_id]
                    need = self._need(request, sl)
                    if need is not None:
                        cands.append((sl, need))
                        slow.append(self._slowness(request, sl))
                        shared[sl.slice_id] = b
                        heapq.heappush(heap, (0.0, sl.compute_milli, len(cands) - 1))
                        ratio, cap, i = heap[0]
            sl, need = cands[i]
            sl.load_milli += need[0]
            sl.tasks += 1
            heapq.heapreplace(heap, ((sl.load_milli + need[0]) / max(cap, 1) * slow[i], cap, i))
            task_slice[key] = (sl.slice_id, need[0])
            pending.pop(key, None)
            out.append(shared[sl.slice_id])
        return out

    def bind_lease_task(self, key: object, lease_id: str, owner: str | None) -> Binding:
        lease = self.leases.get(lease_id)
        if lease is None or lease.state in ("released", "expired"):
            state = lease.state if lease else "unknown"
            return Binding("fail", reason=f"lease {lease_id} is {state}", code=Code.UNRESOLVABLE)
        if owner is not None and owner != lease.owner:
            return Binding(
                "fail",
                reason=f"lease {lease_id} belongs to {lease.owner!r}, not {owner!r}",
                code=Code.UNRESOLVABLE,
            )
        return Binding("bound", slice_id=lease.slice_id, resources={lease.resource: 1.0})

    def task_finished(self, key: object) -> None:
        entry = self.task_slice.pop(key, None)
        self.pending.pop(key, None)
        if entry is not None:
            s = self.slices.get(entry[0])
            if s is not None:
                s.load_milli -= entry[1]
                s.tasks -= 1

    def _fits(self, request: SliceRequest) -> list[SliceInfo]:
        ck = (request.selector, request.compute_milli, request.memory_mib, request.profile, request.devices)
        cached = self._fit_cache.get(ck)
        if cached is not None:
            return cached
        from flexlab.core.catalog import CATALOG

        out = []
        for s in self.slices.values():
            if s.reserved or s.state not in ("starting", "ready"):
                continue
            if len(s.devices) != request.devices or not request.selector.matches(CATALOG[s.model]):
                continue
            if request.profile is not None:
                if s.profile != request.profile:
                    continue
            elif self._need(request, s) is None:
                continue
            out.append(s)
        self._fit_cache[ck] = out
        return out

    def _need(self, request: SliceRequest, s: SliceInfo) -> tuple[int, int] | None:
        if request.profile is not None:
            return (s.compute_milli, s.memory_mib)
        gran = max(1, self._granularity(s.model))
        need_c = round_compute(request.compute_milli, gran)
        total = int(self.ledger.pool.dev_mem_total[self.ledger.device_index(s.devices[0])])
        need_m = request.memory_mib or (total if need_c == WHOLE else default_memory_mib(need_c, total))
        if need_c > s.compute_milli or need_m > s.memory_mib:
            return None
        return (need_c, need_m)

    @staticmethod
    def _granularity(model: str) -> int:
        from flexlab.core.catalog import CATALOG

        return CATALOG[model].granularity_milli

    def _bind_existing(self, request: SliceRequest) -> Binding | None:
        best: SliceInfo | None = None
        best_key: tuple[float, int] = (0.0, 0)
        best_need = (0, 0)
        best_ratio = 0.0
        for s in self._fits(request):
            need = self._need(request, s)
            if need is None:
                continue
            ratio = (s.load_milli + need[0]) / max(s.compute_milli, 1)
            key = (ratio * self._slowness(request, s), s.compute_milli)
            if best is None or key < best_key:
                best, best_key, best_need, best_ratio = s, key, need, ratio
        if best is None:
            return None
        if best_ratio > 1.0:
            # Every fitting slice is already fully committed: carve more if we can.
            carved = self._bind_by_carving(request, quiet=True)
            if carved.status == "bound":
                return carved
        return Binding(
            "bound",
            slice_id=best.slice_id,
            compute_milli=best_need[0],
            resources={best.resource: float(best_need[0]), best.memory_resource: float(best_need[1])},
        )

    def _bind_by_carving(self, request: SliceRequest, *, quiet: bool = False) -> Binding:
        shape = replace(request, host_cpu_milli=0, host_memory_mib=0)
        decision = place(shape, self.ledger.pool, self.profile)
        if not decision.ok:
            if quiet:
                return Binding("wait")
            ex = explain(shape, self.ledger.pool, self.profile)
            if ex.code is Code.UNSCHEDULABLE:
                return Binding("wait", reason=_reason_text(ex), code=ex.code)
            return Binding("fail", reason=_reason_text(ex), code=Code.UNRESOLVABLE)
        host = self.ledger.pool.host_names[decision.host]
        devs = [self.ledger.device_at(i) for i in decision.devices]
        if request.profile is not None:
            alloc = self.ledger.reserve(
                host=host,
                devices=devs,
                profile=request.profile,
                decision_id=decision.decision_id,
                request=request.describe(),
            )
        else:
            # A shared slice takes what is free on the device: later tasks pack into it.
            i = decision.devices[0]
            comp = int(self.ledger.pool.dev_compute_free[i]) if len(devs) == 1 else WHOLE
            mem = int(self.ledger.pool.dev_mem_free[i]) if len(devs) == 1 else 0
            alloc = self.ledger.reserve(
                host=host,
                devices=devs,
                compute_milli=comp,
                memory_mib=mem,
                decision_id=decision.decision_id,
                request="shared",
            )
        s = self._new_slice(alloc, lease=None)
        need = self._need(request, s)
        if need is None:  # pragma: no cover - place() checked the same capacity
            raise LedgerConflict(f"carved {s.slice_id} does not hold {request.describe()}")
        return Binding(
            "bound",
            slice_id=s.slice_id,
            compute_milli=need[0],
            resources={s.resource: float(need[0]), s.memory_resource: float(need[1])},
        )

    def retry_pending(self) -> list[tuple[object, Binding]]:
        """Bind waiting tasks that fit now. The new bindings are returned and also queued
        for :meth:`take_rebound`, since capacity frees up inside other calls too."""
        out = []
        for key, (req, _) in list(self.pending.items()):
            b = self.bind(key, req)
            if b.status != "wait":
                out.append((key, b))
        self._rebound.extend(out)
        return out

    @property
    def has_rebound(self) -> bool:
        return bool(self._rebound)

    def take_rebound(self) -> list[tuple[object, Binding]]:
        """Bindings of waiting tasks made since the last call (the runtime applies them)."""
        out, self._rebound = self._rebound, []
        return out

    # -- speed ---------------------------------------------------------------------------
    def learn(self, workload_class: str, slice_id: str, share: float, duration_s: float) -> None:
        """A task of ``workload_class`` ran ``duration_s`` seconds on ``share`` (0..1] of the
        device of ``slice_id``: update the throughput of that class on that model."""
        s = self.slices.get(slice_id)
        if self.speed is None or s is None or not (duration_s > 0 and 0 < share <= 1):
            return
        work = self.class_work.get(workload_class)
        if work is None:  # the first measurement sets the class's work on the prior's scale
            work = self.class_work[workload_class] = duration_s * share * self.speed.prior_of(s.model)
        self.speed.observe(workload_class, s.model, work=work, duration_s=duration_s, share=share)

    def _slowness(self, request: SliceRequest, s: SliceInfo) -> float:
        """Seconds per unit of work of ``request``'s class on ``s``'s model (1.0 when the
        class was never measured or binding is not speed-aware)."""
        cls = request.workload_class
        if self.speed is None or cls is None or cls not in self.class_work:
            return 1.0
        return 1.0 / max(self.speed.rate(cls, s.model), 1e-9)

    # -- leases --------------------------------------------------------------------------
    def create_lease(
        self,
        request: SliceRequest,
        *,
        owner: str,
        ttl_s: float,
        priority: int = 0,
        lease_id: str | None = None,
    ) -> LeaseInfo:
        """Reserve a slice for ``owner``. Raises ``Unschedulable`` when it can never fit;
        when it cannot fit now the lease is ``pending`` with its reason."""
        if not owner:
            raise InvalidRequest("owner", owner, "a non-empty user name")
        if not ttl_s > 0:
            raise InvalidRequest("ttl", ttl_s, "a positive number of seconds")
        if request.devices > 1:
            raise InvalidRequest("devices", request.devices, "1 (a lease holds one slice of one device)")
        req = replace(request, owner=owner, priority=priority)
        ex = explain(req, self._pool_without_shared(), self.profile)
        if ex.code is Code.UNRESOLVABLE:
            raise Unschedulable(
                f"{req.describe()} can never fit this pool:\n{ex.describe()}",
                code="UNRESOLVABLE",
                reasons=_reason_counts(ex),
            )
        now = self.clock()
        warm = None if lease_id else self._warm_slice_for(req)
        lid = lease_id or (warm.slice_id if warm else f"L{next(self._lease_ids)}")
        while lid in self.leases:
            lid = f"L{next(self._lease_ids)}"
        lease = LeaseInfo(
            lease_id=lid,
            owner=owner,
            request=req,
            ttl_s=ttl_s,
            priority=priority,
            created=now,
            expires_at=now + ttl_s,
        )
        self.leases[lid] = lease
        self.emit("lease", f"lease {lid} asked by {owner}: {req.describe()}", lease_id=lid, owner=owner)
        if warm is not None and warm.slice_id == lid:
            self._adopt_warm(lease, warm)
        else:
            self._try_place_lease(lease)
        return lease

    # -- warm slices (carved ahead of forecast leases) --------------------------------------
    def warm_slices(self) -> list[SliceInfo]:
        return [s for s in self.slices.values() if s.warm_for is not None]

    def _warm_slice_for(self, req: SliceRequest) -> SliceInfo | None:
        text = req.describe()
        ready = [s for s in self.warm_slices() if s.warm_for == text and s.state in ("starting", "ready")]
        # A ready worker first, then the oldest.
        ready.sort(key=lambda s: (s.state != "ready", s.created))
        return ready[0] if ready else None

    def _adopt_warm(self, lease: LeaseInfo, s: SliceInfo) -> None:
        s.warm_for = None
        s.lease_id = lease.lease_id
        s.owner = lease.owner
        start = self.ledger.get(s.alloc_id).slices[0].start if s.alloc_id in self.ledger else -1
        lease.placed_on = (s.host, s.devices, start)
        lease.slice_id = s.slice_id
        self._fit_cache.clear()
        if s.state == "ready":
            lease.state = "active"
            lease.reason = ""
        else:
            lease.reason = "starting its worker (pre-warmed)"
        self.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} took the pre-warmed slice {s.slice_id} on "
            f"{', '.join(s.devices)} ({'ready' if s.state == 'ready' else 'its worker is starting'})",
            lease_id=lease.lease_id,
            owner=lease.owner,
            slice_id=s.slice_id,
            host=s.host,
        )

    def prewarm(self, request: SliceRequest, reason: str) -> SliceInfo | None:
        """Carve a warm slice for the next lease asking exactly ``request`` (from free
        capacity or idle shared slices, never those :attr:`keep` keeps); None when it does
        not fit now. ``reason`` is logged."""
        req = replace(request, owner=PREWARM_OWNER)
        lid = f"L{next(self._lease_ids)}"
        while lid in self.leases or lid in self.slices:
            lid = f"L{next(self._lease_ids)}"
        probe = LeaseInfo(
            lease_id=lid, owner=PREWARM_OWNER, request=req, ttl_s=1.0, priority=-1, created=self.clock(),
            expires_at=self.clock(),
        )  # fmt: skip
        alloc = self._make_room(probe, strict=True)
        if alloc is None:
            return None
        s = self._new_slice(alloc, lease=None, slice_id=lid, warm_for=request.describe())
        self.emit(
            "prewarm",
            f"pre-warmed {lid} on {', '.join(s.devices)} for {request.describe()}: {reason}",
            slice_id=lid,
            host=s.host,
        )
        return s

    def dissolve_warm(self, slice_id: str, reason: str) -> bool:
        """Give an unclaimed warm slice back to shared use (False: it is not warm any more)."""
        s = self.slices.get(slice_id)
        if s is None or s.warm_for is None:
            return False
        self._drop_slice(slice_id, reason)
        self.emit(
            "prewarm",
            f"warm slice {slice_id} for {s.warm_for} given back: {reason}",
            slice_id=slice_id,
            host=s.host,
        )
        if self.carve_on_register and s.host in self.ledger.hosts:
            self._recarve_shared(s.host, s.devices)
        return True

    # -- preemption --------------------------------------------------------------------------
    def preemption_victims(self, lease: LeaseInfo) -> list[LeaseInfo]:
        """Lower-priority active leases whose slices, once given up, let ``lease`` fit: the
        lowest priority and youngest first, as few as that order allows. Empty when
        preempting them all would not help. Changes nothing."""
        lower = [
            x
            for x in self.leases.values()
            if x.priority < lease.priority and x.state == "active" and x.slice_id in self.slices
        ]
        lower.sort(key=lambda x: (x.priority, -x.created))
        idle = self._idle_slices(warm=True)
        released: list[Allocation] = []
        chosen: list[LeaseInfo] = []
        try:
            for s in idle:  # idle shared and warm slices are given up first anyway
                old = self.ledger.release(s.alloc_id)
                if old is not None:
                    released.append(old)
            for victim in lower:
                old = self.ledger.release(self.slices[victim.slice_id or ""].alloc_id)
                if old is not None:
                    released.append(old)
                chosen.append(victim)
                if place(lease.request, self.ledger.pool, self.profile).ok:
                    return chosen
            return []
        finally:
            for old in released:
                restore_allocation(self.ledger, old)

    def preempt_lease(self, lease_id: str, reason: str) -> LeaseInfo:
        """Take a lease's slice away for higher-priority work. The lease is not lost: it
        waits (``pending``) and is placed again when capacity frees up; Dask re-runs its
        tasks there."""
        lease = self.get_lease(lease_id)
        self._drop_slice(lease.slice_id, f"preempted: {reason}")
        lease.state = "pending"
        lease.reason = f"preempted: {reason}"
        lease.placed_on = None
        lease.preemptions += 1
        self.emit(
            "preempt",
            f"lease {lease_id} of {lease.owner} preempted: {reason}; it waits to be placed again",
            lease_id=lease_id,
            owner=lease.owner,
            slice_id=lease.slice_id,
        )
        return lease

    def restore_lease(self, lease: LeaseInfo) -> None:
        """Bring back a lease kept on disk (scheduler restart); it is placed again where it
        was as soon as its host is registered."""
        self.leases[lease.lease_id] = lease
        self.emit(
            "lease",
            f"lease {lease.lease_id} of {lease.owner} restored from disk",
            lease_id=lease.lease_id,
            owner=lease.owner,
        )
        if lease.placed_on is None or lease.placed_on[0] in self.ledger.hosts:
            self._try_place_lease(lease)

    def _pool_without_shared(self) -> PoolArrays:
        pool = self.ledger.pool.copy()
        for s in self.slices.values():
            if s.lease_id is None:
                for did in s.devices:
                    i = self.ledger.device_index(did)
                    pool.dev_compute_free[i] += s.compute_milli
                    pool.dev_mem_free[i] += s.memory_mib
        return pool

    def _try_place_lease(self, lease: LeaseInfo) -> bool:
        req = lease.request
        alloc = self._make_room(lease)
        if alloc is None:
            ex = explain(req, self.ledger.pool, self.profile)
            lease.reason = (
                "preempted; " if lease.placed_on is None and lease.preemptions else ""
            ) + _reason_text(ex)
            if lease.state != "recovering":
                lease.state = "pending"
            self.emit(
                "wait",
                f"lease {lease.lease_id} waits: {lease.reason}",
                lease_id=lease.lease_id,
                owner=lease.owner,
            )
            return False
        g = alloc.slices[0]
        lease.placed_on = (alloc.host, tuple(x.device for x in alloc.slices), g.start)
        s = self._new_slice(alloc, lease=lease, slice_id=f"{lease.lease_id}")
        lease.slice_id = s.slice_id
        if lease.state != "recovering":
            lease.state = "pending"
        lease.reason = "starting its worker"
        return True

    def _make_room(self, lease: LeaseInfo, *, strict: bool = False) -> Allocation | None:
        """Reserve ``lease``'s slice, releasing idle shared and warm slices where needed.
        Those :attr:`keep` keeps go only if the others do not make room, and never when
        ``strict`` (pre-warming is never worth a recomputation)."""
        alloc = self._reserve_for_lease(lease)
        if alloc is not None:
            return alloc
        idle = self._idle_slices(warm=lease.owner != PREWARM_OWNER)
        keep = self.keep
        if keep is None:
            return self._reclaim_for(lease, idle)
        first = [s for s in idle if not keep(s)]
        if strict or len(first) == len(idle):
            return self._reclaim_for(lease, first)
        return self._reclaim_for(lease, first) or self._reclaim_for(lease, idle)

    def _idle_slices(self, *, warm: bool) -> list[SliceInfo]:
        """Shared slices with no task bound, and warm slices too when ``warm``."""
        return [
            s
            for s in self.slices.values()
            if s.lease_id is None and s.tasks == 0 and (warm or s.warm_for is None)
        ]

    def _reclaim_for(self, lease: LeaseInfo, idle: list[SliceInfo]) -> Allocation | None:
        """Release ``idle`` slices, reserve ``lease``'s slice, and put back those it did
        not need; the reclaimed ones are stopped and their devices' rest carved again."""
        if not idle:
            return None
        saved = {s.slice_id: self.ledger.release(s.alloc_id) for s in idle}
        alloc = self._reserve_for_lease(lease)
        used = {g.device for g in alloc.slices} if alloc else set()
        for s in idle:
            old = saved[s.slice_id]
            if old is None:
                continue
            if alloc is not None and set(s.devices) & used:
                self._drop_slice(s.slice_id, f"re-carved for lease {lease.lease_id}")  # released above
                self.emit(
                    "reclaim",
                    f"idle shared slice {s.slice_id} reclaimed for lease {lease.lease_id}",
                    slice_id=s.slice_id,
                    lease_id=lease.lease_id,
                    host=s.host,
                )
            else:
                restore_allocation(self.ledger, old)
        if alloc is not None:
            self._recarve_shared(alloc.host, [x.device for x in alloc.slices])
        return alloc

    def _reserve_for_lease(self, lease: LeaseInfo) -> Allocation | None:
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

    def get_lease(self, lease_id: str, actor: str | None = None) -> LeaseInfo:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise UnknownName("lease", lease_id)
        if actor is not None and actor != lease.owner:
            raise NotOwner(f"lease {lease_id}", lease.owner, actor)
        return lease

    def release_lease(
        self,
        lease_id: str,
        actor: str | None,
        *,
        reason: str = "released by its owner",
        state: LeaseState = "released",
    ) -> LeaseInfo:
        """Give a lease back. Idempotent for its owner; anyone else gets ``NotOwner``."""
        lease = self.get_lease(lease_id, actor)
        if lease.state in ("released", "expired"):
            return lease
        lease.state = state
        lease.reason = reason
        s = self._drop_slice(lease.slice_id, reason)
        if s is not None and self.carve_on_register:
            self._recarve_shared(s.host, s.devices)
        self.emit(
            "lease",
            f"lease {lease_id} of {lease.owner} {state}: {reason}",
            lease_id=lease_id,
            owner=lease.owner,
            slice_id=lease.slice_id,
        )
        self.retry_pending()
        self.retry_leases()
        return lease

    def renew_lease(self, lease_id: str, actor: str | None, ttl_s: float) -> LeaseInfo:
        if not ttl_s > 0:
            raise InvalidRequest("ttl", ttl_s, "a positive number of seconds")
        lease = self.get_lease(lease_id, actor)
        if lease.state in ("released", "expired"):
            raise LedgerConflict(f"lease {lease_id} is {lease.state}; ask for a new one")
        lease.expires_at = self.clock() + ttl_s
        lease.ttl_s = ttl_s
        self.emit("lease", f"lease {lease_id} renewed for {ttl_s:g} s", lease_id=lease_id, owner=lease.owner)
        return lease

    def expire(self) -> list[LeaseInfo]:
        """Reclaim leases past their TTL that run nothing (time-sharing)."""
        now = self.clock()
        out = []
        for lease in list(self.leases.values()):
            if lease.state in ("released", "expired") or now < lease.expires_at:
                continue
            s = self.slices.get(lease.slice_id or "")
            if s is not None and s.utilisation > 0.0 and s.tasks > 0:
                continue
            out.append(self.release_lease(lease.lease_id, None, reason="its TTL ran out", state="expired"))
        return out

    def retry_leases(self) -> None:
        for lease in sorted(self.leases.values(), key=lambda x: (-x.priority, x.created)):
            if lease.state in ("pending", "recovering") and lease.slice_id not in self.slices:
                self._try_place_lease(lease)

    # -- reading -------------------------------------------------------------------------
    def explain(self, request: SliceRequest) -> Explanation:
        return explain(request, self.ledger.pool, self.profile)

    def explain_as_lease(self, request: SliceRequest) -> Explanation:
        """Dry run of a lease's placement: release the idle shared slices in the ledger,
        explain, and reserve them again exactly where they were (nothing else runs between)."""
        idle = self._idle_slices(warm=True)
        saved = [a for a in (self.ledger.release(s.alloc_id) for s in idle) if a is not None]
        try:
            return self.explain(request)
        finally:
            for old in saved:
                restore_allocation(self.ledger, old)


def restore_allocation(ledger: Ledger, old: Allocation) -> None:
    """Reserve a released allocation again exactly as it was (same id, place and sizes)."""
    g = old.slices[0]
    ledger.reserve(
        host=old.host,
        devices=[x.device for x in old.slices],
        compute_milli=g.compute_milli,
        memory_mib=g.memory_mib,
        profile=g.profile,
        start=g.start if g.profile else None,
        host_cpu_milli=old.host_cpu_milli,
        host_memory_mib=old.host_memory_mib,
        owner=old.owner,
        decision_id=old.decision_id,
        request=old.request,
        alloc_id=old.alloc_id,
    )


def _shape(s: SliceInfo) -> str:
    return s.profile or f"{s.compute_milli / 10:g}% and {s.memory_mib} MiB"


def _reason_counts(ex: Explanation) -> dict[str, dict[str, int]]:
    return {cls: {r.name: n for r, n in reasons.items()} for cls, reasons in ex.reasons_by_class.items()}


def _reason_text(ex: Explanation) -> str:
    parts = []
    for cls, reasons in sorted(ex.reasons_by_class.items()):
        rs = ", ".join(f"{n} {r.name}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        parts.append(f"{cls}: {rs}")
    return f"{ex.code.value}: " + ("; ".join(parts) if parts else "no devices in the pool")
