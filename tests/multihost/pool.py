"""One pool on the lab: ``flexlab up`` on the ``sched`` node, ``flexlab agent`` on three
hosts (one mock T4 each, slice workers as processes), a client in the root namespace and
one lease each for three owners. ``run_fault`` drives a fault under the running load and
returns its figures."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client

import flexlab
from flexlab.client import Lease, PoolClient
from flexlab.dask_client import open_client

from .harness import Lab, wait_for
from .load import Load, Watch

HOSTS = ("h1", "h2", "h3")
OWNERS = ("ana", "bo", "cy")
SPEC = "version: 1\nhosts:\n" + "".join(
    f"  - name: {h}\n    cpu: 8\n    memory: 32GiB\n    devices:\n      - model: t4\n" for h in HOSTS
)
#: Settings of every process of the pool (dask config through the environment).
ENV = {
    "DASK_FLEXLAB__LOOP_INTERVAL": "0.5s",
    "DASK_FLEXLAB__HI__ENABLED": "false",  # no pre-warming or preemption: the faults alone
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "10s",
    "FLEXLAB_USER": "multihost",
}
FULL_MILLI = 1000 * len(HOSTS)


class Pool:
    def __init__(self, lab: Lab, tmp: Path, settings: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.tmp = tmp
        self.state_file = tmp / "leases.sqlite"
        self.spec = tmp / "pool.yaml"
        self.spec.write_text(SPEC)
        self.lab.env.update(ENV)
        for key, value in (settings or {}).items():  # flexlab settings, e.g. agent-timeout
            self.lab.env[f"DASK_FLEXLAB__{key.upper().replace('-', '_')}"] = value
        self.agents: dict[str, Any] = {}
        self.client: Client | None = None
        self.leases: list[Lease] = []

    def start(self) -> None:
        for node in ("sched", *HOSTS):
            self.lab.add_node(node)
        if self.lab.tls is not None:
            from flexlab.commands.certs import write_pool_certs

            write_pool_certs(self.lab.tls, [n.address for n in self.lab.nodes.values()])
        self.lab.start_scheduler(self.state_file)
        for h in HOSTS:
            self.start_agent(h)
        self.client = wait_for(
            lambda: open_client(self.lab.scheduler_address, timeout="60s", security=self.lab.security()),
            90,
            "the scheduler",
            self.lab,
        )
        self.wait_full(120, leases=0)
        # Asked all at once (their workers start side by side), then waited for.
        for owner in OWNERS:
            self.leases.append(
                flexlab.lease("gpu:0.25", ttl="1h", owner=owner, client=self.client, wait=False)
            )
        for lease in self.leases:
            lease.wait(timeout=120)
        self.wait_full(120, leases=len(OWNERS))

    def start_agent(self, host: str) -> None:
        self.agents[host] = self.lab.start_agent(host, self.spec, host)

    def state(self) -> dict[str, Any]:
        assert self.client is not None
        return PoolClient(self.client).state()

    def full(self, leases: int) -> bool:
        from .load import ready_milli

        st = self.state()
        active = sum(1 for x in st["leases"] if x["state"] == "active")
        return len(st["hosts"]) == len(HOSTS) and ready_milli(st) >= FULL_MILLI and active >= leases

    def wait_full(self, timeout: float, leases: int) -> None:
        wait_for(lambda: self.full(leases), timeout, "every host's capacity ready", self.lab)

    def workers_of(self, host: str) -> dict[str, str]:
        """Slice id -> worker address of the slices on ``host``."""
        return {
            s["slice_id"]: s["worker"]
            for h in self.state()["hosts"]
            if h["name"] == host
            for d in h["devices"]
            for s in d["slices"]
            if s["worker"]
        }

    def pid_of_worker(self, address: str) -> int:
        assert self.client is not None
        return int(self.client.run(os.getpid, workers=[address])[address])

    def kill_scheduler(self) -> None:
        self.lab.scheduler.send_signal(signal.SIGKILL)
        self.lab.scheduler.wait(10)

    def lease_outcomes(self) -> dict[str, str]:
        return {le["lease_id"]: le["state"] for le in PoolClient(self.client).leases()}

    def run_fault(
        self,
        name: str,
        inject: Callable[[], None],
        end: Callable[[], None],
        *,
        hold_s: float,
        bound_s: float,
        warmup_s: float = 4.0,
        after_s: float = 3.0,
    ) -> dict[str, Any]:
        """Load, ``inject``, wait ``hold_s``, ``end``, then wait for the capacity to come
        back within ``bound_s``; drain the load and return the figures."""
        assert self.client is not None
        watch = Watch(self.client).start()
        load = Load(self.client, self.leases).start()
        time.sleep(warmup_s)
        before = load.completed
        assert before > 0, f"no task finished before the fault\n{self.lab.logs()}"
        t_fault = time.monotonic()
        inject()
        time.sleep(hold_s)
        end()
        t_end = time.monotonic()
        try:
            wait_for(lambda: self.full(len(OWNERS)), bound_s, f"capacity back after {name}", self.lab)
        finally:
            time.sleep(after_s)
            load.stop()
            load.drain(120)
            watch.poll()
            watch.stop()
        back = watch.recovered_at(t_end, FULL_MILLI, len(OWNERS))
        service = load.service_back(t_end)
        figures = {
            "fault": name,
            "fault_s": round(t_end - t_fault, 1),
            "capacity_back_s": None if back is None else round(back - t_end, 1),
            "service_back_s": None if service is None else round(service, 1),
            "bound_s": bound_s,
            "min_hosts": min((x.hosts for x in watch.samples), default=0),
            **load.figures(),
            "invariant_checks": watch.checks,
            "state_unreachable": watch.unreachable,
            "broken": len(watch.broken),
            "leases": self.lease_outcomes(),
            "lease_events": self.lease_events(),
        }
        print(f"\nmultihost figures: {json.dumps(figures)}")
        out = os.environ.get("FLEXLAB_MULTIHOST_JSON")
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(figures) + "\n")
        assert watch.broken == [], "\n".join(watch.broken[:20])
        assert load.lost == [], "\n".join(load.lost[:20]) + "\n" + self.lab.logs()
        assert back is not None, figures
        assert back - t_end <= bound_s, figures
        assert service is not None, figures
        assert service <= bound_s, figures
        self.check_clean_stop()
        return figures

    def lease_events(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for lease in self.leases:
            out[lease.lease_id] = [
                e["message"]
                for e in PoolClient(self.client).events(owner=lease.owner)
                if e["kind"] == "lease"
            ][-6:]
        return out

    def check_clean_stop(self) -> None:
        """Release the leases, stop agents and scheduler with SIGTERM: nothing may be left."""
        for lease in self.leases:
            lease.release()
        assert self.client is not None
        self.client.close()
        self.client = None
        left = self.lab.stop_processes()
        assert left == [], f"processes left behind: {left}\n{self.lab.logs()}"

    def close(self) -> None:
        if self.client is not None:
            self.client.close(timeout=5)
