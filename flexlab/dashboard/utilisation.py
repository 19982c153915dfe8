"""Utilisation over time: busy share by vendor and by model, memory in use, cluster total.

Reads the history frames only (the scheduler's one sampler). Busy share is the mean over a
group's devices of the compute their slices use (0-100 %); memory is the share of the
group's device memory in use. The cluster total is drawn thick and dark, the share of
compute held by leases dashed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, CustomJS, HoverTool, Range1d
from bokeh.models.annotations import Legend, LegendItem
from bokeh.models.widgets import Div, RadioButtonGroup
from bokeh.plotting import figure

from flexlab.dashboard.base import Component, Frame, PoolState, TimeTable, devices
from flexlab.dashboard.theme import MUTED, TOTAL, Theme, vendor_label

#: The views: (tag, title, button label).
VIEWS = (
    ("vendor", "Busy share by vendor (%)", "busy by vendor"),
    ("model", "Busy share by device model (%)", "busy by model"),
    ("memory", "Device memory in use by vendor (%)", "memory"),
)
#: Columns: ``busy:<group>:<key>`` and ``mem:<group>:<key>`` in percent, plus the totals.
TOTAL_BUSY, TOTAL_MEM, LEASED = "busy:total", "mem:total", "leased"


def columns_of(frames: Sequence[Frame]) -> dict[str, list[float]]:
    """Percent series per vendor, per model and in total (missing keys read as 0)."""
    vendors = sorted({k for f in frames for k in f.get("by_vendor", {})})
    models = sorted({k for f in frames for k in f.get("by_model", {})})
    out: dict[str, list[float]] = {TOTAL_BUSY: [], TOTAL_MEM: [], LEASED: []}
    for g, keys in (("vendor", vendors), ("model", models)):
        for k in keys:
            out[f"busy:{g}:{k}"] = []
            out[f"mem:{g}:{k}"] = []
    for f in frames:
        busy, used, total = f.get("total", (0.0, 0, 0))
        out[TOTAL_BUSY].append(100.0 * float(busy))
        out[TOTAL_MEM].append(100.0 * float(used) / float(total) if total else 0.0)
        out[LEASED].append(100.0 * float(f.get("leased", 0.0)))
        for g, keys in (("vendor", vendors), ("model", models)):
            table = f.get(f"by_{g}", {})
            for k in keys:
                b, u, t = table.get(k, (0.0, 0, 0))
                out[f"busy:{g}:{k}"].append(100.0 * float(b))
                out[f"mem:{g}:{k}"].append(100.0 * float(u) / float(t) if t else 0.0)
    return out


class UtilisationChart(Component):
    """One chart, three views over one source: busy by vendor, busy by model, memory in use."""

    def __init__(self, theme: Theme | None = None, *, width: int = 560, window: int = 600) -> None:
        self.theme = theme or Theme()
        self.source = ColumnDataSource({"time": []}, name="utilisation")
        self.table = TimeTable(self.source, rollover=window)
        self._lines: set[tuple[str, str]] = set()
        # One figure, three views: busy by vendor, busy by model, memory by vendor. Each line is
        # tagged with its view, and the buttons show one view's lines (and legend entries). Fewer
        # models than three figures, so the page builds faster; Tabs would not do inside a
        # BokehModel widget anyway (they measure their panels as zero-sized there).
        self.figure = figure(
            width=width,
            height=300,
            x_axis_type="datetime",
            y_range=Range1d(start=0, end=100),
            title=VIEWS[0][1],
            tools="xpan,xwheel_zoom,reset",
            toolbar_location=None,
            name="utilisation_figure",
        )
        self.figure.yaxis.axis_label = "%"
        self.legend = Legend(location="top_left", label_text_font_size="10px", spacing=0)
        self.figure.add_layout(self.legend, "right")
        self.figure.add_tools(HoverTool(tooltips=[("", "$name: @$name{0.0} %")], mode="mouse"))
        self.pick = RadioButtonGroup(labels=[v[2] for v in VIEWS], active=0, name="utilisation_view")
        self.pick.js_on_change(
            "active",
            CustomJS(
                args={"fig": self.figure, "legend": self.legend, "views": [v[0] for v in VIEWS],
                      "titles": [v[1] for v in VIEWS]},
                code="""
                const view = views[cb_obj.active];
                for (const r of fig.renderers) { r.visible = r.tags.includes(view); }
                for (const item of legend.items) { item.visible = item.renderers[0].tags.includes(view); }
                fig.title.text = titles[cb_obj.active];
                """,
            ),
        )  # fmt: skip
        self.now = Div(text="", name="utilisation_now", width=width)
        self.root = column(self.pick, self.figure, self.now, name="utilisation_panel")

    def _add_line(
        self, view: str, col: str, label: str, color: str, width: float = 2, dash: str = "solid"
    ) -> None:
        if (view, col) in self._lines:
            return
        self._lines.add((view, col))
        shown = VIEWS[self.pick.active or 0][0] == view  # the browser's choice, synced back to here
        r: Any = self.figure.line(
            "time", col, source=self.source, color=color, line_width=width, line_dash=dash, name=col,
            visible=shown,
        )  # fmt: skip
        r.tags = [view]
        items: Any = self.legend.items
        items.append(LegendItem(label=label, renderers=[r], visible=shown))

    def update(self, state: PoolState, frames: Sequence[Frame]) -> None:
        self.theme.learn_models([(d.vendor, d.model) for _, d in devices(state)])
        vendor_of = {d.model: d.vendor for _, d in devices(state)}
        cols = columns_of(frames)
        self.table.set([float(f["time"]) for f in frames], cols)
        for col in sorted(cols):
            parts = col.split(":", 2)
            if len(parts) != 3:
                continue
            what, group, key = parts
            if group == "vendor":
                tab = "vendor" if what == "busy" else "memory"
                self._add_line(tab, col, vendor_label(key), self.theme.vendor_color(key))
            elif what == "busy":
                color = self.theme.model_color(vendor_of.get(key, "other"), key)
                self._add_line("model", col, key, color)
        for tab in ("vendor", "model"):
            self._add_line(tab, TOTAL_BUSY, "cluster", TOTAL, width=3.5)
        self._add_line("vendor", LEASED, "leased", MUTED, width=2, dash="dashed")
        self._add_line("memory", TOTAL_MEM, "cluster", TOTAL, width=3.5)
        self.now.text = self._now(frames, cols)

    def _now(self, frames: Sequence[Frame], cols: Mapping[str, list[float]]) -> str:
        if not frames:
            return f'<span style="color:{MUTED}">no telemetry yet</span>'
        last = {k: v[-1] for k, v in cols.items() if v}
        vend = " · ".join(
            f"{vendor_label(k.split(':', 2)[2])} {last[k]:.0f}%"
            for k in sorted(last)
            if k.startswith("busy:vendor:")
        )
        return (
            f'<div style="font-size:12px">now: busy <b>{last[TOTAL_BUSY]:.0f}%</b> ({vend}); memory '
            f"{last[TOTAL_MEM]:.0f}%; leased {last[LEASED]:.0f}% of compute</div>"
        )
