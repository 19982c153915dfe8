# ruff: noqa: N803, N815 - the fake mirrors pynvml's own names (timeStamp, gpuInstanceId, ...)
"""Shared fixtures: a fake NVML module and a runner that replays recorded tool output.

Tests reach these through fixtures (``nvml_kit``, ``replay``, ``recorded``): with
``--import-mode=importlib`` a conftest is not importable by name.

The fake NVML has the real ``pynvml`` names and call signatures (checked against the
installed ``pynvml`` in test_nvidia.py), returns objects with the real structure field
names, and raises ``NVMLError`` subclasses built the way pynvml builds them, so that
``NVMLError(3)`` is an ``NVMLError_NotSupported`` with ``.value == 3``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flexlab.providers.base import ErrorCode
from flexlab.providers.command import ToolResult

DATA = Path(__file__).parent / "data"
MIB = 1024 * 1024

# The NVML return codes of nvml.h that the fake raises.
NVML_CODES = {
    "Uninitialized": 1,
    "InvalidArgument": 2,
    "NotSupported": 3,
    "NoPermission": 4,
    "NotFound": 6,
    "InsufficientSize": 7,
    "DriverNotLoaded": 9,
    "LibraryNotFound": 12,
    "FunctionNotFound": 13,
    "GpuIsLost": 15,
    "Unknown": 999,
}
NOT_SUPPORTED, NOT_FOUND, GPU_IS_LOST, LIBRARY_NOT_FOUND = 3, 6, 15, 12


@dataclass
class FakeMig:
    uuid: str
    g: int
    c: int
    memory_mb: int
    gi_id: int
    start: int
    used_mib: int = 0
    procs: list[tuple[int, int]] = field(default_factory=list)  # (pid, MiB)
    name: str = ""


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total_mib: int
    used_mib: int = 0
    util: int = 0
    bus: bytes = b"00000000:17:00.0"
    procs: list[tuple[int, int | None, int]] = field(default_factory=list)  # (pid, MiB, gi id)
    proc_util: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, ts_us, sm %)
    mig_mode: int | None = 0  # None: NOT_SUPPORTED (pre-Ampere)
    migs: dict[int, FakeMig] = field(default_factory=dict)  # slot -> instance
    max_migs: int = 7


class FakeNvml:
    """State behind a fake ``pynvml`` module; ``fail`` injects errors per (call, gpu index)."""

    def __init__(
        self, gpus: Sequence[FakeGpu], *, init_error: int | None = None, as_bytes: bool = False
    ) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.as_bytes = as_bytes
        self.fail: dict[tuple[str, int], int | Exception] = {}
        self.calls: list[str] = []
        self.module = self._build()

    def _text(self, s: str) -> str | bytes:
        return s.encode() if self.as_bytes else s

    def _check(self, fn: str, h: Any) -> None:
        self.calls.append(fn)
        err = self.fail.get((fn, h.gpu))
        if isinstance(err, Exception):
            raise err
        if err is not None:
            raise self.module.NVMLError(err)

    def _build(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        state = self

        class NVMLError(Exception):
            _valClassMapping: dict[int, type] = {}  # noqa: RUF012 - mirrors pynvml

            def __new__(cls, value: int) -> NVMLError:
                target = NVMLError._valClassMapping.get(value, cls) if cls is NVMLError else cls
                obj = Exception.__new__(target)
                obj.value = value  # type: ignore[attr-defined]
                return obj

            def __str__(self) -> str:
                names = {v: k for k, v in NVML_CODES.items()}
                return names.get(self.value, f"NVML Error with code {self.value}")  # type: ignore[attr-defined]

        m.NVMLError = NVMLError
        for name, code in NVML_CODES.items():

            def new(cls: type, *args: object, _code: int = code) -> NVMLError:
                return NVMLError.__new__(cls, _code)

            sub = type(f"NVMLError_{name}", (NVMLError,), {"__new__": new})
            NVMLError._valClassMapping[code] = sub
            setattr(m, f"NVMLError_{name}", sub)

        def handle(gpu: int, mig: int | None = None) -> SimpleNamespace:
            return SimpleNamespace(gpu=gpu, mig=mig)

        def gpu_of(h: Any) -> FakeGpu:
            return state.gpus[h.gpu]

        def mig_of(h: Any) -> FakeMig:
            return state.gpus[h.gpu].migs[h.mig]

        def nvmlInit() -> None:
            state.calls.append("nvmlInit")
            if state.init_error is not None:
                raise NVMLError(state.init_error)

        def nvmlShutdown() -> None:
            state.calls.append("nvmlShutdown")

        def nvmlSystemGetDriverVersion() -> str | bytes:
            return state._text("550.54.15")

        def nvmlDeviceGetCount() -> int:
            return len(state.gpus)

        def nvmlDeviceGetHandleByIndex(index: int) -> SimpleNamespace:
            h = handle(index)
            state._check("nvmlDeviceGetHandleByIndex", h)
            return h

        def nvmlDeviceGetUUID(handle: Any) -> str | bytes:
            state._check("nvmlDeviceGetUUID", handle)
            return state._text(mig_of(handle).uuid if handle.mig is not None else gpu_of(handle).uuid)

        def nvmlDeviceGetName(handle: Any) -> str | bytes:
            state._check("nvmlDeviceGetName", handle)
            if handle.mig is not None:
                return state._text(mig_of(handle).name)
            return state._text(gpu_of(handle).name)

        def nvmlDeviceGetMemoryInfo(handle: Any, version: Any = None) -> SimpleNamespace:
            state._check("nvmlDeviceGetMemoryInfo", handle)
            if handle.mig is not None:
                mg = mig_of(handle)
                total, used = mg.memory_mb * MIB, mg.used_mib * MIB
            else:
                g = gpu_of(handle)
                total, used = g.total_mib * MIB, g.used_mib * MIB
            return SimpleNamespace(total=total, used=used, free=total - used)

        def nvmlDeviceGetPciInfo(handle: Any) -> SimpleNamespace:
            state._check("nvmlDeviceGetPciInfo", handle)
            return SimpleNamespace(busId=gpu_of(handle).bus)

        def nvmlDeviceGetUtilizationRates(handle: Any) -> SimpleNamespace:
            state._check("nvmlDeviceGetUtilizationRates", handle)
            return SimpleNamespace(gpu=gpu_of(handle).util, memory=0)

        def nvmlDeviceGetComputeRunningProcesses(handle: Any) -> list[SimpleNamespace]:
            state._check("nvmlDeviceGetComputeRunningProcesses", handle)
            if handle.mig is not None:
                mg = mig_of(handle)
                return [
                    SimpleNamespace(
                        pid=p, usedGpuMemory=mib * MIB, gpuInstanceId=mg.gi_id, computeInstanceId=0
                    )
                    for p, mib in mg.procs
                ]
            return [
                SimpleNamespace(
                    pid=p,
                    usedGpuMemory=None if mib is None else mib * MIB,
                    gpuInstanceId=gi,
                    computeInstanceId=0,
                )
                for p, mib, gi in gpu_of(handle).procs
            ]

        def nvmlDeviceGetProcessUtilization(handle: Any, timeStamp: int) -> list[SimpleNamespace]:
            state._check("nvmlDeviceGetProcessUtilization", handle)
            fresh = [s for s in gpu_of(handle).proc_util if s[1] > timeStamp]
            if not fresh:
                raise NVMLError(NOT_FOUND)
            return [
                SimpleNamespace(pid=p, timeStamp=ts, smUtil=sm, memUtil=0, encUtil=0, decUtil=0)
                for p, ts, sm in fresh
            ]

        def nvmlDeviceGetMigMode(device: Any) -> list[int]:
            state._check("nvmlDeviceGetMigMode", device)
            mode = gpu_of(device).mig_mode
            if mode is None:
                raise NVMLError(NOT_SUPPORTED)
            return [mode, mode]

        def nvmlDeviceGetMaxMigDeviceCount(device: Any) -> int:
            state._check("nvmlDeviceGetMaxMigDeviceCount", device)
            return gpu_of(device).max_migs

        def nvmlDeviceGetMigDeviceHandleByIndex(device: Any, index: int) -> SimpleNamespace:
            state._check("nvmlDeviceGetMigDeviceHandleByIndex", device)
            if index not in gpu_of(device).migs:
                raise NVMLError(NOT_FOUND)
            return handle(device.gpu, index)

        def nvmlDeviceGetAttributes(device: Any) -> SimpleNamespace:
            state._check("nvmlDeviceGetAttributes", device)
            mg = mig_of(device)
            return SimpleNamespace(
                multiprocessorCount=14 * mg.g, sharedCopyEngineCount=1, sharedDecoderCount=0,
                sharedEncoderCount=0, sharedJpegCount=0, sharedOfaCount=0,
                gpuInstanceSliceCount=mg.g, computeInstanceSliceCount=mg.c, memorySizeMB=mg.memory_mb,
            )  # fmt: skip

        def nvmlDeviceGetGpuInstanceId(device: Any) -> int:
            state._check("nvmlDeviceGetGpuInstanceId", device)
            return mig_of(device).gi_id

        def nvmlDeviceGetComputeInstanceId(device: Any) -> int:
            return 0

        def nvmlDeviceGetGpuInstanceById(device: Any, gpuInstanceId: int) -> SimpleNamespace:
            state._check("nvmlDeviceGetGpuInstanceById", device)
            for slot, mg in gpu_of(device).migs.items():
                if mg.gi_id == gpuInstanceId:
                    return SimpleNamespace(gpu=device.gpu, mig=slot)
            raise NVMLError(NOT_FOUND)

        def nvmlGpuInstanceGetInfo(gpuInstance: Any) -> SimpleNamespace:
            mg = mig_of(gpuInstance)
            return SimpleNamespace(
                device=None, id=mg.gi_id, profileId=0, placement=SimpleNamespace(start=mg.start, size=mg.g)
            )

        for fn in (
            nvmlInit, nvmlShutdown, nvmlSystemGetDriverVersion, nvmlDeviceGetCount,
            nvmlDeviceGetHandleByIndex, nvmlDeviceGetUUID, nvmlDeviceGetName, nvmlDeviceGetMemoryInfo,
            nvmlDeviceGetPciInfo, nvmlDeviceGetUtilizationRates, nvmlDeviceGetComputeRunningProcesses,
            nvmlDeviceGetProcessUtilization, nvmlDeviceGetMigMode, nvmlDeviceGetMaxMigDeviceCount,
            nvmlDeviceGetMigDeviceHandleByIndex, nvmlDeviceGetAttributes, nvmlDeviceGetGpuInstanceId,
            nvmlDeviceGetComputeInstanceId, nvmlDeviceGetGpuInstanceById, nvmlGpuInstanceGetInfo,
        ):  # fmt: skip
            setattr(m, fn.__name__, fn)
        return m


def a100_mig() -> FakeGpu:
    """An A100 80GB in MIG mode holding 3g.40gb @0, 2g.20gb @4, 1g.10gb @6 (slot 3 empty)."""
    return FakeGpu(
        name="NVIDIA A100-SXM4-80GB",
        uuid="GPU-aaaaaaaa-0000-0000-0000-000000000001",
        total_mib=81920,
        used_mib=30000,
        mig_mode=1,
        migs={
            0: FakeMig(
                "MIG-11111111-0000-0000-0000-000000000001",
                3,
                3,
                40192,
                2,
                0,
                used_mib=12000,
                procs=[(501, 11000)],
            ),
            1: FakeMig("MIG-11111111-0000-0000-0000-000000000002", 2, 2, 19968, 3, 4),
            2: FakeMig("MIG-11111111-0000-0000-0000-000000000003", 1, 1, 9856, 9, 6, procs=[(502, 900)]),
        },
        procs=[(501, 11000, 2), (502, 900, 9)],
    )


def h100() -> FakeGpu:
    return FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-bbbbbbbb-0000-0000-0000-000000000002",
        total_mib=81559,
        used_mib=20480,
        util=37,
        procs=[(101, 8192, 0xFFFFFFFF), (102, 12288, 0xFFFFFFFF)],
        proc_util=[(101, 1_000, 20), (101, 2_000, 25), (102, 1_500, 10), (103, 1_800, 5)],
    )


RunnerTable = dict[tuple[str, ...], "str | ToolResult"]


class Replay:
    """A runner that answers argv from a table of recorded outputs and records each call."""

    def __init__(self, table: RunnerTable, after: dict[tuple[str, ...], RunnerTable] | None = None) -> None:
        self.table = dict(table)
        #: argv -> table entries that change once that command has run (state on the device)
        self.after = dict(after or {})
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> ToolResult:
        key = tuple(argv)
        self.calls.append(key)
        answer = self.table.get(key)
        self.table.update(self.after.pop(key, {}))
        if answer is None:
            return ToolResult(key, 1, "", f"no recording for {' '.join(key)}", ErrorCode.TOOL_FAILED)
        if isinstance(answer, ToolResult):
            return answer
        return ToolResult(key, 0, answer, "")


def recorded(*parts: str) -> str:
    """The text of a recorded output under tests/providers/data."""
    return DATA.joinpath(*parts).read_text()


@pytest.fixture
def nvml_kit() -> SimpleNamespace:
    """The fake NVML and its device builders (conftest names are not importable from tests)."""
    return SimpleNamespace(
        FakeNvml=FakeNvml, FakeGpu=FakeGpu, FakeMig=FakeMig, a100_mig=a100_mig, h100=h100, codes=NVML_CODES
    )


@pytest.fixture
def replay() -> type[Replay]:
    """``replay({argv tuple: recorded text or ToolResult})`` -> a runner that records its calls."""
    return Replay


@pytest.fixture(name="recorded")
def recorded_fixture() -> Callable[..., str]:
    return recorded
