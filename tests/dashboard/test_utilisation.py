"""Utilisation over time against recorded frames; the streaming table and the frame window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource

from flexlab.core.poolstate import PoolState
from flexlab.dashboard.base import FrameWindow, TimeTable
from flexlab.dashboard.utilisation import LEASED, TOTAL_BUSY, TOTAL_MEM, UtilisationChart, columns_of


def test_series_equal_the_frames(state: PoolState, frames: list[dict[str, Any]]) -> None:
    chart = UtilisationChart()
    chart.update(state, frames)
    d = chart.source.data
    assert list(d["time"]) == [1000 * f["time"] for f in frames]
    assert list(d[TOTAL_BUSY]) == pytest.approx([100 * f["total"][0] for f in frames])
    assert list(d[TOTAL_MEM]) == pytest.approx([100 * f["total"][1] / f["total"][2] for f in frames])
    assert list(d[LEASED]) == pytest.approx([100 * f["leased"] for f in frames])
    for vendor in ("nvidia", "huawei", "cambricon"):
        assert list(d[f"busy:vendor:{vendor}"]) == pytest.approx(
            [100 * f["by_vendor"][vendor][0] for f in frames]
        )
    t4 = [100 * f["by_model"]["t4"][1] / f["by_model"]["t4"][2] for f in frames]
    assert list(d["mem:model:t4"]) == pytest.approx(t4)
    # One line per vendor and per model, plus the totals; the "now" line reads the last frame.
    lines = {(r.name, r.tags[0]): r.visible for r in chart.figure.renderers}
    expected = {
        ("busy:vendor:nvidia", "vendor"), ("busy:model:a100-80gb", "model"), ("mem:vendor:huawei", "memory"),
        (TOTAL_BUSY, "vendor"), (TOTAL_BUSY, "model"), (LEASED, "vendor"),
    }  # fmt: skip
    assert expected <= set(lines)
    # the first view (busy by vendor) is shown, the others hidden until their button is pressed
    assert {view for (_, view), shown in lines.items() if shown} == {"vendor"}
    legend = {(item.label.value, item.renderers[0].tags[0]): item.visible for item in chart.legend.items}
    assert legend[("NVIDIA", "vendor")]
    assert not legend[("NVIDIA", "memory")]
    assert not legend[("a100-80gb", "model")]
    assert f"busy <b>{100 * frames[-1]['total'][0]:.0f}%</b>" in chart.now.text


def test_new_frames_are_streamed_not_resent(state: PoolState, frames: list[dict[str, Any]]) -> None:
    chart = UtilisationChart(window=5)
    chart.update(state, frames[:3])
    doc = Document()
    doc.add_root(chart.root)
    events: list[Any] = []
    doc.on_change(events.append)
    chart.update(state, frames)  # the window passed on: old frames again, and 4 new ones
    mine = [e for e in events if getattr(e, "model", None) is chart.source]
    assert [type(e).__name__ for e in mine] == ["ColumnsStreamedEvent"]
    assert len(mine[0].data["time"]) == len(frames) - 3
    assert list(chart.source.data["time"]) == [1000 * f["time"] for f in frames[-5:]]  # rollover 5
    assert list(chart.source.data[TOTAL_BUSY]) == pytest.approx([100 * f["total"][0] for f in frames[-5:]])


def test_missing_keys_read_as_zero() -> None:
    frames = [
        {
            "time": 1.0,
            "by_vendor": {"nvidia": [0.5, 1, 2]},
            "by_model": {},
            "total": [0.5, 1, 2],
            "leased": 0,
        },
        {
            "time": 2.0,
            "by_vendor": {"huawei": [0.25, 1, 4]},
            "by_model": {},
            "total": [0.25, 1, 4],
            "leased": 0,
        },
    ]
    cols = columns_of(frames)
    assert cols["busy:vendor:nvidia"] == [50.0, 0.0]
    assert cols["busy:vendor:huawei"] == [0.0, 25.0]
    assert cols["mem:vendor:huawei"] == [0.0, 25.0]


def test_time_table_restarts_after_a_gap() -> None:
    src = ColumnDataSource({"time": []})
    table = TimeTable(src, rollover=10)
    table.set([1.0, 2.0], {"a": [1.0, 2.0]})
    table.set([1.0, 2.0, 3.0], {"a": [1.0, 2.0, 3.0]})
    assert list(src.data["a"]) == [1.0, 2.0, 3.0]
    table.set([50.0, 51.0], {"a": [7.0, 8.0]})  # nothing in common with what is shown
    assert list(src.data["time"]) == [50000.0, 51000.0]
    table.set([50.0, 51.0], {"a": [7.0, 8.0], "b": [0.0, 1.0]})  # a new series
    assert list(src.data["b"]) == [0.0, 1.0]


def test_frame_window_keeps_the_last_seconds_without_duplicates() -> None:
    w = FrameWindow(seconds=10)
    w.add([{"time": float(t)} for t in range(5)])
    w.add([{"time": float(t)} for t in range(3, 20)])
    times = [f["time"] for f in w.frames()]
    assert times == [float(t) for t in range(9, 20)]
    assert w.last_time == 19.0
    assert np.all(np.diff(times) > 0)
