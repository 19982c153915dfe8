"""The pool map against recorded telemetry: rectangles to scale, colours per owner and model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flexlab.core.poolstate import DeviceState, HostState, PoolState, to_json
from flexlab.dashboard.poolmap import GAP, MANY_HOSTS, PoolMap, grid, short_name
from flexlab.dashboard.theme import OTHER_FAMILY, SHARED, VENDOR_FAMILIES, Theme

INNER = 1 - GAP  # a device box's width


def _slices(state: PoolState) -> dict[str, dict[str, Any]]:
    return {s.slice_id: to_json(s) for _, s in state.slices()}


def test_every_slice_is_drawn_with_its_share_as_width(state: PoolState) -> None:
    pm = PoolMap()
    pm.update(state, [])
    data = pm.source.data
    slices = _slices(state)
    assert sorted(data["slice"]) == sorted(slices)
    widths = np.asarray(data["right"]) - np.asarray(data["left"])
    for sid, w in zip(data["slice"], widths, strict=True):
        assert w == pytest.approx(INNER * slices[sid]["compute_milli"] / 1000), sid
    # The V100S holds bob's 50% lease and a 50% shared slice: two halves of one box.
    v100 = [i for i, dev in enumerate(data["device"]) if dev == "nvidia-b/v100s-32gb#0"]
    assert sorted(widths[v100]) == pytest.approx([INNER / 2, INNER / 2])


def test_slices_stay_inside_their_device_box(state: PoolState) -> None:
    pm = PoolMap()
    pm.update(state, [])
    boxes = {
        dev: (left, right)
        for dev, left, right in zip(
            pm.devices.data["device"], pm.devices.data["left"], pm.devices.data["right"], strict=True
        )
    }
    assert len(boxes) == sum(len(h.devices) for h in state.hosts) == 6
    for dev, left, right in zip(
        pm.source.data["device"], pm.source.data["left"], pm.source.data["right"], strict=True
    ):
        lo, hi = boxes[dev]
        assert lo - 1e-9 <= left < right <= hi + 1e-9


def test_colours_per_owner_and_utilisation_height(state: PoolState) -> None:
    theme = Theme()
    pm = PoolMap(theme)
    pm.update(state, [])
    d = pm.source.data
    by_slice = dict(zip(d["slice"], range(len(d["slice"])), strict=True))
    slices = _slices(state)
    alice, bob = theme.owner_color("alice"), theme.owner_color("bob")
    assert alice != bob
    assert SHARED not in (alice, bob)
    for sid, s in slices.items():
        i = by_slice[sid]
        assert d["owner"][i] == (s["owner"] or "shared")
        assert d["color"][i] == {"alice": alice, "bob": bob, None: SHARED}[s["owner"]]
        height = d["top"][i] - d["bottom"][i]
        assert d["busy_top"][i] - d["bottom"][i] == pytest.approx(s["utilisation"] * height)
        assert d["util"][i] == pytest.approx(s["utilisation"])
    # alice's vNPU runs flat out in the recording: her slice is full to the top.
    assert d["busy_top"][by_slice["L1"]] == pytest.approx(d["top"][by_slice["L1"]])


def test_vendors_and_models_are_told_apart(state: PoolState) -> None:
    pm = PoolMap()
    pm.update(state, [])
    dd = pm.devices.data
    color = dict(zip(dd["model"], dd["color"], strict=True))
    vendor = dict(zip(dd["model"], dd["vendor"], strict=True))
    assert color["A100 80GB · MIG"] in VENDOR_FAMILIES["nvidia"]
    assert color["Ascend 910B3 · vNPU"] in VENDOR_FAMILIES["huawei"]
    assert color["MLU370-X8"] in VENDOR_FAMILIES["cambricon"]
    assert vendor["MLU370-X8"] == "Cambricon"
    nvidia = {color[m] for m in ("A100 80GB · MIG", "T4", "V100S PCIe 32GB")}
    assert len(nvidia) == 3  # three models, three shades
    # Small pools carry their names; the legend lists every model with its count.
    assert "A100 80GB · MIG" in dd["label"]
    assert "Ascend 910B3 ×2" in pm.legend.text
    assert "alice" in pm.legend.text


def test_only_moving_columns_are_resent_when_nothing_was_carved(raw_state: dict[str, Any]) -> None:
    pm = PoolMap()
    pm.update(PoolState.from_json(raw_state), [])
    for _, _d, s in ((h, d, s) for h in raw_state["hosts"] for d in h["devices"] for s in d["slices"]):
        s["utilisation"] = 0.5
    before = dict(pm.source.data)
    pm.update(PoolState.from_json(raw_state), [])
    assert np.allclose(pm.source.data["util"], 0.5)
    assert pm.source.data["left"] is before["left"]  # geometry untouched
    raw_state["hosts"][0]["devices"][0]["slices"][0]["compute_milli"] = 400  # a re-slice
    pm.update(PoolState.from_json(raw_state), [])
    assert pm.source.data["left"] is not before["left"]


def _host(name: str, n: int) -> HostState:
    dev = DeviceState(
        id="", vendor="nvidia", model="t4", name="T4", kind="gpu", index=0, mode="fraction",
        memory_mib=16384, free_compute_milli=1000, free_memory_mib=16384, schedulable=True,
        utilisation=0.0, memory_used_mib=0, granularity_milli=10, profiles=(), free_profiles=(), slices=(),
    )  # fmt: skip
    return HostState(name, "", 0, 0, 0, 0, (dev,) * n)


def test_grid_wraps_many_hosts_and_drops_names() -> None:
    few = [_host(f"h{i}", 2) for i in range(3)]
    g = grid(few)
    assert (g.columns, g.rows, g.labels) == (1, 3, True)
    many = [_host(f"h{i}", 8) for i in range(125)]
    g = grid(many)
    assert g.columns > 1
    assert not g.labels
    assert len(many) > MANY_HOSTS
    assert g.rows * g.columns >= 125
    assert g.height_px <= 620
    xs = {g.origin[h.name] for h in many}
    assert len(xs) == 125  # no two hosts share a place


@pytest.mark.parametrize(
    ("name", "short"),
    [("NVIDIA A100 80GB", "A100 80GB"), ("Huawei Ascend 910B3", "Ascend 910B3"), ("openb G1", "openb G1")],
    ids=["nvidia", "huawei", "other"],
)
def test_short_name(name: str, short: str) -> None:
    assert short_name(name) == short


def test_unknown_vendors_get_the_other_family() -> None:
    t = Theme()
    assert t.model_color("alibaba-undisclosed", "openb-g1") in OTHER_FAMILY
