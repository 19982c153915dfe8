"""flexlab's default score: stranding-aware fragmentation with model reservation.

FGD (``fragmentation.py``) asks, for each expected request shape, "could one more of these
fit on this host?". Two things it does not see decide most of what it loses on the openb
trace, and this score adds them:

1. **Stranding by CPU and memory, several requests ahead.** A host with 8 free GPUs and
   20 free cores can feed one more 11-core GPU request, not eight: the other seven GPUs
   are stranded even though FGD counts them usable. For each shape ``t`` the usable
   accelerator compute is capped by what the host's CPU and memory can feed,
   ``k_t * compute_t * devices_t`` with ``k_t = min(cpu // cpu_t, mem // mem_t)``. The
   cap enters with weight ``stranding`` (0.1 by default: as a strong tie-breaker between
   placements FGD finds equal, not as a rival objective; larger weights over-react to
   shapes that may never come). Shapes carry the mean host memory of their requests.
2. **Scarce models.** A request that may run on any model should leave alone the models
   that model-constrained requests (openb's ``gpu_spec``) depend on. Each constrained
   shape ``t`` (accelerator demand share ``d_t``, allowed models ``A_t``) puts pressure
   ``d_t * free_total / free(A_t)`` on every model of ``A_t``; taking ``c`` milli from a
   model costs ``reservation * pressure * c``. The pressure rises as the model fills.

The score is ``100 * sigmoid(delta / 1000)`` of ``delta = F_before - F_after - cost``, in
milli of fragmented accelerator compute: higher is better, no integer rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.fragmentation import (
    DeltaCache,
    FragmentationModel,
    ShapeDistribution,
    sigmoid,
)
from flexlab.core.placement.framework import Candidates
from flexlab.core.placement.request_view import RequestView
from flexlab.core.snapshot import WHOLE, PoolArrays

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Stands for "no limit" in per-shape copy counts.
_UNLIMITED = 1 << 40


class StrandingModel(FragmentationModel):
    """FGD's fragmentation over accelerator shapes, with usable compute capped by what the
    host's free CPU and memory can feed (weight ``stranding``)."""

    def __init__(self, distribution: ShapeDistribution, *, stranding: float = 0.1) -> None:
        super().__init__(distribution.accelerator_only())
        self.stranding = stranding
        self._need = self.t_comp * self.t_num
        self._cpu_div = np.maximum(self.t_cpu, 1)
        self._mem_div = np.maximum(self.t_mem, 1)
        self._cpu_free_shapes = self.t_cpu <= 0
        self._mem_free_shapes = self.t_mem <= 0
        self._w_sum = float(self.w.sum())
        self._w_next = (1.0 - stranding) * self.w
        self._w_fed = stranding * self.w

    def _frag(self, cnt: I64, small: I64, total: I64, cpu: I64, mem: I64) -> F64:
        # usable_t = (1 - s) * next_fits_t + s * fed_t;  F = sum_t w_t (total - usable_t)
        gpu_ok = np.where(cnt >= self.t_num, total[:, None] - small, 0)
        k = np.minimum(cpu[:, None] // self._cpu_div, mem[:, None] // self._mem_div)
        if self._cpu_free_shapes.any() or self._mem_free_shapes.any():
            k_cpu = np.where(self._cpu_free_shapes, _UNLIMITED, cpu[:, None] // self._cpu_div)
            k_mem = np.where(self._mem_free_shapes, _UNLIMITED, mem[:, None] // self._mem_div)
            k = np.minimum(k_cpu, k_mem)
        next_fits = np.where(k >= 1, gpu_ok, 0)
        fed = np.minimum(gpu_ok, k * self._need)
        out: F64 = total * self._w_sum - next_fits @ self._w_next - fed @ self._w_fed
        return out


class ModelPressure:
    """How much model-constrained demand leans on each model, relative to its free share."""

    def __init__(self, distribution: ShapeDistribution) -> None:
        acc = distribution.accelerator_only()
        demand = np.array(
            [w * s.compute_milli * s.devices for s, w in zip(acc.shapes, acc.weights, strict=True)]
        )
        self._share = demand / demand.sum() if demand.size and demand.sum() > 0 else demand
        self._constrained = [t for t, s in enumerate(acc.shapes) if s.models]
        self._shapes = acc.shapes
        self._keys: list[str] | None = None
        self._allowed: F64 = np.zeros((0, 0))

    @property
    def active(self) -> bool:
        return bool(self._constrained)

    def pressure(self, pool: PoolArrays) -> F64:
        """Pressure per model index of ``pool`` (0 where nothing constrained needs it)."""
        n_models = len(pool.model_keys)
        if not self._constrained:
            return np.zeros(n_models)
        if self._keys != pool.model_keys:
            self._keys = list(pool.model_keys)
            self._allowed = np.array(
                [[k in self._shapes[t].models for k in pool.model_keys] for t in self._constrained],
                dtype=np.float64,
            ).reshape(len(self._constrained), n_models)
        free = np.where(pool.dev_schedulable, pool.dev_compute_free, 0)
        free_m = np.bincount(pool.dev_model, weights=free, minlength=n_models).astype(np.float64)
        reach = self._allowed @ free_m
        share = self._share[self._constrained]
        ratio = np.where(reach > 0, share * free_m.sum() / np.maximum(reach, 1.0), 0.0)
        out: F64 = ratio @ self._allowed
        return out


class FlexlabScore:
    """flexlab's default: stranding-aware fragmentation descent with model reservation."""

    name = "Flexlab"

    def __init__(
        self, distribution: ShapeDistribution, *, stranding: float = 0.1, reservation: float = 0.5
    ) -> None:
        self.stranding = stranding
        self.reservation = reservation
        self.distribution = distribution

    @property
    def distribution(self) -> ShapeDistribution:
        return self._distribution

    @distribution.setter
    def distribution(self, value: ShapeDistribution) -> None:
        self._distribution = value
        self.model = StrandingModel(value, stranding=self.stranding)
        self._deltas = DeltaCache(self.model)
        self._pressure = ModelPressure(value)

    def delta(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates) -> F64:
        """Fragmentation avoided minus reservation cost, in milli (higher is better)."""
        d = self._deltas.delta(request, pool, candidates)
        if self.reservation and self._pressure.active and request.compute_milli > 0 and len(candidates):
            pi = self._pressure.pressure(pool)
            if candidates.level == "device":
                model = pool.dev_model[candidates.index]
            else:
                model = pool.dev_model[np.minimum(pool.host_dev_start[candidates.index], pool.n_devices - 1)]
            taken = float(request.compute_milli * max(request.devices, 1))
            d = d - self.reservation * pi[model] * taken
        return d

    def score(self, *, request: RequestView, pool: PoolArrays, candidates: Candidates, **kwargs: Any) -> F64:
        out: F64 = 100.0 * sigmoid(self.delta(request=request, pool=pool, candidates=candidates) / WHOLE)
        return out
