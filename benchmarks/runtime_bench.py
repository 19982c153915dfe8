"""Runtime benchmarks, each measured side by side in one run (issue: the Dask runtime).

1. Throughput: 20,000 no-op tasks with a flexlab request vs vanilla Dask ``resources=`` on
   the same slice workers (alternating rounds; medians reported).
2. The demo's mixed fractional workload vs whole-device allocation (tasks per minute).
3. Lease latency: request to first task running on the leased slice, p50 and p95.

    python benchmarks/runtime_bench.py [--tasks 20000] [--rounds 3] [--window 30] [--leases 30]
        [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from typing import Any

from distributed import Client, wait
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices


def noop(i: int) -> int:
    return i


def throughput(tasks: int, rounds: int, processes: bool = False) -> dict[str, Any]:
    """Two T4 hosts, one fraction slice each, one thread per slice worker (as in peers.md);
    ``processes``: each slice worker is its own process (as on a real host)."""
    hosts = [HostSpec(f"h{i}", 8000, 32 * 1024, (DeviceSpec("t4", 0),)) for i in range(2)]
    plugin = FlexScheduler(state_file=":memory:", slice_threads=1)
    out: dict[str, list[float]] = {"flexlab": [], "vanilla": []}
    with (
        FlexCluster(hosts, cpu_workers=0, plugin=plugin, processes=processes, wait_for_slices=120) as cluster,
        Client(cluster) as client,
    ):
        slices = sorted(plugin.pool.slices.values(), key=lambda s: s.slice_id)
        assert len(slices) == 2
        half = tasks // 2
        for r in range(rounds):
            for mode in ("vanilla", "flexlab") if r % 2 == 0 else ("flexlab", "vanilla"):
                t0 = time.perf_counter()
                if mode == "vanilla":
                    futs = client.map(
                        noop,
                        range(half),
                        resources={slices[0].resource: 100},
                        key=[f"v{r}-a-{i}" for i in range(half)],
                    )
                    futs += client.map(
                        noop,
                        range(half),
                        resources={slices[1].resource: 100},
                        key=[f"v{r}-b-{i}" for i in range(half)],
                    )
                else:
                    with flexlab.request("t4:0.1"):
                        futs = client.map(noop, range(2 * half), key=[f"f{r}-{i}" for i in range(2 * half)])
                wait(futs)
                dt = time.perf_counter() - t0
                out[mode].append(2 * half / dt)
                del futs
                time.sleep(0.5)
        errors = list(plugin.errors)
    v, f = statistics.median(out["vanilla"]), statistics.median(out["flexlab"])
    return {
        "tasks": 2 * (tasks // 2),
        "rounds": rounds,
        "vanilla_tasks_per_s": out["vanilla"],
        "flexlab_tasks_per_s": out["flexlab"],
        "vanilla_median": v,
        "flexlab_median": f,
        "ratio": f / v,
        "processes": processes,
        "plugin_errors": errors,
    }


def mixed(window: float, tasks: int) -> dict[str, Any]:
    from flexlab.commands.demo import run_sliced, run_whole, workload

    wl = workload(tasks)
    reset_mock_devices()
    sliced, _ = run_sliced(wl, window)
    reset_mock_devices()
    whole = run_whole(wl, window)
    acc_s = sliced.completed - sliced.by_kind.get("cpu", 0)
    acc_w = whole.completed - whole.by_kind.get("cpu", 0)
    return {
        "window_s": window,
        "sliced_per_min": sliced.per_minute,
        "whole_per_min": whole.per_minute,
        "ratio_all": sliced.completed / max(whole.completed, 1),
        "ratio_accelerator": acc_s / max(acc_w, 1),
        "sliced_by_model": sliced.by_model,
        "whole_by_model": whole.by_model,
    }


def lease_latency(n: int, processes: bool) -> dict[str, Any]:
    reset_mock_devices()
    lat: list[float] = []
    with FlexCluster(processes=processes, wait_for_slices=120) as cluster, Client(cluster) as client:
        for i in range(n):
            t0 = time.perf_counter()
            lease = flexlab.lease("gpu:30%,8GiB", ttl="10m", owner=f"user{i % 3}", client=client, timeout=120)
            lease.submit(noop, i, pure=False).result()
            lat.append(time.perf_counter() - t0)
            lease.release()
        errors = list(cluster.flex_plugin.errors)
    lat.sort()
    return {
        "leases": n,
        "processes": processes,
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
        "max_s": lat[-1],
        "plugin_errors": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--demo-tasks", type=int, default=1200)
    p.add_argument("--leases", type=int, default=30)
    p.add_argument("--processes", action="store_true", help="slice workers as processes in [1]")
    p.add_argument("--only", choices=("throughput", "mixed", "leases"), help="run one part only")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    for name in ("distributed", "flexlab"):
        logging.getLogger(name).setLevel(logging.ERROR)
    res: dict[str, Any] = {}
    if args.only in (None, "throughput"):
        res["throughput"] = t = throughput(args.tasks, args.rounds, args.processes)
        where = "worker processes" if args.processes else "in-process workers"
        print(
            f"[1] {t['tasks']} no-op tasks, {where}: vanilla resources= {t['vanilla_median']:.0f}/s, "
            f"flexlab request {t['flexlab_median']:.0f}/s -> {t['ratio']:.2f}x  (rounds: "
            f"vanilla {[round(x) for x in t['vanilla_tasks_per_s']]}, "
            f"flexlab {[round(x) for x in t['flexlab_tasks_per_s']]})"
        )
    if args.only in (None, "mixed"):
        res["mixed"] = m = mixed(args.window, args.demo_tasks)
        print(
            f"[2] mixed workload, {args.window:g} s: sliced {m['sliced_per_min']:.0f}/min, whole devices "
            f"{m['whole_per_min']:.0f}/min -> {m['ratio_all']:.2f}x all tasks, "
            f"{m['ratio_accelerator']:.2f}x accelerator tasks"
        )
    for procs in (False, True) if args.only in (None, "leases") else ():
        key = f"lease_latency_{'processes' if procs else 'threads'}"
        res[key] = lt = lease_latency(args.leases if not procs else max(5, args.leases // 3), procs)
        print(
            f"[3] lease latency ({'worker processes' if procs else 'in-process workers'}), {lt['leases']} leases: "
            f"p50 {lt['p50_s'] * 1000:.0f} ms, p95 {lt['p95_s'] * 1000:.0f} ms, max {lt['max_s'] * 1000:.0f} ms"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
