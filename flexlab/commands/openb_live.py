"""``flexlab bench openb --live``: the openb replay through a real Dask scheduler and the
simulator on the same pods, side by side.

Examples::

    flexlab bench openb --live --seeds 42 --json live.json        # flexlab, default workload
    flexlab bench openb --live --policies bestfit --hosts 60      # a 60-node cluster, quick

The simulator's side is ``flexlab bench openb``'s replay; the live side and the comparison
are described in ``flexlab_dask.replay`` and ``flexlab.sim.live_compare``.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flexlab.commands.logs import set_levels
from flexlab.sim.live_compare import LiveComparison
from flexlab.sim.openb_cli import LIVE_POLICIES, LIVE_SEEDS, check_inputs, parse_seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only the live replay reads (the others are ``flexlab bench openb``'s)."""
    parser.add_argument(
        "--live",
        action="store_true",
        help="replay through a real Dask scheduler running the flexlab plugin (virtual host "
        "agents, one lease per pod) and through the simulator, and compare (default seed 42, "
        "policy flexlab)",
    )
    parser.add_argument(
        "--hosts",
        type=_positive,
        default=None,
        metavar="N",
        help="with --live: only the first N nodes of the node list (a smaller cluster; the protocol "
        "inflates to its capacity)",
    )
    parser.add_argument(
        "--pods",
        type=_positive,
        default=None,
        metavar="N",
        help="with --live: only the first N pods of each seed's order",
    )


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed: a positive integer")
    return n


def main(args: argparse.Namespace) -> int:
    """Run the live replay, print the comparison, optionally write JSON (0; 2 on bad input)."""
    err = Console(stderr=True)
    checked = check_inputs(args, err)
    if checked is None:
        return 2
    trace_dir, workloads = checked
    policies = args.policies or list(LIVE_POLICIES)
    seeds = args.seeds or parse_seeds(LIVE_SEEDS)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pods"),
        TimeElapsedColumn(),
    )
    from flexlab_dask.replay import run_live_benchmark

    # The scheduler logs its start, every host registration and its close at INFO, through
    # loggers distributed configured one by one: keep the bar readable.
    set_levels(logging.WARNING, ("distributed", "flexlab.scheduler"))
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("openb live", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        result = run_live_benchmark(
            str(trace_dir),
            workloads,
            policies,
            seeds,
            hosts=args.hosts,
            pods=args.pods,
            loads=args.loads,
            progress=progress,
        )
    out = Console()
    for part in build_tables(result):
        out.print(part)
    if args.json is not None:
        Path(args.json).write_text(result.to_json())
        Console().print(f"wrote {args.json}")
    return 0


def build_tables(result: LiveComparison) -> list[Table | str]:
    """The figures (per run and load: simulator, live pool, difference, mirror), then per
    run the agreement, counts and durations, then what the lease API refused."""
    figures = Table(
        title=f"openb live replay: unallocated GPU % on {result.hosts:,} hosts", title_justify="left"
    )
    for col in ("workload", "policy", "seed", "load", "simulator", "live", "live - sim", "mirror"):
        figures.add_column(col, justify="left" if col in ("workload", "policy") else "right")
    runs = Table(title="agreement and durations", title_justify="left")
    for col in ("run", "pods", "placed sim/live", "refused", "same host", "vs mirror", "live s", "leases/s"):
        runs.add_column(col, justify="left" if col == "run" else "right")
    notes: list[str] = []
    for r in result.runs:
        for i, load in enumerate(r.loads):
            figures.add_row(
                r.workload,
                r.policy,
                str(r.seed),
                f"{load}%",
                _fmt(r.sim[i]),
                _fmt(r.live[i]),
                _fmt(r.live[i] - r.sim[i], signed=True),
                _fmt(r.mirror[i]) if r.mirror is not None else "-",
            )
        runs.add_row(
            f"{r.workload}/{r.policy}/{r.seed}",
            f"{r.pods:,}",
            f"{r.placed_sim:,}/{r.placed_live:,}",
            f"{r.refused:,}",
            f"{100 * r.same_host:.1f}%",
            f"{100 * r.same_host_mirror:.1f}%" if r.same_host_mirror is not None else "-",
            f"{r.live_seconds:.1f} (+{r.register_seconds:.1f})",
            f"{r.leases_per_s:,.0f}",
        )
        for why, n in r.refusals.items():
            notes.append(f"{r.workload} / {r.policy} / seed {r.seed}: {n:,} pods refused: {why}")
        if r.plugin_errors:
            notes.append(f"{r.workload} / {r.policy} / seed {r.seed}: plugin errors: {list(r.plugin_errors)}")
    notes.append(
        "same host: of the pods either side placed, the share both placed on the same host; "
        "mirror: the simulator with the pods the lease API refused skipped (it must agree with "
        "the live pool exactly); live s: the leases (+ the agents' registrations)"
    )
    return [figures, runs, *notes]


def _fmt(x: float, *, signed: bool = False) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:+.2f}" if signed else f"{x:.2f}"
