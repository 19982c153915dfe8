"""Queue, leases and event log against recorded telemetry."""

from __future__ import annotations

from typing import Any

import pytest

from flexlab.core.poolstate import PoolEvent, PoolState
from flexlab.dashboard.classes import request_group, top_groups
from flexlab.dashboard.events import EventLog, fold
from flexlab.dashboard.leases import LeasesPanel, by_owner
from flexlab.dashboard.queue import QueuePanel, arrival_series, forecast_series, waiting_rows
from flexlab.dashboard.theme import CATEGORY_COLORS, Theme, event_category


def test_waiting_work_is_grouped_with_its_reason(state: PoolState, frames: list[dict[str, Any]]) -> None:
    q = QueuePanel()
    q.update(state, frames)
    rows = {
        (k, r): (n, why)
        for k, r, n, why in zip(
            q.source.data["kind"],
            q.source.data["request"],
            q.source.data["count"],
            q.source.data["reason"],
            strict=True,
        )
    }
    # Two tasks ask for the whole V100S while bob holds half of it; dave's lease waits for it too.
    n, why = rows[("task", "v100s-32gb:1")]
    assert n == 2
    assert "v100s-32gb: 1 INSUFFICIENT_COMPUTE" in why
    n, why = rows[("lease", "v100s-32gb:1")]
    assert n == 1
    assert why.startswith("UNSCHEDULABLE")
    assert q.bars.data["group"] == ["v100s-32gb whole"]
    assert (q.bars.data["tasks"], q.bars.data["leases"], q.bars.data["total"]) == ([2], [1], [3])
    assert "<b>2</b> tasks and <b>1</b> leases waiting" in q.summary.text


def test_arrivals_per_class_are_binned_per_minute(frames: list[dict[str, Any]]) -> None:
    groups = top_groups({"any ≤25%": 3, "any ≤50%": 2, "v100s-32gb whole": 1}, n=6)
    t0 = frames[0]["time"]
    starts, series = arrival_series(frames, 2.0, groups)
    assert len(starts) == len(series["any ≤25%"]) >= 2
    first_bin = [f for f in frames if f["time"] < (starts[0] + 2.0)]
    expect = sum(
        n for f in first_bin for k, n in f["arrivals"].items() if request_group(k) == "v100s-32gb whole"
    )
    assert series["v100s-32gb whole"][0] == pytest.approx(expect * 60 / 2.0)
    assert starts[0] <= t0 < starts[0] + 2.0


def test_queue_chart_totals_match_the_frames(state: PoolState, frames: list[dict[str, Any]]) -> None:
    q = QueuePanel(bin_s=1.0)
    q.update(state, frames)
    xs = q.arrivals.data["xs"][0]
    end = (xs[-1] / 1000) + 1.0  # the end of the last whole bin drawn
    total_drawn = sum(sum(ys) for ys in q.arrivals.data["ys"]) / 60.0
    total = sum(sum(f["arrivals"].values()) for f in frames if f["time"] < end)
    assert total_drawn == pytest.approx(total)
    assert "lease v100s-32gb whole" in q.arrivals.data["label"] or "other" in q.arrivals.data["label"]


def test_a_forecast_is_drawn_beside_the_actuals(state: PoolState, frames: list[dict[str, Any]]) -> None:
    q = QueuePanel()
    t = frames[-1]["time"]
    forecast = {"any:0.22,4096MiB": [(t, 0.5), (t + 10, 0.25)], "any:0.2,2GiB": [(t, 0.5)]}
    q.update(state, frames, forecast=forecast)
    i = q.forecasts.data["label"].index("any ≤25%")
    assert q.forecasts.data["ys"][i] == pytest.approx([60.0, 15.0])  # both classes at t, per minute
    assert (
        q.forecasts.data["color"][i] == q.arrivals.data["color"][q.arrivals.data["label"].index("any ≤25%")]
    )
    assert forecast_series({"x:bad": [(t, 1.0)]}, ["any ≤25%"]) == {}


@pytest.mark.parametrize(
    ("spec", "group"),
    [
        ("any:0.22,4096MiB", "any ≤25%"),
        ("gpu:0.5", "gpu ≤50%"),
        ("npu:vir05_1c_16g", "npu vir05_1c_16g"),
        ("v100s-32gb:1", "v100s-32gb whole"),
        ("lease gpu:1", "lease gpu whole"),
        ("cpu:2,8GiB", "cpu"),
        ("gpu:devices=4,cpu=16,ram=64GiB", "gpu 4 devices"),
        ("not a request", "not a request"),
    ],
    ids=["small", "half", "profile", "model", "lease", "cpu", "multi", "garbage"],
)
def test_request_groups(spec: str, group: str) -> None:
    assert request_group(spec) == group


def test_waiting_rows_age_of_leases(state: PoolState) -> None:
    rows = waiting_rows(state, now=state.time)
    lease = next(r for r in rows if r["kind"] == "lease")
    created = next(le.created for le in state.leases if le.state == "pending")
    assert lease["waiting"] == f"{state.time - created:.0f} s"
    assert lease["owner"] == "dave"


def test_leases_by_user(state: PoolState) -> None:
    theme = Theme()
    panel = LeasesPanel(theme)
    panel.update(state, [])
    owners = dict(zip(panel.owners.data["owner"], range(3), strict=True))
    held = panel.owners.data["held"]
    busy = panel.owners.data["busy"]
    assert held[owners["bob"]] == pytest.approx(0.5)  # half of the V100S
    assert held[owners["alice"]] == pytest.approx(0.25)  # vir05_1c_16g: a quarter of a 910B3
    assert busy[owners["alice"]] == pytest.approx(0.25)  # and she keeps it busy
    assert held[owners["dave"]] == 0
    assert "1 waiting" in panel.owners.data["text"][owners["dave"]]
    assert panel.owners.data["color"][owners["bob"]] == theme.owner_color("bob")
    assert panel.source.data["state"] == ["pending", "active", "active"]  # what waits comes first
    assert by_owner(state.leases)["alice"]["memory_gib"] == pytest.approx(16.0)


def test_event_log_folds_repeats_and_keeps_reasons(state: PoolState) -> None:
    log = EventLog()
    log.update(state, [])
    log.update(state, [])  # the same events again: counted once
    msgs = log.source.data["message"]
    waits = [e for e in state.events if e.kind == "wait"]
    assert len(waits) > 1
    folded = [m for m in msgs if waits[0].message in m]
    assert folded == [f"×{len(waits)} {waits[0].message}"]
    assert len(msgs) == len(fold(state.events))
    cats = dict(zip(log.source.data["kind"], log.source.data["category"], strict=False))
    assert cats["carve"] == "placement"
    assert cats["reclaim"] == "re-slice"
    assert cats["wait"] == "waiting"
    assert set(log.source.data["color"]) <= set(CATEGORY_COLORS.values())
    assert log.source.data["time"] == sorted(log.source.data["time"], reverse=True)
    carve = next(e for e in state.events if e.kind == "carve" and e.decision_id)
    assert carve.decision_id in log.source.data["decision"]


def test_event_log_keeps_a_bounded_history() -> None:
    log = EventLog(keep=10)
    for k in range(5):
        events = tuple(
            PoolEvent(seq=10 * k + i, time=float(10 * k + i), kind="preempt", message=f"m{10 * k + i}")
            for i in range(10)
        )
        log.update(PoolState(time=0.0, hosts=(), events=events), [])
    assert len(log.source.data["message"]) == 10
    assert log.source.data["message"][0] == "m49"
    assert log.source.data["category"][0] == "preemption"


@pytest.mark.parametrize(
    ("kind", "category"),
    [
        ("carve", "placement"),
        ("reslice", "re-slice"),
        ("preempt", "preemption"),
        ("lost", "failure"),
        ("x", "other"),
    ],
    ids=["carve", "reslice", "preempt", "lost", "unknown"],
)
def test_event_categories(kind: str, category: str) -> None:
    assert event_category(kind) == category
