"""Fragmentation measured against a distribution of request shapes, and the FGD score.

Weng et al., "Beware of Fragmentation" (USENIX ATC'23): the fragmentation of a host is the
accelerator compute that the expected next request could not use. For each shape ``t`` of
the distribution (weight ``w_t``):

* the host cannot hold ``t`` (too few devices with ``compute_t`` free, too little CPU, or no
  device of a model ``t`` accepts): all its free compute is a fragment for ``t``;
* it can: only the devices with less than ``compute_t`` free are fragments for ``t``;
* ``t`` is CPU-only: all free compute counts (such a request never uses it).

``F(host) = sum_t w_t * fragment_t(host)``. Fragmentation Gradient Descent places a request
where ``F`` grows least; its score is ``100 * sigmoid((F_before - F_after) / 1000)``, cut to
an integer in the reference simulator (``quantize=True``; ties then go to the profile's
tie-break). The distribution is the caller's state: build it from a workload
(``ShapeDistribution.from_requests``) or from recent requests, and assign it again when it
changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.framework import Candidates
from flexlab.core.placement.incremental import CachedValues, PoolWatcher
from flexlab.core.placement.request_view import RequestView, is_cpu_only
from flexlab.core.snapshot import WHOLE, PoolArrays

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]
MemoryMode = Literal["ignore", "exact", "mean"]


@dataclass(frozen=True)
class Shape:
    """A request shape as the distribution counts it (``devices`` 0 = CPU-only)."""

    host_cpu_milli: int
    compute_milli: int
    devices: int
    models: frozenset[str] = frozenset()
    host_memory_mib: int = 0

    @classmethod
    def of(cls, request: RequestView, *, with_memory: bool = False) -> Shape:
        cpu_only = is_cpu_only(request)
        return cls(
            host_cpu_milli=int(request.host_cpu_milli),
            compute_milli=0 if cpu_only else int(request.compute_milli),
            devices=0 if cpu_only else int(request.devices),
            models=frozenset() if cpu_only else frozenset(request.selector.models),
            host_memory_mib=int(request.host_memory_mib) if with_memory else 0,
        )

    def _order(self) -> tuple[int, int, int, str]:
        models = "|".join(sorted(self.models)) if self.models else ""
        return (self.host_cpu_milli, self.compute_milli, self.devices, models)


@dataclass(frozen=True)
class ShapeDistribution:
    """Request shapes and their probabilities (summing to 1)."""

    shapes: tuple[Shape, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shapes) != len(self.weights):
            raise ValueError("shapes and weights differ in length")

    def __len__(self) -> int:
        return len(self.shapes)

    @classmethod
    def from_counts(cls, counts: Mapping[Shape, float], *, coverage: float = 0.95) -> ShapeDistribution:
        """The most frequent shapes until they cover ``coverage`` of the total, renormalised
        (the reference simulator's "typical pods": popularity threshold 95%)."""
        total = float(sum(counts.values()))
        if total <= 0:
            return cls((), ())
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]._order()), reverse=True)
        kept: list[tuple[Shape, float]] = []
        cum = 0.0
        for shape, n in ranked:
            if cum >= coverage * total:
                break
            kept.append((shape, n))
            cum += n
        return cls(tuple(s for s, _ in kept), tuple(n / cum for _, n in kept))

    @classmethod
    def from_requests(
        cls, requests: Iterable[RequestView], *, coverage: float = 0.95, memory: MemoryMode = "ignore"
    ) -> ShapeDistribution:
        """Count request shapes. ``memory``: ``ignore`` host memory (FGD), keep it in the
        shape (``exact``), or give each shape the ``mean`` memory of its requests."""
        reqs = list(requests)
        counts: Counter[Shape] = Counter(Shape.of(r, with_memory=memory == "exact") for r in reqs)
        dist = cls.from_counts(counts, coverage=coverage)
        if memory != "mean":
            return dist
        total: dict[Shape, int] = {}
        for r in reqs:
            key = Shape.of(r)
            total[key] = total.get(key, 0) + int(r.host_memory_mib)
        shapes = tuple(replace(s, host_memory_mib=round(total[s] / counts[s])) for s in dist.shapes)
        return cls(shapes, dist.weights)

    def merged(self, *, memory: MemoryMode = "mean") -> ShapeDistribution:
        """Shapes that differ only in host memory merged into one (weights add); memory is
        dropped (``ignore``) or their weighted mean (``mean``); ``exact`` changes nothing."""
        if memory == "exact":
            return self
        # Plain tuple keys: a live pool's window may hold thousands of shapes, and hashing
        # and replacing dataclasses made this the slowest step of rebuilding a distribution.
        acc: dict[tuple[int, int, int, frozenset[str]], list[float]] = {}
        for s, w in zip(self.shapes, self.weights, strict=True):
            key = (s.host_cpu_milli, s.compute_milli, s.devices, s.models)
            sums = acc.get(key)
            if sums is None:
                acc[key] = [w, w * s.host_memory_mib]
            else:
                sums[0] += w
                sums[1] += w * s.host_memory_mib
        mean = memory == "mean"
        shapes = tuple(
            Shape(cpu, comp, n, models, round(m / w) if mean and w > 0 else 0)
            for (cpu, comp, n, models), (w, m) in acc.items()
        )
        return ShapeDistribution(shapes, tuple(w for w, _ in acc.values()))

    def top(self, coverage: float) -> ShapeDistribution:
        """The most frequent shapes covering ``coverage`` of the weight, renormalised."""
        return ShapeDistribution.from_counts(
            dict(zip(self.shapes, self.weights, strict=True)), coverage=coverage
        )

    def accelerator_only(self) -> ShapeDistribution:
        """The shapes that use accelerators, renormalised (CPU-only shapes dropped)."""
        kept = [(s, w) for s, w in zip(self.shapes, self.weights, strict=True) if s.devices > 0]
        total = sum(w for _, w in kept)
        if total <= 0:
            return ShapeDistribution((), ())
        return ShapeDistribution(tuple(s for s, _ in kept), tuple(w / total for _, w in kept))


class FragmentationModel:
    """Per-host fragmentation ``F`` of a pool under a distribution, kept current cheaply.

    ``sync(pool)`` recomputes only the hosts that changed since the previous call.
    """

    def __init__(self, distribution: ShapeDistribution) -> None:
        self.distribution = distribution
        self.watcher = PoolWatcher()
        self._generation = -1
        sh = distribution.shapes
        self.t_cpu = np.array([s.host_cpu_milli for s in sh], dtype=np.int64)
        self.t_comp = np.array([s.compute_milli for s in sh], dtype=np.int64)
        self.t_num = np.array([s.devices for s in sh], dtype=np.int64)
        self.t_gpu = self.t_num > 0
        self.t_mem = np.array([s.host_memory_mib for s in sh], dtype=np.int64)
        self.w = np.array(distribution.weights, dtype=np.float64)
        self.host_frag: F64 = np.zeros(0)
        self.cnt: I64 = np.zeros((0, len(sh)), dtype=np.int64)
        self.small: I64 = np.zeros((0, len(sh)), dtype=np.int64)
        self.total: I64 = np.zeros(0, dtype=np.int64)
        self.acc_model: BoolArr = np.zeros((0, len(sh)), dtype=np.bool_)
        self.acc_host: BoolArr = np.zeros((0, len(sh)), dtype=np.bool_)

    def _build(self, pool: PoolArrays) -> None:
        sh = self.distribution.shapes
        acc = np.ones((len(pool.model_keys), len(sh)), dtype=np.bool_)
        for t, s in enumerate(sh):
            if s.models:
                acc[:, t] = [k in s.models for k in pool.model_keys]
        self.acc_model = acc
        lay = self.watcher.layout
        first = np.where(lay[:, 0] >= 0, pool.dev_model[np.maximum(lay[:, 0], 0)], 0)
        self.acc_host = acc[first] & (lay[:, :1] >= 0)
        self.host_frag = np.zeros(pool.n_hosts)
        self.cnt = np.zeros((pool.n_hosts, len(sh)), dtype=np.int64)
        self.small = np.zeros((pool.n_hosts, len(sh)), dtype=np.int64)
        self.total = np.zeros(pool.n_hosts, dtype=np.int64)

    def sync(self, pool: PoolArrays) -> None:
        hosts = self.watcher.sync(pool)
        if self.watcher.generation != self._generation:
            self._generation = self.watcher.generation
            self._build(pool)
            hosts = np.arange(pool.n_hosts, dtype=np.int64)
        if hosts.size:
            self._refresh(pool, hosts)

    def _refresh(self, pool: PoolArrays, hosts: I64) -> None:
        lay = self.watcher.layout[hosts]
        valid = lay >= 0
        safe = np.maximum(lay, 0)
        free = np.where(valid & pool.dev_schedulable[safe], pool.dev_compute_free[safe], 0)
        acc = self.acc_model[pool.dev_model[safe]] & valid[:, :, None]
        ge = free[:, :, None] >= self.t_comp[None, None, :]
        self.cnt[hosts] = (ge & acc).sum(axis=1)
        self.small[hosts] = (free[:, :, None] * ~(ge & acc)).sum(axis=1)
        self.total[hosts] = free.sum(axis=1)
        self.host_frag[hosts] = self._frag(
            self.cnt[hosts],
            self.small[hosts],
            self.total[hosts],
            pool.host_cpu_free[hosts],
            pool.host_mem_free[hosts],
        )

    def _frag(self, cnt: I64, small: I64, total: I64, cpu: I64, mem: I64) -> F64:
        """``F`` of hosts from their per-shape statistics (FGD: host memory is ignored)."""
        fits = self.t_gpu & (cnt >= self.t_num) & (cpu[:, None] >= self.t_cpu)
        out: F64 = np.where(fits, small, total[:, None]) @ self.w
        return out

    def after_device(self, pool: PoolArrays, devs: I64, comp: I64, cpu_req: int, mem_req: int = 0) -> F64:
        """``F`` of each device's host after taking ``comp`` from that device (and the
        request's host CPU and memory from its host)."""
        h = pool.dev_host[devs]
        a = pool.dev_compute_free[devs]
        a2 = a - comp
        acc = self.acc_model[pool.dev_model[devs]]
        ge1 = (a[:, None] >= self.t_comp) & acc
        ge2 = (a2[:, None] >= self.t_comp) & acc
        cnt = self.cnt[h] - ge1 + ge2
        small = self.small[h] - a[:, None] * ~ge1 + a2[:, None] * ~ge2
        return self._frag(
            cnt, small, self.total[h] - comp, pool.host_cpu_free[h] - cpu_req, pool.host_mem_free[h] - mem_req
        )

    def after_host(self, pool: PoolArrays, hosts: I64, count: int, cpu_req: int, mem_req: int = 0) -> F64:
        """``F`` of each host after taking ``count`` whole devices, ``cpu_req`` and ``mem_req``."""
        cnt = self.cnt[hosts]
        small = self.small[hosts]
        if count:
            acc = self.acc_host[hosts]
            cnt = cnt - count * acc
            small = small - count * WHOLE * ~acc
        return self._frag(
            cnt,
            small,
            self.total[hosts] - count * WHOLE,
            pool.host_cpu_free[hosts] - cpu_req,
            pool.host_mem_free[hosts] - mem_req,
        )

    def cluster(self) -> float:
        """Total fragmented compute milli of the pool (after ``sync``)."""
        return float(self.host_frag.sum())

    def cluster_of(self, pool: PoolArrays) -> float:
        """``sync`` with ``pool``, then its total fragmented compute milli."""
        self.sync(pool)
        return self.cluster()


def sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


class DeltaCache:
    """``F_before - F_after`` per candidate, cached per request shape; a value is computed
    again only when its host changed since (and only for the candidates asked about)."""

    def __init__(self, model: FragmentationModel, *, max_entries: int = 1024) -> None:
        self.model = model
        self.max_entries = max_entries
        self._cache: dict[tuple[Any, ...], CachedValues] = {}

    def delta(self, request: RequestView, pool: PoolArrays, candidates: Candidates) -> F64:
        model = self.model
        model.sync(pool)
        w = model.watcher
        key = (
            candidates.level,
            request.host_cpu_milli,
            request.host_memory_mib,
            request.compute_milli,
            request.devices,
            request.profile,
        )
        entry = self._cache.get(key)
        if entry is None or entry.generation != w.generation:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            size = pool.n_devices if candidates.level == "device" else pool.n_hosts
            entry = CachedValues.empty(size, w.generation)
            self._cache[key] = entry
        todo = candidates.index[entry.stale(w, candidates.index, candidates.host)]
        if todo.size:
            cpu, mem = int(request.host_cpu_milli), int(request.host_memory_mib)
            if candidates.level == "device":
                # Devices of one host with the same model and free compute score the same:
                # compute each (host, model, free) once (eight fresh GPUs of a host: once).
                group = (
                    pool.dev_host[todo].astype(np.int64) * len(pool.model_keys) + pool.dev_model[todo]
                ) * (WHOLE + 1) + np.clip(pool.dev_compute_free[todo], 0, WHOLE)
                _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
                rep = todo[first]
                comp = _device_compute(request, pool, rep)
                after = model.after_device(pool, rep, comp, cpu, mem)
                entry.values[todo] = (model.host_frag[pool.dev_host[rep]] - after)[inverse]
            else:
                after = model.after_host(pool, todo, candidates.count, cpu, mem)
                entry.values[todo] = model.host_frag[todo] - after
            entry.computed[todo] = w.tick
        out: F64 = entry.values[candidates.index]
        return out


class FGDScore:
    """Fragmentation Gradient Descent: the least growth of expected fragmentation wins."""

    name = "FGD"

    def __init__(self, distribution: ShapeDistribution, *, quantize: bool = False) -> None:
        self.quantize = quantize
        self.distribution = distribution

    @property
    def distribution(self) -> ShapeDistribution:
        return self._distribution

    @distribution.setter
    def distribution(self, value: ShapeDistribution) -> None:
        self._distribution = value
        self.model = FragmentationModel(value)
        self._deltas = DeltaCache(self.model)

    def delta(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates) -> F64:
        """``F_before - F_after`` of every candidate (positive = less fragmented)."""
        return self._deltas.delta(request, pool, candidates)

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        s = 100.0 * sigmoid(self.delta(request=request, pool=pool, candidates=candidates) / WHOLE)
        return np.floor(s) if self.quantize else s


def _device_compute(request: RequestView, pool: PoolArrays, devs: I64) -> I64:
    """The request's compute on each device, rounded up to the device model's granularity."""
    c = int(request.compute_milli)
    steps = {max(int(g), 1) for g in pool.model_granularity} or {1}
    if all(c % g == 0 for g in steps):
        return np.full(devs.shape[0], c, dtype=np.int64)
    gran = np.maximum(np.asarray(pool.model_granularity, dtype=np.int64), 1)
    g = gran[pool.dev_model[devs]]
    out: I64 = np.minimum(-(-c // g) * g, WHOLE)
    return out
