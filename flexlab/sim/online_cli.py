"""``flexlab bench online``: the openb trace replayed through the shipped pool and Hi loop.

Examples::

    flexlab bench online --trace-dir ../shared/traces/openb --workload default --json online.json
    python -m flexlab.sim.online_cli --trace-dir ../shared/traces/openb --repeat 2 --grace 30
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flexlab.sim.online import MODES, OnlineConfig, load_openb_workload, simulate
from flexlab.sim.online_batch import batch_experiment
from flexlab.sim.online_pool import WarmSettings, openb_hosts
from flexlab.sim.openb import DOWNLOAD_HINT, TraceNotFound


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace-dir", required=True, help="the openb trace folder (or its csv/ folder)")
    parser.add_argument("--workload", default="default", help="openb workload name (default: default)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure as JSON to this path")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated modes (default: {','.join(MODES)})"
    )
    parser.add_argument(
        "--compress",
        type=float,
        default=20000.0,
        help="divide arrival times by this (running times unchanged: load rises by it); default 20000",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="submit every pod this many times (2 saturates the cluster)"
    )
    parser.add_argument(
        "--repeat-low",
        action="store_true",
        help="the extra copies of --repeat are low priority (best-effort filler behind the trace's pods)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=1,
        help="keep every N-th node and every N-th pod: the same load on a pool N times smaller",
    )
    parser.add_argument(
        "--slice-start", type=float, default=30.0, help="seconds from StartSlice to slice_ready (default 30)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=None,
        help="a lease that waited this long preempts lower-priority leases (s); off by default",
    )
    parser.add_argument(
        "--no-shared-workers",
        action="store_true",
        help="no shared slices (the earlier replay): leases get dedicated slices only, and no "
        "idle device runs a worker a lease could take over (default: as the live pool)",
    )
    parser.add_argument(
        "--host-resources",
        action="store_true",
        help="leases ask for the pods' host CPU and RAM too (off: see benchmarks/online/README.md)",
    )
    hi = parser.add_argument_group("Hi loop (the plugin's flexlab.hi.* settings)")
    w = WarmSettings()
    hi.add_argument("--interval", type=float, default=w.interval_s, help="seconds between Hi loop passes")
    hi.add_argument("--bucket", type=float, default=w.bucket_s, help="forecast bucket (s)")
    hi.add_argument(
        "--horizon",
        type=int,
        default=w.horizon,
        help="forecast horizon in buckets (0: the slice start-up plus one interval)",
    )
    hi.add_argument("--season", type=int, default=w.season, help="season in buckets (0: Holt, no season)")
    hi.add_argument(
        "--reserve", type=float, default=w.reserve, help="share of the pool kept warm in the arrival mix"
    )
    hi.add_argument("--max-warm", type=int, default=w.max_total, help="warm slices at most (forecast)")
    hi.add_argument(
        "--max-warm-per-class", type=int, default=w.max_per_class, help="warm slices at most per request"
    )
    hi.add_argument(
        "--scale-down-window",
        type=float,
        default=w.scale_down_window_s,
        help="give warm slices back only above the highest target of this window (s)",
    )
    hi.add_argument(
        "--service-z",
        type=float,
        default=w.service_z,
        help="warm slices beyond the forecast for its error, in standard deviations (0: none)",
    )
    hi.add_argument(
        "--warm-oversize",
        type=float,
        default=w.oversize,
        help="a lease takes a ready warm slice of another request up to this many times its size "
        "(1: exact requests only; default %(default)s)",
    )
    parser.add_argument("--no-batch", action="store_true", help="skip the speed-aware vs blind batch")


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def _advance(bar: Progress, task: TaskID, end: float) -> Callable[[float], None]:
    def update(t: float) -> None:
        bar.update(task, completed=min(t, end))

    return update


def config_of(args: argparse.Namespace) -> OnlineConfig:
    return OnlineConfig(
        slice_start_s=args.slice_start,
        grace_s=args.grace,
        host_resources=args.host_resources,
        shared_workers=not args.no_shared_workers,
        warm=WarmSettings(
            interval_s=args.interval,
            bucket_s=args.bucket,
            horizon=args.horizon,
            season=args.season,
            max_per_class=args.max_warm_per_class,
            max_total=args.max_warm,
            reserve=args.reserve,
            scale_down_window_s=args.scale_down_window,
            service_z=args.service_z,
            oversize=args.warm_oversize,
        ),
    )


COLUMNS = (
    "mode",
    "policy",
    "pods",
    "wait mean",
    "p50",
    "p95",
    "p99",
    "hi p95",
    "lo p95",
    "util",
    "warm carved / recycled / taken (ready) / back",
    "preempt",
    "MAPE",
    "MASE",
    "run (s)",
)


def _row(r: dict[str, object]) -> list[str]:
    al, hi, lo = r["wait_all"], r["wait_high"], r["wait_low"]
    assert isinstance(al, dict)
    assert isinstance(hi, dict)
    assert isinstance(lo, dict)
    warm = (
        f"{r['warm_carved']} / {r['warm_recycled']} / {r['warm_claims']} ({r['warm_claims_ready']}) / "
        f"{r['warm_given_back']}"
    )
    cells = (
        r["mode"],
        r["policy"],
        f"{r['completed']}/{r['jobs']}",
        al["mean"],
        al["p50"],
        al["p95"],
        al["p99"],
        hi["p95"],
        lo["p95"],
        r["utilisation_mean"],
        warm,
        r["preemptions"],
        r["forecast_mape"],
        r["forecast_mase"],
        r["seconds"],
    )
    return [_fmt(v) for v in cells]


def main(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    modes = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        console.print(f"unknown modes {bad}; allowed: {', '.join(MODES)}")
        return 2
    try:
        hosts = openb_hosts(args.trace_dir, sample=args.sample)
        wl = load_openb_workload(
            args.trace_dir,
            args.workload,
            compress=args.compress,
            repeat=args.repeat,
            repeat_low=args.repeat_low,
            sample=args.sample,
        )
    except TraceNotFound as exc:
        console.print(f"{exc}\n{DOWNLOAD_HINT}")
        return 2
    cfg = config_of(args)
    end = float(wl.arrival.max(initial=0.0))
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        for mode in modes:
            task = bar.add_task(mode, total=end or 1.0)
            res = simulate(hosts, wl, mode, config=cfg, progress=_advance(bar, task, end))
            bar.update(task, completed=end or 1.0)
            results.append(res.summary())
    title = f"openb {args.workload} online through the pool (arrivals / {args.compress:g}, x{args.repeat}" + (
        f", 1 node and pod in {args.sample})" if args.sample > 1 else ")"
    )
    table = Table(title=title)
    for c in COLUMNS:
        table.add_column(c)
    for r in results:
        table.add_row(*_row(r))
    Console(width=200).print(table)
    skipped = {str(r["mode"]): r["skipped"] for r in results if r["skipped"]}
    if skipped:
        Console().print(f"pods not replayed, by reason: {skipped}")
    out: dict[str, object] = {
        "workload": args.workload,
        "compress": args.compress,
        "repeat": args.repeat,
        "repeat_low": args.repeat_low,
        "sample": args.sample,
        "config": asdict(cfg),
        "online": results,
    }
    if not args.no_batch:
        batch = batch_experiment()
        out["batch"] = batch.summary()
        binder = "; ".join(
            f"{w} round{'s' if w > 1 else ''}: {aw:.0f} s vs {bl:.0f} s ({bl / aw:.2f}x)"
            for w, (aw, bl) in batch.binder_s.items()
        )
        Console().print(
            f"batch through the shipped binder, speed-aware vs blind: {binder}\n"
            f"batch, pull dispatch (not shipped): speed-aware {batch.aware_s:.0f} s, "
            f"blind {batch.blind_s:.0f} s ({batch.speedup:.2f}x); offline lower bound "
            f"{batch.lower_bound_s:.0f} s, offline greedy {batch.offline_greedy_s:.0f} s"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=float))
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexlab bench online", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
