"""The task binder: which shared slice runs a task, carving one when none fits.

A task goes to the least loaded fitting shared slice (by expected finish when binding is
speed-aware); when none fits a new shared slice is carved where placement says; when
nothing can be carved now the task waits (``pending``) with its reason, and when it can
never fit it fails with ``explain()``'s counted reasons.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from flexlab.core.catalog import CATALOG
from flexlab.core.errors import LedgerConflict
from flexlab.core.ledger import default_memory_mib, round_compute
from flexlab.core.placement.framework import PlacementProfile, explain, place
from flexlab.core.placement.status import Code
from flexlab.core.pool.model import LIVE, Binding, SliceInfo, reason_text
from flexlab.core.pool.slices import SliceTable
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE
from flexlab.core.speed import ThroughputTable

_FitKey = tuple[object, ...]


class TaskBinder:
    """Tasks bound to shared slices (``task_slice``) and those waiting (``pending``)."""

    def __init__(self, table: SliceTable, profile: PlacementProfile, speed: ThroughputTable | None) -> None:
        self.table = table
        self.profile = profile
        #: Waiting tasks: key -> (request, why it waits).
        self.pending: dict[object, tuple[SliceRequest, str]] = {}
        #: Bound tasks: key -> (slice id, compute milli it was given).
        self.task_slice: dict[object, tuple[str, int]] = {}
        #: Speed-aware binding: throughput per (workload class, model), learned from the
        #: durations of finished tasks (``learn``); None: every device counts the same.
        self.speed = speed
        #: Work of one task of each class in reference device-seconds, fixed by its first
        #: measurement (the catalog prior's scale), so rates of all models compare.
        self.class_work: dict[str, float] = {}
        self._rebound: list[tuple[object, Binding]] = []
        self._fit_cache: dict[_FitKey, list[SliceInfo]] = {}
        self._fit_version = -1

    # -- binding -------------------------------------------------------------------------
    def bind(self, key: object, request: SliceRequest) -> Binding:
        """Choose a shared slice for one task (carving one if needed)."""
        b = self._bind_existing(request)
        if b is None:
            b = self._bind_by_carving(request)
        if b.status == "bound" and b.slice_id is not None:
            s = self.table.slices[b.slice_id]
            s.load_milli += b.compute_milli
            s.tasks += 1
            self.task_slice[key] = (b.slice_id, b.compute_milli)
            self.pending.pop(key, None)
        elif b.status == "wait":
            self.pending[key] = (request, b.reason)
        else:  # it can never fit: no longer waiting (nor retried, nor counted as waiting)
            self.pending.pop(key, None)
        return b

    def bind_many(self, keys: list[object], request: SliceRequest) -> list[Binding]:
        """Bind many tasks of one request at once (a ``client.map``): the candidates are
        found once and tasks are spread over them by least committed share, so the cost per
        task is a heap operation."""
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
            shared[sl.slice_id] = _bound(sl, need)
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
                    sl = self.table.slices[b.slice_id]
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

    def task_finished(self, key: object) -> None:
        # Hot path (once per finished task); nothing waits, most of the time.
        entry = self.task_slice.pop(key, None)
        if self.pending:
            self.pending.pop(key, None)
        if entry is None:
            return
        s = self.table.slices.get(entry[0])
        if s is not None:
            s.load_milli -= entry[1]
            s.tasks -= 1

    def forget_slice(self, slice_id: str) -> list[object]:
        """The slice is gone: unbind its tasks and return their keys (to be bound again)."""
        keys = [k for k, (sid, _) in self.task_slice.items() if sid == slice_id]
        for k in keys:
            del self.task_slice[k]
        return keys

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

    # -- fitting slices ------------------------------------------------------------------
    def _fits(self, request: SliceRequest) -> list[SliceInfo]:
        """Live shared slices that can hold ``request`` by size (cached until the table
        changes: its version is the cache's key)."""
        if self._fit_version != self.table.version:
            self._fit_cache.clear()
            self._fit_version = self.table.version
        ck = (request.selector, request.compute_milli, request.memory_mib, request.profile, request.devices)
        cached = self._fit_cache.get(ck)
        if cached is not None:
            return cached
        out = []
        for s in self.table.slices.values():
            if s.reserved or s.state not in LIVE:
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
        """Compute and memory one task of ``request`` takes on ``s``; None: it does not fit."""
        if request.profile is not None:
            return (s.compute_milli, s.memory_mib)
        ledger = self.table.ledger
        gran = max(1, CATALOG[s.model].granularity_milli)
        need_c = round_compute(request.compute_milli, gran)
        total = int(ledger.pool.dev_mem_total[ledger.device_index(s.devices[0])])
        need_m = request.memory_mib or (total if need_c == WHOLE else default_memory_mib(need_c, total))
        if need_c > s.compute_milli or need_m > s.memory_mib:
            return None
        return (need_c, need_m)

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
        return _bound(best, best_need)

    def _bind_by_carving(self, request: SliceRequest, *, quiet: bool = False) -> Binding:
        ledger = self.table.ledger
        shape = replace(request, host_cpu_milli=0, host_memory_mib=0)
        decision = place(shape, ledger.pool, self.profile)
        if not decision.ok:
            if quiet:
                return Binding("wait")
            ex = explain(shape, ledger.pool, self.profile)
            if ex.code is Code.UNSCHEDULABLE:
                return Binding("wait", reason=reason_text(ex), code=ex.code)
            if self.table.settling:  # its hosts may not have registered yet
                why = f"{reason_text(ex)} (hosts of this pool have not all registered yet)"
                return Binding("wait", reason=why, code=Code.UNSCHEDULABLE)
            return Binding("fail", reason=reason_text(ex), code=Code.UNRESOLVABLE)
        host = ledger.pool.host_names[decision.host]
        devs = [ledger.device_at(i) for i in decision.devices]
        if request.profile is not None:
            alloc = ledger.reserve(
                host=host,
                devices=devs,
                profile=request.profile,
                decision_id=decision.decision_id,
                request=request.describe(),
            )
        else:
            # A shared slice takes what is free on the device: later tasks pack into it.
            i = decision.devices[0]
            comp = int(ledger.pool.dev_compute_free[i]) if len(devs) == 1 else WHOLE
            mem = int(ledger.pool.dev_mem_free[i]) if len(devs) == 1 else 0
            alloc = ledger.reserve(
                host=host,
                devices=devs,
                compute_milli=comp,
                memory_mib=mem,
                decision_id=decision.decision_id,
                request="shared",
            )
        s = self.table.carve(alloc, lease=None)
        need = self._need(request, s)
        if need is None:  # pragma: no cover - place() checked the same capacity
            raise LedgerConflict(f"carved {s.slice_id} does not hold {request.describe()}")
        return _bound(s, need)

    # -- speed ---------------------------------------------------------------------------
    def learn(self, workload_class: str, slice_id: str, share: float, duration_s: float) -> None:
        """A task of ``workload_class`` ran ``duration_s`` seconds on ``share`` (0..1] of the
        device of ``slice_id``: update the throughput of that class on that model."""
        s = self.table.slices.get(slice_id)
        if self.speed is None or s is None or not (duration_s > 0 and 0 < share <= 1):
            return
        work = self.class_work.get(workload_class)
        if work is None:  # the first measurement sets the class's work on the prior's scale
            work = self.class_work[workload_class] = duration_s * share * self.speed.prior_of(s.model)
        self.speed.observe(workload_class, s.model, work=work, duration_s=duration_s, share=share)

    def _slowness(self, request: SliceRequest, s: SliceInfo) -> float:
        """Seconds per unit of work of ``request``'s class on ``s``'s model: learned once the
        class was measured, the catalog's prior (peak FP16) before; 1.0 for a task that names
        no workload class, or when binding is not speed-aware."""
        cls = request.workload_class
        if self.speed is None or cls is None:
            return 1.0
        return 1.0 / max(self.speed.rate(cls, s.model), 1e-9)


def _bound(s: SliceInfo, need: tuple[int, int]) -> Binding:
    """A task bound to ``s`` with ``need`` (compute milli, memory MiB) of it."""
    return Binding(
        "bound",
        slice_id=s.slice_id,
        compute_milli=need[0],
        resources={s.resource: float(s.task_milli(need[0], need[1]))},
    )
