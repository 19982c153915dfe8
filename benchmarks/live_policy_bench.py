"""Live placement rate: ``LivePolicy`` observing and placing, as the live pool would.

A pool of ``--hosts`` hosts with 8 GPUs each (125 hosts: 1,000 GPUs, 64 cores and 512 GiB
each) takes a stream of requests; each one is observed, placed with ``live.profile`` and
applied, and the oldest placements are released while the pool is more than ``--fill``
allocated, so the pool stays busy (placement is slowest on a part-filled pool). Requests
are drawn from the openb ``default`` workload's shapes when ``--trace-dir`` holds the trace
(host CPU and memory included: flexlab counts every exact host memory as its own shape),
else from the cold-start prior's device shares; ``--distinct`` gives every request a host
memory of its own (the worst case: a new shape each time, a rebuild every
``new_shape_gap`` observations). Every policy runs on the same request stream; ``fixed`` rows
place with a distribution taken from the whole stream up front, as the openb benchmark
does, for comparison.

    python benchmarks/live_policy_bench.py [--hosts 125] [--requests 5000] [--trace-dir DIR] [--distinct]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import time
from typing import Any

from flexlab.core.placement import apply, distribution_for, make_profile, place, release
from flexlab.core.placement.framework import Decision, PlacementProfile
from flexlab.core.placement.live import PRIOR_MIX, LivePolicy
from flexlab.core.placement.testing import ModelSpec, build_pool
from flexlab.core.request import Selector, SliceRequest
from flexlab.core.snapshot import PoolArrays


def pool_of(hosts: int) -> PoolArrays:
    return build_pool(
        [(f"node-{h:04d}", 64000, 524288, ["a100-80gb"] * 8) for h in range(hosts)],
        [ModelSpec("a100-80gb", memory_mib=81920, granularity=10)],
    )


def stream(n: int, trace_dir: str | None, seed: int, *, distinct: bool = False) -> list[SliceRequest]:
    rng = random.Random(seed)
    if distinct:
        milli = [m for m, _ in PRIOR_MIX]
        return [SliceRequest(compute_milli=rng.choice(milli), host_memory_mib=1 + k) for k in range(n)]
    if trace_dir:
        from flexlab.sim.openb import load_pods

        table = load_pods(trace_dir, "default")
        reqs = [table.requests[j] for j in table.shape if table.requests[j].compute_milli > 0]
        # openb's model constraints name models this pool lacks: keep the kind only
        reqs = [
            SliceRequest(
                selector=Selector(kinds=frozenset({"gpu"})),
                compute_milli=r.compute_milli,
                devices=r.devices,
                host_cpu_milli=r.host_cpu_milli,
                host_memory_mib=r.host_memory_mib,
            )
            for r in reqs
        ]
        return [rng.choice(reqs) for _ in range(n)]
    milli = [m for m, _ in PRIOR_MIX]
    share = [s for _, s in PRIOR_MIX]
    return [SliceRequest(compute_milli=rng.choices(milli, share)[0]) for _ in range(n)]


def run(
    label: str,
    pool: PoolArrays,
    reqs: list[SliceRequest],
    profile: PlacementProfile,
    live: LivePolicy | None,
    fill: float,
) -> dict[str, Any]:
    total = float(pool.dev_compute_free.sum())
    held: collections.deque[Decision] = collections.deque()
    placed = failed = 0
    t0 = time.perf_counter()
    for r in reqs:
        if live is not None:
            live.observe(r)
        d = place(r, pool, profile)
        if not d.ok:
            failed += 1
            for _ in range(min(8, len(held))):
                release(pool, held.popleft())
            continue
        apply(pool, d)
        held.append(d)
        placed += 1
        while held and 1.0 - float(pool.dev_compute_free.sum()) / total > fill:
            release(pool, held.popleft())
    dt = time.perf_counter() - t0
    out = {
        "run": label,
        "requests": len(reqs),
        "placed": placed,
        "failed": failed,
        "seconds": round(dt, 3),
        "per_second": round(len(reqs) / dt),
    }
    if live is not None:
        out["rebuilds"] = live.rebuilds
        out["shapes"] = live.state()["shapes_total"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=125)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--fill", type=float, default=0.8, help="release the oldest placements above this")
    ap.add_argument("--trace-dir", default=None, help="openb trace folder (draws from its default workload)")
    ap.add_argument("--distinct", action="store_true", help="a new shape with every request")
    ap.add_argument("--policies", default="flexlab,fgd,bestfit,binpack")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reqs = stream(args.requests, args.trace_dir, args.seed, distinct=args.distinct)
    rows = []
    for name in args.policies.split(","):
        live = LivePolicy(name)
        rows.append(run(f"{name} live", pool_of(args.hosts), reqs, live.profile, live, args.fill))
        if name in ("fgd", "flexlab"):
            fixed = make_profile(name, distribution=distribution_for(name, reqs))
            rows.append(run(f"{name} fixed", pool_of(args.hosts), reqs, fixed, None, args.fill))
    for row in rows:
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
