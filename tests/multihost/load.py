"""The running load of the fault tests, and the pool invariants polled while it runs.

``Load`` submits a stream of task-mode tasks (``flexlab.request``) and, per owner, a stream
of tasks on that owner's lease; every task's result is checked. A task whose future was
cancelled because the client lost the scheduler (a scheduler restart: Dask keeps no graph
across one) is submitted again, and counted; any other failure is a lost task.

``Watch`` polls the pool state twice a second and checks, every time: no device holds more
slices than it has (compute and memory), the ledger's free capacity plus its slices equal
the device, no two live leases claim one slice, no lease holds more than its device, the
pool's own ``audit()`` finds nothing, and the plugin logged no error. It also records the
ready capacity over time, from which the recovery time after a fault is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future
from distributed.client import ClosedClientError

import flexlab
from flexlab.client import Lease, PoolClient


def work(i: int, seconds: float) -> int:
    """A task: holds its slice for ``seconds``, returns a value the test checks."""
    time.sleep(seconds)
    return i * 7 + 3


@dataclass
class Stream:
    """Tasks of one kind (task mode, or one owner's lease), each checked when done."""

    name: str
    submit: Callable[[int], Future]
    pending: dict[int, Future] = field(default_factory=dict)
    submitted: int = 0
    completed: int = 0
    resubmitted: int = 0
    failed: list[str] = field(default_factory=list)
    #: When each result arrived (time.monotonic()).
    done_at: list[float] = field(default_factory=list)

    def add(self, i: int) -> None:
        try:
            self.pending[i] = self.submit(i)
        except (OSError, ClosedClientError):
            return  # not sent (the client reconnects): not counted
        self.submitted += 1

    def collect(self) -> None:
        for i, fut in list(self.pending.items()):
            if fut.status == "finished":
                try:
                    value = fut.result(timeout=10)
                except (OSError, TimeoutError):
                    continue  # the connection broke while fetching it: asked again next time
                if value != i * 7 + 3:
                    self.failed.append(f"{self.name} task {i}: wrong result {value!r}")
                self.completed += 1
                self.done_at.append(time.monotonic())
                del self.pending[i]
            elif fut.status == "cancelled":
                # Only a scheduler lost with its graph cancels futures; the work is sent again.
                try:
                    self.pending[i] = self.submit(i)
                except (OSError, ClosedClientError):
                    continue
                self.resubmitted += 1
            elif fut.status == "error":
                self.failed.append(f"{self.name} task {i}: {fut.exception()!r}")
                del self.pending[i]


class Load:
    """Task-mode tasks at ``rate`` a second plus one task at a time on each lease."""

    def __init__(
        self,
        client: Client,
        leases: list[Lease],
        *,
        request: str = "gpu:0.25",
        rate: float = 4.0,
        task_s: float = 0.3,
    ) -> None:
        self.client = client
        self.leases = leases
        self.rate = rate

        def task_mode(i: int) -> Future:
            with flexlab.request(request):
                return client.submit(work, i, task_s, pure=False)

        self.streams = [Stream("task mode", task_mode)]
        for lease in leases:
            self.streams.append(Stream(f"lease {lease.lease_id} ({lease.owner})", _on(lease, task_s)))
        self.crashed: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multihost-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._submit_and_collect()
        except BaseException as exc:  # the test fails on it (stop() raises it again)
            self.crashed = exc
            raise

    def _submit_and_collect(self) -> None:
        n = 0
        while not self._stop.is_set():
            task_stream = self.streams[0]
            task_stream.add(n)
            for s in self.streams[1:]:
                if len(s.pending) < 2:  # one running, one queued, on every lease
                    s.add(n)
            for s in self.streams:
                s.collect()
            n += 1
            self._stop.wait(1 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.crashed is not None:
            raise AssertionError("the load thread failed") from self.crashed

    def drain(self, timeout: float) -> None:
        """Wait until every submitted task's result arrived (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(s.pending for s in self.streams):
            for s in self.streams:
                s.collect()
            time.sleep(0.2)

    @property
    def submitted(self) -> int:
        return sum(s.submitted for s in self.streams)

    @property
    def completed(self) -> int:
        return sum(s.completed for s in self.streams)

    @property
    def lost(self) -> list[str]:
        out = [msg for s in self.streams for msg in s.failed]
        out += [f"{s.name}: task {i} never finished" for s in self.streams for i in s.pending]
        return out

    def service_back(self, since: float) -> float | None:
        """Seconds after ``since`` until every stream had a result again (None: one had not)."""
        firsts = [min((t for t in s.done_at if t >= since), default=None) for s in self.streams]
        if any(t is None for t in firsts):
            return None
        return max(t for t in firsts if t is not None) - since

    def figures(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "completed": self.completed,
            "resubmitted": sum(s.resubmitted for s in self.streams),
            "lost": len(self.lost),
            "per_stream": {s.name: (s.submitted, s.completed) for s in self.streams},
        }


def _on(lease: Lease, task_s: float) -> Callable[[int], Future]:
    return lambda i: lease.submit(work, i, task_s, pure=False)


def _audit(dask_scheduler: Any) -> list[str]:
    from flexlab.core.pool.audit import audit

    plugin = dask_scheduler.plugins["flexlab"]
    return [*audit(plugin.pool), *(f"plugin error: {e}" for e in plugin.errors)]


def check_state(state: dict[str, Any]) -> list[str]:
    """The broken invariants of one pool state (``flexlab_pool_state``), in words."""
    broken: list[str] = []
    claimed: dict[str, str] = {}
    for host in state["hosts"]:
        for dev in host["devices"]:
            slices = dev["slices"]
            compute = sum(s["compute_milli"] for s in slices)
            memory = sum(s["memory_mib"] for s in slices)
            if dev["mode"] == "fraction":
                if compute > 1000 or compute + dev["free_compute_milli"] != 1000:
                    broken.append(
                        f"{dev['id']}: slices hold {compute} milli, {dev['free_compute_milli']} free of 1000"
                    )
                if memory > dev["memory_mib"] or memory + dev["free_memory_mib"] != dev["memory_mib"]:
                    broken.append(
                        f"{dev['id']}: slices hold {memory} MiB, {dev['free_memory_mib']} free "
                        f"of {dev['memory_mib']}"
                    )
    for lease in state["leases"]:
        sid = lease["slice_id"]
        if lease["state"] in ("released", "expired") or sid is None:
            continue
        if lease["compute_milli"] is not None and lease["compute_milli"] > 1000:
            broken.append(f"lease {lease['lease_id']} holds {lease['compute_milli']} milli of one device")
        other = claimed.setdefault(sid, lease["lease_id"])
        if other != lease["lease_id"]:
            broken.append(f"slice {sid} claimed by live leases {other} and {lease['lease_id']}")
    errors = state.get("plugin", {}).get("errors", 0)
    if errors:
        broken.append(f"plugin logged {errors} errors")
    return broken


def ready_milli(state: dict[str, Any]) -> int:
    """Compute (milli) of slices whose workers serve now."""
    return sum(
        s["compute_milli"]
        for h in state["hosts"]
        for d in h["devices"]
        for s in d["slices"]
        if s["state"] == "ready"
    )


@dataclass
class Sample:
    t: float
    ready_milli: int
    hosts: int
    active_leases: int


class Watch:
    """Polls the pool state and its audit every ``interval`` while the load runs."""

    def __init__(self, client: Client, interval: float = 0.5) -> None:
        self.client = client
        self.interval = interval
        self.samples: list[Sample] = []
        self.checks = 0
        self.unreachable = 0
        self.last_unreachable = ""
        self.broken: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multihost-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def poll(self) -> dict[str, Any] | None:
        try:
            state = PoolClient(self.client).state()
            audit = self.client.run_on_scheduler(_audit)
        except (OSError, TimeoutError, ClosedClientError, AttributeError) as exc:
            # the scheduler is down (AttributeError: the client has no scheduler rpc while it
            # reconnects): counted, and the invariants are checked again once it is back
            self.unreachable += 1
            self.last_unreachable = f"{type(exc).__name__}: {exc}"
            return None
        self.checks += 1
        for msg in [*check_state(state), *audit]:
            self.broken.append(f"{time.strftime('%H:%M:%S')} {msg}")
        self.samples.append(
            Sample(
                time.monotonic(),
                ready_milli(state),
                len(state["hosts"]),
                sum(1 for x in state["leases"] if x["state"] == "active"),
            )
        )
        return state

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def recovered_at(self, since: float, milli: int, leases: int) -> float | None:
        """First time after ``since`` with ``milli`` ready and ``leases`` active (and every
        sample after it too)."""
        after = [s for s in self.samples if s.t >= since]
        for k, s in enumerate(after):
            if all(x.ready_milli >= milli and x.active_leases >= leases for x in after[k:]):
                return s.t
        return None
