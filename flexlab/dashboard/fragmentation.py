"""Fragmentation: idle compute that the requests the pool actually sees cannot use.

Definitions (all compute in milli-devices; 1000 = one device):

* **Holes.** Idle capacity comes in holes: on each device, the compute not carved into any
  slice (on a MIG/vNPU device: only while a profile is still free), and in each *shared*
  slice, its headroom (compute minus what bound tasks reserved; memory minus memory in
  use). Idle compute inside a lease belongs to its owner and is not counted here (the
  leases panel shows it).
* **Common shapes.** The request classes that arrived in the last ``window_s`` seconds,
  most frequent first, until they cover 95% of the arrivals (FGD's "typical pods"), plus
  every class that waits now; weighted by their counts. CPU-only requests are left out.
* A shape **fits** a hole when its selector accepts the device's model and the hole has the
  compute and memory it needs (memory not stated = the same share of the device's memory),
  or, for a profile request (``1g.10gb``, ``vir05_1c_16g``), when the profile is free on
  the device or the hole is an idle shared slice of that profile. A request for several
  devices needs a whole device per hole.
* **Stranded compute**: the sum of holes that no common shape fits. This is the
  fragmentation the dashboard headlines: capacity that is idle but useless to the current
  demand.
* **Expected fragment** (FGD, Weng et al. ATC'23): ``sum_t w_t * sum of holes t does not
  fit``: what the next request, drawn from the common shapes, would find unusable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.models.widgets import Div
from bokeh.plotting import figure

from flexlab.core.catalog import CATALOG
from flexlab.dashboard.base import Component, Frame, PoolState, devices, replace_data
from flexlab.dashboard.classes import parsed
from flexlab.dashboard.theme import MUTED, Theme


@dataclass
class Holes:
    """Idle capacity per hole, as parallel arrays."""

    model: list[str] = field(default_factory=list)
    compute: list[int] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)
    device_memory: list[int] = field(default_factory=list)
    #: "free" (not carved) or "headroom" (inside a shared slice).
    kind: list[str] = field(default_factory=list)
    profile_device: list[bool] = field(default_factory=list)
    #: free: the free profiles of the device; headroom: the slice's profile if it is idle.
    profiles: list[frozenset[str]] = field(default_factory=list)

    def add(
        self,
        model: str,
        compute: int,
        memory: int,
        devmem: int,
        kind: str,
        prof: bool,
        profiles: frozenset[str],
    ) -> None:
        self.model.append(model)
        self.compute.append(compute)
        self.memory.append(memory)
        self.device_memory.append(devmem)
        self.kind.append(kind)
        self.profile_device.append(prof)
        self.profiles.append(profiles)


def holes(state: PoolState) -> Holes:
    """The idle holes of a pool state (see the module docstring)."""
    out = Holes()
    for _, d in devices(state):
        if not d.schedulable:
            continue
        model, devmem = d.model, d.memory_mib
        prof = d.mode == "profile"
        free_profiles = frozenset(d.free_profiles)
        free_c = d.free_compute_milli
        if prof and not free_profiles:
            free_c = 0  # rounding residue of a fully carved profile layout, not capacity
        if free_c > 0:
            out.add(model, free_c, d.free_memory_mib, devmem, "free", prof, free_profiles)
        for s in d.slices:
            if s.owner or s.lease_id or s.state not in ("ready", "starting"):
                continue
            head = max(0, s.compute_milli - max(0, s.load_milli))
            if head <= 0:
                continue
            mem = max(0, s.memory_mib - s.memory_used_mib)
            idle = s.tasks == 0 and s.profile
            out.add(
                model,
                head,
                mem,
                devmem,
                "headroom",
                prof,
                frozenset([s.profile]) if idle and s.profile else frozenset(),
            )
    return out


def common_shapes(
    state: PoolState, frames: Sequence[Frame], *, window_s: float = 300.0, coverage: float = 0.95
) -> list[tuple[str, float]]:
    """(request text, weight) of the common accelerator shapes; weights sum to 1."""
    now = max((float(f["time"]) for f in frames), default=state.time)
    counts: Counter[str] = Counter()
    for f in frames:
        if float(f["time"]) >= now - window_s:
            for k, v in (f.get("arrivals") or {}).items():
                req = parsed(str(k))
                if req is not None and not req.is_cpu_only:
                    counts[str(k)] += int(v)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values())
    kept: dict[str, float] = {}
    cum = 0
    for spec, n in ranked:
        if cum >= coverage * total:
            break
        kept[spec] = float(n)
        cum += n
    for w in state.waiting:
        kept.setdefault(w.request, 1.0)
    for le in state.pending_leases:
        kept.setdefault(le.request, 1.0)
    usable: dict[str, float] = {}
    for spec, weight in kept.items():
        r = parsed(spec)
        if r is not None and not r.is_cpu_only:
            usable[spec] = weight
    z = sum(usable.values())
    return [(s, n / z) for s, n in sorted(usable.items(), key=lambda kv: (-kv[1], kv[0]))] if z else []


def fit_matrix(h: Holes, shapes: Sequence[str]) -> np.ndarray:
    """Boolean (shapes x holes): does shape t fit hole h."""
    n = len(h.compute)
    out = np.zeros((len(shapes), n), dtype=bool)
    if n == 0:
        return out
    comp = np.asarray(h.compute, dtype=np.int64)
    mem = np.asarray(h.memory, dtype=np.int64)
    devmem = np.asarray(h.device_memory, dtype=np.int64)
    free_on_profile = np.asarray(h.profile_device) & (np.asarray(h.kind) == "free")
    models = sorted(set(h.model))
    model_idx = np.asarray([models.index(m) for m in h.model])
    for t, spec in enumerate(shapes):
        req = parsed(spec)
        if req is None or req.is_cpu_only:
            continue
        sel = np.asarray([m in CATALOG and req.selector.matches(CATALOG[m]) for m in models])[model_idx]
        if req.profile is not None:
            has = np.asarray([req.profile in p for p in h.profiles])
            out[t] = sel & has
            continue
        need_c = 1000 if req.devices > 1 else int(req.compute_milli)
        need_m: np.ndarray = np.full(n, req.memory_mib) if req.memory_mib else need_c * devmem // 1000
        out[t] = sel & (comp >= need_c) & (mem >= need_m) & ~free_on_profile
    return out


@dataclass(frozen=True)
class Fragmentation:
    """Idle, stranded and expected-fragment compute (milli), in total and per model."""

    idle: int
    stranded: int
    expected: float
    per_model: dict[str, tuple[int, int]]
    shapes: list[tuple[str, float]]


def measure(state: PoolState, frames: Sequence[Frame], *, window_s: float = 300.0) -> Fragmentation:
    h = holes(state)
    shapes = common_shapes(state, frames, window_s=window_s)
    comp = np.asarray(h.compute, dtype=np.int64)
    per_model: dict[str, tuple[int, int]] = {}
    if not shapes:
        for m, c in zip(h.model, h.compute, strict=True):
            per_model[m] = (per_model.get(m, (0, 0))[0] + c, 0)
        return Fragmentation(int(comp.sum()), 0, 0.0, per_model, [])
    fit = fit_matrix(h, [s for s, _ in shapes])
    w = np.asarray([x for _, x in shapes])
    stranded = np.logical_not(fit.any(axis=0))
    expected = float(w @ ((~fit) * comp[None, :]).sum(axis=1))
    flags = [bool(x) for x in np.atleast_1d(stranded)]
    for m, c, s in zip(h.model, h.compute, flags, strict=True):
        i, st = per_model.get(m, (0, 0))
        per_model[m] = (i + c, st + (c if s else 0))
    return Fragmentation(int(comp.sum()), int(comp[stranded].sum()), expected, per_model, shapes)


class FragmentationPanel(Component):
    """Idle compute per model, split into usable and stranded, with the shapes used."""

    def __init__(self, theme: Theme | None = None, *, width: int = 560, window_s: float = 300.0) -> None:
        self.theme = theme or Theme()
        self.window_s = window_s
        self.last: Fragmentation | None = None
        self.source = ColumnDataSource(
            {"model": [], "usable": [], "stranded": [], "idle": [], "color": []}, name="fragmentation"
        )
        self._models_y = FactorRange()
        self._idle_x = Range1d(start=0, end=1)
        fig = figure(
            y_range=self._models_y,
            x_range=self._idle_x,
            width=width,
            height=200,
            title="Idle compute by model (device-equivalents): usable vs stranded",
            tools="",
            toolbar_location=None,
        )
        fig.hbar(y="model", left=0, right="usable", height=0.7, color="color", alpha=0.55, source=self.source,
                 legend_label="usable by a common request")  # fmt: skip
        fig.hbar(y="model", left="usable", right="idle", height=0.7, color="#d32f2f", hatch_pattern="x",
                 hatch_color="white", source=self.source, legend_label="stranded")  # fmt: skip
        fig.legend.location = "bottom_right"
        fig.legend.label_text_font_size = "10px"
        fig.add_tools(
            HoverTool(
                tooltips=[("model", "@model"), ("idle", "@idle{0.00}"), ("stranded", "@stranded{0.00}")]
            )
        )
        self.figure = fig
        self.summary = Div(text="", name="fragmentation_summary", width=width)
        self.root = column(self.summary, fig, name="fragmentation_panel")

    def update(self, state: PoolState, frames: Sequence[Frame]) -> None:
        f = self.last = measure(state, frames, window_s=self.window_s)
        vendor = {d.model: d.vendor for _, d in devices(state)}
        models = sorted(f.per_model, key=lambda m: (f.per_model[m][0], m))
        self._models_y.factors = models
        self._idle_x.end = 1.15 * max([f.per_model[m][0] / 1000 for m in models] or [1.0]) or 1.0
        replace_data(
            self.source,
            {
                "model": models,
                "usable": [(f.per_model[m][0] - f.per_model[m][1]) / 1000 for m in models],
                "stranded": [f.per_model[m][1] / 1000 for m in models],
                "idle": [f.per_model[m][0] / 1000 for m in models],
                "color": [self.theme.model_color(vendor.get(m, "other"), m) for m in models],
            },
        )
        share = 100 * f.stranded / f.idle if f.idle else 0.0
        top = ", ".join(f"{s} ({100 * w:.0f}%)" for s, w in f.shapes[:4])
        more = f" and {len(f.shapes) - 4} more" if len(f.shapes) > 4 else ""
        basis = (
            f"against {len(f.shapes)} common request shapes: {top}{more}"
            if f.shapes
            else "no accelerator requests in the last few minutes: nothing to measure against"
        )
        self.summary.text = (
            f'<div style="font-size:13px">Stranded: <b>{f.stranded / 1000:.2f}</b> device-equivalents '
            f"(<b>{share:.0f}%</b> of {f.idle / 1000:.2f} idle); expected fragment (FGD) "
            f'{f.expected / 1000:.2f}.<br><span style="color:{MUTED};font-size:11px">Idle = uncarved '
            f"compute + headroom of shared slices; stranded = idle holes no common request fits, {basis}."
            "</span></div>"
        )
