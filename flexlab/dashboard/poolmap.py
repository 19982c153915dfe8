"""The pool map: every device of every host, its slices drawn to scale.

Each device is a box one unit wide. Its top strip has the colour of its model (a shade of
its vendor's hue: NVIDIA greens, Ascend reds, Cambricon indigo). Below the strip, each
slice takes the width of its compute share (``compute_milli / 1000``) and is filled with
its owner's colour (blue-grey when shared); the darker part rising from its bottom is its
utilisation. Uncarved capacity is hatched. "Colour by utilisation" paints each slice by its
utilisation instead (light grey idle, amber half, dark orange full).

Hosts are rows of devices (host name on the left); many hosts wrap into columns so that
1,000 devices still fit one screen. When only utilisation changed since the last update,
only those columns are sent to the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, CustomJS, HoverTool, LinearColorMapper, Range1d
from bokeh.models.widgets import Div, RadioButtonGroup
from bokeh.plotting import figure

from flexlab.core.poolstate import DeviceState, HostState
from flexlab.dashboard.base import Component, Frame, PoolState
from flexlab.dashboard.theme import FRAME, FREE, HEAT, MUTED, TEXT, Theme, vendor_label

LABEL_PX = 84  # host name column, in pixels
MANY_HOSTS = 40  # above this, host names only in the hover
MANY_DEVICES = 64  # above this, no text inside boxes (the hover tells)
COL_GAP = 0.4  # between columns of hosts, in device widths
GAP = 0.1  # between devices
BOX_BOTTOM, BOX_TOP = 0.08, 0.9  # a device box inside its row
STRIP = 0.2  # the model strip, as a share of the box's height
DENSE_STRIP = 0.34  # the same above MANY_DEVICES, where boxes are a few pixels tall
BOX_ASPECT = 2.4  # width / height of a row, in pixels
MAX_HEIGHT = 620  # pixels of the map itself
_VENDOR_WORDS = ("NVIDIA ", "Huawei ", "Cambricon ")
_MODE_LABEL = {("nvidia", "profile"): " · MIG", ("huawei", "profile"): " · vNPU"}
_STATE_LINE = {"ready": FRAME, "starting": "#90a4ae"}


@dataclass(frozen=True)
class Grid:
    """Where each host's row starts (``origin[host]``: x, y of its first device)."""

    origin: dict[str, tuple[float, float]]
    columns: int
    rows: int
    width: float  # data units
    height_px: int
    labels: bool


def grid(hosts: Sequence[HostState], width_px: int = 820) -> Grid:
    """Hosts in rows of devices, in the fewest columns whose rows fit ``MAX_HEIGHT`` pixels
    with boxes ``BOX_ASPECT`` times wider than tall (host names on the left up to
    ``MANY_HOSTS`` hosts)."""
    n = max(1, len(hosts))
    per_host = max([len(h.devices) for h in hosts] or [1]) or 1
    labels = len(hosts) <= MANY_HOSTS
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        devices_w = cols * (per_host + COL_GAP)
        label_w = LABEL_PX * devices_w / max(1.0, width_px - cols * LABEL_PX) if labels else 0.0
        block = label_w + per_host + COL_GAP
        width = cols * block - COL_GAP
        row_px = width_px / width / BOX_ASPECT
        if rows * row_px <= MAX_HEIGHT or cols == n:
            break
    origin = {}
    for i, h in enumerate(hosts):
        c, r = divmod(i, rows)
        origin[h.name] = (c * block + label_w, float(rows - 1 - r))
    return Grid(origin, cols, rows, width, int(min(MAX_HEIGHT, rows * row_px)), labels)


def short_name(name: str) -> str:
    """``NVIDIA A100 80GB`` -> ``A100 80GB``."""
    for w in _VENDOR_WORDS:
        if name.startswith(w):
            return name[len(w) :]
    return name


def _natural(s: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


class PoolMap(Component):
    """Devices and their slices, to scale, coloured by owner (or utilisation)."""

    SLICE_COLUMNS = (
        "left", "right", "bottom", "top", "busy_top", "color", "line", "host", "device", "model",
        "slice", "share", "memory_gib", "owner", "state", "tasks", "util", "mem_used_gib", "label",
    )  # fmt: skip
    #: What changes from one second to the next when no slice was carved or released.
    DYNAMIC = ("busy_top", "tasks", "util", "mem_used_gib")
    DEVICE_COLUMNS = (
        "left", "right", "bottom", "top", "strip", "color", "line", "label", "label_x", "label_y",
        "host", "device", "model", "vendor", "util", "free",
    )  # fmt: skip
    NUMERIC = frozenset(("left", "right", "bottom", "top", "busy_top", "strip", "label_x", "label_y",
                         "share", "memory_gib", "util", "mem_used_gib", "tasks", "free"))  # fmt: skip

    def __init__(self, theme: Theme | None = None, *, width: int = 820) -> None:
        self.theme = theme or Theme()
        self.width = width
        self.source = ColumnDataSource({k: [] for k in self.SLICE_COLUMNS}, name="poolmap_slices")
        self.devices = ColumnDataSource({k: [] for k in self.DEVICE_COLUMNS}, name="poolmap_devices")
        self.hosts = ColumnDataSource({"x": [], "y": [], "name": []}, name="poolmap_hosts")
        self._grid_key: tuple[Any, ...] = ()
        self._static: dict[str, Any] = {}
        self._x = Range1d(start=0, end=4)
        self._y = Range1d(start=0, end=3)
        fig = figure(
            width=width, height=300, x_range=self._x, y_range=self._y, tools="",
            toolbar_location=None, name="poolmap",
            title="Pool map: devices by host, slices to scale (width = compute share, dark = utilisation)",
        )  # fmt: skip
        fig.axis.visible = False
        fig.grid.visible = False
        fig.outline_line_color = None
        fig.min_border_left = fig.min_border_right = 2
        fig.min_border_top = fig.min_border_bottom = 2
        fig.quad(
            left="left", right="right", bottom="bottom", top="top", source=self.devices, fill_color=FREE,
            line_color="line", line_width=1.2, hatch_pattern="/", hatch_color="#cfd8dc", hatch_scale=6,
        )  # fmt: skip
        fig.quad(left="left", right="right", bottom="strip", top="top", source=self.devices,
                 fill_color="color", line_color=None)  # fmt: skip
        fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.source,
                 fill_color="white", line_color=None)  # fmt: skip
        heat = LinearColorMapper(palette=list(HEAT), low=0.0, high=1.0)
        base = fig.quad(
            left="left", right="right", bottom="bottom", top="top", source=self.source,
            fill_color="color", fill_alpha=0.28, line_color="line", line_width=1, name="poolmap_base",
        )  # fmt: skip
        busy = fig.quad(left="left", right="right", bottom="bottom", top="busy_top", source=self.source,
                        fill_color="color", fill_alpha=0.9, line_color=None)  # fmt: skip
        fig.text(x="label_x", y="label_y", text="label", source=self.devices, text_font_size="10px",
                 text_color="white", text_baseline="middle", text_font_style="bold")  # fmt: skip
        fig.text(x="left", y="bottom", text="label", source=self.source, text_font_size="9px",
                 text_color=TEXT, x_offset=3, y_offset=-3, text_baseline="bottom")  # fmt: skip
        fig.text(x="x", y="y", text="name", source=self.hosts, text_font_size="11px", text_color=TEXT,
                 text_align="right", text_baseline="middle", x_offset=-8)  # fmt: skip
        fig.add_tools(
            HoverTool(
                renderers=[base],
                tooltips=[
                    ("device", "@device (@model)"),
                    ("slice", "@slice: @share{0.0%} of the device, @memory_gib{0.0} GiB"),
                    ("owner", "@owner (@state, @tasks tasks)"),
                    ("utilisation", "@util{0%}, memory in use @mem_used_gib{0.0} GiB"),
                ],
            )
        )
        mode = RadioButtonGroup(
            labels=["colour by owner", "colour by utilisation"], active=0, name="colour_by"
        )
        mode.js_on_change(
            "active",
            CustomJS(
                args={"base": base, "busy": busy, "heat": heat},
                code="""
                const util = cb_obj.active == 1;
                base.glyph.fill_color = util ? {field: 'util', transform: heat} : {field: 'color'};
                base.glyph.fill_alpha = util ? 1.0 : 0.28;
                busy.visible = !util;
                """,
            ),
        )
        self.legend = Div(text="", name="poolmap_legend", width=width)
        self.figure = fig
        self.root = column(mode, fig, self.legend, name="poolmap_panel")

    def update(self, state: PoolState, frames: Sequence[Frame] = ()) -> None:
        hosts = sorted(state.hosts, key=lambda h: _natural(h.name))
        self.theme.learn_models([(d.vendor, d.model) for h in hosts for d in h.devices])
        g = grid(hosts, self.width)
        labels = sum(len(h.devices) for h in hosts) <= MANY_DEVICES  # else: dense, no text
        key = (g.columns, g.rows, round(g.width, 3), g.height_px)
        if key != self._grid_key:
            self._grid_key = key
            self._x.start, self._x.end = 0.0, g.width
            self._y.start, self._y.end = 0.0, float(g.rows)
            self.figure.height = g.height_px + 30  # the title
        dev_rows: list[tuple[Any, ...]] = []
        sl_rows: list[tuple[Any, ...]] = []
        host_cols: dict[str, list[Any]] = {"x": [], "y": [], "name": []}
        for h in hosts:
            x, y = g.origin[h.name]
            host_cols["x"].append(x)
            host_cols["y"].append(y + (BOX_BOTTOM + BOX_TOP) / 2)
            host_cols["name"].append(h.name if g.labels else "")
            for i, d in enumerate(h.devices):
                self._device(dev_rows, sl_rows, h, d, x + i, y, labels)
        devs = self._columns(self.DEVICE_COLUMNS, dev_rows)
        slices = self._columns(self.SLICE_COLUMNS, sl_rows)
        static = {k: v for k, v in slices.items() if k not in self.DYNAMIC}
        if self._same_static(static) and len(self.devices.data["util"]) == len(devs["util"]):
            # Nothing carved or released: send only what moves.
            self.source.data.update({k: slices[k] for k in self.DYNAMIC})
            self.devices.data.update({"util": devs["util"]})
        else:
            self.source.data = slices
            self.devices.data = devs
            self.hosts.data = host_cols
            self._static = static
            self.legend.text = self._legend(hosts)

    def _same_static(self, static: Mapping[str, Any]) -> bool:
        if static.keys() != self._static.keys():
            return False
        for k, v in static.items():
            old = self._static[k]
            if isinstance(v, np.ndarray):
                if not np.array_equal(v, old):
                    return False
            elif v != old:
                return False
        return True

    def _columns(self, names: Sequence[str], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
        cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return {
            k: (np.asarray(c, dtype=float) if k in self.NUMERIC else list(c))
            for k, c in zip(names, cols, strict=True)
        }

    def _device(
        self,
        dev_rows: list[tuple[Any, ...]],
        sl_rows: list[tuple[Any, ...]],
        h: HostState,
        d: DeviceState,
        x: float,
        y: float,
        labels: bool,
    ) -> None:
        left, right = x + GAP / 2, x + 1 - GAP / 2
        bottom, top = y + BOX_BOTTOM, y + BOX_TOP
        strip = top - (STRIP if labels else DENSE_STRIP) * (BOX_TOP - BOX_BOTTOM)
        vendor, model = d.vendor, d.model
        color = self.theme.model_color(vendor, model)
        # Dense maps: the model's colour frames the box and slices are parted by white lines.
        frame = FRAME if labels else color
        name = short_name(d.name or model) + _MODE_LABEL.get((vendor, d.mode), "")
        dev_rows.append(
            (
                left, right, bottom, top, strip, color,
                frame if d.schedulable else "#d32f2f", name if labels else "", left + 0.03,
                (strip + top) / 2, h.name, d.id, name, vendor_label(vendor),
                d.utilisation, d.free_compute_milli,
            )
        )  # fmt: skip
        inner = right - left
        cursor = left
        height = strip - bottom
        # Leased slices first, then shared ones, each in the pool's order.
        for s in sorted(d.slices, key=lambda s: s.owner is None):
            share = min(1.0, s.compute_milli / 1000)
            w = inner * share
            util = s.utilisation
            owner = s.owner
            state = s.state
            text = ""
            if labels and w > 0.22:
                text = (s.profile or f"{100 * share:.0f}%") + (f" {owner}" if owner else "")
            sl_rows.append(
                (
                    cursor, cursor + w, bottom, strip, bottom + util * height, self.theme.owner_color(owner),
                    _STATE_LINE.get(state, "#d32f2f") if labels else "white", h.name, d.id, name,
                    s.slice_id, share,
                    s.memory_mib / 1024, owner or "shared", state, s.tasks, util,
                    s.memory_used_mib / 1024, text,
                )
            )  # fmt: skip
            cursor += w

    def _legend(self, hosts: Sequence[HostState]) -> str:
        models: dict[str, dict[str, tuple[str, int]]] = {}
        owners: set[str] = set()
        for h in hosts:
            for d in h.devices:
                vendor, model = d.vendor, d.model
                name = short_name(d.name or model)
                color, n = models.setdefault(vendor, {}).get(name, (self.theme.model_color(vendor, model), 0))
                models[vendor][name] = (color, n + 1)
                owners.update(s.owner for s in d.slices if s.owner)
        chip = (
            '<span style="display:inline-block;width:11px;height:11px;background:{};'
            'margin:0 3px -1px 9px;border-radius:2px"></span>'
        )
        parts = []
        for vendor in sorted(models):
            items = "".join(f"{chip.format(c)}{m} ×{n}" for m, (c, n) in sorted(models[vendor].items()))
            parts.append(f"<b>{vendor_label(vendor)}</b>{items}")
        own = f"{chip.format(self.theme.owner_color(None))}shared" + "".join(
            f"{chip.format(self.theme.owner_color(o))}{o}" for o in sorted(owners)
        )
        return (
            f'<div style="font-size:12px;color:{TEXT};line-height:1.8">'
            + " &nbsp; ".join(parts)
            + f'<br><b>Slices</b>{own} &nbsp; <span style="color:{MUTED}">light = held, dark = in use;'
            " hatched = not carved</span></div>"
        )
