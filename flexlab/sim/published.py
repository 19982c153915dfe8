"""The published openb results (hkust-adsl/kubernetes-scheduler-simulator, expected_results).

``analysis_allo_discrete.csv`` rows are (workload, policy, tune, seed, total_gpus, then the
GPU allocation ratio in % at arrived loads 0..130%); ``analysis_frag_discrete.csv`` has the
same key columns (without total_gpus) and the fragmented GPU amount in % of capacity.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALLOC_FILE = "analysis_allo_discrete.csv"
FRAG_FILE = "analysis_frag_discrete.csv"
#: The reference's policy names, in its order.
PUBLISHED_POLICIES = ("Random", "DotProd", "GpuClustering", "GpuPacking", "BestFit", "FGD")
#: Our policy name -> the published policy it reproduces.
SAME_POLICY = {"bestfit": "BestFit", "fgd": "FGD"}


@dataclass(frozen=True)
class PublishedSeries:
    """Per-seed values of one (workload, policy) on the load grid 0..130 (NaN = missing)."""

    workload: str
    policy: str
    seeds: tuple[int, ...]
    #: shape (seeds, 131): allocation % and fragmentation % of capacity.
    alloc: np.ndarray
    frag: np.ndarray

    def unallocated(self, load: int) -> tuple[float, float]:
        """Mean and standard deviation over seeds of ``100 - allocation`` at ``load``%."""
        col = 100.0 - self.alloc[:, load]
        col = col[~np.isnan(col)]
        if col.size == 0:
            return math.nan, math.nan
        return float(col.mean()), float(col.std(ddof=1)) if col.size > 1 else 0.0

    def fragmentation(self, load: int) -> float:
        col = self.frag[:, load] if self.frag.size else np.array([])
        col = col[~np.isnan(col)]
        return float(col.mean()) if col.size else math.nan


def published_dir(trace_dir: str | Path) -> Path | None:
    """``published/`` next to the trace's ``csv/`` folder, if present."""
    base = Path(trace_dir).expanduser()
    for cand in (base / "published", base.parent / "published"):
        if (cand / ALLOC_FILE).is_file():
            return cand
    return None


def _read(path: Path, skip: int) -> dict[tuple[str, str], dict[int, list[float]]]:
    out: dict[tuple[str, str], dict[int, list[float]]] = {}
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        loads = [int(h) for h in header[skip:]]
        for row in rows:
            workload = row[0].removeprefix("openb_pod_list_")
            policy = row[1].split("-", 1)[-1]
            seed = int(row[3])
            values = [math.nan] * 131
            for load, text in zip(loads, row[skip:], strict=False):
                if 0 <= load <= 130 and text:
                    values[load] = float(text)
            out.setdefault((workload, policy), {})[seed] = values
    return out


def load_published(directory: str | Path) -> dict[tuple[str, str], PublishedSeries]:
    """All published series, keyed by (workload, policy), e.g. ``("default", "FGD")``."""
    d = Path(directory)
    alloc = _read(d / ALLOC_FILE, 5)
    frag = _read(d / FRAG_FILE, 4) if (d / FRAG_FILE).is_file() else {}
    out: dict[tuple[str, str], PublishedSeries] = {}
    for key, by_seed in alloc.items():
        seeds = tuple(sorted(by_seed))
        f = frag.get(key, {})
        out[key] = PublishedSeries(
            workload=key[0],
            policy=key[1],
            seeds=seeds,
            alloc=np.array([by_seed[s] for s in seeds]),
            frag=np.array([f.get(s, [math.nan] * 131) for s in seeds]),
        )
    return out
