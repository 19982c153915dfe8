"""A bound task holds one Dask resource, its slice's compute, and its memory counts against
it: tasks that fit together in that resource fit in the slice's compute and its memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexlab.core.catalog import CATALOG
from flexlab.core.ledger import default_memory_mib
from flexlab.core.pool import SlicePool
from flexlab.core.pool.model import SliceInfo
from flexlab.core.request import parse_request
from flexlab.core.snapshot import WHOLE
from flexlab.core.topology import DeviceSpec, HostSpec


def slice_of(compute_milli: int, memory_mib: int) -> SliceInfo:
    return SliceInfo("s1", "a1", "h", ("d0",), "t4", "gpu", "nvidia", compute_milli, memory_mib)


@st.composite
def slice_and_tasks(draw: st.DrawFn) -> tuple[SliceInfo, list[tuple[int, int]]]:
    cap_c = draw(st.integers(1, WHOLE))
    cap_m = draw(st.integers(1, 200_000))
    tasks = draw(st.lists(st.tuples(st.integers(1, cap_c), st.integers(0, cap_m)), min_size=1, max_size=12))
    return slice_of(cap_c, cap_m), tasks


@given(slice_and_tasks())
def test_tasks_that_fit_the_resource_fit_the_slice(case: tuple[SliceInfo, list[tuple[int, int]]]) -> None:
    s, tasks = case
    held = [s.task_milli(c, m) for c, m in tasks]
    for (c, _m), h in zip(tasks, held, strict=True):
        assert c <= h <= s.compute_milli  # never less than its compute, never beyond the slice
    if sum(held) <= s.compute_milli:  # Dask lets them run together
        assert sum(c for c, _ in tasks) <= s.compute_milli
        # the memory rounding of a request's default share: at most 1 MiB a task over
        assert sum(m for _, m in tasks) <= s.memory_mib + len(tasks)


@pytest.mark.parametrize("model", sorted(m for m, d in CATALOG.items() if d.memory_mib is not None))
def test_a_task_whose_memory_follows_its_share_holds_exactly_its_compute(model: str) -> None:
    total = CATALOG[model].memory_mib
    assert total is not None
    s = slice_of(WHOLE, total)
    for c in range(10, WHOLE + 1, 10):
        assert s.task_milli(c, default_memory_mib(c, total)) == c


def test_a_memory_heavy_task_holds_its_memory_share() -> None:
    s = slice_of(WHOLE, 16_384)  # a T4
    assert s.task_milli(100, 8_192) == 500  # 8 of 16 GiB: half the slice
    assert s.task_milli(100, 8_193) == 501  # rounded up: never less than its memory's share
    assert s.task_milli(100, 16_384) == WHOLE
    half = slice_of(500, 4_096)  # a slice with less memory than its compute's share
    assert half.task_milli(100, 1_536) == 188


def test_the_pool_binds_with_one_resource_and_workers_offer_only_it() -> None:
    pool = SlicePool()
    pool.register_host(HostSpec("h", 8_000, 32 * 1024, (DeviceSpec("t4", 0),)))
    (s,) = pool.slices.values()
    assert s.worker_resources(8) == {s.resource: float(s.compute_milli)}
    a = pool.bind("a", parse_request("t4:0.1"))
    b = pool.bind("b", parse_request("t4:0.1,8GiB"))
    assert a.resources == {s.resource: 100.0}
    assert b.resources == {s.resource: 500.0}
    many = pool.bind_many(["c", "d"], parse_request("t4:0.2"))
    assert [x.resources for x in many] == [{s.resource: 200.0}] * 2
