"""Speed factors of mock devices per (workload class, catalog model), relative to a reference.

The default factor of a model is its catalog dense FP16 peak divided by the reference's
(the NVIDIA V100S PCIe 32GB, 130 TFLOP/s, = 1.0). A model whose peak is not published
(Huawei's Ascend 910B/910C SKUs, the openb trace's undisclosed G1-G3) gets
``FALLBACK_SPEED`` = 1.0, the reference's own speed: no third-party figure is used and no
flattering guess is made. Override a factor for a class, or for every class with ``"*"``,
when you have a measurement.

Peak FP16 is a compute-bound yardstick: it overstates newer devices' lead on memory-bound
work (an H100 is 7.6x a V100S here, about 3x by bandwidth). Nothing is tuned to a benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from flexlab.core.catalog import CATALOG, get_model
from flexlab.core.errors import InvalidRequest

#: The device whose speed is 1.0; ``work`` is measured in its device-seconds.
REFERENCE_MODEL = "v100s-32gb"
#: Speed factor of a model with no published peak FP16 figure (Ascend 910B/910C, openb G1-G3).
FALLBACK_SPEED = 1.0
#: Workload classes the helpers use; any non-empty class name is accepted.
WORKLOAD_CLASSES = ("kernel", "inference", "training")
#: Override key standing for every workload class of a model.
ANY_CLASS = "*"


@dataclass(frozen=True)
class SpeedRow:
    """One model's factor in a :class:`SpeedTable` and where it comes from."""

    model_key: str
    workload_class: str
    factor: float
    #: "override", "peak-fp16" or "fallback".
    basis: str


@dataclass(frozen=True)
class SpeedTable:
    """Speed factors per (workload class, catalog model), relative to ``reference``.

    >>> table = SpeedTable.of({("inference", "t4"): 0.4})
    >>> table.factor("t4", "inference"), table.factor("t4", "training")
    (0.4, 0.5)
    """

    #: ``(workload_class, model_key, factor)``; class ``"*"`` = every class.
    overrides: tuple[tuple[str, str, float], ...] = ()
    reference: str = REFERENCE_MODEL
    fallback: float = FALLBACK_SPEED

    def __post_init__(self) -> None:
        ref = get_model(self.reference)
        if ref.peak_tflops_fp16 is None:
            raise InvalidRequest("reference", self.reference, "a catalog model with a peak FP16 figure")
        if not (math.isfinite(self.fallback) and self.fallback > 0):
            raise InvalidRequest("fallback", self.fallback, "a finite factor > 0")
        seen: dict[tuple[str, str], float] = {}
        for cls, model, factor in self.overrides:
            if not cls:
                raise InvalidRequest("workload class", cls, "a non-empty name or '*'")
            if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
                raise InvalidRequest(f"speed of {model} ({cls})", factor, "a finite factor > 0")
            seen[(cls, get_model(model).key)] = float(factor)
        object.__setattr__(self, "reference", ref.key)
        object.__setattr__(self, "overrides", tuple((c, m, f) for (c, m), f in sorted(seen.items())))

    @classmethod
    def of(
        cls, overrides: Mapping[tuple[str, str], float], *, reference: str = REFERENCE_MODEL
    ) -> SpeedTable:
        """A table from ``{(workload_class, model): factor}``; later keys win."""
        return cls(tuple((c, m, f) for (c, m), f in overrides.items()), reference=reference)

    def with_overrides(self, overrides: Mapping[tuple[str, str], float]) -> SpeedTable:
        """This table with more overrides on top."""
        more = tuple((c, m, f) for (c, m), f in overrides.items())
        return replace(self, overrides=self.overrides + more)

    def default_factor(self, model_key: str) -> float:
        """The catalog-derived factor: peak FP16 over the reference's, or the fallback."""
        peak = get_model(model_key).peak_tflops_fp16
        ref_peak = get_model(self.reference).peak_tflops_fp16
        if peak is None or ref_peak is None:
            return self.fallback
        return peak / ref_peak

    def factor(self, model_key: str, workload_class: str = "kernel") -> float:
        """``v`` for a workload class on a model."""
        return self.row(model_key, workload_class).factor

    def row(self, model_key: str, workload_class: str = "kernel") -> SpeedRow:
        """The factor with its basis (override, peak-fp16 or fallback)."""
        model = get_model(model_key)
        found: dict[str, float] = {c: f for c, m, f in self.overrides if m == model.key}
        for cls in (workload_class, ANY_CLASS):
            if cls in found:
                return SpeedRow(model.key, workload_class, found[cls], "override")
        basis = "fallback" if model.peak_tflops_fp16 is None else "peak-fp16"
        return SpeedRow(model.key, workload_class, self.default_factor(model.key), basis)

    def rows(self, workload_class: str = "kernel") -> tuple[SpeedRow, ...]:
        """Every catalog model's factor for one workload class (for docs and dashboards)."""
        return tuple(self.row(key, workload_class) for key in CATALOG)


DEFAULT_SPEEDS = SpeedTable()
