"""Online replay of a pod list through the shipped pool and Hi loop, on a virtual clock.

Every mode runs the code users run: each pod asks the ``SlicePool`` for a lease
(``create_lease``, with its priority); the pool places it (or takes a warm slice for it,
or keeps it waiting) and tells a host agent to start the slice's worker; the simulated
agent (``flexlab.sim.online_pool.SimAgent``) answers ``slice_ready`` after the slice
start-up; the pod waits from its arrival until its lease is ``active``, runs its duration
and releases the lease (the pool then places waiting leases). The Hi loop
(``flexlab.core.hiloop.HiLoop``, the plugin's policy stack) runs every interval: it
forecasts lease arrivals, keeps warm slices, preempts. A scheduling pass
(``retry_leases``, the plugin's tick) runs at most once a virtual second while leases wait.

Modes (``MODES``):

* ``whole``: every share rounded up to whole devices, placed by best fit; a standing worker
  per device, so a whole-device slice is ready at once (slice start-up 0).
* ``fgd`` / ``flexlab``: fractional leases placed by that policy; every new slice waits
  ``slice_start_s`` for its worker.
* ``flexlab+reserve``: as ``flexlab``, plus the Hi loop's standing reserve of warm slices
  (``Prewarm(forecast=False)``).
* ``flexlab+forecast``: as ``flexlab``, plus warm slices ahead of the forecast and the
  same reserve (``Prewarm(forecast=True)``).

With ``grace_s`` every mode adds ``Preempt(grace_s)``: a lease that waited that long
preempts lower-priority leases; a preempted pod keeps the running time it has left (its
work is checkpointed) and waits for its lease to be placed again.
"""

from __future__ import annotations

import csv
import heapq
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from flexlab.core.errors import InvalidRequest, Unschedulable
from flexlab.core.hiloop import Action, Outcome
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE
from flexlab.core.topology import HostSpec
from flexlab.sim.online_metrics import OnlineResult
from flexlab.sim.online_pool import POLICY, SimAgent, WarmSettings, lease_request, make_hiloop, new_pool
from flexlab.sim.openb import csv_dir, load_pods

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MODES = ("whole", "fgd", "flexlab", "flexlab+reserve", "flexlab+forecast")
HIGH_QOS = frozenset({"LS", "Guaranteed", "Burstable"})
#: Owner of every pod's lease, and its TTL: a pod releases its lease when it ends.
OWNER = "openb"
TTL_S = 1e12
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Workload:
    """Pods as parallel arrays; ``requests[shape[i]]`` is pod i's request."""

    name: str
    requests: list[SliceRequest]
    shape: I64
    arrival: F64
    duration: F64
    priority: I64  # 1 high, 0 low

    def __len__(self) -> int:
        return int(self.shape.shape[0])


def load_openb_workload(
    trace_dir: str | Path,
    workload: str = "default",
    *,
    compress: float = 1.0,
    repeat: int = 1,
    repeat_low: bool = False,
    sample: int = 1,
) -> Workload:
    """An openb pod list as a workload: arrival ``creation_time / compress``, running time
    ``deletion_time - scheduled_time`` (``- creation_time`` for pods never scheduled), at
    least 1 s; priority 1 for qos LS / Guaranteed / Burstable, 0 for BE. ``repeat`` > 1
    submits every pod that many times at its arrival (a saturating load: the pod list
    alone asks for 98% of the GPUs). ``repeat_low``: the extra copies are low priority
    (best-effort filler behind the trace's own pods). ``sample`` N keeps every N-th pod of
    the file (with ``openb_hosts(sample=N)``: the same load on a pool N times smaller)."""
    pods = load_pods(trace_dir, workload)
    path = csv_dir(trace_dir) / f"openb_pod_list_{workload}.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))[:: max(sample, 1)]
    arr = np.array([float(r["creation_time"] or 0) for r in rows])
    dele = np.array([float(r["deletion_time"] or 0) for r in rows])
    sch = np.array([float(r["scheduled_time"]) if r.get("scheduled_time") else math.nan for r in rows])
    dur = np.maximum(np.where(np.isnan(sch), dele - arr, dele - sch), 1.0)
    prio = np.array([1 if r.get("qos", "") in HIGH_QOS else 0 for r in rows], dtype=np.int64)
    if repeat > 1:
        n = prio.shape[0]
        arr, dur, prio = (np.tile(x, repeat) for x in (arr, dur, prio))
        if repeat_low:
            prio[n:] = 0
    shape = np.tile(pods.shape[:: max(sample, 1)], max(repeat, 1))
    order = np.argsort(arr, kind="stable")
    return Workload(workload, pods.requests, shape[order], arr[order] / compress, dur[order], prio[order])


@dataclass
class OnlineConfig:
    #: Seconds from ``StartSlice`` to ``slice_ready`` (0 in ``whole`` mode).
    slice_start_s: float = 30.0
    #: Preempt lower-priority leases for a lease that waited this long (None: never).
    grace_s: float | None = None
    #: At most one scheduling pass (``retry_leases``) per this many seconds.
    pass_s: float = 1.0
    #: Utilisation samples while pods arrive.
    sample_s: float = 2.0
    #: Leases ask for the pods' host CPU and RAM too. Off by default: a warm slice holds
    #: its lease's host CPU, and the pool's reclaim (``LeaseBook._reclaim_for``) cannot put
    #: a warm slice back when the lease it made room for took that CPU on another device
    #: of the host (``LedgerConflict``); until the pool handles that, leases are GPU only.
    host_resources: bool = False
    #: Devices carved into shared slices as their hosts register, as the live pool does
    #: (``flexlab.carve-on-register``, on by default): every idle device runs a worker,
    #: started at registration, that a lease may take over (``WarmSlices.take_standing``).
    #: ``whole`` mode never carves (a standing worker per device is its premise).
    shared_workers: bool = True
    warm: WarmSettings = field(default_factory=WarmSettings)


ARRIVE, READY, DEPART, PASS, HI, SAMPLE = range(6)


class _Replay:
    """One mode's run: the event heap and what it measured."""

    def __init__(self, hosts: list[HostSpec], wl: Workload, mode: str, cfg: OnlineConfig) -> None:
        self.wl, self.mode, self.cfg = wl, mode, cfg
        self.pool, self.clock, self.policy = new_pool(
            hosts, POLICY[mode], shared=cfg.shared_workers and mode != "whole"
        )
        self.pool.warm.max_oversize = cfg.warm.oversize
        self.agent = SimAgent(0.0 if mode == "whole" else cfg.slice_start_s)
        self.hi = make_hiloop(mode, cfg.warm, start_s=cfg.slice_start_s, grace_s=cfg.grace_s)
        self.requests = [
            lease_request(r, whole=mode == "whole", host_resources=cfg.host_resources) for r in wl.requests
        ]
        # Utilisation counts what pods asked for (not whole-device rounding).
        self.useful = [r.compute_milli * r.devices for r in wl.requests]
        self.capacity = max(self.pool.ledger.pool.n_devices * WHOLE, 1)
        n = len(wl)
        self.wait = np.full(n, np.nan)
        self.remaining = wl.duration.astype(np.float64).copy()
        #: (time, sequence, kind, pod or ticket, departure token)
        self.events: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.lease_of: dict[int, str] = {}
        self.job_of: dict[str, int] = {}
        self.running: dict[int, tuple[float, int]] = {}  # pod -> (start, departure token)
        self.waiting: set[str] = set()  # leases not active
        #: Pods waiting and running per priority (is there anyone to preempt for?).
        self.n_waiting: Counter[int] = Counter()
        self.n_running: Counter[int] = Counter()
        self.warm: set[str] = set()  # the Hi loop's warm slices, not yet taken
        self.pass_due = self.hi_due = self.freed = False
        self.busy = 0
        self.skipped: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.work_done = 0.0
        self.last_end = 0.0
        self.samples: list[tuple[float, float, float]] = []
        self.end_arrivals = float(wl.arrival.max(initial=0.0))

    def push(self, t: float, kind: int, a: int = 0, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, a, b))

    # -- the handlers -----------------------------------------------------------------------
    def arrive(self, j: int, now: float) -> None:
        req = self.requests[int(self.wl.shape[j])]
        if req.compute_milli == 0:
            self.skipped["cpu-only"] += 1  # a lease is a device slice
            return
        prio = int(self.wl.priority[j])
        try:
            lease = self.pool.create_lease(req, owner=OWNER, ttl_s=TTL_S, priority=prio)
        except InvalidRequest:
            if req.devices <= 1:
                raise
            self.skipped["multi-device"] += 1  # the pool's leases hold one device
            return
        except Unschedulable:
            self.skipped["unschedulable"] += 1
            return
        if self.hi is not None:
            self.hi.observe_lease(now, replace(req, priority=prio))
        self.lease_of[j], self.job_of[lease.lease_id] = lease.lease_id, j
        if lease.slice_id in self.warm:
            self.warm.discard(lease.slice_id or "")
            self.counts["claims"] += 1
            self.counts["claims_ready"] += lease.state == "active"
        if lease.state == "active":
            self.start(j, now)
        else:
            self._wait(j)

    def ready(self, ticket: int, now: float) -> None:
        got = self.agent.resolve(ticket)
        if got is None:
            return  # stopped (or started again) since
        slice_id, worker = got
        self.pool.slice_ready(slice_id, worker)
        s = self.pool.slices.get(slice_id)
        lease = self.pool.leases.get(s.lease_id or "") if s is not None else None
        if lease is not None and lease.state == "active":
            j = self.job_of[lease.lease_id]
            if j not in self.running:
                self.start(j, now)

    def _wait(self, j: int) -> None:
        self.waiting.add(self.lease_of[j])
        self.n_waiting[int(self.wl.priority[j])] += 1

    def start(self, j: int, now: float) -> None:
        if self.lease_of[j] in self.waiting:
            self.waiting.discard(self.lease_of[j])
            self.n_waiting[int(self.wl.priority[j])] -= 1
        self.n_running[int(self.wl.priority[j])] += 1
        if math.isnan(self.wait[j]):
            self.wait[j] = now - float(self.wl.arrival[j])
        self.seq += 1
        self.running[j] = (now, self.seq)
        self.busy += self.useful[int(self.wl.shape[j])]
        self.push(now + float(self.remaining[j]), DEPART, a=j, b=self.seq)

    def _stop_running(self, j: int, now: float) -> None:
        begun, _token = self.running.pop(j)
        self.n_running[int(self.wl.priority[j])] -= 1
        done = min(now - begun, float(self.remaining[j]))
        useful = self.useful[int(self.wl.shape[j])]
        self.busy -= useful
        self.work_done += done * useful / WHOLE
        self.remaining[j] -= done

    def depart(self, j: int, token: int, now: float) -> None:
        run = self.running.get(j)
        if run is None or run[1] != token:
            return  # a departure planned before the pod was preempted
        self._stop_running(j, now)
        self.counts["completed"] += 1
        self.last_end = now
        self.pool.release_lease(self.lease_of[j], OWNER, reason="the pod ended")

    def hi_step(self, now: float) -> None:
        assert self.hi is not None
        for o in self.hi.step(self.pool, now, waiting_tasks=0):
            self._outcome(o, now)

    def _outcome(self, o: Outcome, now: float) -> None:
        m = o.move
        if not o.done:
            return
        if m.action is Action.PREWARM:
            self.warm.update(o.slices)
            self.counts["carved"] += len(o.slices)
        elif m.action is Action.DISSOLVE:
            self.warm.difference_update(o.slices)
            self.counts["given_back"] += len(o.slices)
            self.freed = True
        elif m.lease_id in self.job_of:
            j = self.job_of[m.lease_id]
            if j in self.running:
                self._stop_running(j, now)
                self.counts["preemptions"] += 1
                self._wait(j)

    def preemption_possible(self) -> bool:
        """A pod waits while one of lower priority runs."""
        if self.cfg.grace_s is None:
            return False
        waiting = [p for p, n in self.n_waiting.items() if n > 0]
        running = [p for p, n in self.n_running.items() if n > 0]
        return bool(waiting and running) and max(waiting) > min(running)

    def sample(self, now: float) -> None:
        warm = sum(
            s.compute_milli * len(s.devices)
            for sid in self.warm
            if (s := self.pool.slices.get(sid)) is not None
        )
        self.samples.append((now, self.busy / self.capacity, warm / self.capacity))

    def flush(self, now: float) -> None:
        """Carry out the pool's commands: the agents start and stop slice workers."""
        for t, ticket in self.agent.take(self.pool, now):
            self.push(t, READY, a=ticket)
        for sid in self.agent.kept:  # running workers handed over (``RetagSlice``)
            s = self.pool.slices.get(sid)
            if s is not None and s.warm_for is not None:  # an ended lease's, kept warm
                self.warm.add(sid)
                self.counts["recycled"] += 1
            elif s is not None and s.lease_id is not None:  # an idle shared slice's
                self.counts["standing"] += 1
        gone = self.agent.stopped & self.warm
        if gone:  # the pool reclaimed warm slices for leases that fitted nowhere else
            self.warm -= gone
            self.counts["reclaimed"] += len(gone)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: Progress | None) -> OnlineResult:
        t0 = time.perf_counter()
        cfg = self.cfg
        for j in range(len(self.wl)):
            self.push(float(self.wl.arrival[j]), ARRIVE, a=j)
        self.push(0.0, SAMPLE)
        if self.hi is not None:
            self.hi_due = True
            self.push(0.0, HI)
        while self.events:
            now, _seq, kind, a, b = heapq.heappop(self.events)
            self.clock.now = now
            if kind == ARRIVE:
                self.arrive(a, now)
            elif kind == READY:
                self.ready(a, now)
            elif kind == DEPART:
                self.depart(a, b, now)
            elif kind == PASS:
                self.pass_due = self.freed = False
                self.pool.retry_leases()
            elif kind == HI:
                self.hi_due = False
                self.hi_step(now)
            elif kind == SAMPLE:
                self.sample(now)
                if now < self.end_arrivals:
                    self.push(now + cfg.sample_s, SAMPLE)
            self.flush(now)
            # The plugin's tick retries waiting leases every second; a pass places nothing
            # unless capacity was given back since the last one (releases and preemptions
            # retry at once), so only those passes are run.
            if self.waiting and self.freed and not self.pass_due:
                self.pass_due = True
                self.push(now + cfg.pass_s, PASS)
            # The Hi loop runs every interval while pods arrive, then while it may preempt.
            hi_useful = now < self.end_arrivals or self.preemption_possible()
            if self.hi is not None and not self.hi_due and hi_useful:
                self.hi_due = True
                self.push(now + cfg.warm.interval_s, HI)
            if progress is not None:
                progress(now)
        return self.result(time.perf_counter() - t0)

    def result(self, seconds: float) -> OnlineResult:
        mape = smape = mase = math.nan
        pw = self.hi.prewarm if self.hi is not None else None
        if pw is not None and pw.forecast:
            mape, smape = pw.planner.errors()
            mase = pw.planner.mase()
        ts, util, warm = (np.array(x, dtype=np.float64) for x in zip(*self.samples, strict=True))
        c = self.counts
        return OnlineResult(
            mode=self.mode,
            policy=self.policy,
            jobs=len(self.wl),
            completed=c["completed"],
            wait=self.wait,
            priority=self.wl.priority,
            skipped=dict(self.skipped),
            preemptions=c["preemptions"],
            samples_t=ts,
            util=util,
            warm_share=warm,
            completed_work_gpu_s=self.work_done,
            makespan_s=self.last_end,
            arrival_end_s=self.end_arrivals,
            warm_carved=c["carved"],
            warm_given_back=c["given_back"],
            warm_reclaimed=c["reclaimed"],
            warm_claims=c["claims"],
            warm_claims_ready=c["claims_ready"],
            warm_recycled=c["recycled"],
            standing_taken=c["standing"],
            slices_started=self.agent.started,
            hi_rejected={k.value: v for k, v in self.hi.rejected.items()} if self.hi is not None else {},
            forecast_mape=mape,
            forecast_smape=smape,
            forecast_mase=mase,
            seconds=seconds,
        )


def simulate(
    hosts: list[HostSpec],
    wl: Workload,
    mode: str,
    *,
    config: OnlineConfig | None = None,
    progress: Progress | None = None,
) -> OnlineResult:
    """Replay ``wl`` on a fresh pool of ``hosts`` under ``mode`` (one of ``MODES``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    return _Replay(hosts, wl, mode, config or OnlineConfig()).run(progress)
