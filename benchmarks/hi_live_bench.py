"""Live Hi loop: lease latency of a burst that follows a periodic pattern, with and without
forecast-driven pre-warming, side by side in one run.

Each trial: a fresh embedded pool; ``--periods`` periods of ``--per-period`` leases of
``gpu:0.25`` (each held 0.5 s, one period every ``--period`` s), then a burst of ``--burst`` leases at
the next period. The latency of a lease is from the call to ``flexlab.lease`` until it
returns with the lease active (its slice's worker up). Trials alternate between the two
modes so that the machine's other load falls on both alike.

    python benchmarks/hi_live_bench.py [--trials 3] [--processes] [--json out.json]
    python benchmarks/hi_live_bench.py --churn 60   # slices carved under the dashboard's load

``--churn S`` instead runs the dashboard's synthetic load (tasks and leases) for S seconds on
the embedded pool with the loop on and off, and counts the slices carved meanwhile: what
pre-warming costs in worker starts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import dask
from distributed import Client
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.client import PoolClient
from flexlab.mock.model import reset_mock_devices

SPEC = "gpu:0.25"


def trial(
    hi: bool, *, periods: int, period_s: float, per_period: int, burst: int, processes: bool
) -> dict[str, Any]:
    reset_mock_devices()
    # Buckets of half a period; the forecast looks one and a half periods ahead.
    cfg = {"flexlab.hi.interval": "0.2s", "flexlab.hi.bucket": f"{period_s / 2}s", "flexlab.hi.horizon": 3}
    with dask.config.set(cfg):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=hi)
    with (
        FlexCluster(
            plugin=plugin, processes=processes, telemetry_interval=0.5, wait_for_slices=120
        ) as cluster,
        Client(cluster) as client,
    ):
        start = time.monotonic()
        for p in range(periods):
            held = [
                flexlab.lease(SPEC, ttl="5m", owner=f"u{i}", client=client, timeout=120)
                for i in range(per_period)
            ]
            time.sleep(0.5)
            for lease in held:
                lease.release()
            time.sleep(max(0.0, start + (p + 1) * period_s - time.monotonic()))
        warm_before = sum(1 for w in PoolClient(client).state()["hi"]["warm"] if w["state"] == "ready")
        lat = []
        leases = []
        for i in range(burst):
            t0 = time.perf_counter()
            leases.append(flexlab.lease(SPEC, ttl="5m", owner=f"b{i}", client=client, timeout=120))
            lat.append(time.perf_counter() - t0)
        for lease in leases:
            lease.release()
        errors = list(cluster.flex_plugin.errors)
    return {"latency_s": lat, "warm_ready_before_burst": warm_before, "plugin_errors": errors}


def churn(seconds: float, hi: bool) -> int:
    from flexlab.dashboard.load import SyntheticLoad

    reset_mock_devices()
    plugin = FlexScheduler(state_file=":memory:", hi=hi)
    with FlexCluster(plugin=plugin) as cluster, Client(cluster) as client:
        t0 = time.time()
        with SyntheticLoad(client, rate=3.0, seed=7):
            time.sleep(seconds)
        assert not cluster.flex_plugin.errors, cluster.flex_plugin.errors
        return sum(1 for e in plugin.pool.events if e.kind == "carve" and e.time >= t0)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--periods", type=int, default=4)
    ap.add_argument("--period", type=float, default=2.0, help="seconds between periods (2)")
    ap.add_argument("--per-period", type=int, default=2)
    ap.add_argument("--burst", type=int, default=3)
    ap.add_argument("--processes", action="store_true", help="slice workers as processes")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--churn", type=float, metavar="S", help="count slices carved under load for S s")
    args = ap.parse_args()
    if args.churn:
        for hi in (True, False):
            print(
                f"Hi loop {'on ' if hi else 'off'}: {churn(args.churn, hi)} slices carved in {args.churn:g} s"
            )
        return
    out: dict[str, list[dict[str, Any]]] = {"forecast": [], "no-forecast": []}
    for t in range(args.trials):
        order = ("forecast", "no-forecast") if t % 2 == 0 else ("no-forecast", "forecast")
        for mode in order:
            r = trial(
                mode == "forecast",
                periods=args.periods,
                period_s=args.period,
                per_period=args.per_period,
                burst=args.burst,
                processes=args.processes,
            )
            out[mode].append(r)
            lat = ", ".join(f"{x * 1000:.0f}" for x in r["latency_s"])
            print(
                f"trial {t + 1} {mode:12s} warm before burst {r['warm_ready_before_burst']}: {lat} ms",
                flush=True,
            )
    summary = {}
    for mode, rs in out.items():
        lat = [x for r in rs for x in r["latency_s"]]
        summary[mode] = {
            "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * pct(lat, 0.95),
            "n": len(lat),
        }
    workers = "processes" if args.processes else "in-process workers"
    print(f"\nburst lease latency ({workers}, {args.trials} trials x {args.burst} leases):")
    for mode, s in summary.items():
        print(f"  {mode:12s} p50 {s['p50_ms']:7.0f} ms   p95 {s['p95_ms']:7.0f} ms   (n={s['n']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "trials": out, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    main()
