"""The ``flexlab`` command line.

Every subcommand imports what it needs lazily so that ``flexlab --help`` is instant and a
missing optional part (Jupyter, Bokeh, a vendor SDK) only matters to the command using it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from flexlab import __version__
from flexlab.core.errors import FlexlabError


def _cmd_catalog(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from flexlab.core.catalog import CATALOG
    from flexlab.core.units import format_memory

    models = [m for m in CATALOG.values() if not args.kind or m.kind == args.kind]
    if args.json:
        print(json.dumps([_model_json(m) for m in models], indent=2))
        return 0
    table = Table(title="flexlab device catalog", show_lines=False)
    for col in ("key", "vendor", "kind", "memory", "FP16 TFLOP/s", "GB/s", "slicing"):
        table.add_column(col)
    for m in models:
        slicing = []
        if m.granularity_milli:
            slicing.append(f"fractions of {m.granularity_milli / 10:g}%")
        if m.profiles:
            slicing.append("profiles: " + " ".join(p.name for p in m.profiles))
        table.add_row(
            m.key,
            m.vendor,
            m.kind,
            format_memory(m.memory_mib) if m.memory_mib else "-",
            f"{m.peak_tflops_fp16:g}" if m.peak_tflops_fp16 else "-",
            f"{m.bandwidth_gbps:g}" if m.bandwidth_gbps else "-",
            "; ".join(slicing),
        )
    Console().print(table)
    print("Sources: flexlab catalog --json lists each figure's source.")
    return 0


def _model_json(m: object) -> dict[str, object]:
    from dataclasses import asdict

    d = asdict(m)  # type: ignore[call-overload]
    d.pop("_profile_index", None)
    return dict(d)


def _cmd_request(args: argparse.Namespace) -> int:
    from flexlab.core.request import parse_request

    req = parse_request(args.spec)
    out = {
        "spec": req.spec,
        "kinds": sorted(req.selector.kinds),
        "vendors": sorted(req.selector.vendors),
        "models": sorted(req.selector.models),
        "compute_milli": req.compute_milli,
        "memory_mib": req.memory_mib,
        "profile": req.profile,
        "devices": req.devices,
        "host_cpu_milli": req.host_cpu_milli,
        "host_memory_mib": req.host_memory_mib,
        "priority": req.priority,
    }
    print(json.dumps(out, indent=2))
    return 0


def _cmd_bench_openb(args: argparse.Namespace) -> int:
    """``flexlab bench openb``: the simulator's benchmark, or with ``--live`` the replay through
    a real Dask scheduler beside it (the simulator never imports Dask: the dispatch is here)."""
    if args.live:
        from flexlab.commands.openb_live import main as live_main

        return live_main(args)
    from flexlab.sim.openb_cli import main

    return main(args)


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", help="benchmarks: placement and online scheduling on the public openb trace"
    )
    bsub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    openb = bsub.add_parser(
        "openb",
        help="replay the Alibaba openb GPU-sharing trace under the published protocol",
        description="Replay the public openb trace (Weng et al., ATC'23 protocol) with each policy "
        "and print unallocated GPU % per arrived load beside the published figures.",
    )
    from flexlab.commands.openb_live import add_arguments as add_live
    from flexlab.sim.openb_cli import add_arguments

    add_arguments(openb)
    add_live(openb)
    openb.set_defaults(func=_cmd_bench_openb)
    online = bsub.add_parser(
        "online",
        help="online replay through the shipped pool and Hi loop on a virtual clock: whole "
        "devices, FGD, flexlab, flexlab with a standing reserve, with forecasting",
    )
    from flexlab.sim.online_cli import add_arguments as add_online
    from flexlab.sim.online_cli import main as online_main

    add_online(online)
    online.set_defaults(func=online_main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flexlab",
        description="Share scarce AI accelerators: slice GPUs/NPUs, pool them, "
        "schedule Dask and Jupyter work.",
    )
    parser.add_argument("--version", action="version", version=f"flexlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    cat = sub.add_parser("catalog", help="list the device catalog (models, figures, slicing menus)")
    cat.add_argument("--kind", choices=["gpu", "npu", "mlu"], help="only this kind of device")
    cat.add_argument("--json", action="store_true", help="print JSON with every figure's source")
    cat.set_defaults(func=_cmd_catalog)

    req = sub.add_parser("request", help="parse a request string and show what it asks for")
    req.add_argument("spec", help="e.g. 'gpu:0.25', 'npu:25%%,16GiB', 'a100:1g.10gb'")
    req.set_defaults(func=_cmd_request)

    from flexlab.commands.runtime import add_parsers as add_runtime

    add_runtime(sub)
    from flexlab.commands.certs import add_parser as add_certs
    from flexlab.commands.dashboard import add_parser as add_dashboard
    from flexlab.commands.demo import add_parser as add_demo
    from flexlab.commands.front import add_parser as add_front
    from flexlab.commands.lab import add_parser as add_lab

    add_certs(sub)
    add_demo(sub)
    add_lab(sub)
    add_dashboard(sub)
    add_front(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FlexlabError as exc:
        print(f"flexlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flexlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
