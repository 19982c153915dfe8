"""A steady synthetic load that keeps a mock pool moving, for the dashboard and Binder.

* **Tasks**: the demo's seeded mix (``flexlab.mock.mix.workload``: small inference,
  training steps, CPU tasks) arrives as a Poisson stream of ``rate`` tasks a second, each
  annotated with its request, with at most ``max_in_flight`` unfinished.
  One task in ten asks for a MIG or vNPU profile instead (``PROFILE_TASKS``).
* **Leases**: a few users take a lease, run work on it while they hold it, and give it back
  after a while; ``dave`` and ``erin`` ask for whole devices, which usually have to wait
  (the queue then shows why). They are background work, priority ``-1``: a person's lease
  (priority 0) is placed before them and, after ``flexlab.hi.preempt-grace``, preempts
  them, so a Binder user's first lease never waits behind the demo's own load.

Run it against a pool::

    python -m flexlab.dashboard.load tcp://127.0.0.1:8786
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from distributed import Client

import flexlab
from flexlab.core.errors import FlexlabError
from flexlab.mock.mix import DemoTask, run_task, workload

logger = logging.getLogger("flexlab.dashboard.load")

#: Who leases what, in the default mock pool.
USERS: dict[str, tuple[str, ...]] = {
    "alice": ("npu:vir10_3c_32g", "a100-80gb:2g.20gb"),
    "bob": ("a100-80gb:3g.40gb", "npu:0.5"),
    "carol": ("mlu:0.5", "gpu:0.25", "npu:0.5"),
    "dave": ("gpu:1",),
    "erin": ("v100s-32gb:1",),
}
#: Profile requests (MIG, vNPU): carved on demand, they wait while a lease holds the device.
PROFILE_TASKS = ("a100-80gb:3g.40gb", "npu:vir10_3c_32g")


def profile_work() -> float:
    """A task for a profile slice: the whole slice for 2 reference device-seconds."""
    from flexlab.mock.workloads import kernel

    return kernel(work=2.0, demand=1.0, memory="2GiB", workload_class="inference").elapsed_s


def lease_work(seconds: float) -> float:
    """Keep a leased slice busy for about ``seconds`` (a mock kernel at demand 0.8)."""
    from flexlab.mock.workloads import kernel

    r = kernel(work=max(0.01, seconds * 0.4), demand=0.8, memory="1GiB", workload_class="training")
    return r.elapsed_s


class SyntheticLoad:
    """Background threads submitting tasks and taking leases until :meth:`stop`."""

    def __init__(
        self,
        client: Client,
        *,
        rate: float = 3.0,
        max_in_flight: int = 40,
        users: dict[str, tuple[str, ...]] | None = None,
        hold_s: tuple[float, float] = (20.0, 60.0),
        pause_s: tuple[float, float] = (3.0, 15.0),
        ttl: str = "5m",
        seed: int = 7,
        delay_s: float = 0.0,
        priority: int = -1,
    ) -> None:
        self.client = client
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.users = dict(USERS if users is None else users)
        self.hold_s = hold_s
        self.pause_s = pause_s
        self.ttl = ttl
        self.seed = seed
        #: Seconds to wait before the first task and lease (let a starting dashboard draw first).
        self.delay_s = delay_s
        #: Priority of the load's leases (below a person's 0: the load is background work).
        self.priority = priority
        self.submitted = 0
        self.leases_taken = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._futures: set[Any] = set()  # distributed Futures (untyped)
        self._lock = threading.Lock()

    def start(self) -> SyntheticLoad:
        self._threads = [threading.Thread(target=self._tasks, name="flexlab-load-tasks", daemon=True)]
        for i, user in enumerate(sorted(self.users)):
            self._threads.append(
                threading.Thread(
                    target=self._leases, args=(user, i), name=f"flexlab-load-{user}", daemon=True
                )
            )
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            futures = list(self._futures)
        client: Any = self.client
        if futures and client.status == "running":
            client.cancel(futures)

    def __enter__(self) -> SyntheticLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        return {"submitted": self.submitted, "leases": self.leases_taken, "errors": list(self.errors)}

    def _submit(self, task: DemoTask) -> Any:
        if task.kind == "cpu":
            return self.client.submit(run_task, task, pure=False)
        with flexlab.request(task.request):
            return self.client.submit(run_task, task, pure=False)

    def _tasks(self) -> None:
        rng = random.Random(self.seed)
        if self._stop.wait(self.delay_s):
            return
        for task in itertools.cycle(workload(600, seed=self.seed)):
            if self._stop.wait(rng.expovariate(self.rate)):
                return
            with self._lock:
                self._futures = {f for f in self._futures if not f.done()}
                if len(self._futures) >= self.max_in_flight:
                    continue
            try:
                if rng.random() < 0.1:
                    with flexlab.request(rng.choice(PROFILE_TASKS)):
                        fut = self.client.submit(profile_work, pure=False)
                else:
                    fut = self._submit(task)
            except (FlexlabError, OSError, RuntimeError) as exc:  # pool gone or request refused
                self._error(f"submit: {exc}")
                continue
            with self._lock:
                self._futures.add(fut)
            self.submitted += 1

    def _leases(self, user: str, k: int) -> None:
        rng = random.Random(self.seed * 100 + k)
        specs = self.users[user]
        if self._stop.wait(self.delay_s + rng.uniform(0.5, 4.0)):
            return
        while not self._stop.is_set():
            spec = rng.choice(specs)
            try:
                lease = flexlab.lease(
                    spec, owner=user, ttl=self.ttl, wait=False, priority=self.priority, client=self.client
                )
            except (FlexlabError, OSError, RuntimeError) as exc:
                self._error(f"lease {spec} for {user}: {exc}")
                if self._stop.wait(rng.uniform(*self.pause_s)):
                    return
                continue
            self.leases_taken += 1
            self._hold(lease, rng.uniform(*self.hold_s))
            try:
                lease.release()
            except (FlexlabError, OSError, RuntimeError) as exc:
                self._error(f"release {lease.lease_id}: {exc}")
            if self._stop.wait(rng.uniform(*self.pause_s)):
                return

    def _hold(self, lease: flexlab.Lease, seconds: float) -> None:
        """Hold the lease for ``seconds``, running work on it whenever it is active."""
        end = time.monotonic() + seconds
        running: Any = None
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                state = lease.refresh()["state"]
                if state == "active" and (running is None or running.done()):
                    running = lease.submit(lease_work, min(8.0, end - time.monotonic()), pure=False)
            except (FlexlabError, OSError, RuntimeError) as exc:
                self._error(f"lease {lease.lease_id}: {exc}")
                return
            if state in ("released", "expired"):
                return
            self._stop.wait(1.0)
        if running is not None and not running.done():
            running.cancel()

    def _error(self, message: str) -> None:
        self.errors.append(message)
        del self.errors[:-50]
        logger.info("flexlab synthetic load: %s", message)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flexlab.dashboard.load SCHEDULER``: run the load until interrupted."""
    p = argparse.ArgumentParser(prog="python -m flexlab.dashboard.load", description=__doc__.splitlines()[0])
    p.add_argument("scheduler", help="address of a scheduler running the flexlab plugin")
    p.add_argument("--rate", type=float, default=3.0, help="tasks per second (default 3)")
    p.add_argument("--seed", type=int, default=7, help="seed of the workload mix")
    args = p.parse_args(argv)
    # A flag, not a threading.Event: a handler runs in the main thread between two
    # bytecodes, possibly inside Event.set of an earlier signal, and would wait for ever on
    # the lock that call holds (a SIGTERM to the process and then to its group did that).
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    make_client: Any = Client  # distributed is untyped
    with (
        make_client(args.scheduler, timeout="120s") as client,
        SyntheticLoad(client, rate=args.rate, seed=args.seed),
    ):
        print(
            f"flexlab synthetic load on {args.scheduler}: {args.rate:g} tasks/s, leases by {', '.join(USERS)}"
        )
        sys.stdout.flush()
        while not stopping:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
