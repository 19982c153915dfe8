"""Fragmentation: the documented definitions, on hand-made pools and on the recording."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flexlab.core.poolstate import DeviceState, HostState, PoolState, SliceState, WaitingWork
from flexlab.dashboard.fragmentation import FragmentationPanel, common_shapes, holes, measure


def _device(
    model: str,
    vendor: str,
    mem: int,
    *,
    free: int,
    free_mem: int,
    slices: list[SliceState],
    mode: str = "fraction",
    free_profiles: tuple[str, ...] = (),
) -> DeviceState:
    return DeviceState(
        id=f"h/{model}#0",
        model=model,
        name=model,
        vendor=vendor,
        kind="gpu",
        index=0,
        mode=mode,
        memory_mib=mem,
        free_compute_milli=free,
        free_memory_mib=free_mem,
        free_profiles=free_profiles,
        schedulable=True,
        utilisation=0.0,
        memory_used_mib=0,
        granularity_milli=10,
        profiles=(),
        slices=tuple(slices),
    )


def _slice(
    sid: str,
    compute: int,
    mem: int,
    *,
    load: int = 0,
    tasks: int = 0,
    owner: str | None = None,
    profile: str | None = None,
    used: int = 0,
) -> SliceState:
    return SliceState(
        slice_id=sid,
        compute_milli=compute,
        memory_mib=mem,
        load_milli=load,
        tasks=tasks,
        owner=owner,
        lease_id="L" + sid if owner else None,
        profile=profile,
        state="ready",
        utilisation=0.0,
        memory_used_mib=used,
    )


def _state(devices: list[DeviceState], waiting: tuple[str, ...] = ()) -> PoolState:
    return PoolState(
        time=100.0,
        hosts=(HostState("h", "", 0, 0, 0, 0, tuple(devices)),),
        waiting=tuple(WaitingWork(key=str(i), request=r, reason="") for i, r in enumerate(waiting)),
    )


def _frames(**arrivals: int) -> list[dict[str, Any]]:
    return [
        {"time": 99.0, "arrivals": {k.replace("_", ":", 1).replace("_", "."): v for k, v in arrivals.items()}}
    ]


T4 = 16384


@pytest.fixture
def t4_pool() -> dict[str, Any]:
    """A T4 with 300 milli uncarved (4 GiB free) and a shared 700 slice whose tasks reserved 600,
    plus alice's idle lease on another T4 (not counted: it is hers)."""
    return _state(
        [
            _device(
                "t4",
                "nvidia",
                T4,
                free=300,
                free_mem=4096,
                slices=[_slice("s1", 700, 12288, load=600, used=2048)],
            ),
            _device("t4", "nvidia", T4, free=0, free_mem=0, slices=[_slice("s2", 1000, T4, owner="alice")]),
        ]
    )


def test_holes_are_uncarved_capacity_and_headroom_of_shared_slices(t4_pool: PoolState) -> None:
    h = holes(t4_pool)
    assert sorted(zip(h.kind, h.compute, h.memory, strict=True)) == [
        ("free", 300, 4096),
        ("headroom", 100, 10240),
    ]


def test_a_hole_no_common_shape_fits_is_stranded(t4_pool: PoolState) -> None:
    f = measure(t4_pool, [{"time": 99.0, "arrivals": {"gpu:0.25": 4}}])
    # gpu:0.25 needs 250 milli and a quarter of 16 GiB: the uncarved 300 holds it, the 100 of headroom not.
    assert (f.idle, f.stranded, f.expected) == (400, 100, pytest.approx(100.0))
    assert f.per_model == {"t4": (400, 100)}
    f = measure(t4_pool, [{"time": 99.0, "arrivals": {"gpu:0.25": 2, "gpu:0.5": 2}}])
    # Half the requests need 500: for them both holes are fragments (FGD's expectation).
    assert (f.stranded, f.expected) == (100, pytest.approx(0.5 * 100 + 0.5 * 400))


def test_memory_and_selectors_decide_fit(t4_pool: PoolState) -> None:
    assert (
        measure(t4_pool, [{"time": 99.0, "arrivals": {"gpu:0.25,8GiB": 1}}]).stranded == 400
    )  # 8 GiB: nowhere
    assert measure(t4_pool, [{"time": 99.0, "arrivals": {"npu:0.1": 1}}]).stranded == 400  # no NPU here
    assert measure(t4_pool, [{"time": 99.0, "arrivals": {"any:0.1": 1}}]).stranded == 0  # 100 fits both holes


def test_profile_devices_take_profile_requests_only() -> None:
    a100 = _device(
        "a100-80gb",
        "nvidia",
        81920,
        free=142,
        free_mem=10240,
        mode="profile",
        free_profiles=("1g.10gb",),
        slices=[
            _slice("s1", 428, 40960, profile="3g.40gb"),
            _slice("s2", 285, 20480, profile="2g.20gb", tasks=1, load=285),
        ],
    )
    state = _state([a100])
    assert measure(state, [{"time": 99.0, "arrivals": {"a100-80gb:1g.10gb": 1}}]).stranded == 428
    # An idle shared 3g.40gb slice takes a 3g.40gb task; the free 1g.10gb profile does not.
    assert measure(state, [{"time": 99.0, "arrivals": {"a100-80gb:3g.40gb": 1}}]).stranded == 142
    # A fraction request cannot carve a MIG device, but may share the idle 3g.40gb slice.
    assert measure(state, [{"time": 99.0, "arrivals": {"gpu:0.2": 1}}]).stranded == 142


def test_common_shapes_cover_95_percent_and_add_waiting_work(t4_pool: PoolState) -> None:
    frames = [
        {"time": 99.0, "arrivals": {"gpu:0.25": 90, "gpu:0.5": 8, "gpu:0.75": 2, "cpu:2,8GiB": 500}},
        {"time": 10.0, "arrivals": {"npu:0.5": 1000}},  # older than the window
    ]
    state = replace(t4_pool, waiting=(WaitingWork(key="k", request="mlu:0.3", reason=""),))
    shapes = dict(common_shapes(state, frames, window_s=60))
    # cpu-only requests never use accelerators; gpu:0.75 is in the last 5% of arrivals.
    assert set(shapes) == {"gpu:0.25", "gpu:0.5", "mlu:0.3"}
    assert sum(shapes.values()) == pytest.approx(1.0)
    assert shapes["gpu:0.25"] > shapes["gpu:0.5"]


def test_no_recent_requests_means_nothing_to_measure_against(t4_pool: PoolState) -> None:
    f = measure(t4_pool, [])
    assert (f.idle, f.stranded, f.shapes) == (400, 0, [])


def test_recorded_pool(state: PoolState, frames: list[dict[str, Any]]) -> None:
    panel = FragmentationPanel()
    panel.update(state, frames)
    f = panel.last
    assert f is not None
    # Uncarved vNPU capacity (750), the idle MIG instances and the headroom of the shared slices.
    assert f.idle == 750 + (428 + 285 + 142 + 142) + 1000 + 500 + 1000 + (1000 - 550)
    assert 0 <= f.stranded <= f.idle
    data = panel.source.data
    assert sum(data["idle"]) == pytest.approx(f.idle / 1000)
    for usable, stranded, idle in zip(data["usable"], data["stranded"], data["idle"], strict=True):
        assert usable + stranded == pytest.approx(idle)
    assert "Stranded: <b>" in panel.summary.text
