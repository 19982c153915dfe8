"""The openb benchmark: policies x workloads x seeds under the published protocol.

Usage (the trace is read from its folder, never copied)::

    result = run_benchmark("../shared/traces/openb", ["default"], ["fgd", "flexlab"], [42, 43])
    mean, sd = result.unallocated("default", "flexlab", 100)
    Path("bench.json").write_text(result.to_json())
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flexlab.core.placement.fragmentation import ShapeDistribution
from flexlab.core.placement.policies import NEEDS_DISTRIBUTION, POLICIES, distribution_for, make_profile
from flexlab.sim.openb import load_nodes, load_pods
from flexlab.sim.protocol import GRID, INFLATION_RATIO, REPORT_LOADS, inflate, on_grid
from flexlab.sim.published import SAME_POLICY, PublishedSeries, load_published, published_dir
from flexlab.sim.replay import capacity_milli, replay

#: Called with (decisions done, decisions in all, what is running).
BenchProgress = Callable[[int, int, str], None]
#: Policies that break ties like the reference simulator (a seeded random host order).
RANKED_TIES = frozenset({"bestfit", "fgd", "flexlab"})


@dataclass(frozen=True)
class RunResult:
    """One (workload, policy, seed) replay."""

    workload: str
    policy: str
    seed: int
    decisions: int
    placed: int
    #: Wall-clock and CPU seconds spent placing (the machine may be shared: CPU is steadier).
    seconds: float
    cpu_seconds: float
    #: Allocation and fragmentation (% of GPU capacity) per arrived load 0..130 (NaN: none).
    alloc: tuple[float, ...]
    frag: tuple[float, ...]

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else math.inf


@dataclass
class BenchmarkResult:
    """All runs of a benchmark and the published series of the same workloads."""

    trace_dir: str
    workloads: tuple[str, ...]
    policies: tuple[str, ...]
    seeds: tuple[int, ...]
    loads: tuple[int, ...] = REPORT_LOADS
    runs: list[RunResult] = field(default_factory=list)
    published: dict[tuple[str, str], PublishedSeries] = field(default_factory=dict, repr=False)

    def _runs(self, workload: str, policy: str) -> list[RunResult]:
        return [r for r in self.runs if r.workload == workload and r.policy == policy]

    def unallocated(self, workload: str, policy: str, load: int) -> tuple[float, float]:
        """Mean and sample standard deviation over seeds of unallocated GPU % at ``load``."""
        vals = np.array([100.0 - r.alloc[load] for r in self._runs(workload, policy)])
        vals = vals[~np.isnan(vals)]
        if vals.size == 0:
            return math.nan, math.nan
        return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0

    def fragmentation(self, workload: str, policy: str, load: int) -> float:
        """Mean fragmented GPU (% of capacity, FGD's measure) at ``load``."""
        vals = np.array([r.frag[load] for r in self._runs(workload, policy)])
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if vals.size else math.nan

    def decisions_per_s(self, workload: str, policy: str, *, cpu: bool = False) -> float:
        """Placements per second of wall-clock time (``cpu``: of CPU time)."""
        runs = self._runs(workload, policy)
        secs = sum(r.cpu_seconds if cpu else r.seconds for r in runs)
        return sum(r.decisions for r in runs) / secs if secs > 0 else math.nan

    def published_unallocated(self, workload: str, policy: str, load: int) -> tuple[float, float]:
        """The published figure of a reference policy name (``FGD``, ``BestFit``...)."""
        series = self.published.get((workload, policy))
        return series.unallocated(load) if series is not None else (math.nan, math.nan)

    def published_fragmentation(self, workload: str, policy: str, load: int) -> float:
        series = self.published.get((workload, policy))
        return series.fragmentation(load) if series is not None else math.nan

    def summary(self) -> list[dict[str, object]]:
        """One row per workload x policy x reported load, ours beside the published."""
        rows: list[dict[str, object]] = []
        for wl in self.workloads:
            for pol in self.policies:
                for load in self.loads:
                    mean, sd = self.unallocated(wl, pol, load)
                    ref = SAME_POLICY.get(pol)
                    rows.append(
                        {
                            "workload": wl,
                            "policy": pol,
                            "load": load,
                            "unallocated_mean": _num(mean),
                            "unallocated_sd": _num(sd),
                            "frag_mean": _num(self.fragmentation(wl, pol, load)),
                            "published_same_policy": ref,
                            "published_unallocated": _num(self.published_unallocated(wl, ref, load)[0])
                            if ref
                            else None,
                            "published_fgd_unallocated": _num(self.published_unallocated(wl, "FGD", load)[0]),
                            "decisions_per_s": _num(self.decisions_per_s(wl, pol)),
                            "decisions_per_cpu_s": _num(self.decisions_per_s(wl, pol, cpu=True)),
                        }
                    )
        return rows

    def to_json(self) -> str:
        """Everything needed to redo the table: settings, per-run series and the summary."""
        doc = {
            "benchmark": "openb",
            "protocol": {
                "inflation_ratio": INFLATION_RATIO,
                "grid": [GRID[0], GRID[-1]],
                "seeds": list(self.seeds),
            },
            "trace_dir": self.trace_dir,
            "workloads": list(self.workloads),
            "policies": list(self.policies),
            "loads": list(self.loads),
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
            "summary": self.summary(),
            "runs": [
                {**asdict(r), "alloc": [_num(x) for x in r.alloc], "frag": [_num(x) for x in r.frag]}
                for r in self.runs
            ],
        }
        return json.dumps(doc, indent=1)


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def host_rank(n_hosts: int, seed: int) -> np.ndarray:
    """The seeded random host order the reference breaks ties by (its node-name prefixes)."""
    return np.random.default_rng([seed, 1]).permutation(n_hosts)


def tie_rank(policy: str, n_hosts: int, seed: int) -> np.ndarray | None:
    """The host order ``policy`` breaks ties by in the benchmark: the seeded one for
    ``RANKED_TIES``, node-list order (None) for the others."""
    return host_rank(n_hosts, seed) if policy in RANKED_TIES else None


def run_benchmark(
    trace_dir: str | Path,
    workloads: Sequence[str],
    policies: Sequence[str],
    seeds: Sequence[int],
    *,
    progress: BenchProgress | None = None,
    loads: Sequence[int] = REPORT_LOADS,
) -> BenchmarkResult:
    """Replay each workload under each policy for each seed (the published protocol).

    Raises ``TraceNotFound`` when the trace is missing and ``ValueError`` for an unknown
    policy, before anything runs.
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; allowed: {', '.join(POLICIES)}")
    base_pool = load_nodes(trace_dir)
    cap = capacity_milli(base_pool)
    tables = {wl: load_pods(trace_dir, wl) for wl in workloads}
    pub_dir = published_dir(trace_dir)
    result = BenchmarkResult(
        trace_dir=str(trace_dir),
        workloads=tuple(workloads),
        policies=tuple(policies),
        seeds=tuple(seeds),
        loads=tuple(loads),
        published=load_published(pub_dir) if pub_dir is not None else {},
    )
    orders = {(wl, s): inflate(t.gpu_milli, cap, s) for wl, t in tables.items() for s in seeds}
    total = sum(len(o) for o in orders.values()) * len(policies)
    done = 0
    for wl, table in tables.items():
        pod_requests = [table.requests[j] for j in table.shape]
        frag_dist = ShapeDistribution.from_requests(pod_requests)
        dists = {p: distribution_for(p, pod_requests) for p in policies if p in NEEDS_DISTRIBUTION}
        for pol in policies:
            for seed in seeds:
                order = orders[(wl, seed)]
                pool = base_pool.copy()
                rank = tie_rank(pol, pool.n_hosts, seed)
                profile = make_profile(pol, distribution=dists.get(pol), host_rank=rank)
                label = f"{wl} / {pol} / seed {seed}"
                offset = done

                def tick(i: int, n: int, offset: int = offset, label: str = label) -> None:
                    if progress is not None:
                        progress(offset + i, total, label)

                rec = replay(
                    pool,
                    table.requests,
                    table.shape[order],
                    profile,
                    frag_distribution=frag_dist,
                    progress=tick,
                )
                done += len(order)
                alloc = on_grid(rec.arrived_milli, 100.0 * rec.allocated_milli / cap, cap)
                frag = on_grid(rec.arrived_milli, 100.0 * rec.frag_milli / cap, cap)
                result.runs.append(
                    RunResult(
                        workload=wl,
                        policy=pol,
                        seed=seed,
                        decisions=rec.decisions,
                        placed=int(rec.placed.sum()),
                        seconds=rec.seconds,
                        cpu_seconds=rec.cpu_seconds,
                        alloc=tuple(float(x) for x in alloc),
                        frag=tuple(float(x) for x in frag),
                    )
                )
    return result
