"""``SlicePool``: the live pool's one API. It composes the parts (see the package docstring)
and carries out what spans several of them: a host joining or leaving, a worker lost, a
lease asked or given back."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from flexlab.core.ledger import Ledger
from flexlab.core.placement.framework import Explanation, PlacementProfile, explain
from flexlab.core.placement.live import DEFAULT_POLICY, LivePolicy
from flexlab.core.pool.binder import TaskBinder
from flexlab.core.pool.leases import LeaseBook
from flexlab.core.pool.model import (
    DEFAULT_SLICE_THREADS,
    ENDED,
    Binding,
    Command,
    Event,
    LeaseInfo,
    LeaseState,
    SliceInfo,
)
from flexlab.core.pool.preempt import Preemptor
from flexlab.core.pool.slices import SliceTable
from flexlab.core.pool.warm import WarmSlices
from flexlab.core.pool.whatif import WhatIf
from flexlab.core.request import SliceRequest
from flexlab.core.speed import ThroughputTable
from flexlab.core.topology import HostSpec


class SlicePool:
    """The live pool. Not thread-safe: the scheduler plugin calls it from its event loop."""

    def __init__(
        self,
        *,
        policy: str = DEFAULT_POLICY,
        live_policy: LivePolicy | None = None,
        clock: Callable[[], float] = time.time,
        default_layouts: dict[str, tuple[str, ...]] | None = None,
        carve_on_register: bool = True,
        slice_threads: int = DEFAULT_SLICE_THREADS,
        max_events: int = 2000,
        speed: ThroughputTable | None = None,
        warm_oversize: float = 1.0,
    ) -> None:
        self.ledger = Ledger()
        #: The placement policy and the request shapes it learns (``fgd``, ``flexlab``).
        self.live_policy = live_policy if live_policy is not None else LivePolicy(policy)
        #: One object for the pool's life: learning swaps its distribution in place.
        self.profile: PlacementProfile = self.live_policy.profile
        self.clock = clock
        self.table = SliceTable(
            self.ledger,
            clock=clock,
            default_layouts=dict(default_layouts or {}),
            carve_on_register=carve_on_register,
            slice_threads=slice_threads,
            max_events=max_events,
            policy=self.live_policy.name,
        )
        self.whatif = WhatIf(self.ledger, self.profile)
        self.binder = TaskBinder(self.table, self.profile, speed)
        self.book = LeaseBook(self.table, self.profile, self.whatif)
        self.warm = WarmSlices(self.table, self.book, max_oversize=warm_oversize)
        self.book.standing = self.warm.take_standing
        self.preemptor = Preemptor(self.table, self.book, self.whatif)
        # The state the runtime and the dashboards read, shared with the parts.
        self.slices: dict[str, SliceInfo] = self.table.slices
        self.leases: dict[str, LeaseInfo] = self.book.leases
        self.outbox: dict[str, list[Command]] = self.table.outbox
        self.events: deque[Event] = self.table.events
        self.pending: dict[object, tuple[SliceRequest, str]] = self.binder.pending
        self.task_slice: dict[object, tuple[str, int]] = self.binder.task_slice
        self.class_work: dict[str, float] = self.binder.class_work
        self.default_layouts: dict[str, tuple[str, ...]] = self.table.default_layouts
        self.layouts: dict[str, tuple[str, ...]] = self.table.layouts

    # -- settings the parts read -----------------------------------------------------------
    @property
    def carve_on_register(self) -> bool:
        return self.table.carve_on_register

    @property
    def slice_threads(self) -> int:
        return self.table.slice_threads

    @property
    def speed(self) -> ThroughputTable | None:
        """Speed-aware binding's throughput table (None: every device counts the same)."""
        return self.binder.speed

    @speed.setter
    def speed(self, table: ThroughputTable | None) -> None:
        self.binder.speed = table

    @property
    def keep(self) -> Callable[[SliceInfo], bool] | None:
        """Idle shared slices to reclaim only as a last resort (the runtime's say, e.g.
        those whose worker holds results Dask would have to recompute); None: any."""
        return self.book.keep

    @keep.setter
    def keep(self, keep: Callable[[SliceInfo], bool] | None) -> None:
        self.book.keep = keep

    @property
    def settling(self) -> bool:
        """Hosts may still register (the runtime's say, after a restart): what cannot fit
        the hosts registered so far waits, tasks and leases alike, instead of failing."""
        return self.table.settling

    @settling.setter
    def settling(self, settling: bool) -> None:
        self.table.settling = settling

    # -- events and commands -------------------------------------------------------------
    def emit(self, kind: str, message: str, **fields: object) -> Event:
        return self.table.emit(kind, message, **fields)

    def take_commands(self, host: str) -> list[Command]:
        """Commands waiting for the agent of ``host`` (removed from the outbox)."""
        return self.table.take_commands(host)

    # -- hosts ---------------------------------------------------------------------------
    def register_host(self, spec: HostSpec, *, layouts: dict[str, tuple[str, ...]] | None = None) -> None:
        """Add (or re-add) a host; carve its shared slices (profile devices: ``layouts`` by
        device id, else the model's default layout) and bring back the leases that were
        placed on it."""
        if self.table.add_host(spec):
            return
        self.book.host_back(spec.name)
        if self.carve_on_register:
            self.table.carve_layouts(spec, layouts or {})
        self.binder.retry_pending()

    def agent_back(self, host: str, running: list[str]) -> list[str]:
        """The agent of ``host`` registered (again), running the workers of ``running``: the
        slices there still waiting for a worker it does not run are started again. Their
        start went to an agent that died; a new one must not wait for it for ever."""
        return self.table.restart_unserved(host, running)

    def unregister_host(self, name: str) -> list[object]:
        """Remove a host: its slices are lost (leases wait to be placed again)."""
        lost_keys: list[object] = []
        for s in self.table.leave(name):
            lost_keys += self._lose(s, f"host {name} left the pool")
        self.table.left(name)
        return lost_keys

    # -- slices and their workers --------------------------------------------------------
    def slice_ready(self, slice_id: str, worker: str) -> None:
        s = self.table.mark_ready(slice_id, worker)
        if s is not None and s.lease_id:
            self.book.slice_ready(s)

    def slice_of_worker(self, worker: str) -> SliceInfo | None:
        return self.table.slice_of_worker(worker)

    def worker_lost(self, worker: str) -> list[object]:
        """A slice's worker died: its capacity returns to the ledger, its lease (if any) is
        placed again, and the keys of tasks bound to it are returned to be bound again."""
        s = self.table.forget_worker(worker)
        return [] if s is None else self._lose(s, f"worker {worker} of slice {s.slice_id} was lost")

    def _lose(self, s: SliceInfo, why: str) -> list[object]:
        self.table.drop(s.slice_id, why, lost=True)
        keys = self.binder.forget_slice(s.slice_id)
        self.emit(
            "lost",
            f"{why}; {len(keys)} tasks to place again, capacity released",
            slice_id=s.slice_id,
            host=s.host,
            lease_id=s.lease_id,
            owner=s.owner,
        )
        if not self.book.slice_lost(s, why) and self.carve_on_register and s.host in self.ledger.hosts:
            # Put the capacity back into shared use on the same device(s).
            self.table.recarve_shared(s.host, s.devices)
        self.binder.retry_pending()
        return keys

    def telemetry(self, slice_id: str, *, utilisation: float, memory_used_mib: int) -> None:
        self.table.telemetry(slice_id, utilisation=utilisation, memory_used_mib=memory_used_mib)

    # -- tasks ---------------------------------------------------------------------------
    def bind(self, key: object, request: SliceRequest) -> Binding:
        """Choose a shared slice for one task (carving one if needed)."""
        self._observe_task(request)
        return self.binder.bind(key, request)

    def bind_many(self, keys: list[object], request: SliceRequest) -> list[Binding]:
        """Bind many tasks of one request at once (a ``client.map``)."""
        if keys:
            self._observe_task(request)
        return self.binder.bind_many(keys, request)

    def _observe_task(self, request: SliceRequest) -> None:
        """The policy learns a task's slice shape once per submission (a ``client.map`` of
        20,000 tasks is one demand for that shape, not 20,000 that would fill the window)."""
        self.live_policy.observe(replace(request, host_cpu_milli=0, host_memory_mib=0))

    def bind_lease_task(self, key: object, lease_id: str, owner: str | None) -> Binding:
        return self.book.bind_task(key, lease_id, owner)

    def task_finished(self, key: object) -> None:
        self.binder.task_finished(key)

    def retry_pending(self) -> list[tuple[object, Binding]]:
        """Bind waiting tasks that fit now (also queued for :meth:`take_rebound`)."""
        return self.binder.retry_pending()

    @property
    def has_rebound(self) -> bool:
        return self.binder.has_rebound

    def take_rebound(self) -> list[tuple[object, Binding]]:
        """Bindings of waiting tasks made since the last call (the runtime applies them)."""
        return self.binder.take_rebound()

    def learn(self, workload_class: str, slice_id: str, share: float, duration_s: float) -> None:
        """A task of ``workload_class`` ran ``duration_s`` seconds on ``share`` of the
        device of ``slice_id``: update the throughput of that class on that model."""
        self.binder.learn(workload_class, slice_id, share, duration_s)

    # -- leases --------------------------------------------------------------------------
    def create_lease(
        self,
        request: SliceRequest,
        *,
        owner: str,
        ttl_s: float,
        priority: int = 0,
        lease_id: str | None = None,
        private: str | None = None,
    ) -> LeaseInfo:
        """Reserve a slice for ``owner``. Raises ``Unschedulable`` when it can never fit;
        when it cannot fit now the lease is ``pending`` with its reason. A warm slice
        carved for exactly this request is taken at once, except by a ``private`` lease
        (the address of the owner's scheduler its worker joins): a warm slice's worker
        runs in the pool already. With no warm slice whose worker runs, an idle shared
        slice whose worker runs is taken whole (``WarmSlices.take_standing``) before a
        warm slice whose worker is still starting."""
        req = self.book.admit(request, owner=owner, ttl_s=ttl_s, priority=priority)
        self.live_policy.observe(req)
        warm = None if lease_id or private else self.warm.slice_for(req)
        standing = None
        if (
            not (lease_id or private)
            # a warm slice being retagged (recycled) has its worker running already
            and (warm is None or warm.worker is None)
        ):
            standing = self.warm.standing_for(req)
        if standing is not None:
            warm = None
        elif warm is not None:
            lease_id = warm.next_lease or warm.slice_id
        lease = self.book.open(req, owner=owner, ttl_s=ttl_s, lease_id=lease_id, private=private)
        if warm is not None and (warm.next_lease or warm.slice_id) == lease.lease_id:
            self.warm.adopt(lease, warm)
        elif standing is not None and self.warm.take_standing(lease, standing):
            pass
        elif (ahead := self.book.queued_behind(lease)) is not None:
            self.book.wait_behind(lease, ahead)
        else:
            self.book.place(lease)
        return lease

    def get_lease(self, lease_id: str, actor: str | None = None) -> LeaseInfo:
        return self.book.get(lease_id, actor)

    def release_lease(
        self,
        lease_id: str,
        actor: str | None,
        *,
        reason: str = "released by its owner",
        state: LeaseState = "released",
    ) -> LeaseInfo:
        """Give a lease back. Idempotent for its owner; anyone else gets ``NotOwner``."""
        lease = self.book.get(lease_id, actor)
        if lease.state in ENDED:
            return lease
        s = self.table.slices.get(lease.slice_id or "")
        # A private lease's worker ran its owner's code for their own scheduler: never recycled.
        kept = s is not None and lease.private is None and self.warm.recycle(s, lease, reason)
        self.book.end(lease, reason=reason, state=state, keep_slice=kept)
        if s is not None:
            # Its capacity (or its warm slice) is free: waiting work may fit now. A lease
            # that still waited held nothing, and its end frees nothing: retrying then cost
            # a failed placement per waiting request, for each of 1,000 calls giving up.
            self.binder.retry_pending()
            self.book.retry()
        return lease

    def renew_lease(self, lease_id: str, actor: str | None, ttl_s: float) -> LeaseInfo:
        return self.book.renew(lease_id, actor, ttl_s)

    def forget_ended(self, retention_s: float) -> list[str]:
        """Forget leases that ended more than ``retention_s`` ago; their ids are returned."""
        return self.book.forget_ended(self.clock() - retention_s)

    def expire(self) -> list[LeaseInfo]:
        """Reclaim leases past their TTL that run nothing (time-sharing)."""
        return [
            self.release_lease(x.lease_id, None, reason="its TTL ran out", state="expired")
            for x in self.book.due()
        ]

    def retry_leases(self) -> None:
        self.book.retry()

    def restore_lease(self, lease: LeaseInfo) -> None:
        """Bring back a lease kept on disk (scheduler restart); it is placed again where it
        was as soon as its host is registered."""
        self.book.restore(lease)

    # -- warm slices and preemption ------------------------------------------------------
    def warm_slices(self) -> list[SliceInfo]:
        return self.table.warm()

    def prewarm(self, request: SliceRequest, reason: str) -> SliceInfo | None:
        """Carve a warm slice for the next lease asking exactly ``request``; None when it
        does not fit now. ``reason`` is logged."""
        return self.warm.prewarm(request, reason)

    def want_warm(self, wanted: dict[str, int]) -> None:
        """Warm slices wanted per request text (the Hi loop's targets): a lease's slice
        that ends while its request has fewer is kept warm for the next lease (recycled)
        instead of stopped. Empty: nothing is recycled."""
        self.warm.wanted = dict(wanted)

    @property
    def reusable(self) -> Callable[[SliceInfo], bool] | None:
        """The runtime's say on recycling: may this slice's worker serve another lease
        (e.g. it runs and holds nothing)? None: any."""
        return self.warm.reusable

    @reusable.setter
    def reusable(self, fn: Callable[[SliceInfo], bool] | None) -> None:
        self.warm.reusable = fn

    def dissolve_warm(self, slice_id: str, reason: str) -> bool:
        """Give an unclaimed warm slice back to shared use (False: it is not warm any more)."""
        return self.warm.dissolve(slice_id, reason)

    def preemption_victims(self, lease: LeaseInfo) -> list[LeaseInfo]:
        """Lower-priority active leases whose slices let ``lease`` fit (empty when
        preempting them all would not help). Changes nothing."""
        return self.preemptor.victims(lease)

    def preempt_lease(self, lease_id: str, reason: str) -> LeaseInfo:
        """Take a lease's slice away for higher-priority work; it waits to be placed again."""
        return self.preemptor.preempt(lease_id, reason)

    # -- reading -------------------------------------------------------------------------
    def explain(self, request: SliceRequest) -> Explanation:
        return explain(request, self.ledger.pool, self.profile)

    def explain_as_lease(self, request: SliceRequest) -> Explanation:
        """Where a lease of ``request`` would go with the idle shared and warm slices given
        back (asked on a copy: nothing changes)."""
        return self.whatif.explain(request, [s.alloc_id for s in self.table.idle(warm=True)])
