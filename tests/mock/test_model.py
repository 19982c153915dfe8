"""The mock performance model: the duration formula, speed factors, memory and utilisation accounting."""

from __future__ import annotations

import ast
import doctest
import importlib
import math
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flexlab.core.catalog import CATALOG
from flexlab.core.errors import InvalidRequest, UnknownName
from flexlab.mock import (
    DEFAULT_SPEEDS,
    MockDevice,
    MockOutOfMemory,
    SliceContext,
    SpeedTable,
    duration,
    mock_device,
    mock_devices,
)

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- the formula
@pytest.mark.parametrize(
    ("work", "demand", "share", "speed", "expected"),
    [
        (1.0, 0.5, 0.25, 1.0, 4.0),  # the slice is smaller than the demand: the slice limits
        (1.0, 0.25, 1.0, 1.0, 4.0),  # a whole device, but the task can use only a quarter
        (1.0, 0.3, 0.3, 1.0, 1.0 / 0.3),  # share == demand
        (1.0, 1.0, 1.0, 2.4, 1.0 / 2.4),  # an A100 on the reference scale
        (0.5, 1.0, 0.5, 0.5, 2.0),  # half a T4
        (0.0, 0.5, 0.5, 1.0, 0.0),  # no work takes no time
    ],
    ids=[
        "share-below-demand",
        "share-above-demand",
        "share-equals-demand",
        "speed-2.4",
        "slow-half",
        "no-work",
    ],
)
def test_duration_follows_the_formula(
    work: float, demand: float, share: float, speed: float, expected: float
) -> None:
    assert duration(work, demand, share, speed) == pytest.approx(expected, rel=1e-12)


def test_more_share_than_demand_does_not_speed_a_task_up() -> None:
    base = duration(1.0, 0.3, 0.3, 1.0)
    assert [duration(1.0, 0.3, s, 1.0) for s in (0.3, 0.5, 1.0)] == [base, base, base]
    assert duration(1.0, 0.3, 0.1, 1.0) == pytest.approx(3 * base)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"demand": 0.0}, "demand"),
        ({"demand": 1.5}, "demand"),
        ({"share": 0.0}, "share"),
        ({"share": 2.0}, "share"),
        ({"speed": 0.0}, "speed"),
        ({"speed": math.inf}, "speed"),
        ({"work": -1.0}, "work"),
        ({"work": math.nan}, "work"),
    ],
    ids=[
        "demand-0",
        "demand-over-1",
        "share-0",
        "share-over-1",
        "speed-0",
        "speed-inf",
        "work-neg",
        "work-nan",
    ],
)
def test_duration_rejects_bad_input(kwargs: dict[str, float], field: str) -> None:
    args = {"work": 1.0, "demand": 0.5, "share": 0.5, "speed": 1.0, **kwargs}
    with pytest.raises(InvalidRequest) as err:
        duration(**args)
    assert err.value.field == field


# ---------------------------------------------------------------------------- speed factors
@pytest.mark.parametrize(
    ("model", "factor", "basis"),
    [
        ("v100s-32gb", 1.0, "peak-fp16"),
        ("t4", 65.0 / 130.0, "peak-fp16"),
        ("p100", 18.7 / 130.0, "peak-fp16"),
        ("a100-40gb", 312.0 / 130.0, "peak-fp16"),
        ("h100-80gb", 989.0 / 130.0, "peak-fp16"),
        ("ascend-310p3", 70.0 / 130.0, "peak-fp16"),
        ("mlu370-x8", 96.0 / 130.0, "peak-fp16"),
        ("ascend-910b3", 1.0, "fallback"),
        ("openb-g1", 1.0, "fallback"),
    ],
    ids=str,
)
def test_default_speed_is_peak_fp16_over_the_reference(model: str, factor: float, basis: str) -> None:
    row = DEFAULT_SPEEDS.row(model, "inference")
    assert (row.factor, row.basis) == (pytest.approx(factor, rel=1e-12), basis)


def test_the_fallback_never_exceeds_the_reference() -> None:
    fallbacks = [r.factor for r in DEFAULT_SPEEDS.rows() if r.basis == "fallback"]
    assert fallbacks
    assert max(fallbacks) == DEFAULT_SPEEDS.factor("v100s-32gb") == 1.0


@pytest.mark.parametrize(
    ("overrides", "workload_class", "expected"),
    [
        ({("inference", "t4"): 0.4}, "inference", 0.4),
        ({("inference", "t4"): 0.4}, "training", 0.5),  # other classes keep the default
        ({("*", "t4"): 0.3}, "training", 0.3),
        ({("*", "t4"): 0.3, ("training", "t4"): 0.6}, "training", 0.6),  # the class beats "*"
        ({("inference", "Tesla T4"): 0.4}, "inference", 0.4),  # product names resolve to the key
        ({("*", "ascend-910b3"): 2.0}, "kernel", 2.0),  # a measured 910B replaces the fallback
    ],
    ids=["class", "other-class", "any-class", "class-beats-any", "alias", "fallback-overridden"],
)
def test_speed_overrides(
    overrides: dict[tuple[str, str], float], workload_class: str, expected: float
) -> None:
    model = next(m for (_, m) in overrides)
    key = "ascend-910b3" if "910b3" in model else "t4"
    table = SpeedTable.of(overrides)
    assert table.factor(key, workload_class) == pytest.approx(expected)


def test_with_overrides_layers_on_top() -> None:
    table = SpeedTable.of({("*", "t4"): 0.3}).with_overrides({("*", "t4"): 0.35})
    assert table.factor("t4") == 0.35
    assert DEFAULT_SPEEDS.factor("t4") == 0.5  # the default table is untouched


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: SpeedTable.of({("kernel", "t4"): 0.0}), InvalidRequest),
        (lambda: SpeedTable.of({("kernel", "t4"): math.nan}), InvalidRequest),
        (lambda: SpeedTable.of({("", "t4"): 1.0}), InvalidRequest),
        (lambda: SpeedTable.of({("kernel", "no-such-gpu"): 1.0}), UnknownName),
        (lambda: SpeedTable(reference="ascend-910b3"), InvalidRequest),
        (lambda: SpeedTable(fallback=0.0), InvalidRequest),
    ],
    ids=["zero", "nan", "empty-class", "unknown-model", "reference-without-peak", "zero-fallback"],
)
def test_speed_table_rejects_bad_entries(make: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


def test_docs_table_matches_the_code() -> None:
    """docs/mock-devices.md lists every catalog model with the factor the code uses."""
    text = (ROOT / "docs" / "mock-devices.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \|[^|]*\| ([0-9.]+) \|", text, flags=re.M))
    assert set(rows) == set(CATALOG)
    for key, shown in rows.items():
        assert float(shown) == pytest.approx(DEFAULT_SPEEDS.factor(key), abs=0.0005), key


# ---------------------------------------------------------------------------- slice context
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"share_milli": 0}, "share_milli"),
        ({"share_milli": 1001}, "share_milli"),
        ({"memory_mib": -1}, "memory_mib"),
        ({"slice_id": ""}, "slice_id"),
        ({"device_id": ""}, "device_id"),
        ({"granted_milli": 600}, "granted_milli"),
        ({"granted_milli": 0}, "granted_milli"),
    ],
    ids=["share-0", "share-over", "memory-neg", "no-slice-id", "no-device-id", "grant-over-slice", "grant-0"],
)
def test_slice_context_validates(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "share_milli": 500,
        "memory_mib": 1024,
        "model_key": "t4",
        "device_id": "d0",
        "slice_id": "s0",
        **kwargs,
    }
    with pytest.raises(InvalidRequest) as err:
        SliceContext(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_slice_context_resolves_aliases_and_task_share() -> None:
    ctx = SliceContext(share_milli=500, memory_mib=1024, model_key="Tesla T4", device_id="d0", slice_id="s0")
    assert (ctx.model_key, ctx.share, ctx.task_share) == ("t4", 0.5, 0.5)
    assert ctx.for_task(200).task_share == 0.2
    assert ctx.for_task(None).task_share == 0.5


# ---------------------------------------------------------------------------- memory
def test_out_of_memory_names_the_sizes() -> None:
    dev = MockDevice("d0", "t4")
    dev.allocate("s0", 3072, slice_memory_mib=4096)
    with pytest.raises(MockOutOfMemory) as err:
        dev.allocate("s0", 2048, slice_memory_mib=4096)
    assert "tried to allocate 2048 MiB; slice has 4096 MiB total, 3072 MiB in use" in str(err.value)
    assert isinstance(err.value, MemoryError)
    assert (err.value.requested_mib, err.value.capacity_mib, err.value.in_use_mib) == (2048, 4096, 3072)
    assert dev.slice_memory_used("s0") == 3072  # the failed allocation took nothing


def test_out_of_memory_of_the_device_when_slices_overcommit_it() -> None:
    dev = MockDevice("d0", "t4")  # 16 GiB
    dev.allocate("s0", 10000, slice_memory_mib=16384)
    with pytest.raises(MockOutOfMemory, match="device has 16384 MiB total, 10000 MiB in use"):
        dev.allocate("s1", 8000, slice_memory_mib=16384)


def test_out_of_memory_survives_pickle() -> None:
    err = MockOutOfMemory(2048, 4096, 3072, "s0", "t4")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.in_use_mib) == (MockOutOfMemory, str(err), 3072)


def test_memory_is_freed_after_an_exception() -> None:
    dev = MockDevice("d0", "t4")
    seen: list[int] = []

    def fail_while_holding() -> None:
        with dev.holding("s0", 1000, slice_memory_mib=4096):
            seen.append(dev.memory_used())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_holding()
    assert (seen, dev.memory_used()) == ([1000], 0)


# ---------------------------------------------------------------------------- utilisation
@pytest.mark.parametrize(
    ("tasks", "utilisation", "factors"),
    [
        ([("s0", 500, 0.3)], 0.3, [1.0]),
        ([("s0", 500, 0.4), ("s1", 500, 0.5)], 0.9, [1.0, 1.0]),  # slices sum
        ([("s0", 250, 0.25), ("s1", 250, 0.1), ("s2", 500, 0.5)], 0.85, [1.0, 1.0, 1.0]),
        (
            [("s0", 500, 0.3), ("s0", 500, 0.3)],
            0.5,
            [0.5 / 0.6, 0.5 / 0.6],
        ),  # a slice counts at most its share
        ([("s0", 1000, 0.7), ("s0", 1000, 0.7)], 1.0, [1 / 1.4, 1 / 1.4]),  # capped at 1, time-shared
        ([("s0", 1000, 0.8), ("s1", 1000, 0.6)], 1.0, [1 / 1.4, 1 / 1.4]),  # over-carved device
    ],
    ids=["one", "two-slices", "three-slices", "slice-oversubscribed", "device-cap", "overcarved"],
)
def test_utilisation_sums_running_tasks_and_caps(
    tasks: list[tuple[str, int, float]], utilisation: float, factors: list[float]
) -> None:
    dev = MockDevice("d0", "a100-40gb")
    tokens = [dev.start(sid, use, slice_share_milli=share) for sid, share, use in tasks]
    assert dev.utilisation() == pytest.approx(utilisation)
    assert [dev.rate_factor(t) for t in tokens] == pytest.approx(factors)
    assert dev.readout().utilisation == pytest.approx(utilisation)
    for t in tokens:
        dev.finish(t)
        dev.finish(t)  # idempotent
    assert (dev.utilisation(), dev.running_tasks()) == (0.0, 0)


def test_readout_per_slice() -> None:
    dev = MockDevice("d0", "a100-40gb")
    dev.allocate("s1", 512, slice_memory_mib=2048)
    with dev.running("s0", 0.2, slice_share_milli=500):
        r = dev.readout()
    assert (r.device_id, r.model_key, r.memory_used_mib, r.memory_total_mib) == (
        "d0",
        "a100-40gb",
        512,
        40960,
    )
    assert [(s.slice_id, s.utilisation, s.memory_used_mib, s.running) for s in r.slices] == [
        ("s0", 0.2, 0, 1),
        ("s1", 0.0, 512, 0),
    ]


def test_registry_shares_one_device_between_its_slices() -> None:
    a, b = mock_device("host/0", "a100-40gb"), mock_device("host/0", "NVIDIA A100-SXM4-40GB")
    assert a is b
    assert mock_device("host/1", "t4") is not a
    assert [d.device_id for d in mock_devices()] == ["host/0", "host/1"]
    with pytest.raises(InvalidRequest, match="model of mock device 'host/0'"):
        mock_device("host/0", "t4")


# ---------------------------------------------------------------------------- house rules
@pytest.mark.parametrize("module", ["model", "speed", "env", "context", "workloads", "__init__"])
def test_doctests_pass(module: str) -> None:
    name = "flexlab.mock" if module == "__init__" else f"flexlab.mock.{module}"
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("module", ["model.py", "speed.py"])
def test_the_model_is_pure(module: str) -> None:
    """model.py and speed.py import the standard library and flexlab.core only."""
    tree = ast.parse((ROOT / "flexlab" / "mock" / module).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    allowed = ("flexlab.core", "flexlab.mock.speed", "__future__")
    bad = {n for n in names if n.split(".")[0] not in sys.stdlib_module_names and not n.startswith(allowed)}
    assert not bad
