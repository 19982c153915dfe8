"""The composed dashboard: one fetch per refresh, every component updated, live loop, scale."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from bokeh.models import ColumnDataSource, LayoutDOM

from flexlab.core.poolstate import PoolState
from flexlab.dashboard import Dashboard
from flexlab.dashboard.notebook import dashboard_notebook
from flexlab.dashboard.synthetic import SyntheticPool, synthetic_history, synthetic_state

ROOT = Path(__file__).resolve().parents[2]


class RecordedPool:
    """A PoolSource that serves the recording (its wire JSON, read on every call, so a test
    may change it between refreshes) and counts the calls."""

    def __init__(self, state: dict[str, Any], frames: list[dict[str, Any]], fail: bool = False) -> None:
        self._state, self._frames, self.fail = state, frames, fail
        self.calls: list[tuple[str, float]] = []

    def pool_state(self) -> PoolState:
        self.calls.append(("state", 0.0))
        if self.fail:
            raise OSError("scheduler unreachable")
        return PoolState.from_json(self._state)

    def history(self, since: float = 0.0) -> list[dict[str, Any]]:
        self.calls.append(("history", since))
        return [f for f in self._frames if f["time"] > since]


def test_refresh_fetches_once_and_updates_every_component(
    raw_state: dict[str, Any], frames: list[dict[str, Any]]
) -> None:
    state = raw_state
    pool = RecordedPool(state, frames)
    dash = Dashboard(pool)
    dash.refresh()
    assert [c for c, _ in pool.calls] == ["state", "history"]
    assert pool.calls[1][1] == pytest.approx(state["time"] - 600)
    for name, comp in dash.components.items():
        assert isinstance(comp.source, ColumnDataSource), name
        assert isinstance(comp.root, LayoutDOM), name
        assert len(next(iter(comp.source.data.values()))) > 0, f"{name} shows nothing"
        assert dash.timings[name] >= 0
    dash.refresh()
    assert pool.calls[3] == ("history", frames[-1]["time"])  # only newer frames the second time
    text = dash.header.div.text
    assert ">6<" in text
    assert "3 hosts" in text
    assert ">3<" in text
    assert f"{100 * frames[-1]['total'][0]:.0f}%" in text


@pytest.mark.parametrize(
    ("policy", "name", "learned"),
    [
        (None, "binpack", "fixed rule"),  # the recording's scheduler had no policy section
        ({"name": "bestfit", "learns": False}, "bestfit", "fixed rule"),
        (
            {"name": "flexlab", "learns": True, "observations": 37, "prior_weight_left": 163.0},
            "flexlab",
            "learning: 37 requests seen",
        ),
        (
            {"name": "fgd", "learns": True, "observations": 5000, "in_window": 2000, "prior_weight_left": 0},
            "fgd",
            "learned from 2000 requests",
        ),
    ],
    ids=["old-scheduler", "fixed", "learning", "learned"],
)
def test_header_shows_the_placement_policy(
    raw_state: dict[str, Any],
    frames: list[dict[str, Any]],
    policy: dict[str, Any] | None,
    name: str,
    learned: str,
) -> None:
    if policy is not None:
        raw_state["policy"] = policy
    dash = Dashboard(RecordedPool(raw_state, frames))
    dash.refresh()
    text = dash.header.div.text
    assert ">placement policy<" in text
    assert f">{name}<" in text
    assert f">{learned}<" in text


def test_live_loop_survives_an_unreachable_pool(
    raw_state: dict[str, Any], frames: list[dict[str, Any]]
) -> None:
    pool = RecordedPool(raw_state, frames)
    dash = Dashboard(pool)

    async def scenario() -> None:
        task = dash.start(interval=0.01)
        while dash.refreshes < 3:
            await asyncio.sleep(0.01)
        pool.fail = True
        await asyncio.sleep(0.1)
        assert "cannot read the pool: OSError: scheduler unreachable" in dash.header.div.text
        n = dash.refreshes
        pool.fail = False
        while dash.refreshes <= n:
            await asyncio.sleep(0.01)
        assert not task.done()
        dash.stop()
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert "● live" in dash.header.div.text


def test_every_change_serialises_for_the_page(
    raw_state: dict[str, Any], frames: list[dict[str, Any]]
) -> None:
    state = raw_state
    """What Voila sends: BokehModel turns each document change into a PATCH-DOC message."""
    from jupyter_bokeh import BokehModel

    dash = Dashboard(RecordedPool(state, frames))
    widget = BokehModel(dash.root)
    sent: list[Any] = []
    widget.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    dash.refresh()
    for h in state["hosts"]:
        for d in h["devices"]:
            for s in d["slices"]:
                s["utilisation"] = 1 - s["utilisation"]
    dash.refresh()
    assert sum(1 for m in sent if m.get("msg") == "patch") > 10


def test_one_thousand_devices() -> None:
    st = synthetic_state(1000)
    fr = synthetic_history(st)
    dash = Dashboard()
    dash.apply(st, fr)
    t0 = time.perf_counter()
    dash.apply(st, fr)
    took = 1000 * (time.perf_counter() - t0)
    n_slices = sum(len(d.slices) for _, d in st.devices())
    assert len(dash.pool_map.source.data["slice"]) == n_slices
    assert len(dash.pool_map.devices.data["device"]) == 1000
    assert not any(dash.pool_map.hosts.data["name"])  # 125 hosts: names in the hover only
    assert took < 2000.0  # about 40 ms here; generous for a loaded CI machine


def test_synthetic_pool_moves() -> None:
    pool = SyntheticPool(16, seed=1)
    a = [s.utilisation for _, s in pool.pool_state().slices()]
    b = [s.utilisation for _, s in pool.pool_state().slices()]
    assert a != b
    for _, d in pool.pool_state().devices():  # each device's figure follows its slices'
        assert d.utilisation == pytest.approx(
            min(1.0, sum(s.utilisation * s.compute_milli / 1000 for s in d.slices)), abs=1e-3
        )
    assert pool.history()[-1]["time"] <= time.time()


def test_committed_dashboard_notebook_is_the_built_one() -> None:
    committed = nbformat.read(ROOT / "notebooks" / "dashboard.ipynb", as_version=4)
    built = dashboard_notebook()
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in built.cells
    ]
    assert all(not c.get("outputs") for c in committed.cells)


def test_two_dashboards_in_one_process_share_no_models() -> None:
    """A model belongs to one document: nothing may be shared between two dashboards."""
    from bokeh.document import Document

    a, b = Dashboard(), Dashboard()
    Document().add_root(a.root)
    Document().add_root(b.root)
    assert not {m.id for m in a.root.references()} & {m.id for m in b.root.references()}
