"""Runtime benchmarks, each measured side by side in one run (issue: the Dask runtime).

1. Throughput: rounds of no-op tasks with a flexlab request vs vanilla Dask ``resources=``
   on the same slice workers, the two back to back in each round (which goes first
   alternates); the medians, each round's ratio, and a bootstrap 95% interval of the median
   ratio are reported.
2. The demo's mixed fractional workload vs whole-device allocation (tasks per minute).
3. Lease latency: request to first task running on the leased slice, p50 and p95.

    python benchmarks/runtime_bench.py [--tasks 10000] [--rounds 10] [--window 30] [--leases 30]
        [--processes] [--hook-time] [--only throughput] [--json results.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import statistics
import time
from typing import Any

import psutil
from distributed import Client, wait
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices


def noop(i: int) -> int:
    return i


_HOOKS = ("update_graph", "transition", "tick")


def _time_hooks(plugin: FlexScheduler, spent: dict[str, list[float]]) -> None:
    """Wrap the plugin's scheduler hooks so the seconds spent in each are added to ``spent``
    (name -> [seconds, calls]). Used only in the extra timed rounds: the wrappers cost a
    little themselves, so the throughput rounds run without them."""
    for name in _HOOKS:
        fn = getattr(plugin, name)

        def timed(*a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                d = spent.setdefault(_name, [0.0, 0])
                d[0] += time.perf_counter() - t
                d[1] += 1

        setattr(plugin, name, functools.wraps(fn)(timed))


def _round(client: Client, mode: str, slices: list[Any], half: int, tag: str) -> float:
    """One round of ``2 * half`` no-op tasks; returns tasks a second."""
    t0 = time.perf_counter()
    if mode == "vanilla":
        futs = []
        for j, part in enumerate("ab"):
            # what a Dask user writes for a tenth of each slice (flexlab's binding of
            # "t4:0.1" holds the same: one resource, 100 milli-units)
            futs += client.map(
                noop,
                range(half),
                resources={slices[j].resource: 100.0},
                key=[f"{mode}{tag}-{part}-{i}" for i in range(half)],
            )
    else:
        with flexlab.request("t4:0.1"):
            futs = client.map(noop, range(2 * half), key=[f"f{tag}-{i}" for i in range(2 * half)])
    wait(futs)
    dt = time.perf_counter() - t0
    del futs
    return 2 * half / dt


def _cpu_s(procs: list[psutil.Process]) -> float:
    """User and system CPU seconds the processes have used so far."""
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def median_interval(xs: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A bootstrap 95% interval of the median of ``xs`` (fixed seed: the same data gives the
    same interval)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(draws))
    return meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]


def throughput(tasks: int, rounds: int, processes: bool = False, hook_time: bool = False) -> dict[str, Any]:
    """Two T4 hosts, one fraction slice each, one thread per slice worker (as in peers.md);
    ``processes``: each slice worker is its own process (as on a real host). One round of
    each mode first warms the runtime up (its logs and deques fill) and is not counted.
    Besides tasks a second, each round's CPU time per task is measured, in this process
    (client and scheduler) and in the worker processes: CPU seconds barely move with the
    box's other load, so they show a difference between the modes that wall-clock rates
    are too noisy for. ``hook_time``: afterwards, one more round of each mode with the
    plugin's hooks timed, to show what the plugin itself costs per task."""
    hosts = [HostSpec(f"h{i}", 8000, 32 * 1024, (DeviceSpec("t4", 0),)) for i in range(2)]
    plugin = FlexScheduler(state_file=":memory:", slice_threads=1)
    modes = ["vanilla", "flexlab"]
    out: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, dict[str, list[float]]] = {m: {"scheduler": [], "workers": []} for m in modes}
    with (
        FlexCluster(hosts, cpu_workers=0, plugin=plugin, processes=processes, wait_for_slices=120) as cluster,
        Client(cluster) as client,
    ):
        slices = sorted(plugin.pool.slices.values(), key=lambda s: s.slice_id)
        assert len(slices) == 2
        half = tasks // 2
        me = psutil.Process()
        workers = me.children(recursive=True)
        for mode in modes:
            _round(client, mode, slices, half, "warm-up")
        for r in range(rounds):
            # each mode goes first in turn: a drift of the box's speed favours none
            for mode in modes if r % 2 == 0 else modes[::-1]:
                c0, w0 = _cpu_s([me]), _cpu_s(workers)
                out[mode].append(_round(client, mode, slices, half, str(r)))
                c1, w1 = _cpu_s([me]), _cpu_s(workers)
                cpu[mode]["scheduler"].append(1e6 * (c1 - c0) / (2 * half))
                cpu[mode]["workers"].append(1e6 * (w1 - w0) / (2 * half))
                time.sleep(0.5)
        hooks: dict[str, dict[str, float]] = {}
        if hook_time:
            for mode in ("vanilla", "flexlab"):
                spent: dict[str, list[float]] = {}
                _time_hooks(plugin, spent)
                rate = _round(client, mode, slices, half, f"hooks-{mode}")
                for name in _HOOKS:  # unwrap: the instance attributes shadow the methods
                    delattr(plugin, name)
                total = sum(v[0] for v in spent.values())
                hooks[mode] = {
                    "tasks_per_s": rate,
                    "plugin_s": total,
                    "plugin_us_per_task": 1e6 * total / (2 * half),
                    "share_of_round": total * rate / (2 * half),
                    **{f"{k}_s": v[0] for k, v in spent.items()},
                }
                time.sleep(0.5)
        errors = list(plugin.errors)
    v, f = statistics.median(out["vanilla"]), statistics.median(out["flexlab"])
    # each round's two modes ran back to back: their ratio cancels the box's slower drifts
    paired = [a / b for a, b in zip(out["flexlab"], out["vanilla"], strict=True)]
    cpu_total = {
        m: [a + b for a, b in zip(c["scheduler"], c["workers"], strict=True)] for m, c in cpu.items()
    }
    cpu_paired = [a / b for a, b in zip(cpu_total["flexlab"], cpu_total["vanilla"], strict=True)]
    return {
        "tasks": 2 * (tasks // 2),
        "rounds": rounds,
        "vanilla_tasks_per_s": out["vanilla"],
        "flexlab_tasks_per_s": out["flexlab"],
        "vanilla_median": v,
        "flexlab_median": f,
        "ratio": f / v,
        "round_ratios": paired,
        "round_ratio_median": statistics.median(paired),
        "round_ratio_median_95": median_interval(paired),
        # CPU microseconds a task: this process (client and scheduler), the worker processes
        "cpu_us_per_task": cpu,
        "cpu_us_per_task_median": {
            m: {k: statistics.median(xs) for k, xs in c.items()} | {"total": statistics.median(cpu_total[m])}
            for m, c in cpu.items()
        },
        # flexlab's CPU a task over vanilla's, round by round (> 1: flexlab costs more)
        "cpu_round_ratios": cpu_paired,
        "cpu_ratio_median": statistics.median(cpu_paired),
        "cpu_ratio_median_95": median_interval(cpu_paired),
        "processes": processes,
        "hook_time": hooks,
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
    p.add_argument("--tasks", type=int, default=10_000, help="tasks in each round of each mode in [1]")
    p.add_argument("--rounds", type=int, default=10, help="rounds of [1]")
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--demo-tasks", type=int, default=1200)
    p.add_argument("--leases", type=int, default=30)
    p.add_argument("--processes", action="store_true", help="slice workers as processes in [1]")
    p.add_argument(
        "--hook-time",
        action="store_true",
        help="in [1], also time the plugin's hooks in one more round of each mode (plugin seconds per task)",
    )
    p.add_argument("--only", choices=("throughput", "mixed", "leases"), help="run one part only")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    for name in ("distributed", "flexlab"):
        logging.getLogger(name).setLevel(logging.ERROR)
    res: dict[str, Any] = {}
    if args.only in (None, "throughput"):
        res["throughput"] = t = throughput(args.tasks, args.rounds, args.processes, args.hook_time)
        where = "worker processes" if args.processes else "in-process workers"
        print(
            f"[1] {t['tasks']} no-op tasks, {where}: vanilla resources= {t['vanilla_median']:.0f}/s, "
            f"flexlab request {t['flexlab_median']:.0f}/s -> {t['ratio']:.2f}x  (rounds: "
            f"vanilla {[round(x) for x in t['vanilla_tasks_per_s']]}, "
            f"flexlab {[round(x) for x in t['flexlab_tasks_per_s']]})"
        )
        rr = t["round_ratios"]
        lo, hi = t["round_ratio_median_95"]
        print(
            f"    flexlab / vanilla in each round: {[round(x, 2) for x in rr]}, median {t['round_ratio_median']:.3f}x "
            f"(95% interval {lo:.3f}-{hi:.3f}), {sum(x >= 1 for x in rr)} of {len(rr)} rounds >= 1.0x"
        )
        cm = t["cpu_us_per_task_median"]
        lo, hi = t["cpu_ratio_median_95"]
        print(
            "    CPU a task (median): "
            + ", ".join(
                f"{m} {c['total']:.0f} us ({c['scheduler']:.0f} client and scheduler, {c['workers']:.0f} workers)"
                for m, c in cm.items()
            )
            + f"; flexlab / vanilla {t['cpu_ratio_median']:.3f} (95% interval {lo:.3f}-{hi:.3f})"
        )
        for mode, h in t["hook_time"].items():
            print(
                f"    plugin hooks, one timed {mode} round: {h['plugin_s']:.3f} s "
                f"({h['plugin_us_per_task']:.1f} us a task, {100 * h['share_of_round']:.1f}% of the round's "
                f"{t['tasks'] / h['tasks_per_s']:.2f} s)"
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
