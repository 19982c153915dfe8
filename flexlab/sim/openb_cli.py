"""``flexlab bench openb``: replay the public openb trace under the published protocol.

Examples::

    flexlab bench openb                                   # default workload, 4 policies, seeds 42-51
    flexlab bench openb --workload all --seeds 42 --json bench.json
    python -m flexlab.sim.openb_cli --policies fgd,flexlab --seeds 42,43
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from flexlab.core.placement.policies import POLICIES
from flexlab.sim.bench import run_benchmark
from flexlab.sim.openb import DOWNLOAD_HINT, PUBLISHED_WORKLOADS, TraceNotFound, available_workloads, csv_dir
from flexlab.sim.protocol import REPORT_LOADS
from flexlab.sim.render import print_table

DEFAULT_POLICIES = ("firstfit", "bestfit", "fgd", "flexlab")
DEFAULT_SEEDS = "42-51"
#: The live replay's defaults (``flexlab bench openb --live``): one seed of flexlab.
LIVE_POLICIES = ("flexlab",)
LIVE_SEEDS = "42"
#: Where the trace is looked for when --trace-dir is not given (first match wins).
TRACE_ENV = "FLEXLAB_OPENB_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_seeds(text: str) -> list[int]:
    """``"42-51"``, ``"42,43"`` or a mix such as ``"42-44,50"``."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a seed list; allowed: integers and ranges, e.g. 42-51, 42,43 or 42-44,50"
            ) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed; allowed: e.g. 42-51 or 42,43")
    return list(dict.fromkeys(seeds))


def parse_policies(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown policy {', '.join(bad) or repr(text)}; allowed: {', '.join(POLICIES)} (comma-separated)"
        )
    return list(dict.fromkeys(names))


def parse_loads(text: str) -> list[int]:
    try:
        loads = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        loads = []
    if not loads or any(not 0 <= x <= 130 for x in loads):
        raise argparse.ArgumentTypeError(
            f"{text!r}: allowed: comma-separated arrived loads in 0..130 (percent)"
        )
    return loads


def default_trace_dir() -> Path:
    """``$FLEXLAB_OPENB_TRACE``, else ``../shared/traces/openb`` from the working directory,
    else the same path next to the flexlab checkout."""
    env = os.environ.get(TRACE_ENV)
    if env:
        return Path(env)
    for base in (Path.cwd(), _REPO_ROOT):
        cand = base.parent / "shared" / "traces" / "openb"
        if cand.is_dir():
            return cand
    return Path("../shared/traces/openb")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``flexlab bench openb``."""
    parser.add_argument(
        "--trace-dir",
        type=Path,
        default=None,
        help=f"folder of the openb trace (with csv/ or the CSV files); default: ${TRACE_ENV} or "
        "../shared/traces/openb. Get it: git clone https://github.com/alibaba/clusterdata, "
        "folder cluster-trace-gpu-v2023",
    )
    parser.add_argument(
        "--workload",
        default="default",
        help="pod list to replay (openb_pod_list_<WORKLOAD>.csv), or 'all' for the 17 published ones",
    )
    parser.add_argument(
        "--policies",
        type=parse_policies,
        default=None,
        help=f"comma-separated policies (default {','.join(DEFAULT_POLICIES)}; with --live: flexlab); "
        f"allowed: {', '.join(POLICIES)}",
    )
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help=f"seeds, e.g. {DEFAULT_SEEDS} (default; with --live: {LIVE_SEEDS}) or 42,43",
    )
    parser.add_argument(
        "--loads",
        type=parse_loads,
        default=list(REPORT_LOADS),
        help="arrived loads (%% of GPU capacity) to report, default " + ",".join(map(str, REPORT_LOADS)),
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON"
    )


def resolve_workloads(name: str, trace_dir: Path) -> list[str]:
    """The workloads ``--workload`` names (``all``: the 17 published ones)."""
    found = available_workloads(trace_dir)
    if name == "all":
        missing = [w for w in PUBLISHED_WORKLOADS if w not in found]
        if missing:
            raise TraceNotFound(f"the trace lacks workloads {', '.join(missing)}; {DOWNLOAD_HINT}")
        return list(PUBLISHED_WORKLOADS)
    if name not in found:
        raise ValueError(f"--workload: unknown workload {name!r}; allowed: all, {', '.join(found)}")
    return [name]


def check_inputs(args: argparse.Namespace, err: Console) -> tuple[Path, list[str]] | None:
    """The trace folder and workloads of ``args``, or None after printing what is wrong."""
    trace_dir: Path = args.trace_dir if args.trace_dir is not None else default_trace_dir()
    try:
        csv_dir(trace_dir)
        workloads = resolve_workloads(args.workload, trace_dir)
    except TraceNotFound as exc:
        err.print(f"[red]error:[/red] --trace-dir: {exc}")
        return None
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return None
    if args.json is not None and not args.json.parent.exists():
        err.print(f"[red]error:[/red] --json: folder {args.json.parent} does not exist")
        return None
    return trace_dir, workloads


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print one table, optionally write JSON. 0 on success, 2 on bad input."""
    err = Console(stderr=True)
    checked = check_inputs(args, err)
    if checked is None:
        return 2
    trace_dir, workloads = checked
    policies = args.policies or list(DEFAULT_POLICIES)
    seeds = args.seeds or parse_seeds(DEFAULT_SEEDS)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("decisions"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("openb", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        result = run_benchmark(trace_dir, workloads, policies, seeds, progress=progress, loads=args.loads)
    print_table(result)
    if args.json is not None:
        args.json.write_text(result.to_json())
        Console().print(f"wrote {args.json}")
    return 0


def _standalone(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexlab bench openb", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_standalone())
