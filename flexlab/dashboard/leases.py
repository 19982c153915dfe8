"""Leases by user: how much of the pool each owner holds, how much of it is busy, and the
leases themselves (state, where, utilisation, time left).

A lease's size is its slice's compute in device-equivalents (``compute_milli / 1000`` per
device it spans). Its busy part is that size times the slice's utilisation; the rest is
held but idle, which is what TTL reclaim is for.
"""

from __future__ import annotations

from collections.abc import Sequence

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.models.widgets import DataTable, Div, TableColumn
from bokeh.plotting import figure

from flexlab.core.poolstate import LeaseView
from flexlab.dashboard.base import Component, Frame, PoolState, replace_data
from flexlab.dashboard.theme import MUTED, Theme


def _size(le: LeaseView) -> float:
    return (le.compute_milli or 0) / 1000.0 * max(1, len(le.devices))


def _left(seconds: float) -> str:
    """``1h05m``, ``12m``, ``95s``: seconds only in the last two minutes, so the table does not
    change every second for every lease."""
    s = int(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    if h:
        return f"{h}h{rem // 60:02d}m"
    return f"{rem // 60}m" if s >= 120 else f"{s}s"


def by_owner(leases: Sequence[LeaseView]) -> dict[str, dict[str, float]]:
    """Per owner: active and pending lease counts, held and busy device-equivalents, memory."""
    out: dict[str, dict[str, float]] = {}
    for le in leases:
        e = out.setdefault(le.owner, {"active": 0, "pending": 0, "held": 0.0, "busy": 0.0, "memory_gib": 0.0})
        if le.state == "pending":
            e["pending"] += 1
            continue
        e["active"] += 1
        size = _size(le)
        e["held"] += size
        e["busy"] += size * le.utilisation
        e["memory_gib"] += (le.memory_mib or 0) / 1024.0
    return out


class LeasesPanel(Component):
    """Bars per owner (busy and idle share of what they hold) and the table of leases."""

    TABLE_COLUMNS = ("lease_id", "owner", "request", "state", "where", "util", "ttl_left", "reason")

    def __init__(self, theme: Theme | None = None, *, width: int = 560, max_rows: int = 100) -> None:
        self.theme = theme or Theme()
        self.max_rows = max_rows
        self.source = ColumnDataSource({k: [] for k in self.TABLE_COLUMNS}, name="leases")
        self.owners = ColumnDataSource(
            {"owner": [], "busy": [], "held": [], "color": [], "text": []}, name="leases_by_owner"
        )
        self._owners_y = FactorRange()
        self._held_x = Range1d(start=0, end=1)
        fig = figure(
            y_range=self._owners_y,
            x_range=self._held_x,
            width=width,
            height=170,
            title="Leases by user: device-equivalents held (dark = busy, light = idle)",
            tools="",
            toolbar_location=None,
        )
        fig.hbar(y="owner", left=0, right="held", height=0.7, color="color", alpha=0.3, source=self.owners)
        fig.hbar(y="owner", left=0, right="busy", height=0.7, color="color", alpha=0.95, source=self.owners)
        fig.text(x="held", y="owner", text="text", source=self.owners, x_offset=4, text_font_size="10px",
                 text_baseline="middle", text_color=MUTED)  # fmt: skip
        fig.add_tools(
            HoverTool(tooltips=[("owner", "@owner"), ("held", "@held{0.00}"), ("busy", "@busy{0.00}")])
        )
        self.figure = fig
        table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field="lease_id", title="lease", width=45),
                TableColumn(field="owner", title="owner", width=60),
                TableColumn(field="request", title="request", width=120),
                TableColumn(field="state", title="state", width=60),
                TableColumn(field="where", title="where", width=170),
                TableColumn(field="util", title="busy", width=45),
                TableColumn(field="ttl_left", title="TTL left", width=60),
            ],
            width=width,
            height=150,
            index_position=None,
            name="leases_table",
        )
        self.summary = Div(text="", name="leases_summary", width=width)
        self.root = column(self.summary, fig, table, name="leases_panel")

    def update(self, state: PoolState, frames: Sequence[Frame] = ()) -> None:
        leases = sorted(state.leases, key=lambda le: (le.state != "pending", le.owner, le.lease_id))
        rows = []
        for le in leases[: self.max_rows]:  # waiting ones first
            where = ""
            if le.devices:
                what = le.profile or f"{(le.compute_milli or 0) / 10:.0f}%"
                where = f"{what} of {', '.join(le.devices)}"
            rows.append(
                {
                    "lease_id": le.lease_id,
                    "owner": le.owner,
                    "request": le.request,
                    "state": le.state,
                    "where": where,
                    "util": f"{100 * le.utilisation:.0f}%" if where else "",
                    "ttl_left": _left(le.ttl_left_s),
                    "reason": le.reason,
                }
            )
        replace_data(self.source, {k: [r[k] for r in rows] for k in self.TABLE_COLUMNS})
        owners = by_owner(leases)
        names = sorted(owners, key=lambda o: (owners[o]["held"], o))
        self._owners_y.factors = names
        self._held_x.end = 1.3 * max([owners[o]["held"] for o in names] or [1.0]) or 1.0
        replace_data(
            self.owners,
            {
                "owner": names,
                "busy": [owners[o]["busy"] for o in names],
                "held": [owners[o]["held"] for o in names],
                "color": [self.theme.owner_color(o) for o in names],
                "text": [
                    f"{owners[o]['active']:.0f} active"
                    + (f", {owners[o]['pending']:.0f} waiting" if owners[o]["pending"] else "")
                    for o in names
                ],
            },
        )
        held = sum(e["held"] for e in owners.values())
        busy = sum(e["busy"] for e in owners.values())
        self.summary.text = (
            f'<div style="font-size:13px"><b>{len(leases)}</b> leases by <b>{len(owners)}</b> users hold '
            f"<b>{held:.2f}</b> device-equivalents, {100 * busy / held if held else 0:.0f}% of it busy"
            + (f" (table: the first {self.max_rows})" if len(leases) > self.max_rows else "")
            + "</div>"
        )
