"""The queue: what waits, grouped by request class, with the pool's reasons; and arrivals per
class over time beside a forecast.

Waiting work is the plugin's waiting tasks (``state["waiting"]``: key, request, reason) and
the leases still ``pending`` (with their reason). Arrivals come from the history frames
(requests counted per class once a second), binned to ``bin_s`` seconds and drawn as a
rate per minute; a forecast (``{class: [(time, arrivals per second), ...]}``, from the Hi
Scheduler when it lands) is drawn dashed in the same colour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bokeh.core.property.vectorization import field
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, DatetimeTicker, FactorRange, HoverTool, Range1d
from bokeh.models.annotations import Legend, LegendItem
from bokeh.models.widgets import DataTable, Div, TableColumn
from bokeh.plotting import figure

from flexlab.dashboard.base import Component, Frame, PoolState, replace_data
from flexlab.dashboard.classes import grouped, request_group, top_groups
from flexlab.dashboard.theme import MUTED, Theme

#: A forecast: per request class, (time in seconds, expected arrivals per second).
Forecast = Mapping[str, Sequence[tuple[float, float]]]


def waiting_rows(state: PoolState, now: float | None = None) -> list[dict[str, Any]]:
    """One row per distinct (kind, request, owner, reason) of waiting work, largest first."""
    now = time.time() if now is None else now
    acc: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for w in state.waiting:
        k = ("task", w.request, "", w.reason)
        e = acc.setdefault(k, {"count": 0, "since": math.inf})
        e["count"] += 1
    for le in state.pending_leases:
        k = ("lease", le.request, le.owner, le.reason)
        e = acc.setdefault(k, {"count": 0, "since": math.inf})
        e["count"] += 1
        e["since"] = min(e["since"], le.created)
    rows = []
    for (kind, req, owner, reason), e in acc.items():
        age = f"{now - e['since']:.0f} s" if math.isfinite(e["since"]) else ""
        rows.append(
            {
                "kind": kind,
                "request": req,
                "group": request_group(req),
                "owner": owner,
                "count": e["count"],
                "reason": reason,
                "waiting": age,
            }
        )
    rows.sort(key=lambda r: (-r["count"], r["request"], r["kind"]))
    return rows


def arrival_series(
    frames: Sequence[Frame], bin_s: float, groups: Sequence[str]
) -> tuple[list[float], dict[str, list[float]]]:
    """Bin starts (seconds) and arrivals per minute of each group in each bin."""
    if not frames:
        return [], {g: [] for g in groups}
    t0 = math.floor(float(frames[0]["time"]) / bin_s) * bin_s
    # Only whole bins: a frame counts the second before its time, the last bin may be partial.
    n = int((float(frames[-1]["time"]) + 0.5 - t0) // bin_s)
    series = {g: [0.0] * n for g in groups}
    keep = set(groups)
    for f in frames:
        i = int((float(f["time"]) - t0) // bin_s)
        if i >= n:
            break
        for spec, count in (f.get("arrivals") or {}).items():
            g = request_group(str(spec))
            g = g if g in keep else "other"
            if g in series:
                series[g][i] += float(count) * 60.0 / bin_s
    return [t0 + i * bin_s for i in range(n)], series


def forecast_series(forecast: Forecast, groups: Sequence[str]) -> dict[str, tuple[list[float], list[float]]]:
    """Per group: times (s) and expected arrivals per minute, summed over the group's classes
    (classes outside ``groups`` count as ``other`` when it is shown, else are dropped)."""
    keep = set(groups)
    acc: dict[str, dict[float, float]] = {}
    for spec, points in forecast.items():
        g = request_group(spec)
        g = g if g in keep else "other"
        if g not in keep:
            continue
        for t, rate in points:
            acc.setdefault(g, {})[float(t)] = acc.get(g, {}).get(float(t), 0.0) + 60.0 * float(rate)
    return {g: (sorted(v), [v[t] for t in sorted(v)]) for g, v in acc.items()}


class QueuePanel(Component):
    """Waiting work by class with reasons; arrivals per class (and a forecast) over time."""

    TABLE_COLUMNS = ("kind", "request", "group", "owner", "count", "reason", "waiting")

    def __init__(self, theme: Theme | None = None, *, width: int = 690, bin_s: float = 10.0) -> None:
        self.theme = theme or Theme()
        self.bin_s = bin_s
        self.source = ColumnDataSource({k: [] for k in self.TABLE_COLUMNS}, name="queue_waiting")
        self.bars = ColumnDataSource(
            {"group": [], "tasks": [], "leases": [], "total": [], "reason": []}, name="queue_bars"
        )
        self.arrivals = ColumnDataSource(
            {"xs": [], "ys": [], "color": [], "label": []}, name="queue_arrivals"
        )
        self.forecasts = ColumnDataSource(
            {"xs": [], "ys": [], "color": [], "label": []}, name="queue_forecast"
        )
        self._groups = FactorRange()
        self._bars_x = Range1d(start=0, end=1)
        bars = figure(
            y_range=self._groups,
            x_range=self._bars_x,
            width=width // 2 - 10,
            height=230,
            title="Waiting now, by request class",
            tools="",
            toolbar_location=None,
        )
        tasks: Any = bars.hbar(
            y="group", left=0, right="tasks", height=0.7, source=self.bars, color="#5c6bc0"
        )
        leases: Any = bars.hbar(
            y="group", left="tasks", right="total", height=0.7, source=self.bars, color="#ef6c00"
        )
        self._bars_legend = Legend(
            items=[
                LegendItem(label="tasks", renderers=[tasks]),
                LegendItem(label="leases", renderers=[leases]),
            ],
            orientation="horizontal",
            label_text_font_size="10px",
            visible=False,
        )
        bars.add_layout(self._bars_legend, "above")
        bars.add_tools(HoverTool(tooltips=[("class", "@group"), ("waiting", "@total"), ("why", "@reason")]))
        self.bars_figure = bars
        self._arrivals_y = Range1d(start=0, end=10)
        arr = figure(
            y_range=self._arrivals_y,
            width=width - width // 2,
            height=230,
            x_axis_type="datetime",
            title="Arrivals per class (per minute): actual solid, forecast dashed",
            tools="",
            toolbar_location=None,
        )
        actual: Any = arr.multi_line("xs", "ys", color="color", line_width=2, source=self.arrivals)
        arr.multi_line("xs", "ys", color="color", line_dash="dashed", line_width=2, source=self.forecasts)
        arr.xaxis[0].ticker = DatetimeTicker(desired_num_ticks=4)
        legend = Legend(
            items=[LegendItem(label=field("label"), renderers=[actual])],
            label_text_font_size="10px",
            spacing=0,
        )
        arr.add_layout(legend, "right")
        self.arrivals_figure = arr
        table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field="kind", title="", width=45),
                TableColumn(field="request", title="request", width=150),
                TableColumn(field="owner", title="owner", width=60),
                TableColumn(field="count", title="n", width=30),
                TableColumn(field="waiting", title="for", width=45),
                TableColumn(field="reason", title="why it waits", width=420),
            ],
            width=width,
            height=150,
            index_position=None,
            name="queue_table",
        )
        self.summary = Div(text="", name="queue_summary", width=width)
        self.root = column(self.summary, row(bars, arr), table, name="queue_panel")

    def update(self, state: PoolState, frames: Sequence[Frame], forecast: Forecast | None = None) -> None:
        rows = waiting_rows(state, now=state.time)
        replace_data(self.source, {k: [r[k] for r in rows] for k in self.TABLE_COLUMNS})
        by_group: dict[str, dict[str, Any]] = {}
        for r in rows:
            e = by_group.setdefault(r["group"], {"tasks": 0, "leases": 0, "reason": r["reason"]})
            e["tasks" if r["kind"] == "task" else "leases"] += r["count"]
        order = sorted(by_group, key=lambda g: (by_group[g]["tasks"] + by_group[g]["leases"], g))
        self._groups.factors = order
        self._bars_legend.visible = bool(order)
        totals = [by_group[g]["tasks"] + by_group[g]["leases"] for g in order]
        self._bars_x.end = max([1, *totals]) * 1.1
        replace_data(
            self.bars,
            {
                "group": order,
                "tasks": [by_group[g]["tasks"] for g in order],
                "leases": [by_group[g]["leases"] for g in order],
                "total": [by_group[g]["tasks"] + by_group[g]["leases"] for g in order],
                "reason": [by_group[g]["reason"][:160] for g in order],
            },
        )
        self._arrivals(frames, forecast if forecast is not None else state.forecast)
        n_tasks = sum(r["count"] for r in rows if r["kind"] == "task")
        n_leases = sum(r["count"] for r in rows if r["kind"] == "lease")
        self.summary.text = (
            f'<div style="font-size:13px"><b>{n_tasks}</b> tasks and <b>{n_leases}</b> leases waiting'
            + (f' <span style="color:{MUTED}">(nothing waits)</span>' if not rows else "")
            + "</div>"
        )

    def _arrivals(self, frames: Sequence[Frame], forecast: Forecast | None) -> None:
        counts = grouped((str(k), float(v)) for f in frames for k, v in (f.get("arrivals") or {}).items())
        for spec, pts in (forecast or {}).items():  # forecast volume counts for the ranking too
            g = request_group(spec)
            counts[g] = counts.get(g, 0.0) + sum(v for _, v in pts)
        groups = top_groups(counts)
        starts, series = arrival_series(frames, self.bin_s, groups)
        top = max([v for g in groups for v in series[g]] or [0.0])
        xs = [[1000.0 * t for t in starts]] * len(groups)
        replace_data(
            self.arrivals,
            {
                "xs": xs,
                "ys": [series[g] for g in groups],
                "color": [self.theme.class_color(g) for g in groups],
                "label": groups,
            },
        )
        fc = forecast_series(forecast or {}, groups)
        replace_data(
            self.forecasts,
            {
                "xs": [[1000.0 * t for t in fc[g][0]] for g in fc],
                "ys": [fc[g][1] for g in fc],
                "color": [self.theme.class_color(g) for g in fc],
                "label": list(fc),
            },
        )
        top = max([top, *(v for g in fc for v in fc[g][1])])
        self._arrivals_y.end = max(1.0, top * 1.15)
