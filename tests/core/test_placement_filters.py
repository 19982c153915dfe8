"""Filters, reasons and explain() on a small hand-made pool.

The pool (``tiny_pool``): host 0 "gpu-a" (16 cores, 64 GiB) with T4s 0 and 1; host 1
"mixed-b" (64 cores, 256 GiB) with a MIG A100 (device 2) and an Ascend 910B3 (device 3,
10% steps); host 2 "small-c" (4 cores, 16 GiB) with T4s 4 and 5.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from flexlab.core.placement import Code, Reason, explain, make_profile, place
from flexlab.core.placement.filters import compute_need
from flexlab.core.placement.testing import Req, Sel, tiny_pool
from flexlab.core.snapshot import PoolArrays

R = Reason
FIRST = make_profile("firstfit")


def _noop(pool: PoolArrays) -> None:
    return None


def _host0_cpu_low(pool: PoolArrays) -> None:
    pool.host_cpu_free[0] = 500


def _dev0_partly_used(pool: PoolArrays) -> None:
    pool.dev_compute_free[0] = 200
    pool.dev_mem_free[0] = 3072


def _dev0_down(pool: PoolArrays) -> None:
    pool.dev_schedulable[0] = False


def _a100_only_1g(pool: PoolArrays) -> None:
    pool.profile_free[2] = frozenset({"1g.10gb"})


# (id, request, mutate, expected first-failing reason per device 0..5, or per host 0..2)
DEVICE_CASES: list[tuple[str, Req, Callable[[PoolArrays], None], list[Reason]]] = [
    (
        "quarter-share-fits-fraction-devices",
        Req(compute_milli=250, host_cpu_milli=1000),
        _noop,
        [R.OK, R.OK, R.PROFILE_UNSUPPORTED, R.OK, R.OK, R.OK],
    ),
    (
        "npu-selector",
        Req(selector=Sel(kinds=frozenset({"npu"})), compute_milli=250),
        _noop,
        [R.KIND_MISMATCH] * 3 + [R.OK] + [R.KIND_MISMATCH] * 2,
    ),
    (
        "vendor-selector",
        Req(selector=Sel(vendors=frozenset({"huawei"})), compute_milli=500),
        _noop,
        [R.VENDOR_MISMATCH] * 3 + [R.OK] + [R.VENDOR_MISMATCH] * 2,
    ),
    (
        "t4-whole-host-cpu-too-small-on-small-host",
        Req(selector=Sel(models=frozenset({"t4"})), compute_milli=1000, host_cpu_milli=8000),
        _noop,
        [R.OK, R.OK, R.MODEL_MISMATCH, R.MODEL_MISMATCH, R.HOST_CPU_TOO_SMALL, R.HOST_CPU_TOO_SMALL],
    ),
    (
        "device-memory-too-small",
        Req(compute_milli=500, memory_mib=20000),
        _noop,
        [R.DEVICE_TOO_SMALL, R.DEVICE_TOO_SMALL, R.PROFILE_UNSUPPORTED, R.OK] + [R.DEVICE_TOO_SMALL] * 2,
    ),
    (
        "selector-min-memory",
        Req(selector=Sel(min_memory_mib=32768), compute_milli=1000),
        _noop,
        [R.DEVICE_TOO_SMALL, R.DEVICE_TOO_SMALL, R.OK, R.OK, R.DEVICE_TOO_SMALL, R.DEVICE_TOO_SMALL],
    ),
    (
        "mig-profile-only-on-mig-device",
        Req(profile="1g.10gb", compute_milli=0),
        _noop,
        [R.PROFILE_UNSUPPORTED] * 2 + [R.OK] + [R.PROFILE_UNSUPPORTED] * 3,
    ),
    (
        "unknown-profile-never-fits",
        Req(profile="9g.99gb", compute_milli=0),
        _noop,
        [R.PROFILE_UNSUPPORTED] * 6,
    ),
    (
        "profile-taken",
        Req(profile="3g.40gb", compute_milli=0),
        _a100_only_1g,
        [R.PROFILE_UNSUPPORTED] * 2 + [R.PROFILE_UNAVAILABLE] + [R.PROFILE_UNSUPPORTED] * 3,
    ),
    (
        "host-cpu-exhausted",
        Req(compute_milli=100, host_cpu_milli=1000),
        _host0_cpu_low,
        [R.INSUFFICIENT_HOST_CPU, R.INSUFFICIENT_HOST_CPU, R.PROFILE_UNSUPPORTED, R.OK, R.OK, R.OK],
    ),
    (
        "device-compute-exhausted",
        Req(selector=Sel(models=frozenset({"t4"})), compute_milli=300),
        _dev0_partly_used,
        [R.INSUFFICIENT_COMPUTE, R.OK, R.MODEL_MISMATCH, R.MODEL_MISMATCH, R.OK, R.OK],
    ),
    (
        "device-memory-exhausted",
        Req(selector=Sel(models=frozenset({"t4"})), compute_milli=100, memory_mib=4000),
        _dev0_partly_used,
        [R.INSUFFICIENT_MEMORY, R.OK, R.MODEL_MISMATCH, R.MODEL_MISMATCH, R.OK, R.OK],
    ),
    (
        "device-cordoned",
        Req(compute_milli=100),
        _dev0_down,
        [R.DEVICE_UNSCHEDULABLE, R.OK, R.PROFILE_UNSUPPORTED, R.OK, R.OK, R.OK],
    ),
    (
        "host-ram",
        Req(compute_milli=100, host_memory_mib=32768),
        _noop,
        [R.OK, R.OK, R.PROFILE_UNSUPPORTED, R.OK, R.HOST_MEMORY_TOO_SMALL, R.HOST_MEMORY_TOO_SMALL],
    ),
]


@pytest.mark.parametrize(
    ("request_", "mutate", "expected"), [c[1:] for c in DEVICE_CASES], ids=[c[0] for c in DEVICE_CASES]
)
def test_device_reasons(request_: Req, mutate: Callable[[PoolArrays], None], expected: list[Reason]) -> None:
    pool = tiny_pool()
    mutate(pool)
    e = explain(request_, pool, FIRST)
    assert e.level == "device"
    counted: dict[Reason, int] = {}
    for r in expected:
        if r is not R.OK:
            counted[r] = counted.get(r, 0) + 1
    assert e.reasons == counted
    assert e.feasible == expected.count(R.OK)
    if R.OK in expected:
        assert e.decision.ok
        assert e.decision.devices == (expected.index(R.OK),)  # first-fit: first feasible device


HOST_CASES: list[tuple[str, Req, Callable[[PoolArrays], None], list[Reason]]] = [
    (
        "two-whole-t4s",
        Req(selector=Sel(models=frozenset({"t4"})), compute_milli=1000, devices=2, host_cpu_milli=1000),
        _noop,
        [R.OK, R.NOT_ENOUGH_DEVICES, R.OK],
    ),
    (
        "two-whole-t4s-one-taken",
        Req(selector=Sel(models=frozenset({"t4"})), compute_milli=1000, devices=2, host_cpu_milli=1000),
        _dev0_partly_used,
        [R.NOT_ENOUGH_WHOLE_DEVICES, R.NOT_ENOUGH_DEVICES, R.OK],
    ),
    (
        "two-whole-any-host-cpu",
        Req(compute_milli=1000, devices=2, host_cpu_milli=8000),
        _noop,
        [R.OK, R.OK, R.HOST_CPU_TOO_SMALL],
    ),
    (
        "cpu-only",
        Req(compute_milli=0, host_cpu_milli=20000),
        _noop,
        [R.HOST_CPU_TOO_SMALL, R.OK, R.HOST_CPU_TOO_SMALL],
    ),
    (
        "cpu-only-exhausted",
        Req(compute_milli=0, host_cpu_milli=1000, host_memory_mib=1024),
        _host0_cpu_low,
        [R.INSUFFICIENT_HOST_CPU, R.OK, R.OK],
    ),
]


@pytest.mark.parametrize(
    ("request_", "mutate", "expected"), [c[1:] for c in HOST_CASES], ids=[c[0] for c in HOST_CASES]
)
def test_host_reasons(request_: Req, mutate: Callable[[PoolArrays], None], expected: list[Reason]) -> None:
    pool = tiny_pool()
    mutate(pool)
    e = explain(request_, pool, FIRST)
    assert e.level == "host"
    assert e.considered == 3
    assert e.feasible == expected.count(R.OK)
    d = e.decision
    assert d.ok
    assert d.host == expected.index(R.OK)
    assert len(d.devices) == (request_.devices if request_.compute_milli else 0)
    assert all(pool.dev_host[x] == d.host for x in d.devices)


def test_multi_device_takes_wholly_free_devices_of_the_host() -> None:
    pool = tiny_pool()
    d = place(Req(compute_milli=1000, devices=2, host_cpu_milli=2000), pool, FIRST)
    assert (d.host, d.devices, d.compute_milli) == (0, (0, 1), (1000, 1000))
    assert d.memory_mib == (15360, 15360)  # whole devices take all their memory
    assert (d.host_cpu_milli, d.decision_id.startswith("place-")) == (2000, True)


def test_need_rounds_to_granularity_and_memory_proportionally() -> None:
    pool = tiny_pool()
    need = compute_need(Req(compute_milli=250), pool)
    # T4: 1% steps -> 250; 910B3: 10% steps -> 300; MIG A100: a share is left as asked.
    assert need.compute.tolist() == [250, 250, 250, 300, 250, 250]
    # memory: the same share of the device, rounded up (the ledger's rule)
    assert need.memory[0] == 3840
    assert need.memory[3] == 19661  # 65536 * 0.3 = 19660.8
    assert need.profile_sliced.tolist() == [False, False, True, False, False, False]


def test_profile_size_comes_from_the_model_menu() -> None:
    pool = tiny_pool()
    d = place(Req(profile="3g.40gb", compute_milli=0), pool, FIRST)
    assert (d.ok, d.devices, d.compute_milli, d.memory_mib, d.profile) == (
        True,
        (2,),
        (429,),
        (40960,),
        "3g.40gb",
    )


def test_whole_request_on_mig_device_needs_it_wholly_free() -> None:
    pool = tiny_pool()
    a100 = Req(selector=Sel(models=frozenset({"a100-80gb"})), compute_milli=1000)
    assert place(a100, pool, FIRST).devices == (2,)
    pool.dev_compute_free[2] -= 143
    d = place(a100, pool, FIRST)
    assert d.status.code is Code.UNSCHEDULABLE
    assert dict(d.status.reasons) == {R.MODEL_MISMATCH: 5, R.INSUFFICIENT_COMPUTE: 1}


def test_explain_counts_reasons_per_device_class_and_says_unschedulable() -> None:
    pool = tiny_pool()
    pool.host_cpu_free[1] = 10000
    e = explain(Req(compute_milli=1000, host_cpu_milli=30000), pool, FIRST)
    assert e.code is Code.UNSCHEDULABLE
    assert not e.decision.ok
    assert e.decision.host == -1
    assert e.reasons_by_class == {
        "t4": {R.HOST_CPU_TOO_SMALL: 4},
        "a100-80gb": {R.INSUFFICIENT_HOST_CPU: 1},
        "ascend-910b3": {R.INSUFFICIENT_HOST_CPU: 1},
    }
    assert e.reasons == {R.HOST_CPU_TOO_SMALL: 4, R.INSUFFICIENT_HOST_CPU: 2}
    assert "t4: 4 HOST_CPU_TOO_SMALL" in e.describe()


def test_explain_unresolvable_when_no_candidate_could_ever_fit() -> None:
    pool = tiny_pool()
    pool.host_cpu_free[:] = 0  # dynamic state must not matter for the code
    e = explain(Req(compute_milli=1000, host_cpu_milli=100_000), pool, FIRST)
    assert e.code is Code.UNRESOLVABLE
    assert e.reasons_by_class == {
        "t4": {R.HOST_CPU_TOO_SMALL: 4},
        "a100-80gb": {R.HOST_CPU_TOO_SMALL: 1},
        "ascend-910b3": {R.HOST_CPU_TOO_SMALL: 1},
    }


def test_explain_host_level_classes_use_the_device_the_request_could_use() -> None:
    pool = tiny_pool()
    two_npus = Req(selector=Sel(kinds=frozenset({"npu"})), compute_milli=1000, devices=2)
    e = explain(two_npus, pool, FIRST)
    assert e.code is Code.UNRESOLVABLE
    assert e.reasons_by_class == {"t4": {R.NOT_ENOUGH_DEVICES: 2}, "ascend-910b3": {R.NOT_ENOUGH_DEVICES: 1}}


def test_place_is_pure() -> None:
    pool = tiny_pool()
    before = pool.copy()
    place(Req(compute_milli=500, host_cpu_milli=1000), pool, make_profile("bestfit"))
    for name in ("host_cpu_free", "host_mem_free", "dev_compute_free", "dev_mem_free"):
        assert np.array_equal(getattr(pool, name), getattr(before, name)), name
