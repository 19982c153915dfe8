"""``FlexScheduler``: the Dask scheduler plugin that owns the pool and places tasks on slices.

Load it with ``dask scheduler --preload flexlab_dask.scheduler`` or
``client.register_plugin(FlexScheduler())``. It translates Dask events into calls on the
core's :class:`~flexlab.core.pool.SlicePool` and carries out what it decides:

* ``update_graph``: a task annotated ``flexlab=...`` (see :func:`flexlab.client.request`)
  is bound to a slice by setting its resource restrictions (the slice's worker offers
  ``flexlab-slice-<id>``); a task that can never fit gets a run spec that raises
  :class:`~flexlab.core.errors.Unschedulable` with ``explain()``'s reasons; one that may fit
  later waits in ``no-worker`` with its reason in the pool state.
* ``transition``: finished tasks give their share back.
* ``add_worker`` / ``remove_worker``: slice workers come and go; a lost slice's capacity
  returns to the ledger, its tasks are bound again and its lease is placed again.
* handlers ``flexlab_*`` serve the pool state, explanations, leases and the host agents.

The Dask scheduler logs and swallows exceptions raised in plugin hooks; this plugin counts
them in ``errors`` (tests fail when it is not zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, ClassVar, cast

from dask._task_spec import Task
from dask.utils import key_split
from distributed import Scheduler, SchedulerPlugin

from flexlab.core.errors import FlexlabError, InvalidRequest, LeaseEnded, Unschedulable
from flexlab.core.hiloop import Action, GiveBackToWaitingWork, HiLoop, Preempt, Prewarm
from flexlab.core.history import History
from flexlab.core.metrics import (
    Family,
    LeaseOutcome,
    MetricLimits,
    MetricsRecorder,
    RuntimeFacts,
    WaitReasons,
    collect,
)
from flexlab.core.metrics import request_class as metric_class
from flexlab.core.placement.live import LivePolicy
from flexlab.core.pool import (
    LEASE_PREFIX,
    RESOURCE_PREFIX,
    Binding,
    Command,
    RetagSlice,
    SlicePool,
    StartSlice,
    StopSlice,
)
from flexlab.core.poolstate import PluginInfo, WaitingWork
from flexlab.core.prewarm import WarmPlanner
from flexlab.core.request import MAX_PRIORITY, SliceRequest, parse_request
from flexlab.core.speed import ThroughputTable
from flexlab.core.units import lease_ttl, parse_duration
from flexlab_dask import config
from flexlab_dask.housekeeping import (
    prune_event_topics,
    prune_forgotten_groups,
    prune_nthreads_history,
    prune_span_metadata,
    prune_stealing,
    trim_key_split_memo,
)
from flexlab_dask.private import PrivateLeases
from flexlab_dask.state import build_pool_state, host_from_dict
from flexlab_dask.store import LeaseStore, restore
from flexlab_dask.tasks import fail_waiting_task

logger = logging.getLogger("flexlab.scheduler")

WAIT_RESOURCE = "flexlab-waiting"
_DONE = frozenset({"memory", "erred", "forgotten"})
#: The plugin's count (``_stats``) of each binding outcome.
_STAT_OF = {"bound": "bound", "wait": "waited", "fail": "failed"}
#: States of a task not yet given to a worker: the plugin may still bind it.
_UNPLACED = frozenset({"released", "waiting", "no-worker"})
SLICE_WORKER_PREFIX = "flexlab-slice-"
#: Never a worker's address: keeps the open-worker set non-empty (Dask reads an empty
#: ``worker_restrictions`` as "any worker", which would let plain tasks onto leased slices).
NO_OPEN_WORKER = "flexlab://no-open-worker"


def _raise_unschedulable(message: str) -> None:
    raise Unschedulable(message, code="UNRESOLVABLE")


class FlexScheduler(SchedulerPlugin):
    """Owns the pool (hosts, devices, slices, leases) inside the Dask scheduler."""

    name: ClassVar[str] = "flexlab"

    def __init__(
        self,
        *,
        policy: str | None = None,
        state_file: str | None = None,
        loop_interval: float | None = None,
        default_layouts: dict[str, list[str]] | None = None,
        carve_on_register: bool | None = None,
        slice_threads: int | None = None,
        hi: bool | None = None,
        speed_aware: bool | None = None,
        live_policy: LivePolicy | None = None,
    ) -> None:
        """``live_policy``: the placement policy as built (e.g. ``LivePolicy.seeded`` from
        an operator's history); default ``config.live_policy(policy)``."""
        live = live_policy if live_policy is not None else config.live_policy(policy)
        self.policy = live.name
        self.state_file = state_file if state_file is not None else config.state_file()
        self.loop_interval = loop_interval if loop_interval is not None else config.seconds("loop-interval")
        layouts = default_layouts if default_layouts is not None else config.get("default-layouts") or {}
        self.default_layouts = {k: tuple(v) for k, v in layouts.items()}
        self.carve_on_register = (
            carve_on_register if carve_on_register is not None else bool(config.get("carve-on-register"))
        )
        self.slice_threads = int(slice_threads or config.get("slice-threads"))
        self.speed_aware = bool(config.get("speed-aware")) if speed_aware is None else speed_aware
        self.pool = SlicePool(
            live_policy=live,
            default_layouts=self.default_layouts,
            carve_on_register=self.carve_on_register,
            slice_threads=self.slice_threads,
            speed=ThroughputTable() if self.speed_aware else None,
            warm_oversize=float(config.get("hi.warm-oversize", 1.0)),
        )
        self.scheduler: Scheduler | None = None
        self.store: LeaseStore | None = None
        #: Exceptions raised inside hooks (the scheduler would swallow them).
        self.errors: list[str] = []
        self.fallbacks: dict[str, int] = {}
        self._requests: dict[Any, SliceRequest] = {}
        self._spec_cache: dict[tuple[str, str | None], SliceRequest] = {}
        self._agent_events: dict[str, asyncio.Event] = {}
        #: Host -> when its agent was last heard from (register, poll); silent for
        #: ``agent-timeout``: the host is lost.
        self._agents: dict[str, float] = {}
        self.agent_timeout = config.seconds("agent-timeout")
        #: Host -> long polls of its agent waiting now (a host with one is not silent).
        self._polling: dict[str, int] = {}
        #: After a restart: the hosts the pool had, waited for while ``pool.settling``.
        self._expected: set[str] = set()
        self._settle_until = 0.0
        self._saved_hosts: list[str] = []
        self._loop_task: asyncio.Task[None] | None = None
        #: Removals from Dask of a lost host's workers, under way.
        self._evictions: set[asyncio.Task[Any]] = set()
        #: Workers that plain (unannotated) tasks may run on: shared slices and workers
        #: flexlab does not manage, never a lease's or a warm slice's. One set object, shared
        #: by the ``worker_restrictions`` of every plain task and kept current as workers come
        #: and go, so that no task stays pinned to the addresses of the moment it was
        #: submitted (a lost worker would strand it).
        self._open: set[str] = {NO_OPEN_WORKER}
        #: Workers serving a lease or a warm slice (plain tasks are kept off them).
        self._reserved_workers: set[str] = set()
        #: Leases whose creating call has not returned to its caller yet:
        #: lease id -> (Dask client id, the call's token). Released if the caller gives up.
        self._unclaimed: dict[str, tuple[str, str]] = {}
        #: What was last written to the lease store per lease (write only what changed).
        self._saved: dict[str, tuple[Any, ...]] = {}
        #: Worker address -> the resource of the slice it serves, kept until the worker is
        #: gone: a slice the pool stopped (reclaimed, preempted, given back) may leave
        #: results behind that Dask recomputes, and those tasks must be bound again.
        self._worker_resource: dict[str, str] = {}
        self._finished = 0
        self._stats = {"bound": 0, "waited": 0, "failed": 0, "rebound": 0, "preempted": 0}
        #: The Hi Scheduler loop: forecast, warm slices, preemption (``flexlab.hi.*``).
        self.hi_enabled = bool(config.get("hi.enabled")) if hi is None else hi
        self.hi_interval = config.seconds("hi.interval")
        self.preempt_grace = config.seconds("hi.preempt-grace")
        self.warm = WarmPlanner(
            bucket_s=config.seconds("hi.bucket"),
            horizon=int(config.get("hi.horizon")),
            season=int(config.get("hi.season")),
            max_per_class=int(config.get("hi.max-warm-per-class")),
            service_z=float(config.get("hi.service-z", 0.0)),
            max_total=int(config.get("hi.max-warm")),
        )
        #: The one Hi loop (``flexlab.core.hiloop``): it decides, this plugin enacts its
        #: pool commands through the agents and tells owners.
        self.hi = HiLoop(
            [
                GiveBackToWaitingWork(),
                Prewarm(self.warm, reserve=float(config.get("hi.reserve", 0.0))),
                Preempt(grace_s=self.preempt_grace),
            ],
            hold_after_wait_s=config.seconds("hi.hold-after-wait"),
        )
        self._hi_last = 0.0
        #: When distributed's emptied event topics of gone workers were last dropped, and
        #: how many have been (``flexlab_dask.housekeeping``).
        self._pruned_at = 0.0
        self.topics_pruned = 0
        #: References to forgotten task groups dropped from computations and spans, and to
        #: gone workers from work stealing.
        self.groups_pruned = 0
        self.stealing_pruned = 0
        self.nthreads_pruned = 0
        self.metadata_pruned = 0
        self.key_split_trimmed = 0
        #: Aggregated telemetry over time (one sampler, many readers).
        self.history = History(
            maxlen=max(1, round(config.seconds("history-length") / max(self.loop_interval, 0.01)))
        )
        #: Prometheus metrics (``flexlab.core.metrics``) at the HTTP server's ``/metrics``.
        self.metrics = MetricsRecorder(started=time.time())
        self.metric_limits = MetricLimits(
            max_slice_series=int(config.get("metrics.max-slice-series", 200)),
            max_owners=int(config.get("metrics.max-owners", 20)),
        )
        self._wait_reasons = WaitReasons()
        self._metrics_route: Any = None
        #: Private leases' credentials and their agents' reports (``flexlab_dask.private``).
        self.private = PrivateLeases(self)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        # Leases reclaim idle shared slices whose workers hold results only when no others
        # make room, pre-warming never (Dask would recompute those results).
        self.pool.keep = self._holds_results
        # A lease's slice is recycled (kept warm for the next lease) only when its worker
        # runs and holds nothing: no result of the ended lease goes to the next owner.
        self.pool.reusable = self._idle_worker
        scheduler.handlers.update(self.rpc_handlers())
        for addr in scheduler.workers:
            self._add_worker(scheduler, addr)
        scheduler.stream_handlers["flexlab-telemetry"] = self.handle_telemetry
        if self.state_file:
            self.store = LeaseStore(self.state_file)
            live = self.store.live()
            # A private lease's worker runs on through a restart (it joined its owner's
            # scheduler); its credentials come back first, in case it must start again.
            kept = self.store.private_credentials()
            for stored in live:
                if stored.private is not None and stored.lease_id in kept:
                    self.private.hold(stored.lease_id, kept[stored.lease_id])
            for stored in live:
                self.pool.restore_lease(restore(stored))
            # The hosts it had, and those its leases were on, may still register: until they
            # have (or agent-timeout has passed) nothing is refused as never fitting.
            self._expected = set(self.store.hosts())
            self._expected |= {x.placed_on[0] for x in self.pool.leases.values() if x.placed_on}
            self._settle_until = time.time() + self.agent_timeout
            self.pool.settling = bool(self._expected) and self.agent_timeout > 0
            logger.info("flexlab: %d leases restored from %s", len(self.pool.leases), self.state_file)
        self._loop_task = asyncio.create_task(self._loop())
        from flexlab_dask.metrics import install

        self._metrics_route = self._guard("metrics", install, scheduler, self.metric_families)
        logger.info("flexlab plugin started (policy %s)", self.policy)

    def rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        """The ``flexlab_*`` handlers, each behind :meth:`_rpc`'s guard."""
        handlers: dict[str, Callable[..., Any]] = {
            "flexlab_pool_state": self.handle_pool_state,
            "flexlab_explain": self.handle_explain,
            "flexlab_events": self.handle_events,
            "flexlab_lease_create": self.handle_lease_create,
            "flexlab_lease_get": self.handle_lease_get,
            "flexlab_lease_list": self.handle_lease_list,
            "flexlab_lease_release": self.handle_lease_release,
            "flexlab_lease_renew": self.handle_lease_renew,
            "flexlab_lease_abandon": self.handle_lease_abandon,
            "flexlab_history": self.handle_history,
            "flexlab_agent_register": self.handle_agent_register,
            "flexlab_agent_poll": self.handle_agent_poll,
            "flexlab_agent_leave": self.handle_agent_leave,
            "flexlab_agent_alive": self.handle_agent_alive,
            "flexlab_agent_retagged": self.handle_agent_retagged,
            **self.private.handlers(),
        }
        return {name: self._rpc(name, fn) for name, fn in handlers.items()}

    def _rpc(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """A handler that answers every call with a structured reply: a domain error or input
        of the wrong type or shape (the caller's fault) is an ``error`` reply; anything else
        is a bug of the plugin's, counted in :attr:`errors` and logged, then an ``error``
        reply too. Nothing reaches distributed's comm layer as an exception."""

        def reply(exc: Exception) -> dict[str, Any]:
            if isinstance(exc, FlexlabError):
                return _error(exc)
            if isinstance(exc, (TypeError, ValueError, KeyError, OverflowError, AttributeError)):
                logger.info("flexlab: %s refused bad input: %s: %s", name, type(exc).__name__, exc)
                return {"status": "error", "error": "InvalidInput", "message": f"{name}: {exc}"}
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            logger.exception("flexlab plugin error in handler %s", name)
            return {"status": "error", "error": type(exc).__name__, "message": str(exc)}

        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    return reply(exc)

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                return reply(exc)

        return guarded

    async def close(self) -> None:
        if self._metrics_route is not None:
            self._metrics_route.remove()
            self._metrics_route = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self._persist()
        if self.store is not None:
            self.store.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.loop_interval)
            self._guard("loop", self.tick)

    def tick(self) -> None:
        """Periodic work: expire leases, retry waiting leases and tasks, persist."""
        for lease in self.pool.expire():
            self._notify(lease.owner, f"lease {lease.lease_id} expired: its TTL ran out")
        self._fail_work_of_ended_leases()
        self._lose_silent_hosts()
        self._settle()
        gone = self.pool.forget_ended(config.seconds("lease.keep-ended"))
        if gone and self.store is not None:
            self.store.forget(gone)
        self.pool.retry_leases()
        self.pool.retry_pending()
        self._apply_bindings(self.pool.take_rebound())
        now = time.time()
        if self.hi_enabled and now - self._hi_last >= self.hi_interval:
            self._hi_last = now
            self.hi_step(now)
        self._flush_commands()
        self._persist()
        if now - self._pruned_at >= 60.0:
            self._pruned_at = now
            self.topics_pruned += prune_event_topics(self.scheduler)
            self.groups_pruned += prune_forgotten_groups(self.scheduler)
            self.stealing_pruned += prune_stealing(self.scheduler)
            horizon = config.seconds("history-length")
            self.nthreads_pruned += prune_nthreads_history(self.scheduler, horizon, now)
            self.metadata_pruned += prune_span_metadata(self.scheduler)
            self.key_split_trimmed += trim_key_split_memo()
        self.record_history()
        self.metrics.observe(self.pool, now, plain_waiting=self.plain_waiting())

    def metric_families(self) -> list[Family]:
        """The pool's Prometheus metrics now (``flexlab.core.metrics.collect``)."""
        facts = RuntimeFacts(
            policy=self.policy,
            plugin_errors=len(self.errors),
            agents_last_seen=dict(self._agents),
            plain_waiting=self.plain_waiting(),
            hi=self.hi if self.hi_enabled else None,
            warm=self.warm if self.hi_enabled else None,
        )
        return collect(
            self.pool,
            self.metrics,
            now=time.time(),
            facts=facts,
            limits=self.metric_limits,
            reasons=self._wait_reasons,
        )

    # ------------------------------------------------------------------ Hi Scheduler
    def hi_step(self, now: float) -> None:
        """One pass of the Hi loop (``HiLoop.step``): this plugin only carries out what it
        enacted on the pool (agents' commands, rebound tasks), tells the owners of preempted
        leases and logs rejected moves."""
        outcomes = self.hi.step(self.pool, now, waiting_tasks=len(self.pool.pending) + self.plain_waiting())
        gave_back = False
        for o in outcomes:
            m = o.move
            if o.rejected is not None:
                logger.debug(
                    "flexlab Hi loop: %s %s rejected (%s): %s",
                    m.action.value,
                    m.request,
                    o.rejected.value,
                    m.detail,
                )
            elif m.action is Action.PREEMPT and m.lease_id:
                self._stats["preempted"] += 1
                lease = self.pool.leases.get(m.lease_id)
                if lease is not None:
                    self._notify(
                        lease.owner,
                        f"lease {m.lease_id} was preempted ({m.detail}); it waits to be placed again",
                    )
            elif m.action is Action.DISSOLVE:
                gave_back = True
        if gave_back:
            self.pool.retry_pending()
            self._apply_bindings(self.pool.take_rebound())

    def _holds_results(self, s: Any) -> bool:
        """The slice's worker holds results (Dask would recompute them were it stopped) or
        runs tasks (plain tasks are not bound through the pool, so it cannot see them)."""
        ws = self.scheduler.workers.get(s.worker) if self.scheduler is not None and s.worker else None
        return ws is not None and bool(ws.has_what or ws.processing)

    def _idle_worker(self, s: Any) -> bool:
        ws = self.scheduler.workers.get(s.worker) if self.scheduler is not None and s.worker else None
        return ws is not None and not ws.has_what and not ws.processing

    def plain_waiting(self) -> int:
        """Plain tasks that find no worker: every worker serves a lease or a warm slice."""
        if self.scheduler is None or len(self._open) > 1:
            return 0
        return sum(1 for ts in self.scheduler.unrunnable if ts.worker_restrictions is self._open)

    def hi_state(self) -> dict[str, Any]:
        """The Hi loop for the pool state: forecast vs actual per class, targets, moves."""
        now = time.time()
        mape, smape = self.warm.errors()
        return {
            "enabled": self.hi_enabled,
            "bucket_s": self.warm.bucket_s,
            "horizon": self.warm.horizon,
            "classes": [vars(c) for c in self.warm.view(now)],
            "targets": dict(self.hi.prewarm.targets) if self.hi.prewarm else {},
            "warm": [
                {"slice_id": s.slice_id, "request": s.warm_for, "devices": list(s.devices), "state": s.state}
                for s in self.pool.warm_slices()
            ],
            "moves": [o.as_dict() for o in list(self.hi.log)[-50:]],
            "rejected": {k.value: n for k, n in self.hi.rejected.items()},
            "forecast_error": {"mape": _finite(mape), "smape": _finite(smape)},
            "preemptions": self.hi.preempted,
            "preempt_grace_s": self.preempt_grace,
            "speed": self._speed_table(),
        }

    def _speed_table(self) -> list[dict[str, Any]]:
        """Learned throughput per (task prefix, model), relative to the reference device."""
        table = self.pool.speed
        if table is None:
            return []
        return [
            {
                "class": cls,
                "model": model,
                "rate": round(rate, 4),
                "samples": table.samples.get((cls, model), 0),
            }
            for (cls, model), rate in sorted(table.rates.items())
        ]

    def record_history(self) -> None:
        led = self.pool.ledger
        devices = {}
        for did in led.device_ids():
            m = led.device_spec(did).catalog
            devices[did] = (m.vendor, m.key, int(led.pool.dev_mem_total[led.device_index(did)]))
        self.history.record(
            now=time.time(),
            devices=devices,
            slices=list(self.pool.slices.values()),
            waiting=len(self.pool.pending),
        )

    def _guard(self, where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self.errors.append(f"{where}: {type(exc).__name__}: {exc}")
            logger.exception("flexlab plugin error in %s", where)
            return None

    # ------------------------------------------------------------------ Dask hooks
    def update_graph(
        self,
        scheduler: Scheduler,
        *,
        annotations: dict[str, dict[Any, Any]] | None = None,
        tasks: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._guard("update_graph", self._update_graph, scheduler, annotations or {}, tasks or [])

    def _update_graph(
        self, scheduler: Scheduler, annotations: dict[str, dict[Any, Any]], tasks: list[Any]
    ) -> None:
        ann = annotations.get("flexlab") or {}
        groups: dict[tuple[str, str], list[Any]] = {}
        task = scheduler.tasks.get
        for key, value in ann.items():  # hot path: once per annotated task
            ts = task(key)
            if ts is None or ts.state not in _UNPLACED:
                continue
            if type(value) is str:
                # a client.map: many keys, one request; the task prefix is the workload class
                groups.setdefault((value, ts.prefix.name), []).append(key)
            else:
                self._place_one(scheduler, key, value)
        for (spec, cls), keys in groups.items():
            self._place_group(scheduler, spec, keys, cls)
        if self._reserved_workers:
            self._keep_plain_tasks_off_leases(scheduler, tasks, ann)
        self._flush_commands()

    def _place_group(self, scheduler: Scheduler, spec: str, keys: list[Any], cls: str) -> None:
        try:
            req = self._parse(spec, cls)
        except FlexlabError as exc:
            for key in keys:
                self._restrict(scheduler.tasks[key], key, Binding("fail", reason=str(exc)))
            return
        try:
            bindings = self.pool.bind_many(keys, req)
        except Exception as exc:
            self.errors.append(f"bind {len(keys)} tasks of {spec}: {type(exc).__name__}: {exc}")
            logger.exception("flexlab plugin error while placing %d tasks of %s", len(keys), spec)
            for key in keys:
                self._place_one(scheduler, key, spec)
            return
        self.history.arrived(req.describe(), len(keys))
        requests = self._requests
        by_key = scheduler.tasks
        apply = self._apply_binding
        outcomes: dict[tuple[str, Any], int] = {}  # counted once below, not once a task
        for key, b in zip(keys, bindings, strict=True):
            requests[key] = req
            apply(by_key[key], key, b)
            oc = (b.status, b.code)
            outcomes[oc] = outcomes.get(oc, 0) + 1
        for (status, code), n in outcomes.items():
            self._count_placed(status, code.value, n)

    def _place_one(self, scheduler: Scheduler, key: Any, value: Any) -> None:
        try:
            binding = self._bind(key, value)
        except Exception as exc:
            # Fail closed: a task we could not place must not run unconstrained.
            self.errors.append(f"bind {key!r}: {type(exc).__name__}: {exc}")
            logger.exception("flexlab plugin error while placing %r", key)
            binding = Binding("fail", reason=f"internal error while placing it: {type(exc).__name__}: {exc}")
        self._restrict(scheduler.tasks[key], key, binding)

    def _bind(self, key: Any, value: Any) -> Binding:
        spec: Any = value
        owner = None
        lease_id = None
        if isinstance(value, dict):
            spec = value.get("request")
            owner = value.get("owner")
            lease_id = value.get("lease")
        if lease_id is not None:
            return self.pool.bind_lease_task(key, str(lease_id), owner)
        try:
            req = self._parse(spec, key_split(key))
        except FlexlabError as exc:
            return Binding("fail", reason=str(exc))
        self._requests[key] = req
        self.history.arrived(req.describe())
        return self.pool.bind(key, req)

    def _parse(self, spec: Any, workload_class: str | None = None) -> SliceRequest:
        """The request of an annotation; tasks also get their workload class (the task
        prefix, unless the request names one) for speed-aware binding."""
        if isinstance(spec, SliceRequest):
            return spec
        if not isinstance(spec, str):
            raise InvalidRequest("flexlab annotation", spec, "a request string such as 'gpu:0.25'")
        ck = (spec, workload_class)
        req = self._spec_cache.get(ck)
        if req is None:
            req = parse_request(spec)
            if workload_class is not None and req.workload_class is None:
                req = replace(req, workload_class=workload_class)
            self._spec_cache[ck] = req
        return req

    def _restrict(self, ts: Any, key: Any, b: Binding) -> None:
        """Apply one task's binding and count it."""
        self._apply_binding(ts, key, b)
        self._count_placed(b.status, b.code.value)

    def _apply_binding(self, ts: Any, key: Any, b: Binding) -> None:
        """What a binding means to Dask: the slice's resource (bound), a resource no
        worker has (it waits), or a task that raises the reason (it can never fit)."""
        if b.status == "bound":
            # Shared by the tasks bound to one slice; Dask only reads it.
            ts.resource_restrictions = b.resources
            ts.worker_restrictions = None
        elif b.status == "wait":
            ts.resource_restrictions = {WAIT_RESOURCE: 1.0}
        else:
            self._requests.pop(key, None)
            ts.resource_restrictions = None
            ts.worker_restrictions = None
            message = f"flexlab cannot place task {key!r}: {b.reason}"
            ts.run_spec = Task(key, _raise_unschedulable, message)

    def _count_placed(self, status: str, code: str, n: int = 1) -> None:
        self.metrics.task_placed(status, code, n)
        self._stats[_STAT_OF[status]] += n

    def _keep_plain_tasks_off_leases(
        self, scheduler: Scheduler, tasks: list[Any], ann: dict[Any, Any]
    ) -> None:
        """Nobody else's work runs on a leased slice: plain tasks may run on the open workers,
        whichever those are when they run (the set is shared and kept current)."""
        open_workers = self._open
        for key in tasks:
            if key in ann:
                continue
            ts = scheduler.tasks.get(key)
            if (
                ts is None
                or ts.state not in _UNPLACED
                or ts.worker_restrictions
                or ts.resource_restrictions
                or key in self._requests
            ):
                continue
            ts.worker_restrictions = open_workers

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # Hot path (every transition of every task): membership tests only. Distributed logs
        # a transition hook's exception at INFO only: count and log it here as an error.
        if finish in _DONE and key in self._requests:
            try:
                self._finish(key, start, finish, kwargs)
            except Exception as exc:
                self.errors.append(f"transition {key!r}: {type(exc).__name__}: {exc}")
                logger.exception("flexlab plugin error in transition of %r", key)

    def _finish(self, key: Any, start: str, finish: str, kwargs: dict[str, Any]) -> None:
        if finish == "memory" and start == "processing":
            # Every task at first, then one in 16: an EWMA needs no more, and this hook
            # runs for every task.
            self._finished += 1
            if (self._finished <= 256 or not self._finished & 15) and self.pool.speed is not None:
                self._learn(key, kwargs.get("startstops"))
        self.pool.task_finished(key)
        if finish == "forgotten":
            # Kept until then: a result lost with its worker is recomputed and bound again.
            del self._requests[key]

    def _learn(self, key: Any, startstops: Any) -> None:
        """Learn the throughput of the task's class on its slice's model from the compute
        time Dask measured."""
        bound = self.pool.task_slice.get(key)
        req = self._requests[key]
        if bound is None or not startstops or req.workload_class is None:
            return
        compute = sum(x["stop"] - x["start"] for x in startstops if x.get("action") == "compute")
        if compute > 0:
            self._guard("learn", self.pool.learn, req.workload_class, bound[0], bound[1] / 1000, compute)

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        self._guard("add_worker", self._add_worker, scheduler, worker)

    def _add_worker(self, scheduler: Scheduler, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        name = str(ws.name) if ws is not None else ""
        if not name.startswith(SLICE_WORKER_PREFIX):
            self._open.add(worker)  # not flexlab's: plain tasks may run there
            return
        sid = name[len(SLICE_WORKER_PREFIX) :]
        s = self.pool.slices.get(sid)
        if s is None:
            self._reserved_workers.add(worker)  # neither open nor ours until it is stopped
            logger.info("flexlab: worker %s serves unknown slice %s; its agent will stop it", worker, sid)
            return
        self.pool.slice_ready(sid, worker)
        self._worker_resource[worker] = s.resource
        if not s.reserved:
            self._open.add(worker)
            return
        if not self._reserved_workers:
            self._keep_plain_tasks_off_leases(scheduler, list(scheduler.tasks), {})
        self._reserved_workers.add(worker)  # a lease's or a warm slice's: no plain tasks
        if s.lease_id is not None:
            self._notify(s.owner, f"lease {s.lease_id} is ready on {', '.join(s.devices)}")

    def _close_handed_over(self, cmds: list[Command]) -> None:
        """A shared slice's running worker handed to a lease (``RetagSlice``) takes no more
        plain tasks from the moment the pool decided, not from when its agent retags it."""
        for c in cmds:
            if not isinstance(c, RetagSlice) or c.worker not in self._open:
                continue
            s = self.pool.slices.get(c.slice_id)
            if s is None or not s.reserved or s.worker != c.worker:
                continue
            self._open.discard(c.worker)
            if not self._reserved_workers and self.scheduler is not None:
                self._keep_plain_tasks_off_leases(self.scheduler, list(self.scheduler.tasks), {})
            self._reserved_workers.add(c.worker)

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        self._guard("remove_worker", self._remove_worker, scheduler, worker)

    def _remove_worker(self, scheduler: Scheduler, worker: str) -> None:
        self._open.discard(worker)
        self._reserved_workers.discard(worker)
        resource = self._worker_resource.pop(worker, None)
        s = self.pool.slice_of_worker(worker)
        if s is None:
            if resource is not None:
                # The pool had stopped this slice already; Dask recomputes the results its
                # worker held, and those tasks still name the stopped slice.
                self._rebind_tasks_of(scheduler, resource)
                self._flush_commands()
            return
        lost_resource = s.resource
        owner, lease_id = s.owner, s.lease_id
        self.pool.worker_lost(worker)
        if lease_id is not None:
            self._notify(owner, f"lease {lease_id}: its worker {worker} was lost; it is being placed again")
        self._rebind_tasks_of(scheduler, lost_resource)
        self._flush_commands()

    def _rebind_tasks_of(self, scheduler: Scheduler, resource: str) -> None:
        """Tasks that were bound to a lost slice: bind them again and let Dask run them."""
        recs: dict[Any, str] = {}
        for ts in list(scheduler.tasks.values()):
            rr = ts.resource_restrictions
            if not rr or resource not in rr or ts.state not in ("waiting", "no-worker", "released"):
                continue
            req = self._requests.get(ts.key)
            if req is None:
                continue
            self.pool.task_finished(ts.key)
            b = self.pool.bind(ts.key, req)
            self._restrict(ts, ts.key, b)
            self._stats["rebound"] += 1
            if ts.state == "no-worker":
                recs[ts.key] = "processing" if b.status == "bound" else "no-worker"
        recs = {k: v for k, v in recs.items() if v != "no-worker"}
        if recs:
            scheduler.transitions(cast(Any, recs), stimulus_id=f"flexlab-rebind-{time.time()}")

    def _apply_bindings(self, bindings: list[tuple[Any, Binding]]) -> None:
        if not bindings or self.scheduler is None:
            return
        recs: dict[Any, str] = {}
        for key, b in bindings:
            ts = self.scheduler.tasks.get(key)
            if ts is None:
                self.pool.task_finished(key)
                continue
            if b.status == "fail" and ts.state == "no-worker":
                # it waited, and can never fit now (the pool settled without its hosts)
                self.pool.task_finished(key)
                self._err_task(
                    key, Unschedulable(f"flexlab cannot place task {key!r}: {b.reason}", code="UNRESOLVABLE")
                )
                continue
            self._restrict(ts, key, b)
            if ts.state == "no-worker":
                recs[key] = "processing" if b.status == "bound" else "erred"
        recs = {k: v for k, v in recs.items() if v == "processing"}
        if recs:
            self.scheduler.transitions(cast(Any, recs), stimulus_id=f"flexlab-retry-{time.time()}")

    # ------------------------------------------------------------------ leases that end
    def _fail_work_of_ended_leases(self) -> None:
        """Work that still names an ended lease fails with the reason: its slice is gone, so
        Dask would otherwise keep it in ``no-worker`` for ever. Tasks that were running there
        come back from the stopped worker and fail on the next pass (one loop interval)."""
        # The pool keeps ended leases for ``lease.keep-ended``: that is how long work still
        # naming one fails with its cause.
        ended = {x.resource: x for x in self.pool.leases.values() if x.state in ("released", "expired")}
        for lease in ended.values():
            self._unclaimed.pop(lease.lease_id, None)
        if self.scheduler is None or not ended:
            return
        doomed: list[tuple[Any, LeaseEnded]] = []
        for ts in list(self.scheduler.unrunnable):
            for res in ts.resource_restrictions or ():
                gone = ended.get(res)
                if gone is not None:
                    doomed.append((ts.key, LeaseEnded(gone.lease_id, f"it {gone.state}: {gone.reason}")))
                    break
        for key, exc in doomed:
            self._err_task(key, exc)

    def _err_task(self, key: Any, exc: Exception) -> None:
        """Fail a task that waits in ``no-worker`` with ``exc`` (its future raises it)."""
        sched = self.scheduler
        if sched is None or not fail_waiting_task(sched, key, exc, f"flexlab-lease-ended-{time.time()}"):
            return
        self._stats["failed"] += 1
        self._requests.pop(key, None)

    def remove_client(self, scheduler: Scheduler, client: str) -> None:
        self._guard("remove_client", self._remove_client, client)

    def _remove_client(self, client: str) -> None:
        """A client left (a kernel died, a script ended) while its lease call was still
        waiting: nobody holds that lease, so it is given back."""
        for lease_id, (cid, _) in list(self._unclaimed.items()):
            if cid == client:
                self._give_up(lease_id, f"its caller (client {client}) left before the lease was handed over")

    def _give_up(self, lease_id: str, reason: str) -> None:
        self._unclaimed.pop(lease_id, None)
        lease = self.pool.leases.get(lease_id)
        if lease is None or lease.state in ("released", "expired"):
            return
        self.pool.release_lease(lease_id, None, reason=reason)
        logger.info("flexlab: lease %s of %s released: %s", lease_id, lease.owner, reason)
        self._fail_work_of_ended_leases()
        self._apply_bindings(self.pool.take_rebound())
        self._flush_commands()
        self._persist()

    # ------------------------------------------------------------------ agents
    def _flush_commands(self) -> None:
        if self.pool.has_rebound:
            self._apply_bindings(self.pool.take_rebound())
        for cmds in self.pool.outbox.values():
            self._close_handed_over(cmds)
        for host, ev in self._agent_events.items():
            if self.pool.outbox.get(host):
                ev.set()

    def handle_agent_register(
        self,
        host: dict[str, Any],
        agent: str = "",
        running: list[str] | None = None,
        layouts: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        try:
            spec = host_from_dict(host)
        except FlexlabError as exc:
            return _error(exc)
        self.pool.register_host(spec, layouts={k: tuple(v) for k, v in (layouts or {}).items()})
        self._agents[spec.name] = time.time()
        self._agent_events.setdefault(spec.name, asyncio.Event())
        self.private.adopt(spec.name, [str(x) for x in running or []])
        again = self.pool.agent_back(spec.name, [str(x) for x in running or []])
        if again:
            logger.info("flexlab: host %s: slices %s started again (their agent was new)", spec.name, again)
        stop = [sid for sid in running or [] if not self._slice_on(sid, spec.name)]
        for sid in stop:
            self.pool.outbox.setdefault(spec.name, []).append(
                StopSlice(sid, spec.name, "unknown to the scheduler")
            )
        self._flush_commands()
        logger.info("flexlab: agent %s registered host %s", agent, spec.name)
        # the agent keeps itself heard within this while it is busy (flexlab_agent_alive)
        return {"status": "OK", "host": spec.name, "agent_timeout": self.agent_timeout}

    async def handle_agent_poll(
        self, host: str, running: list[str] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Long poll of a host agent: the commands for its host, once there are any."""
        if host not in self.pool.ledger.hosts:
            return {"status": "unregistered"}
        self._agents[host] = time.time()
        ev = self._agent_events.setdefault(host, asyncio.Event())
        if not self.pool.outbox.get(host):
            ev.clear()
            self._polling[host] = self._polling.get(host, 0) + 1
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout=max(0.0, min(float(timeout), 30.0)))
            finally:
                self._polling[host] -= 1
        self._agents[host] = time.time()
        cmds = self.pool.take_commands(host)
        self._close_handed_over(cmds)
        for sid in running or []:
            if not self._slice_on(sid, host) and not any(
                isinstance(c, StopSlice) and c.slice_id == sid for c in cmds
            ):
                cmds.append(StopSlice(sid, host, "unknown to the scheduler"))
        out = [self.private.command(_command_dict(c)) for c in cmds]
        self.private.prune()
        return {"status": "OK", "commands": out}

    def handle_agent_alive(self, host: str) -> dict[str, Any]:
        """An agent busy carrying out commands (starting and stopping slice workers can take
        minutes under load) says it is alive; it polls again when done. Without this a busy
        agent was silent for ``agent-timeout`` and its host lost."""
        if not isinstance(host, str) or host not in self.pool.ledger.hosts:
            return {"status": "unregistered"}
        self._agents[host] = time.time()
        return {"status": "OK"}

    def handle_agent_retagged(self, host: str, slice_id: str, worker: str) -> dict[str, Any]:
        """An agent handed a running worker over (``RetagSlice``: a recycled slice's, or an
        idle shared slice's taken by a lease): it offers the next lease's resource now, so
        the slice is ready and work waiting for it runs."""
        s = self.pool.slices.get(str(slice_id))
        if s is None or s.worker != worker or self.scheduler is None:
            return {"status": "OK"}  # stopped or lost since: its agent was told
        self.pool.slice_ready(s.slice_id, worker)
        ws = self.scheduler.workers.get(worker)
        if ws is not None:
            recs = {
                ts.key: "processing"
                for ts in list(self.scheduler.unrunnable)
                if ts.resource_restrictions
                and all(ws.resources.get(r, 0) >= q for r, q in ts.resource_restrictions.items())
            }
            if recs:
                self.scheduler.transitions(cast(Any, recs), stimulus_id=f"flexlab-retagged-{time.time()}")
        if s.lease_id is not None:
            self._notify(
                s.owner,
                f"lease {s.lease_id} is ready on {', '.join(s.devices)} (a running worker handed over)",
            )
        self._flush_commands()
        return {"status": "OK"}

    def _slice_on(self, slice_id: str, host: str) -> bool:
        """The pool has ``slice_id`` on ``host`` (a lease's slice keeps its id when it is
        placed again elsewhere: a worker of the old place must still be stopped)."""
        s = self.pool.slices.get(slice_id)
        return s is not None and s.host == host

    def handle_agent_leave(self, host: str) -> dict[str, Any]:
        self._host_gone(host, "its agent left")
        self._agent_events.pop(host, None)
        return {"status": "OK"}

    def _host_gone(self, host: str, why: str) -> None:
        """``host`` leaves the pool: its slices go, the tasks bound to them are bound
        elsewhere, its leases wait to be placed again and their owners are told."""
        self._agents.pop(host, None)
        if host not in self.pool.ledger.hosts or self.scheduler is None:
            return
        on_host = [s for s in self.pool.slices.values() if s.host == host]
        self.pool.unregister_host(host)
        for s in on_host:
            if s.worker is not None:
                self._evict(s.worker)
            self._rebind_tasks_of(self.scheduler, s.resource)
            if s.lease_id is not None:
                self._notify(
                    s.owner,
                    f"lease {s.lease_id}: its host {host} was lost ({why}); it waits to be placed again",
                )
        self._flush_commands()

    def _evict(self, worker: str) -> None:
        """Dask forgets a lost host's worker now: its tasks run again elsewhere, and its
        name is free for the slice's next worker (Dask refuses a second worker of one name,
        which would leave the slice without a worker for good). The worker closes itself
        once it hears of it, if it ever does."""
        sched = self.scheduler
        if sched is None or worker not in sched.workers:
            return
        task = asyncio.ensure_future(
            sched.remove_worker(worker, stimulus_id=f"flexlab-host-lost-{time.time()}", expected=True)
        )
        self._evictions.add(task)
        task.add_done_callback(self._evictions.discard)

    def _settle(self) -> None:
        """End the settling after a restart once the expected hosts are back or agent-timeout
        has passed: work that still cannot fit then fails as never fitting, as it would have."""
        if self.store is not None:
            hosts = sorted(self.pool.ledger.hosts)
            if hosts != self._saved_hosts:
                self.store.save_hosts(hosts)
                self._saved_hosts = hosts
        if not self.pool.settling:
            return
        if self._expected <= set(self.pool.ledger.hosts) or time.time() >= self._settle_until:
            self.pool.settling = False
            logger.info("flexlab: the pool settled (hosts %s)", sorted(self.pool.ledger.hosts))
            self.pool.retry_pending()
            self._apply_bindings(self.pool.take_rebound())

    def _lose_silent_hosts(self) -> None:
        """Hosts whose agent has not been heard from for ``agent-timeout`` are lost: the agent
        died (its slice workers stop with it) or the machine is cut off. The agent registers
        the host again when it is back."""
        if self.agent_timeout <= 0:
            return
        now = time.time()
        for host, seen in list(self._agents.items()):
            if now - seen > self.agent_timeout and not self._polling.get(host):
                why = f"its agent was silent for {now - seen:.0f} s (agent-timeout {self.agent_timeout:g} s)"
                logger.warning("flexlab: host %s lost: %s", host, why)
                self.metrics.hosts_lost += 1
                self._host_gone(host, why)

    def handle_telemetry(
        self,
        worker: str = "",
        slice: str = "",
        utilisation: float = 0.0,
        memory_used_mib: int = 0,
        **kwargs: Any,
    ) -> None:
        """A slice worker's sample. A malformed one (wrong types, not finite) is dropped: it
        is the sender's fault, not the plugin's, and a stream handler has nobody to answer."""
        if (
            not isinstance(slice, str)
            or isinstance(utilisation, bool)
            or not isinstance(utilisation, (int, float))
            or not math.isfinite(utilisation)
            or isinstance(memory_used_mib, bool)
            or not isinstance(memory_used_mib, (int, float))
            or not math.isfinite(memory_used_mib)
        ):
            logger.debug("flexlab: malformed telemetry from %r dropped", worker)
            return
        self._guard(
            "telemetry",
            self.pool.telemetry,
            slice,
            utilisation=float(utilisation),
            memory_used_mib=int(min(max(memory_used_mib, 0), 2**62)),
        )

    # ------------------------------------------------------------------ clients
    def handle_pool_state(self) -> dict[str, Any]:
        """The typed pool state (``flexlab.core.poolstate``) as its wire JSON."""
        waiting: list[WaitingWork] = []
        if self.scheduler is not None:
            for key, (req, reason) in list(self.pool.pending.items())[:200]:
                waiting.append(WaitingWork(key=str(key), request=req.describe(), reason=reason))
            plain = self.plain_waiting()
            if plain:
                why = (
                    f"{plain} plain tasks wait for a worker that serves no lease: every worker "
                    "serves a lease or a warm slice (the Hi loop gives warm slices back to them)"
                )
                keys = [ts.key for ts in self.scheduler.unrunnable if ts.worker_restrictions is self._open]
                for key in keys[: max(0, 200 - len(waiting))]:
                    waiting.append(WaitingWork(key=str(key), request="", reason=why))
        state = build_pool_state(
            self.pool,
            waiting=waiting,
            plugin=PluginInfo(
                errors=len(self.errors),
                stats=dict(self._stats),
                policy=self.policy,
                agents={h: round(time.time() - t, 1) for h, t in self._agents.items()},
            ),
            hi=self.hi_state(),
            # The Hi loop's forecast in the dashboard's terms (leases count as "lease <request>").
            forecast={f"lease {k}": v for k, v in self.warm.series(time.time()).items()},
        )
        return {"status": "OK", **state.to_json()}

    def handle_history(self, since: float = 0.0) -> dict[str, Any]:
        """Aggregated telemetry frames newer than ``since`` (seconds since the epoch)."""
        return {"status": "OK", "frames": [f.to_dict() for f in self.history.frames(since)]}

    def handle_explain(self, request: str, owner: str | None = None, lease: bool = False) -> dict[str, Any]:
        """Where ``request`` would go now, or the counted reasons why not. ``lease``: as a new
        lease would see the pool, with idle shared slices reclaimable (``create_lease``)."""
        try:
            req = parse_request(request)
        except FlexlabError as exc:
            return _error(exc)
        ex = self.pool.explain_as_lease(req) if lease else self.pool.explain(req)
        d = ex.decision
        where = None
        if d.ok:
            pool = self.pool.ledger.pool
            devs = [self.pool.ledger.device_at(i) for i in d.devices]
            where = {
                "host": pool.host_names[d.host],
                "devices": devs,
                "profile": d.profile,
                "compute_milli": list(d.compute_milli),
                "memory_mib": list(d.memory_mib),
            }
        return {
            "status": "OK",
            "code": ex.code.value,
            "where": where,
            "considered": ex.considered,
            "feasible": ex.feasible,
            "text": ex.describe(),
            "reasons": {c: {r.name: n for r, n in rs.items()} for c, rs in ex.reasons_by_class.items()},
        }

    def handle_events(self, since: int = 0, owner: str | None = None, limit: int = 200) -> dict[str, Any]:
        evs = [
            asdict(e)
            for e in self.pool.events
            if e.seq > since and (owner is None or e.owner in (owner, None))
        ]
        return {"status": "OK", "events": evs[-limit:]}

    def handle_lease_create(
        self,
        request: str,
        owner: str,
        ttl: Any = None,
        priority: int = 0,
        client_id: str | None = None,
        token: str | None = None,
        private: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A new lease. With ``client_id`` and ``token`` the caller is still waiting for it: it
        is given back if that client leaves, or the caller abandons ``token``, before a
        ``flexlab_lease_get(..., claim=True)`` saw it active (:meth:`handle_lease_abandon`).
        ``private``: the owner's scheduler and credentials its worker joins with
        (``flexlab_dask.private``)."""
        cls = "unknown"  # the request class, once it parses (for the metrics)
        try:
            ttl_s = lease_ttl(
                ttl if ttl is not None else config.get("lease.default-ttl"), config.get("lease.max-ttl")
            )
            _text("owner", owner)
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise InvalidRequest("priority", priority, f"an integer in -{MAX_PRIORITY}..{MAX_PRIORITY}")
            for name, value in (("client_id", client_id), ("token", token)):
                if value is not None:
                    _text(name, value)
            req = parse_request(_text("request", request))
            creds = self.private.check(private)
            cls = metric_class(req)  # the class the Hi loop's forecaster counts it in
            lease = self.pool.create_lease(
                req,
                owner=owner,
                ttl_s=ttl_s,
                priority=priority,
                private=creds["scheduler"] if creds else None,
            )
            if creds is not None:
                self.private.hold(lease.lease_id, creds)
                if self.store is not None:
                    self.store.save_private(lease.lease_id, creds)
            placed = lease.slice_id in self.pool.slices
            outcome: LeaseOutcome = "warm" if lease.state == "active" else "placed" if placed else "waiting"
            self.metrics.lease_asked(cls, outcome, lease.lease_id)
            self.history.arrived(f"lease {req.describe()}")
            if self.hi_enabled:
                self.hi.observe_lease(time.time(), req)
            if lease.state == "active":  # it took a pre-warmed slice whose worker is up
                self._notify(owner, f"lease {lease.lease_id} is ready (pre-warmed)")
        except FlexlabError as exc:
            self.metrics.lease_asked(cls, "refused")
            return _error(exc)
        if client_id and token:
            self._unclaimed[lease.lease_id] = (str(client_id), str(token))
        self._flush_commands()
        self._persist(lease.lease_id)  # placing a new lease changes no other lease
        return {"status": "OK", "lease": self._lease_dict(lease.lease_id)}

    def handle_lease_get(
        self, lease_id: str, owner: str | None = None, claim: bool = False
    ) -> dict[str, Any]:
        """A lease's state. ``claim``: the caller that made it holds it now (once active)."""
        try:
            lease = self.pool.get_lease(lease_id, owner)
        except FlexlabError as exc:
            return _error(exc)
        if claim and lease.state == "active":
            self._unclaimed.pop(lease_id, None)
        return {"status": "OK", "lease": self._lease_dict(lease_id)}

    def handle_lease_list(self, owner: str | None = None) -> dict[str, Any]:
        return {
            "status": "OK",
            "leases": [
                self._lease_dict(lid)
                for lid, le in self.pool.leases.items()
                if owner is None or le.owner == owner
            ],
        }

    def handle_lease_release(self, lease_id: str, owner: str | None) -> dict[str, Any]:
        try:
            self.pool.release_lease(lease_id, owner)
        except FlexlabError as exc:
            return _error(exc)
        self._fail_work_of_ended_leases()
        self.pool.retry_pending()
        self._apply_bindings(self.pool.take_rebound())
        self._flush_commands()
        self._persist()
        return {"status": "OK", "lease": self._lease_dict(lease_id)}

    def handle_lease_abandon(self, token: str, owner: str | None = None) -> dict[str, Any]:
        """The caller of a lease call gave up (time-out, interrupt) before it held the lease:
        give back the lease that call made, if any. Idempotent; only for an unclaimed lease of
        ``owner``."""
        for lease_id, (_, tok) in list(self._unclaimed.items()):
            lease = self.pool.leases.get(lease_id)
            if tok == token and lease is not None and owner in (None, lease.owner):
                self._give_up(lease_id, "its caller gave up waiting for it")
                return {"status": "OK", "lease": self._lease_dict(lease_id)}
        return {"status": "OK", "lease": None}

    def handle_lease_renew(self, lease_id: str, owner: str | None, ttl: Any) -> dict[str, Any]:
        try:
            self.pool.renew_lease(lease_id, owner, parse_duration(ttl))
        except FlexlabError as exc:
            return _error(exc)
        self._persist()
        return {"status": "OK", "lease": self._lease_dict(lease_id)}

    def _lease_dict(self, lease_id: str) -> dict[str, Any]:
        from flexlab_dask.state import lease_dict

        return lease_dict(self.pool, self.pool.leases[lease_id])

    # ------------------------------------------------------------------ helpers
    def _persist(self, *only: str) -> None:
        """Write the leases that changed since the last write (the loop calls this every
        pass: rewriting every row each second would grow with the lease count).

        ``only``: just these leases, for a handler that changed nothing else (a new lease:
        looking at every lease for each of 1,000 requests at once blocked the loop for
        seconds); the next pass of the loop writes anything else."""
        if self.store is None:
            return
        saved = self._saved
        leases = (
            [self.pool.leases[x] for x in only if x in self.pool.leases]
            if only
            else self.pool.leases.values()
        )
        for lease in leases:
            sig = (lease.state, lease.expires_at, lease.ttl_s, lease.priority, lease.placed_on)
            if saved.get(lease.lease_id) != sig:
                self.store.save(lease)
                saved[lease.lease_id] = sig
        if not only and len(saved) > len(self.pool.leases):  # leases the pool forgot (retention)
            for lid in [x for x in saved if x not in self.pool.leases]:
                del saved[lid]

    def _notify(self, owner: str | None, message: str) -> None:
        """An event on the owner's topic (``client.subscribe_topic("flexlab-<owner>", ...)``)."""
        if self.scheduler is not None and owner:
            self.scheduler.log_event(f"flexlab-{owner}", {"message": message, "time": time.time()})


def _text(field: str, value: object, *, limit: int = 256) -> str:
    """``value`` if it is a non-empty string of at most ``limit`` characters (names, ids)."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidRequest(
            field, value if not isinstance(value, str) else value[:40], f"a name of 1-{limit} characters"
        )
    return value


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 2)


def _command_dict(cmd: Command) -> dict[str, Any]:
    d = asdict(cmd)
    d["op"] = "start" if isinstance(cmd, StartSlice) else "retag" if isinstance(cmd, RetagSlice) else "stop"
    return d


def _error(exc: FlexlabError) -> dict[str, Any]:
    kind = type(exc).__name__
    out: dict[str, Any] = {"status": "error", "error": kind, "message": str(exc)}
    for attr in ("field", "value", "allowed", "code", "reasons"):
        if hasattr(exc, attr):
            v = getattr(exc, attr)
            out[attr] = v if isinstance(v, (str, int, float, dict, list, type(None))) else repr(v)
    return out


def dask_setup(scheduler: Scheduler) -> None:
    """Entry point of ``dask scheduler --preload flexlab_dask.scheduler``.

    Preloads run before the scheduler starts its plugins, so adding it is enough: the
    scheduler awaits ``start`` itself."""
    plugin = FlexScheduler()
    scheduler.add_plugin(plugin, name=plugin.name)


__all__ = ["LEASE_PREFIX", "RESOURCE_PREFIX", "FlexScheduler", "dask_setup"]
