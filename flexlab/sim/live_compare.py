"""The live replay's other half: the simulator on the same pods, and the comparison.

``flexlab bench openb --live`` replays one seed of a workload twice: through a real Dask
scheduler running the flexlab plugin (``flexlab_dask.replay``: host agents register the
trace's nodes, one lease per pod through the lease API) and through the simulator
(``replay``, as ``flexlab bench openb`` runs it). This module holds what needs no Dask:
the lease request of a pod, the host order the live pool must register in, the
simulator's side, and the comparison (unallocated GPU % per load, same-host share).

Where the lease API refuses pods the simulator places (a request the API cannot express
or does not take yet), the simulator is also run with those pods skipped (the *mirror*):
live and mirror must then agree exactly, and mirror minus simulator is what the refused
pods cost.

>>> from flexlab.core.request import Selector, SliceRequest
>>> lease_spec(SliceRequest(compute_milli=460, host_cpu_milli=6000, host_memory_mib=12288))
'gpu:0.46,cpu=6000m,ram=12288MiB'
>>> lease_spec(SliceRequest(compute_milli=0, host_cpu_milli=4000, host_memory_mib=8192))
'cpu:4000m,8192MiB'
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.fragmentation import ShapeDistribution
from flexlab.core.placement.policies import NEEDS_DISTRIBUTION, distribution_for, make_profile
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.sim.bench import tie_rank
from flexlab.sim.openb import load_nodes, load_pods
from flexlab.sim.protocol import GRID, INFLATION_RATIO, inflate, on_grid
from flexlab.sim.replay import Progress, ReplayRecord, capacity_milli, replay

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
#: The loads the live replay reports (the protocol's two headline points).
LIVE_LOADS = (100, 130)


def lease_spec(req: SliceRequest) -> str:
    """The lease request string of an openb pod, as a user would type it: GPU share (or
    ``devices=N`` whole GPUs), host CPU in milli-cores and host memory in MiB, exactly.

    A model-constrained pod names its model (``t4:0.5,...``); a pod allowed on several
    models names them joined by ``|``, which the request grammar does not take today (the
    lease API refuses it with ``InvalidRequest``, and the comparison says so).
    """
    host = f"cpu={req.host_cpu_milli}m,ram={req.host_memory_mib}MiB"
    if req.compute_milli == 0:
        return f"cpu:{req.host_cpu_milli}m,{req.host_memory_mib}MiB"
    selector = "|".join(sorted(req.selector.models)) if req.selector.models else "gpu"
    what = f"devices={req.devices}" if req.devices > 1 else f"{req.compute_milli / WHOLE:g}"
    return f"{selector}:{what},{host}"


def register_order(n_hosts: int, rank: npt.NDArray[np.int64] | None) -> I64:
    """The order the live pool's hosts register in, so that its ties go where the
    simulator's go: the live pool breaks placement ties by node-list order (registration
    order), the simulator by ``rank`` (lowest first; node-list order when None). Hosts
    registered by increasing rank tie the same way: the same tie-break, not a tweak."""
    if rank is None:
        return np.arange(n_hosts, dtype=np.int64)
    return np.argsort(rank, kind="stable").astype(np.int64)


@dataclass(frozen=True)
class SeedPlan:
    """One seed of a workload under the protocol: its pods in order, and how the
    simulator breaks ties."""

    workload: str
    policy: str
    seed: int
    #: The workload's distinct pod shapes, and the shape of each pod in arrival order.
    requests: list[SliceRequest]
    order: I64
    #: The simulator's host order for ties (None: node-list order).
    rank: I64 | None

    def __len__(self) -> int:
        return int(self.order.shape[0])

    def specs(self) -> list[str]:
        """The lease request of each pod in arrival order."""
        shapes = [lease_spec(r) for r in self.requests]
        return [shapes[int(j)] for j in self.order]

    def arrived_milli(self) -> I64:
        """The GPU milli arrived after each pod (as ``replay`` counts it)."""
        ask = np.array([r.compute_milli * r.devices for r in self.requests], dtype=np.int64)
        return np.cumsum(ask[self.order])


@dataclass(frozen=True)
class Workload:
    """A workload ready to replay: the cluster, the shape distribution the simulator's
    policy measures against (the whole workload's), and each seed's plan."""

    pool: PoolArrays
    distribution: ShapeDistribution | None
    plans: list[SeedPlan]

    @property
    def capacity_milli(self) -> int:
        return capacity_milli(self.pool)


def plan(
    trace_dir: str, workload: str, policy: str, seeds: Sequence[int], *, hosts: int | None = None
) -> Workload:
    """The seeds of ``workload`` as ``flexlab bench openb`` replays them (``hosts``: on the
    first that many nodes only, the protocol inflating to that smaller capacity)."""
    pool = load_nodes(trace_dir, hosts=hosts)
    table = load_pods(trace_dir, workload)
    cap = capacity_milli(pool)
    dist = (
        distribution_for(policy, [table.requests[j] for j in table.shape])
        if policy in NEEDS_DISTRIBUTION
        else None
    )
    plans = [
        SeedPlan(
            workload,
            policy,
            seed,
            table.requests,
            table.shape[inflate(table.gpu_milli, cap, seed)],
            tie_rank(policy, pool.n_hosts, seed),
        )
        for seed in seeds
    ]
    return Workload(pool, dist, plans)


def simulate(
    work: Workload, seed_plan: SeedPlan, *, skip: Bools | None = None, progress: Progress | None = None
) -> ReplayRecord:
    """The simulator's replay of one seed, as ``run_benchmark`` places it (the same
    profile, distribution and host order; fragmentation is not metered). ``skip``: pods
    that arrive but are not placed (the mirror of the live pool's refusals)."""
    profile = make_profile(seed_plan.policy, distribution=work.distribution, host_rank=seed_plan.rank)
    return replay(
        work.pool.copy(), seed_plan.requests, seed_plan.order, profile, progress=progress, skip=skip
    )


@dataclass(frozen=True)
class LiveOutcome:
    """What the live replay saw, one entry per pod of the order."""

    #: A lease of the pod holds a slice (it was placed).
    placed: Bools
    #: Node-list index of the host the lease was placed on, -1 where none.
    host: I64
    #: Allocated GPU milli in the live pool's ledger after each pod.
    allocated_milli: I64
    #: The lease API refused the pod (an error other than "it cannot fit"): not a
    #: placement failure, a pod the live side never tried to place.
    refused: Bools
    #: Refusals counted by kind (``InvalidRequest: devices``, ...).
    refusals: dict[str, int]
    #: Wall-clock and CPU seconds of the lease phase (every lease asked in turn).
    seconds: float
    cpu_seconds: float
    #: Wall-clock seconds the agents took to register every host.
    register_seconds: float
    #: ``start`` / ``stop`` commands the host agents acknowledged.
    starts: int = 0
    stops: int = 0
    #: Exceptions the plugin caught in its hooks (must be none).
    plugin_errors: tuple[str, ...] = ()

    @property
    def leases_per_s(self) -> float:
        return len(self.placed) / self.seconds if self.seconds > 0 else math.inf


@dataclass(frozen=True)
class LiveRun:
    """One seed: the simulator, the live pool and (when the API refused pods) the mirror."""

    workload: str
    policy: str
    seed: int
    pods: int
    loads: tuple[int, ...]
    #: Unallocated GPU % per load (``loads``): simulator, live pool, mirror (or None).
    sim: tuple[float, ...]
    live: tuple[float, ...]
    mirror: tuple[float, ...] | None
    #: Of the pods either side placed, the share both placed on the same host.
    same_host: float
    #: Share of all pods with the same outcome (same host, or placed by neither).
    same_outcome: float
    #: Position in the order of the first pod the two sides treated differently (None: none).
    first_divergence: int | None
    placed_sim: int
    placed_live: int
    refused: int
    refusals: dict[str, int]
    #: Same-host share against the mirror (None without refusals).
    same_host_mirror: float | None
    sim_seconds: float
    live_seconds: float
    live_cpu_seconds: float
    register_seconds: float
    starts: int
    stops: int
    plugin_errors: tuple[str, ...] = ()

    @property
    def leases_per_s(self) -> float:
        return self.pods / self.live_seconds if self.live_seconds > 0 else math.inf

    def difference(self, load: int) -> float:
        """Live minus simulator, in points of unallocated GPU %, at ``load``."""
        i = self.loads.index(load)
        return self.live[i] - self.sim[i]

    def points(self) -> list[dict[str, Any]]:
        """Per load: the two figures, their difference and the mirror's."""
        out = []
        for i, load in enumerate(self.loads):
            out.append(
                {
                    "load": load,
                    "sim_unallocated": _num(self.sim[i]),
                    "live_unallocated": _num(self.live[i]),
                    "difference": _num(self.live[i] - self.sim[i]),
                    "mirror_unallocated": _num(self.mirror[i]) if self.mirror is not None else None,
                }
            )
        return out


def unallocated(arrived: I64, allocated: I64, capacity_milli: int, loads: Sequence[int]) -> tuple[float, ...]:
    """Unallocated GPU % at ``loads`` on the protocol's grid (``on_grid``)."""
    alloc = on_grid(arrived, 100.0 * allocated / capacity_milli, capacity_milli)
    return tuple(100.0 - float(alloc[GRID.index(x)]) for x in loads)


def agreement(a_host: I64, b_host: I64) -> tuple[float, float, int | None]:
    """(same-host share of the pods either side placed, same-outcome share of all pods,
    position of the first pod treated differently)."""
    either = (a_host >= 0) | (b_host >= 0)
    same = a_host == b_host
    share = float((same & either).sum() / either.sum()) if either.any() else 1.0
    diff = np.flatnonzero(~same)
    return share, float(same.mean()) if same.size else 1.0, int(diff[0]) if diff.size else None


@dataclass
class LiveComparison:
    """All runs of a live replay (workloads x policies x seeds) on one cluster."""

    trace_dir: str
    hosts: int
    capacity_milli: int
    runs: list[LiveRun] = field(default_factory=list)

    def to_json(self) -> str:
        """Per run: per load the simulator's and the live pool's unallocated GPU %, their
        difference and the mirror's; the same-host share; counts and durations."""
        doc = {
            "benchmark": "openb-live",
            "protocol": {
                "inflation_ratio": INFLATION_RATIO,
                "seeds": sorted({r.seed for r in self.runs}),
            },
            "trace_dir": self.trace_dir,
            "workloads": list(dict.fromkeys(r.workload for r in self.runs)),
            "policies": list(dict.fromkeys(r.policy for r in self.runs)),
            "hosts": self.hosts,
            "capacity_milli": self.capacity_milli,
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
            "runs": [
                {
                    "workload": r.workload,
                    "policy": r.policy,
                    "seed": r.seed,
                    "pods": r.pods,
                    "points": r.points(),
                    "same_host": _num(r.same_host),
                    "same_outcome": _num(r.same_outcome),
                    "first_divergence": r.first_divergence,
                    "same_host_mirror": _num(r.same_host_mirror) if r.same_host_mirror is not None else None,
                    "placed_sim": r.placed_sim,
                    "placed_live": r.placed_live,
                    "refused": r.refused,
                    "refusals": r.refusals,
                    "starts_acknowledged": r.starts,
                    "stops_acknowledged": r.stops,
                    "plugin_errors": list(r.plugin_errors),
                    "seconds": {
                        "sim": round(r.sim_seconds, 3),
                        "live": round(r.live_seconds, 3),
                        "live_cpu": round(r.live_cpu_seconds, 3),
                        "register": round(r.register_seconds, 3),
                    },
                    "leases_per_s": round(r.leases_per_s, 1),
                }
                for r in self.runs
            ],
        }
        return json.dumps(doc, indent=1)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)
