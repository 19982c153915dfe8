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
import functools
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
    if mode in ("vanilla", "vanilla-memory"):
        futs = []
        for j, part in enumerate("ab"):
            resources = {slices[j].resource: 100.0}
            if mode == "vanilla-memory":  # what flexlab's binding holds: compute and memory
                resources[slices[j].memory_resource] = slices[j].memory_mib / 10
            futs += client.map(
                noop, range(half), resources=resources, key=[f"{mode}{tag}-{part}-{i}" for i in range(half)]
            )
    else:
        with flexlab.request("t4:0.1"):
            futs = client.map(noop, range(2 * half), key=[f"f{tag}-{i}" for i in range(2 * half)])
    wait(futs)
    dt = time.perf_counter() - t0
    del futs
    return 2 * half / dt


def throughput(
    tasks: int, rounds: int, processes: bool = False, hook_time: bool = False, vanilla_memory: bool = False
) -> dict[str, Any]:
    """Two T4 hosts, one fraction slice each, one thread per slice worker (as in peers.md);
    ``processes``: each slice worker is its own process (as on a real host). ``hook_time``:
    afterwards, one more round of each mode with the plugin's hooks timed, to show what the
    plugin itself costs per task (a figure the box's noise does not blur).
    ``vanilla_memory``: a third mode, vanilla Dask with both resources flexlab's binding
    holds (the slice's compute and its memory), like with like."""
    hosts = [HostSpec(f"h{i}", 8000, 32 * 1024, (DeviceSpec("t4", 0),)) for i in range(2)]
    plugin = FlexScheduler(state_file=":memory:", slice_threads=1)
    modes = ["vanilla", "flexlab", *(["vanilla-memory"] if vanilla_memory else [])]
    out: dict[str, list[float]] = {m: [] for m in modes}
    with (
        FlexCluster(hosts, cpu_workers=0, plugin=plugin, processes=processes, wait_for_slices=120) as cluster,
        Client(cluster) as client,
    ):
        slices = sorted(plugin.pool.slices.values(), key=lambda s: s.slice_id)
        assert len(slices) == 2
        half = tasks // 2
        for r in range(rounds):
            # each mode goes first in turn: a drift of the box's speed favours none
            for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
                out[mode].append(_round(client, mode, slices, half, str(r)))
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
    return {
        "tasks": 2 * (tasks // 2),
        "rounds": rounds,
        "vanilla_tasks_per_s": out["vanilla"],
        "flexlab_tasks_per_s": out["flexlab"],
        "vanilla_median": v,
        "flexlab_median": f,
        "ratio": f / v,
        **(
            {
                "vanilla_memory_tasks_per_s": out["vanilla-memory"],
                "ratio_to_vanilla_memory": f / statistics.median(out["vanilla-memory"]),
            }
            if vanilla_memory
            else {}
        ),
        # each round's two modes ran back to back: their ratio cancels the box's slower drifts
        "round_ratios": [a / b for a, b in zip(out["flexlab"], out["vanilla"], strict=True)],
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
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--demo-tasks", type=int, default=1200)
    p.add_argument("--leases", type=int, default=30)
    p.add_argument("--processes", action="store_true", help="slice workers as processes in [1]")
    p.add_argument(
        "--vanilla-memory",
        action="store_true",
        help="in [1], a third mode: vanilla Dask with the slice's compute and memory resources, as flexlab binds",
    )
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
        res["throughput"] = t = throughput(
            args.tasks, args.rounds, args.processes, args.hook_time, args.vanilla_memory
        )
        where = "worker processes" if args.processes else "in-process workers"
        print(
            f"[1] {t['tasks']} no-op tasks, {where}: vanilla resources= {t['vanilla_median']:.0f}/s, "
            f"flexlab request {t['flexlab_median']:.0f}/s -> {t['ratio']:.2f}x  (rounds: "
            f"vanilla {[round(x) for x in t['vanilla_tasks_per_s']]}, "
            f"flexlab {[round(x) for x in t['flexlab_tasks_per_s']]})"
        )
        if "ratio_to_vanilla_memory" in t:
            print(
                f"    vanilla with compute and memory resources "
                f"{statistics.median(t['vanilla_memory_tasks_per_s']):.0f}/s -> flexlab "
                f"{t['ratio_to_vanilla_memory']:.2f}x (rounds: {[round(x) for x in t['vanilla_memory_tasks_per_s']]})"
            )
        rr = t["round_ratios"]
        print(
            f"    flexlab / vanilla in each round: {[round(x, 2) for x in rr]}, median {statistics.median(rr):.2f}x, "
            f"{sum(x >= 1 for x in rr)} of {len(rr)} rounds >= 1.0x"
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
