"""Dashboard benchmark: ``update()`` of every component on a synthetic pool.

Each round moves every slice's utilisation (what happens every second), and every
``--reslice``-th round also re-carves one device (the pool map then resends its geometry).
``decode`` is reading the state's wire JSON into the typed ``PoolState`` (what the
dashboard's fetch does, off the event loop). Two modes: ``headless`` (Bokeh models alone) and ``widget`` (the root inside a
``jupyter_bokeh.BokehModel``, as in Voila: every change is serialised into PATCH-DOC
messages; the comm is a no-op, so the socket is not counted).

    python benchmarks/dashboard_bench.py [--devices 1000] [--rounds 30] [--json results.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import statistics
import time
from typing import Any

from flexlab.core.poolstate import PoolState
from flexlab.dashboard import Dashboard
from flexlab.dashboard.synthetic import synthetic_history, synthetic_state


def run(devices: int, rounds: int, reslice: int, widget: bool, seed: int = 0) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    typed = synthetic_state(devices, seed=seed)
    frames = synthetic_history(typed, 600, seed=seed)
    # The rounds edit the wire JSON, read back as the dashboard's fetch reads it ("decode").
    state = typed.to_json()
    dash = Dashboard()
    if widget:
        from jupyter_bokeh import BokehModel

        BokehModel(dash.root)
    dash.apply(typed, frames)  # first paint: renderers and colours are created once
    times: dict[str, list[float]] = {}
    slices = [s for h in state["hosts"] for d in h["devices"] for s in d["slices"]]
    for r in range(rounds):
        for s in slices:
            s["utilisation"] = round(rng.random(), 4)
        if reslice and r % reslice == reslice - 1:
            dev = rng.choice([d for h in state["hosts"] for d in h["devices"] if len(d["slices"]) > 1])
            gone = dev["slices"].pop()
            dev["free_compute_milli"] += gone["compute_milli"]
            slices = [s for h in state["hosts"] for d in h["devices"] for s in d["slices"]]
        t = frames[-1]["time"] + 1
        frames = [*frames[1:], dict(copy.deepcopy(frames[-1]), time=t)]
        state["time"] = t
        t0 = time.perf_counter()
        typed = PoolState.from_json(state)
        times.setdefault("decode", []).append(1000 * (time.perf_counter() - t0))
        dash.apply(typed, frames[-1:])
        for k, v in dash.timings.items():
            times.setdefault(k, []).append(v)
    return {
        k: {
            "median_ms": statistics.median(v),
            "p95_ms": sorted(v)[int(0.95 * (len(v) - 1))],
            "max_ms": max(v),
        }
        for k, v in times.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1000])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--reslice", type=int, default=10, help="re-carve a device every N rounds (0: never)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    out: dict[str, Any] = {"machine": {"python": platform.python_version(), "platform": platform.platform()}}
    for n in args.devices:
        for mode in ("headless", "widget"):
            t0 = time.perf_counter()
            res = run(n, args.rounds, args.reslice, widget=mode == "widget")
            out[f"{n}/{mode}"] = res
            print(f"\n{n} devices, {mode} ({args.rounds} rounds, {time.perf_counter() - t0:.1f} s):")
            print(f"  {'component':14} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
            for k, v in res.items():
                print(f"  {k:14} {v['median_ms']:10.1f} {v['p95_ms']:8.1f} {v['max_ms']:8.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
