"""The event log: what the pool did and why (placements, re-slices, preemptions, failures,
leases), newest first.

Events come from ``state["events"]`` (the plugin's last 50), are kept by sequence number
(up to ``keep``), and repeats of one message (a lease that waits logs its reason every
second) are folded into one row with a count and the time of the latest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bokeh.layouts import column
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable, Div, HTMLTemplateFormatter, TableColumn

from flexlab.core.poolstate import PoolEvent
from flexlab.dashboard.base import Component, Frame, PoolState, replace_data
from flexlab.dashboard.theme import CATEGORY_COLORS, MUTED, event_category

_CHIP = (
    '<span style="background:<%= color %>;color:white;padding:1px 6px;border-radius:3px;'
    'font-size:11px"><%= value %></span>'
)


def fold(events: Sequence[PoolEvent]) -> list[dict[str, Any]]:
    """Rows of (kind, message) with their count, newest first."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e.seq):
        key = (e.kind, e.message)
        r = rows.get(key)
        if r is None:
            rows[key] = r = {"count": 0, "first": e.time, "event": e}
        r["count"] += 1
        r["last"] = e.time
        r["event"] = e
    return sorted(rows.values(), key=lambda r: (-r["last"], -r["event"].seq))


class EventLog(Component):
    """A table of folded events with a category chip, and counts per category."""

    TABLE_COLUMNS = ("time", "category", "color", "kind", "message", "owner", "where", "decision")

    def __init__(self, *, width: int = 1400, keep: int = 500, rows: int = 200) -> None:
        self.keep = keep
        self.rows = rows
        self._events: dict[int, PoolEvent] = {}
        self.source = ColumnDataSource({k: [] for k in self.TABLE_COLUMNS}, name="events")
        table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field="time", title="time", width=70),
                TableColumn(
                    field="category", title="what", width=85, formatter=HTMLTemplateFormatter(template=_CHIP)
                ),
                TableColumn(field="message", title="event and reason", width=780),
                TableColumn(field="owner", title="owner", width=70),
                TableColumn(field="where", title="where", width=220),
                TableColumn(field="decision", title="decision id", width=130),
            ],
            width=width,
            height=230,
            index_position=None,
            name="events_table",
        )
        self.summary = Div(text="", name="events_summary", width=width)
        self.root = column(self.summary, table, name="events_panel")

    def update(self, state: PoolState, frames: Sequence[Frame] = ()) -> None:
        for e in state.events:
            self._events[e.seq] = e
        if len(self._events) > self.keep:
            for seq in sorted(self._events)[: len(self._events) - self.keep]:
                del self._events[seq]
        rows = fold(list(self._events.values()))[: self.rows]
        data: dict[str, list[Any]] = {k: [] for k in self.TABLE_COLUMNS}
        for r in rows:
            e = r["event"]
            cat = event_category(e.kind)
            where = " ".join(dict.fromkeys(x for x in (e.host, e.slice_id, e.lease_id) if x))
            data["time"].append(time.strftime("%H:%M:%S", time.localtime(r["last"])))
            data["category"].append(cat)
            data["color"].append(CATEGORY_COLORS[cat])
            data["kind"].append(e.kind)
            data["message"].append(f"×{r['count']} {e.message}" if r["count"] > 1 else e.message)
            data["owner"].append(e.owner or "")
            data["where"].append(where)
            data["decision"].append(e.decision_id)
        replace_data(self.source, data)
        counts = Counter(event_category(e.kind) for e in self._events.values())
        chips = " ".join(
            f'<span style="background:{CATEGORY_COLORS[c]};color:white;padding:1px 6px;border-radius:3px;'
            f'font-size:11px">{c} {counts.get(c, 0)}</span>'
            for c in ("placement", "re-slice", "preemption", "failure", "lease", "waiting", "host")
        )
        self.summary.text = (
            f'<div style="font-size:13px"><b>Events</b> <span style="color:{MUTED}">'
            f"(last {len(self._events)}, repeats folded)</span> &nbsp; {chips}</div>"
        )
