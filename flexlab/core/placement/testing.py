"""Small pools and request stubs for tests, docs and benchmarks of placement.

>>> pool = build_pool(
...     [("h0", 8000, 32768, ["t4", "t4"])],
...     [ModelSpec("t4", memory_mib=15360)],
... )
>>> pool.n_hosts, pool.n_devices, int(pool.dev_mem_total[1])
(1, 2, 15360)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from flexlab.core.snapshot import WHOLE, PoolArrays


@dataclass(frozen=True)
class Sel:
    """A selector stub with ``flexlab.core.request.Selector``'s attribute names."""

    kinds: frozenset[str] = frozenset()
    vendors: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    min_memory_mib: int = 0


@dataclass(frozen=True)
class Req:
    """A request stub with ``flexlab.core.request.SliceRequest``'s attribute names."""

    selector: Sel = field(default_factory=Sel)
    compute_milli: int = WHOLE
    memory_mib: int = 0
    profile: str | None = None
    devices: int = 1
    host_cpu_milli: int = 0
    host_memory_mib: int = 0
    priority: int = 0
    owner: str | None = None
    workload_class: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One device model of a hand-made pool. ``granularity`` 0 = profile-sliced only."""

    key: str
    kind: str = "gpu"
    vendor: str = "nvidia"
    granularity: int = 10
    memory_mib: int = 16384
    profiles: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def build_pool(
    hosts: Sequence[tuple[str, int, int, Sequence[str]]], models: Sequence[ModelSpec]
) -> PoolArrays:
    """A ``PoolArrays`` from ``(name, cpu_milli, memory_mib, [device model keys])`` per host.

    Devices of profile-only models start with their whole profile menu free.
    """
    index = {m.key: i for i, m in enumerate(models)}
    dev_model = [index[k] for _, _, _, devs in hosts for k in devs]
    dev_host = [h for h, (_, _, _, devs) in enumerate(hosts) for _ in devs]
    starts = np.concatenate(([0], np.cumsum([len(devs) for _, _, _, devs in hosts]))).astype(np.int64)
    mem = np.array([models[m].memory_mib for m in dev_model], dtype=np.int64)
    cpu = np.array([c for _, c, _, _ in hosts], dtype=np.int64)
    hmem = np.array([m for _, _, m, _ in hosts], dtype=np.int64)
    profile_free = {
        d: frozenset(models[m].profiles) for d, m in enumerate(dev_model) if models[m].granularity == 0
    }
    return PoolArrays(
        host_names=[n for n, _, _, _ in hosts],
        host_cpu_total=cpu,
        host_cpu_free=cpu.copy(),
        host_mem_total=hmem,
        host_mem_free=hmem.copy(),
        host_dev_start=starts,
        dev_host=np.array(dev_host, dtype=np.int32),
        dev_model=np.array(dev_model, dtype=np.int32),
        dev_compute_free=np.full(len(dev_model), WHOLE, dtype=np.int64),
        dev_mem_total=mem,
        dev_mem_free=mem.copy(),
        dev_schedulable=np.ones(len(dev_model), dtype=np.bool_),
        model_keys=[m.key for m in models],
        model_kind=[m.kind for m in models],
        model_vendor=[m.vendor for m in models],
        model_granularity=[m.granularity for m in models],
        profile_free=profile_free,
        model_profiles=[dict(m.profiles) for m in models],
    )


#: An A100 80GB's MIG menu (compute milli rounded from g/7, memory MiB).
A100_PROFILES: Mapping[str, tuple[int, int]] = {
    "1g.10gb": (143, 10240),
    "2g.20gb": (286, 20480),
    "3g.40gb": (429, 40960),
    "7g.80gb": (WHOLE, 81920),
}

TINY_MODELS = (
    ModelSpec("t4", memory_mib=15360, granularity=10),
    ModelSpec("a100-80gb", memory_mib=81920, granularity=0, profiles=A100_PROFILES),
    ModelSpec("ascend-910b3", kind="npu", vendor="huawei", memory_mib=65536, granularity=100),
)


def tiny_pool() -> PoolArrays:
    """Three hosts: two T4s (16 cores); one MIG A100 and one 910B3 (64 cores); two T4s (4 cores)."""
    return build_pool(
        [
            ("gpu-a", 16000, 65536, ["t4", "t4"]),
            ("mixed-b", 64000, 262144, ["a100-80gb", "ascend-910b3"]),
            ("small-c", 4000, 16384, ["t4", "t4"]),
        ],
        TINY_MODELS,
    )


def three_t4_hosts(t4: ModelSpec) -> PoolArrays:
    """Hosts 0, 1, 2 with 32, 16 and 8 cores; two ``t4`` each (devices 0-1, 2-3, 4-5)."""
    return build_pool(
        [
            ("big", 32000, 65536, ["t4", "t4"]),
            ("mid", 16000, 65536, ["t4", "t4"]),
            ("small", 8000, 65536, ["t4", "t4"]),
        ],
        [t4],
    )
