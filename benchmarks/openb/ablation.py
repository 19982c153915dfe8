"""Ablation of flexlab's placement score on the openb trace: what each of its choices is worth.

Each variant is ``FlexlabScore`` with one setting changed from the default, replayed under
the published protocol on the same seeds (paired: the same pod order for every variant),
in parallel processes. Prints unallocated GPU % at 100% and 130% arrived load (mean over
the seeds) per workload and variant, beside the published FGD mean.

    python benchmarks/openb/ablation.py --workloads gpushare80,multigpu40,cpu250 --seeds 42-44
    python benchmarks/openb/ablation.py --workloads all --seeds 42-44 --jobs 2 --json ablation.json

The trace is read from ``--trace-dir`` (default ``../shared/traces/openb`` or
``$FLEXLAB_OPENB_DIR``), never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from flexlab.core.placement import FlexlabScore, PlacementProfile
from flexlab.core.placement.policies import distribution_for
from flexlab.sim.bench import host_rank
from flexlab.sim.openb import PUBLISHED_WORKLOADS, load_nodes, load_pods
from flexlab.sim.protocol import GRID, inflate, on_grid
from flexlab.sim.published import load_published, published_dir
from flexlab.sim.replay import capacity_milli, replay

#: name -> (FlexlabScore keyword arguments, ties by the seeded host order?)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "flexlab": ({}, True),
    "no-headroom": ({"headroom": 0.0}, True),
    "exact-scores": ({"quantize": False}, True),
    "node-order-ties": ({}, False),
    "previous": ({"headroom": 0.0, "quantize": False}, False),
    "no-reservation": ({"reservation": 0.0}, True),
}
LOADS = (100, 130)


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def run_one(trace: str, workload: str, seed: int, variant: str) -> tuple[str, int, str, list[float], float]:
    """Unallocated GPU % at each of ``LOADS`` for one replay, and its placement seconds."""
    kwargs, ranked = VARIANTS[variant]
    nodes = load_nodes(trace)
    cap = capacity_milli(nodes)
    table = load_pods(trace, workload)
    dist = distribution_for("flexlab", [table.requests[j] for j in table.shape])
    profile = PlacementProfile(
        variant,
        ((FlexlabScore(dist, **kwargs), 1.0),),
        device_choice="tightest",
        host_rank=host_rank(nodes.n_hosts, seed) if ranked else None,
    )
    order = inflate(table.gpu_milli, cap, seed)
    rec = replay(nodes, table.requests, table.shape[order], profile)
    alloc = on_grid(rec.arrived_milli, 100.0 * rec.allocated_milli / cap, cap)
    return workload, seed, variant, [100.0 - float(alloc[GRID.index(x)]) for x in LOADS], rec.seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_trace = os.environ.get(
        "FLEXLAB_OPENB_DIR", str(Path(__file__).parents[3] / "shared/traces/openb")
    )
    ap.add_argument(
        "--trace-dir", default=default_trace, help="the openb trace folder (default: %(default)s)"
    )
    ap.add_argument(
        "--workloads", default="gpushare80,multigpu40,cpu250", help="comma list, or 'all' (the 17)"
    )
    ap.add_argument("--seeds", default="42-44", help="e.g. 42-51 or 42,45 (default: %(default)s)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    ap.add_argument("--json", type=Path, help="write every replay's figures here")
    args = ap.parse_args(argv)
    workloads = list(PUBLISHED_WORKLOADS) if args.workloads == "all" else args.workloads.split(",")
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variants {bad}; allowed: {', '.join(VARIANTS)}")
    seeds = _seeds(args.seeds)
    jobs = [(args.trace_dir, w, s, v) for w in workloads for s in seeds for v in variants]
    t0 = time.monotonic()
    results = []
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for i, r in enumerate(pool.map(run_one, *zip(*jobs, strict=True)), 1):
            results.append(r)
            print(
                f"\r{i}/{len(jobs)} replays, {time.monotonic() - t0:.0f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(file=sys.stderr)
    pub_dir = published_dir(args.trace_dir)
    published = load_published(pub_dir) if pub_dir is not None else {}
    print(f"unallocated GPU % at {LOADS[0]}% / {LOADS[1]}% arrived load, mean of seeds {args.seeds}")
    print(f"{'workload':<12} " + " ".join(f"{v:>16}" for v in [*variants, "FGD published"]))
    for w in workloads:
        cells = []
        for v in variants:
            vals = np.array([r[3] for r in results if r[0] == w and r[2] == v])
            cells.append(f"{vals[:, 0].mean():6.2f} / {vals[:, 1].mean():6.2f}")
        fgd = published.get((w, "FGD"))
        cells.append(
            f"{fgd.unallocated(LOADS[0])[0]:6.2f} / {fgd.unallocated(LOADS[1])[0]:6.2f}" if fgd else "-"
        )
        print(f"{w:<12} " + " ".join(f"{c:>16}" for c in cells))
    if args.json:
        rows = [
            {
                "workload": w,
                "seed": s,
                "variant": v,
                "unallocated": dict(zip(LOADS, u, strict=True)),
                "seconds": sec,
            }
            for w, s, v, u, sec in results
        ]
        args.json.write_text(
            json.dumps({"variants": {v: VARIANTS[v] for v in variants}, "runs": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
