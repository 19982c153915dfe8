"""Request to first task result: a private lease against today's shared-scheduler lease.

    python benchmarks/private_lease_bench.py [--rounds 20] [--json out.json]

One in-process TLS pool (``FlexCluster(tls=..., processes=True)``: the scheduler, its
plugin and one host agent in this process, every slice worker a process of its own, as a
real agent starts them) with one mock T4. Each round asks for one lease of each kind, in
alternating order (private first in even rounds), and times ``flexlab.lease(...)`` until it
returns (the lease is active: its worker joined) and then ``lease.submit(...).result()``
(the first task's result). After each lease the benchmark releases it and waits until the
pool is quiet again (every slice's worker up, none stopping), so each lease starts one
fresh worker process and no round inherits another's work. The Hi loop is off: with it on,
a shared lease may take a pre-warmed or recycled slice whose worker runs already (a private
lease never does), which measures the forecast, not the lease.

This process's private scheduler (certificates and a TLS listener) is started once before
the rounds, as a user's first private lease would; its start time is printed apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
from distributed import Client

import flexlab
from flexlab.commands.certs import write_pool_certs
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.private import close_default_private_scheduler, default_private_scheduler

KINDS = ("private", "shared")


def _quiet(cluster: Any, timeout: float = 120.0) -> None:
    """Wait until every slice of the pool has its worker up and the agent runs no other."""
    deadline = time.monotonic() + timeout
    agent = cluster.agents[0]
    while time.monotonic() < deadline:
        slices = cluster.flex_plugin.pool.slices
        if all(s.state == "ready" for s in slices.values()) and set(agent.running) == set(slices):
            return
        time.sleep(0.05)
    raise TimeoutError("the pool did not settle after a lease")


def _pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs``, nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _summary(xs: list[float]) -> dict[str, float]:
    return {
        "n": len(xs),
        "p50_s": round(statistics.median(xs), 3),
        "p95_s": round(_pct(xs, 0.95), 3),
        "min_s": round(min(xs), 3),
        "max_s": round(max(xs), 3),
    }


def one(client: Client, kind: str, request: str) -> dict[str, float]:
    """Ask for one lease of ``kind``, run one task on it, release it: the times."""
    t0 = time.perf_counter()
    lease = flexlab.lease(request, owner="bench", client=client, private=kind == "private", timeout=180)
    t1 = time.perf_counter()
    try:
        assert lease.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
        t2 = time.perf_counter()
    finally:
        lease.release()
    return {"active_s": t1 - t0, "first_task_s": t2 - t1, "total_s": t2 - t0}


def run(rounds: int, request: str) -> dict[str, Any]:
    hosts = [HostSpec("gpu-host", 8_000, 32 * 1024, (DeviceSpec("t4", 0),))]
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp, dask.config.set({"flexlab.hi.enabled": False}):
        tls = Path(tmp) / "tls"
        write_pool_certs(tls)
        from flexlab_dask import FlexCluster

        with FlexCluster(
            hosts=hosts, tls=str(tls), cpu_workers=0, processes=True, loop_interval=0.2, wait_for_slices=180
        ) as cluster:
            client = Client(cluster)
            t = time.perf_counter()
            default_private_scheduler(pool=cluster.scheduler_address)
            private_start = time.perf_counter() - t
            try:
                for i in range(rounds):
                    order = KINDS if i % 2 == 0 else KINDS[::-1]
                    for kind in order:
                        _quiet(cluster)
                        samples[kind].append(one(client, kind, request))
                    print(
                        f"round {i + 1}/{rounds}: "
                        + ", ".join(f"{k} {samples[k][-1]['total_s']:.2f} s" for k in KINDS),
                        file=sys.stderr,
                    )
                errors = list(cluster.flex_plugin.errors)
            finally:
                client.close()
                close_default_private_scheduler()
    return {
        "rounds": rounds,
        "request": request,
        "private_scheduler_start_s": round(private_start, 3),
        "plugin_errors": errors,
        "kinds": {
            k: {
                part: _summary([s[part] for s in samples[k]])
                for part in ("total_s", "active_s", "first_task_s")
            }
            for k in KINDS
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="leases of each kind (default 20)")
    ap.add_argument("--request", default="t4:0.5", help="what each lease asks for (default t4:0.5)")
    ap.add_argument("--json", metavar="FILE", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds: at least 1")
    report = run(args.rounds, args.request)
    print(f"private scheduler start (once per process): {report['private_scheduler_start_s']:.3f} s")
    print(f"{'kind':8} {'part':13} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'min s':>7} {'max s':>7}")
    for kind, parts in report["kinds"].items():
        for part, s in parts.items():
            print(
                f"{kind:8} {part:13} {s['n']:>3} {s['p50_s']:>7.3f} {s['p95_s']:>7.3f} "
                f"{s['min_s']:>7.3f} {s['max_s']:>7.3f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if report["plugin_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
