"""``flexlab bench online``: the openb trace replayed online, four allocators side by side.

Examples::

    flexlab bench online --trace-dir ../shared/traces/openb --workload default --json online.json
    python -m flexlab.sim.online_cli --trace-dir ../shared/traces/openb --grace 60
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flexlab.sim.online import MODES, OnlineConfig, load_openb_workload, simulate
from flexlab.sim.online_batch import batch_experiment
from flexlab.sim.openb import DOWNLOAD_HINT, TraceNotFound, load_nodes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace-dir", required=True, help="the openb trace folder (or its csv/ folder)")
    parser.add_argument("--workload", default="default", help="openb workload name (default: default)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON to this path")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated allocators (default: {','.join(MODES)})"
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
    parser.add_argument("--slice-start", type=float, default=30.0, help="seconds to start a new slice worker")
    parser.add_argument("--bucket", type=float, default=20.0, help="forecast bucket and planner period (s)")
    parser.add_argument("--horizon", type=int, default=2, help="forecast horizon in buckets")
    parser.add_argument(
        "--prewarm-budget", type=float, default=0.3, help="share of capacity idle warm slices may hold"
    )
    parser.add_argument(
        "--prewarm-quantile",
        type=float,
        default=0.95,
        help="upper quantile of the forecast arrivals over the slice start-up lead kept warm",
    )
    parser.add_argument(
        "--peak-window",
        type=int,
        default=8,
        help="buckets of recent arrivals whose peak bounds the forecast from below (0: Holt only)",
    )
    parser.add_argument(
        "--reserve",
        type=float,
        default=0.1,
        help="share of capacity kept warm in the arrival mix whatever the forecast (0: forecast only)",
    )
    parser.add_argument("--no-recycle", action="store_true", help="do not keep departing jobs' slices warm")
    parser.add_argument(
        "--evictions-per-pass", type=int, default=64, help="eviction searches a scheduling pass may run"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=None,
        help="preempt low-priority work after this wait (s); off by default",
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


def main(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    modes = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        console.print(f"unknown modes {bad}; allowed: {', '.join(MODES)}")
        return 2
    try:
        pool = load_nodes(args.trace_dir)
        wl = load_openb_workload(
            args.trace_dir,
            args.workload,
            compress=args.compress,
            repeat=args.repeat,
            repeat_low=args.repeat_low,
        )
    except TraceNotFound as exc:
        console.print(f"{exc}\n{DOWNLOAD_HINT}")
        return 2
    cfg = OnlineConfig(
        slice_start_s=args.slice_start,
        bucket_s=args.bucket,
        horizon=args.horizon,
        prewarm_budget=args.prewarm_budget,
        prewarm_quantile=args.prewarm_quantile,
        reserve=args.reserve,
        peak_window=args.peak_window,
        recycle=not args.no_recycle,
        grace_s=args.grace,
        evictions_per_pass=args.evictions_per_pass,
    )
    end = float(wl.arrival.max(initial=0.0))
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        for mode in modes:
            task = bar.add_task(mode, total=end or 1.0)
            res = simulate(pool, wl, mode, config=cfg, progress=_advance(bar, task, end))
            bar.update(task, completed=end or 1.0)
            results.append(res.summary())
    table = Table(title=f"openb {args.workload} online (arrivals / {args.compress:g}, x{args.repeat})")
    cols = [
        "mode",
        "util",
        "util held",
        "frag",
        "wait mean",
        "wait p95",
        "hi p95",
        "lo p95",
        "lo p99",
        "preempt",
        "warm claims",
        "done",
        "MAPE",
        "sMAPE",
    ]
    for c in cols:
        table.add_column(c)
    for r in results:
        hi, lo, al = r["wait_high"], r["wait_low"], r["wait_all"]
        assert isinstance(hi, dict)
        assert isinstance(lo, dict)
        assert isinstance(al, dict)
        table.add_row(
            *(
                _fmt(v)
                for v in (
                    r["mode"],
                    r["utilisation_mean"],
                    r["utilisation_held_mean"],
                    r["fragmentation_mean"],
                    al["mean"],
                    al["p95"],
                    hi["p95"],
                    lo["p95"],
                    lo["p99"],
                    r["preemptions"],
                    r["prewarm_claims"],
                    f"{r['completed']}/{r['jobs']}",
                    r["forecast_mape"],
                    r["forecast_smape"],
                )
            )
        )
    Console(width=160).print(table)
    out: dict[str, object] = {
        "workload": args.workload,
        "compress": args.compress,
        "repeat": args.repeat,
        "repeat_low": args.repeat_low,
        "config": vars(cfg),
    }
    out["online"] = results
    if not args.no_batch:
        batch = batch_experiment()
        out["batch"] = batch.summary()
        Console().print(
            f"batch: speed-aware {batch.aware_s:.0f} s, blind {batch.blind_s:.0f} s ({batch.speedup:.2f}x); "
            f"offline lower bound {batch.lower_bound_s:.0f} s, offline greedy {batch.offline_greedy_s:.0f} s"
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
