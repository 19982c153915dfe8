"""A soak: the multi-host pool under a steady load, with faults injected at random, for a set time.

    sudo python benchmarks/soak.py --minutes 30 --json soak.json [--seed 1]

It runs on the multi-host lab of ``tests/multihost`` (root: a scheduler and three host
agents, each in its own network namespace, slice workers as processes), so every fault is a
real one: a link cut (20 s), an agent SIGKILLed and started again once its host is declared
lost, a slice worker SIGKILLed in the middle of a task, and the scheduler SIGKILLed and
started again from its state file (at most ``--scheduler-kills`` times, in the first third
of the run, so that the rest of the run shows whether the scheduler's memory stays flat).

The load: task-mode tasks at 4 a second and one task at a time on each of three owners'
long leases (``tests/multihost/load.py``), plus lease churn: four more owners each take a
short lease, run two tasks on it and give it back, one every ``--churn-period`` seconds
each (a fixed rate, so that what is kept for a retention stays the same size).

Checked all along: the pool's invariants (``flexlab.core.pool.audit`` and the state checks
of the multi-host tests, twice a second), and after each fault that the capacity is back
within that fault's bound (``docs/runtime.md``, "What faults do"): every host registered,
the long leases active, every device served by ready slices but for the slices the lease
churn is starting at that moment (``CHURN_SLACK``). Reported (``--json``):
tasks submitted, completed, sent again after a scheduler restart and lost; leases granted,
given back and not granted in time; faults injected with the seconds their capacity took
to come back; invariant checks run and broken; the scheduler's resident memory over time
(start, middle and end of its longest life); and processes or namespaces left behind.
Exit status 0 only when nothing was lost, nothing broke, nothing was left and (for runs of
10 minutes or more) the scheduler's memory was flat in the last third of its longest life.

Ended leases, a gone worker's events and the pool's telemetry history are kept for a
retention (``lease.keep-ended``, distributed's ``events-cleanup-delay`` and
``flexlab.history-length``, 1 h each by default), so memory grows until that retention has
passed and is flat after it. The soak sets all three to 5 minutes (``--keep-ended``,
``--events-cleanup``, ``--history``) to show the plateau within a 30-minute run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402  (after the path: the lab lives in tests/multihost)

import flexlab  # noqa: E402
from flexlab.core.errors import FlexlabError  # noqa: E402
from tests.multihost.harness import Lab, netns_available, wait_for  # noqa: E402
from tests.multihost.load import Load, Watch, ready_milli, work  # noqa: E402
from tests.multihost.pool import FULL_MILLI, HOSTS, Pool  # noqa: E402

CHURN_OWNERS = ("dee", "eli", "fay", "gus")
CHURN_REQUEST = "gpu:0.1"
#: Runs shorter than this (minutes) report memory but do not judge whether it is flat: the
#: plateau comes after the retention (``--keep-ended``, ``--events-cleanup``) has passed.
JUDGE_MEMORY_MIN = 10.0
#: Compute that lease churn may hold in slices still starting at any moment (one each).
CHURN_SLACK = 100 * len(CHURN_OWNERS)


def capacity_back(pool: Pool) -> bool:
    """Every host registered, the three long leases active, and every device's capacity
    served by ready slices but for what the churn's leases are starting right now."""
    st = pool.state()
    active = {x["lease_id"] for x in st["leases"] if x["state"] == "active"}
    return (
        len(st["hosts"]) == len(HOSTS)
        and all(x.lease_id in active for x in pool.leases)
        and ready_milli(st) >= FULL_MILLI - CHURN_SLACK
    )


def _what_is_missing(pool: Pool) -> dict[str, Any]:
    """What keeps the capacity from being back: hosts, long leases, slices not ready."""
    try:
        st = pool.state()
    except Exception as exc:  # the pool cannot even be read
        return {"state": f"{type(exc).__name__}: {exc}"[:200]}
    return {
        "hosts": sorted(h["name"] for h in st["hosts"]),
        "long_leases": {
            x["lease_id"]: [x["state"], x.get("reason", "")[:120]]
            for x in st["leases"]
            if x["lease_id"] in {le.lease_id for le in pool.leases}
        },
        "ready_milli": ready_milli(st),
        "not_ready": [
            [h["name"], s["slice_id"], s["state"]]
            for h in st["hosts"]
            for d in h["devices"]
            for s in d["slices"]
            if s["state"] != "ready"
        ][:10],
    }


class Churn:
    """Short leases, again and again: take one, run two tasks on it, give it back. Each
    owner starts one every ``period`` seconds (at once when the last took longer, never
    two to catch up), so the rate is the same over the whole run and what the scheduler
    keeps for a retention does not grow because the pool got faster."""

    def __init__(
        self,
        pool: Pool,
        owners: tuple[str, ...] = CHURN_OWNERS,
        request: str = CHURN_REQUEST,
        period: float = 5.0,
    ) -> None:
        self.pool = pool
        self.owners = owners
        self.request = request
        self.period = period
        self._t0 = time.monotonic()
        #: leases granted in each minute of the run
        self.per_minute: dict[int, int] = {}
        self.granted = 0
        self.released = 0
        self.tasks = 0
        self.not_granted: dict[str, int] = {}
        self.task_errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(o,), name=f"churn-{o}", daemon=True) for o in owners
        ]
        self._lock = threading.Lock()

    def start(self) -> Churn:
        for t in self._threads:
            t.start()
        return self

    def _count(self, what: str) -> None:
        with self._lock:
            self.not_granted[what] = self.not_granted.get(what, 0) + 1

    def _run(self, owner: str) -> None:
        client = self.pool.client
        assert client is not None
        next_at = time.monotonic() + random.uniform(0, self.period)  # owners out of step
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + self.period, time.monotonic())
            try:
                lease = flexlab.lease(self.request, ttl="10m", owner=owner, client=client, timeout=60)
            except TimeoutError:
                self._count("not active within 60 s (given back by the call)")
                continue
            except (OSError, FlexlabError, AttributeError) as exc:
                # the scheduler is down or restarting (AttributeError: no rpc while the
                # client reconnects): the call gave back what it made, or never made it
                self._count(f"{type(exc).__name__} while the pool was down")
                next_at = max(next_at, time.monotonic() + 2)
                continue
            with self._lock:
                self.granted += 1
                minute = int((time.monotonic() - self._t0) // 60)
                self.per_minute[minute] = self.per_minute.get(minute, 0) + 1
            try:
                futures = [lease.submit(work, i, 0.2, pure=False) for i in range(2)]
                results = [f.result(timeout=120) for f in futures]
                del futures  # results fetched: nothing for Dask to keep (or recompute) on the slice
                if results != [i * 7 + 3 for i in range(2)]:
                    self.task_errors.append(f"{lease.lease_id}: wrong results {results}")
                with self._lock:
                    self.tasks += len(results)
            except Exception as exc:  # a fault ended the lease under its tasks: counted
                self.task_errors.append(f"{lease.lease_id}: {type(exc).__name__}: {exc}"[:200])
            try:
                lease.release()
                with self._lock:
                    self.released += 1
            except (OSError, FlexlabError, AttributeError):
                self._count("release failed while the pool was down (the TTL ends it)")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(180)


def _worker_states() -> int:
    """How many distributed ``WorkerState`` objects the scheduler process holds (a gone
    worker's should be freed)."""
    import gc

    from distributed.scheduler import WorkerState

    return sum(1 for o in gc.get_objects() if isinstance(o, WorkerState))


def _heap() -> dict[str, int]:
    """The Python heap of the scheduler process, which its resident memory follows with
    lag and slack (the allocator keeps freed pages): memory blocks allocated and objects
    the garbage collector tracks."""
    import gc

    return {"py_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects())}


def _structures(dask_scheduler: Any) -> dict[str, int]:
    """How much the scheduler holds, by structure: what grows if its memory grows."""
    from flexlab_dask.housekeeping import key_split_memo_size

    plugin = dask_scheduler.plugins["flexlab"]
    pool = plugin.pool
    topics = dask_scheduler._broker._topics  # distributed's event topics (Scheduler.log_event)
    out = {
        "dask_tasks": len(dask_scheduler.tasks),
        "dask_transition_log": len(dask_scheduler.transition_log),
        "dask_event_topics": len(topics),
        "dask_events": sum(len(t.events) for t in topics.values()),
        "dask_workers": len(dask_scheduler.workers),
        "dask_clients": len(dask_scheduler.clients),
        "pool_leases": len(pool.leases),
        "pool_ended_leases": sum(1 for x in pool.leases.values() if x.state in ("released", "expired")),
        "pool_slices": len(pool.slices),
        "pool_events": len(pool.table.events),
        "pool_pending_tasks": len(pool.pending),
        "pool_bound_tasks": len(pool.task_slice),
        "plugin_topics_pruned": int(getattr(plugin, "topics_pruned", 0)),
        # Task groups held by distributed's computations and spans, and how many forgotten
        # ones the plugin dropped from them (flexlab_dask.housekeeping).
        "dask_task_groups": len(dask_scheduler.task_groups),
        "dask_computation_groups": sum(len(c.groups) for c in dask_scheduler.computations),
        "dask_spans": len(dask_scheduler.extensions["spans"].spans),
        "dask_span_groups": sum(len(x.groups) for x in dask_scheduler.extensions["spans"].spans.values()),
        "dask_nthreads_history": len(dask_scheduler.total_nthreads_history),
        "plugin_groups_pruned": int(getattr(plugin, "groups_pruned", 0)),
        "plugin_nthreads_pruned": int(getattr(plugin, "nthreads_pruned", 0)),
        # metadata entries held by spans (distributed adds one per submission), and the
        # keys dask's key_split memo holds (flexlab_dask.housekeeping)
        "dask_span_metadata": sum(
            len((x.metadata or {}).get("collections", ()))
            for x in dask_scheduler.extensions["spans"].spans.values()
        ),
        "dask_key_split_memo": key_split_memo_size(),
        # Workers work stealing still counts (distributed keeps every worker it ever
        # balanced), how many WorkerStates the process holds, and how many the plugin dropped.
        "dask_stealing_workers": len(
            getattr(dask_scheduler.extensions.get("stealing"), "in_flight_tasks", ())
        ),
        "dask_worker_states": _worker_states(),
        "plugin_stealing_pruned": int(getattr(plugin, "stealing_pruned", 0)),
        # Bounded rings that fill over the first half hour or hour: history frames (one per
        # tick, 3,600 kept) and the pool's events (2,000 kept).
        "plugin_history_frames": len(plugin.history.frames()),
        # distributed keeps the last low-level-log-length batches sent on each worker's and
        # client's stream (BatchedSend.recent_message_log): a long-lived worker's fills slowly.
        "dask_comm_log_batches": sum(
            len(getattr(c, "recent_message_log", ()))
            for c in [*dask_scheduler.stream_comms.values(), *dask_scheduler.client_comms.values()]
        ),
    }
    for name, value in vars(plugin).items():  # the plugin's own tables, whatever they are
        if isinstance(value, (dict, list, set)) and name not in ("pool",):
            out[f"plugin.{name}"] = len(value)
    return out | _heap()


class Memory:
    """The scheduler process's resident memory every ``interval`` seconds, by its life, and
    the sizes of what it holds every ``structures_every`` samples."""

    def __init__(self, pool: Pool, interval: float = 10.0, settle_s: float = 360.0) -> None:
        self.pool = pool
        self.interval = interval
        #: after this long in a life, what is kept for a retention is full: growth from
        #: there on is what the slopes report
        self.settle_s = settle_s
        self.samples: list[dict[str, Any]] = []
        self.structures: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-memory", daemon=True)

    def start(self) -> Memory:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            proc = self.pool.lab.scheduler
            try:
                rss = psutil.Process(proc.pid).memory_info().rss
            except psutil.Error:
                rss = None
            if rss is not None and proc.poll() is None:
                self.samples.append(
                    {"t_s": round(time.monotonic() - self._t0, 1), "pid": proc.pid, "rss_mib": rss / 2**20}
                )
                if len(self.samples) % 6 == 1 and self.pool.client is not None:
                    try:
                        sizes = self.pool.client.run_on_scheduler(_structures)
                    except Exception:  # the scheduler is down or restarting: next time
                        sizes = None
                    if sizes is not None:
                        self.structures.append({"t_s": self.samples[-1]["t_s"], **sizes})
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def summary(self) -> dict[str, Any]:
        lives: dict[int, list[dict[str, Any]]] = {}
        for s in self.samples:
            lives.setdefault(s["pid"], []).append(s)
        if not lives:
            return {"samples": 0}
        longest = max(lives.values(), key=lambda xs: xs[-1]["t_s"] - xs[0]["t_s"])
        start, middle, end = longest[0], longest[len(longest) // 2], longest[-1]
        # "Flat": the last third of the longest life grows less than 10% over its first third.
        third = max(1, len(longest) // 3)
        early = sum(x["rss_mib"] for x in longest[third : 2 * third] or longest[:third]) / third
        late = sum(x["rss_mib"] for x in longest[-third:]) / third
        t0, t1 = start["t_s"], end["t_s"]
        settled = [x for x in longest if x["t_s"] - t0 >= self.settle_s]
        heap = [x for x in self.structures if t0 <= x["t_s"] <= t1 and x["t_s"] - t0 >= self.settle_s]
        return {
            "samples": len(self.samples),
            "lives": len(lives),
            "longest_life_s": round(t1 - t0, 1),
            "start_mib": round(start["rss_mib"], 1),
            "middle_mib": round(middle["rss_mib"], 1),
            "end_mib": round(end["rss_mib"], 1),
            "rss_mib_at_minute": {
                m: round(next(x["rss_mib"] for x in longest if x["t_s"] - t0 >= 60 * m), 1)
                for m in (1, 5, 10, 15, 20, 25, 30)
                if t1 - t0 >= 60 * m
            },
            "growth_last_third": round(late / early - 1, 3),
            "flat": late <= early * 1.10,
            # least-squares growth per minute once the retentions are full
            "settle_s": self.settle_s,
            "rss_mib_per_min_settled": _slope([(x["t_s"], x["rss_mib"]) for x in settled]),
            "py_blocks_per_min_settled": _slope(
                [(x["t_s"], x["py_blocks"]) for x in heap if "py_blocks" in x]
            ),
            "py_blocks_settled": [heap[0]["py_blocks"], heap[-1]["py_blocks"]] if heap else None,
        }


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return round(60 * sum((t - mx) * (v - my) for t, v in points) / var, 4)


class Faults:
    """One fault at a time, chosen at random, and how long its capacity took to come back."""

    def __init__(self, pool: Pool, watch: Watch, rng: random.Random, scheduler_kills: int, t0: float) -> None:
        self.pool = pool
        self.t0 = t0
        self.watch = watch
        self.rng = rng
        self.scheduler_kills = scheduler_kills
        self.log: list[dict[str, Any]] = []
        self.orphans: list[int] = []

    def kinds(self, early: bool) -> list[str]:
        kinds = ["link", "agent", "worker"]
        done = sum(1 for f in self.log if f["kind"] == "scheduler")
        if early and done < self.scheduler_kills:
            kinds.append("scheduler")
        return kinds

    def inject(self, kind: str) -> None:
        pool, lab = self.pool, self.pool.lab
        host = self.rng.choice(HOSTS)
        plans: dict[str, tuple[Callable[[], object], Callable[[], object], float, float]] = {
            "link": (lambda: lab.cut(host), lambda: lab.restore(host), 20.0, 30.0),
            "agent": (lambda: self._kill_agent(host), lambda: pool.start_agent(host), 0.0, 45.0),
            "worker": (lambda: self._kill_worker(host), lambda: None, 0.0, 30.0),
            "scheduler": (pool.kill_scheduler, lambda: lab.start_scheduler(pool.state_file), 2.0, 60.0),
        }
        start, end, hold, bound = plans[kind]
        t0 = time.monotonic()
        failed = ""
        try:
            start()
        except AssertionError as exc:  # the fault did not do what it should (host never lost...)
            failed = str(exc).splitlines()[0]
        time.sleep(hold)
        end()
        t_end = time.monotonic()
        back = None
        missing: dict[str, Any] = {}
        try:
            wait_for(lambda: capacity_back(pool), bound, f"capacity back after {kind}", lab)
            back = time.monotonic() - t_end
        except AssertionError:
            missing = _what_is_missing(pool)
        entry: dict[str, Any] = {
            "kind": kind,
            "failed": failed,
            "host": None if kind == "scheduler" else host,
            "at_s": round(t0 - self.t0, 1),
            "fault_s": round(t_end - t0, 1),
            "capacity_back_s": None if back is None else round(back, 1),
            "bound_s": bound,
        }
        if missing:
            entry["missing_at_bound"] = missing
        self.log.append(entry)
        print(f"soak fault: {json.dumps(entry)}", flush=True)

    def _kill_agent(self, host: str) -> None:
        lab = self.pool.lab
        agent = self.pool.agents[host]
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        try:
            wait_for(lambda: not lab.pids(host), 15, f"{host}'s slice workers to exit with their agent", lab)
        except AssertionError:
            self.orphans.extend(lab.pids(host))
        wait_for(
            lambda: host not in {h["name"] for h in self.pool.state()["hosts"]},
            60,
            f"{host} to be declared lost",
            lab,
        )

    def _kill_worker(self, host: str) -> None:
        workers = list(self.pool.workers_of(host).values())
        if not workers:
            return
        pid = self.pool.pid_of_worker(self.rng.choice(workers))
        os.kill(pid, signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--seed", type=int, default=1, help="the faults' random order (default 1)")
    ap.add_argument(
        "--every", default="60-120", help="seconds between the end of a fault and the next, MIN-MAX"
    )
    ap.add_argument("--scheduler-kills", type=int, default=1, help="scheduler SIGKILLs, in the first third")
    ap.add_argument(
        "--keep-ended",
        default="5m",
        help="flexlab.lease.keep-ended for the run (default 5m; shipped default 1h): how long ended "
        "leases stay, the largest part of the scheduler's memory that churn fills",
    )
    ap.add_argument(
        "--events-cleanup",
        default="5m",
        help="distributed.scheduler.events-cleanup-delay for the run (default 5m; distributed's "
        "default 1h): how long a gone worker's events stay",
    )
    ap.add_argument(
        "--history",
        default="5m",
        help="flexlab.history-length for the run (default 5m; shipped default 1h): how far back the "
        "scheduler keeps the pool's telemetry frames, a ring that fills for that long",
    )
    ap.add_argument(
        "--log-length",
        type=int,
        default=100,
        help="distributed.admin.low-level-log-length for the run (default 100; distributed's default "
        "1000): the batches each worker's and client's stream keeps for debugging, and the events "
        "each topic keeps, which fill over an hour or more at 1000",
    )
    ap.add_argument(
        "--churn-period",
        type=float,
        default=5.0,
        help="each churn owner starts a short lease every this many seconds (default 5: 48 a "
        "minute from four owners, when the pool keeps up)",
    )
    args = ap.parse_args()
    from dask.utils import parse_timedelta

    if args.churn_period <= 0:
        ap.error(f"--churn-period {args.churn_period}: give a positive number of seconds")

    if args.log_length < 1:
        ap.error(f"--log-length {args.log_length}: give a positive number of entries")
    retention = (args.keep_ended, args.events_cleanup, args.history)
    for name, value in (
        ("--keep-ended", args.keep_ended),
        ("--events-cleanup", args.events_cleanup),
        ("--history", args.history),
    ):
        try:
            seconds = parse_timedelta(value)
        except (ValueError, KeyError, TypeError):
            seconds = None
        if seconds is None or seconds <= 0:
            ap.error(f"{name} {value!r}: give a positive duration, e.g. 5m or 300s")
    try:
        lo, hi = (float(x) for x in args.every.split("-"))
    except ValueError:
        ap.error(f"--every {args.every!r}: give MIN-MAX seconds, e.g. 60-120")
    if not 0 < lo <= hi:
        ap.error(f"--every {args.every!r}: MIN must be > 0 and <= MAX")
    if args.minutes <= 0:
        ap.error("--minutes must be > 0")
    why = netns_available()
    if why is not None:
        print(f"soak: {why}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="flexlab-soak-"))
    # Retention shorter than the run, so that the run shows memory reaching its plateau
    # (with the shipped 1 h, a 30-minute run only shows the way up to it).
    lab = Lab(
        tmp,
        env={
            "DASK_FLEXLAB__LEASE__KEEP_ENDED": args.keep_ended,
            "DASK_DISTRIBUTED__SCHEDULER__EVENTS_CLEANUP_DELAY": args.events_cleanup,
            "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": str(args.log_length),
            "DASK_FLEXLAB__HISTORY_LENGTH": args.history,
        },
    )
    report: dict[str, Any] = {
        "minutes": args.minutes,
        "seed": args.seed,
        "every_s": [lo, hi],
        "retention": {
            "lease.keep-ended": args.keep_ended,
            "events-cleanup-delay": args.events_cleanup,
            "low-level-log-length": args.log_length,
            "history-length": args.history,
        },
    }
    ok = False
    pool: Pool | None = None
    try:
        pool = Pool(lab, tmp)
        pool.start()
        assert pool.client is not None
        t_start = time.monotonic()
        watch = Watch(pool.client).start()
        memory = Memory(pool, settle_s=60 + max(parse_timedelta(x) or 0 for x in retention)).start()
        load = Load(pool.client, pool.leases).start()
        churn = Churn(pool, period=args.churn_period).start()
        faults = Faults(pool, watch, rng, args.scheduler_kills, t_start)
        deadline = t_start + 60 * args.minutes
        while True:
            pause = rng.uniform(lo, hi)
            if time.monotonic() + pause >= deadline:
                time.sleep(max(0.0, deadline - time.monotonic()))
                break
            time.sleep(pause)
            early = time.monotonic() - t_start < 20 * args.minutes  # the first third (60 s * m / 3)
            faults.inject(rng.choice(faults.kinds(early)))
        churn.stop()
        load.stop()
        load.drain(180)
        memory.stop()
        watch.poll()
        watch.stop()
        report.update(
            {
                "tasks": load.figures()
                | {"churn_tasks": churn.tasks, "churn_task_errors": churn.task_errors},
                "leases": {
                    "long_leases": len(pool.leases),
                    "granted": churn.granted,
                    "released": churn.released,
                    "not_granted": churn.not_granted,
                    "churn_period_s": args.churn_period,
                    "granted_per_minute": [churn.per_minute.get(m, 0) for m in range(int(args.minutes) + 1)],
                },
                "faults": faults.log,
                "faults_by_kind": {
                    k: sum(1 for f in faults.log if f["kind"] == k)
                    for k in ("link", "agent", "worker", "scheduler")
                },
                "capacity_not_back_in_bound": [f for f in faults.log if f["capacity_back_s"] is None],
                "orphaned_workers": faults.orphans,
                "invariant_checks": watch.checks,
                "invariants_broken": watch.broken[:50],
                "state_unreachable_polls": watch.unreachable,
                "scheduler_memory": memory.summary()
                | (
                    {}
                    if args.minutes >= JUDGE_MEMORY_MIN
                    else {"flat": None, "why": "run too short to judge"}
                ),
                "scheduler_structures": memory.structures,
                "scheduler_memory_samples": [
                    {"t_s": s["t_s"], "pid": s["pid"], "rss_mib": round(s["rss_mib"], 1)}
                    for s in memory.samples
                ],
                "lost": load.lost[:50],
            }
        )
        for lease in pool.leases:
            lease.release()
        pool.client.close()
        pool.client = None
        report["processes_left"] = lab.stop_processes()
        ok = (
            not load.lost
            and not watch.broken
            and not report["processes_left"]
            and not faults.orphans
            and not report["capacity_not_back_in_bound"]
            and not any(f["failed"] for f in faults.log)
            and (report["scheduler_memory"].get("flat", False) or args.minutes < JUDGE_MEMORY_MIN)
        )
    finally:
        if pool is not None:
            pool.close()  # the client first: it would try to reconnect to a lab being taken down
        lab.close()
        report["namespaces_left"] = lab.leftovers()
        ok = ok and not report["namespaces_left"]
        report["ok"] = ok
        text = json.dumps(report, indent=2, default=str)
        if args.json:
            args.json.write_text(text + "\n")
        print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
