"""The in-process memory cap, with fake torch and cupy modules (no GPU needed)."""

from __future__ import annotations

import types
from typing import Any

import pytest

from flexlab.providers.memcap import apply_memory_cap

MIB = 1024 * 1024


def fake_torch(
    backends: dict[str, tuple[bool, int]],
) -> tuple[types.ModuleType, list[tuple[str, float, int]]]:
    """A torch with the named backends: name -> (available, total MiB); records fraction calls."""
    calls: list[tuple[str, float, int]] = []
    torch = types.ModuleType("torch")
    for name, (available, total_mib) in backends.items():
        backend = types.SimpleNamespace(
            is_available=lambda a=available: a,
            get_device_properties=lambda i, t=total_mib: types.SimpleNamespace(total_memory=t * MIB),
            set_per_process_memory_fraction=lambda f, d, n=name: calls.append((n, f, d)),
        )
        setattr(torch, name, backend)
    return torch, calls


def fake_cupy() -> tuple[types.SimpleNamespace, list[int]]:
    limits: list[int] = []

    def set_limit(size: int) -> None:  # CuPy takes the limit as the keyword ``size``
        limits.append(size)

    pool = types.SimpleNamespace(set_limit=set_limit)
    return types.SimpleNamespace(get_default_memory_pool=lambda: pool), limits


def importer_for(**modules: Any) -> Any:
    return modules.get


def test_caps_torch_cuda_and_cupy() -> None:
    torch, calls = fake_torch({"cuda": (True, 81920)})
    cupy, limits = fake_cupy()
    result = apply_memory_cap(
        {"FLEXLAB_MEMORY_LIMIT_MIB": "20480"}, importer=importer_for(torch=torch, cupy=cupy)
    )
    assert calls == [("cuda", 0.25, 0)]
    assert limits == [20480 * MIB]
    assert result.limit_mib == 20480
    assert result.applied == ("torch.cuda fraction=0.2500 of 81920 MiB", "cupy pool limit=20480 MiB")


def test_caps_torch_npu_and_skips_unavailable_backends() -> None:
    torch, calls = fake_torch({"cuda": (False, 0), "npu": (True, 65536)})
    result = apply_memory_cap(limit_mib=16384, importer=importer_for(torch=torch))
    assert calls == [("npu", 0.25, 0)]
    assert result.skipped == ("torch.cuda: no device visible", "cupy: not installed")


def test_limit_above_the_device_is_a_fraction_of_one() -> None:
    torch, calls = fake_torch({"cuda": (True, 1000)})
    apply_memory_cap(limit_mib=5000, importer=importer_for(torch=torch))
    assert calls == [("cuda", 1.0, 0)]


@pytest.mark.parametrize(
    ("env", "skipped"),
    [
        ({}, ("FLEXLAB_MEMORY_LIMIT_MIB not set",)),
        ({"FLEXLAB_MEMORY_LIMIT_MIB": "8GiB"}, ("FLEXLAB_MEMORY_LIMIT_MIB='8GiB' is not a number",)),
        ({"FLEXLAB_MEMORY_LIMIT_MIB": "0"}, ("limit 0 MiB is not positive",)),
    ],
    ids=["unset", "not-a-number", "zero"],
)
def test_nothing_capped_without_a_valid_limit(env: dict[str, str], skipped: tuple[str, ...]) -> None:
    torch, calls = fake_torch({"cuda": (True, 1000)})
    result = apply_memory_cap(env, importer=importer_for(torch=torch))
    assert (result.limit_mib, result.applied, result.skipped, calls) == (None, (), skipped, [])


def test_without_frameworks_installed() -> None:
    result = apply_memory_cap(limit_mib=1024, importer=importer_for())
    assert (result.applied, result.skipped) == ((), ("torch: not installed", "cupy: not installed"))
