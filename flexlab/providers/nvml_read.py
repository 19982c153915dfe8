"""NVML readings, one call at a time, with every failure turned into a value.

Plain functions over an NVML module (``pynvml`` or a test's fake with the same names): the
:class:`~flexlab.providers.nvidia.NvidiaProvider` owns the module, the handles and the
state; these read. An ``NVMLError`` (or an odd value from a binding) never escapes a
reading: it becomes a :class:`ReadingError` appended to the caller's list.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flexlab.providers.base import (
    MIB,
    DeviceInstance,
    DiscoveredDevice,
    ErrorCode,
    PartitionMode,
    ProcessUsage,
    ReadingError,
    TelemetrySample,
    model_key_for,
)

log = logging.getLogger(__name__)

# NVML return codes (nvml.h); compared on ``NVMLError.value`` so any pynvml version works.
NOT_SUPPORTED, NOT_FOUND, GPU_IS_LOST = 3, 6, 15
#: ``gpuInstanceId`` of a process outside any MIG instance.
NO_INSTANCE = 0xFFFFFFFF
_MIG_NAME = re.compile(r"MIG\s+((?:\d+c\.)?\d+g\.\d+gb\S*)")
R = TypeVar("R")


@dataclass
class Handles:
    """NVML handles of one process, by UUID, kept from detection for sampling."""

    devices: dict[str, tuple[int, Any]] = field(default_factory=dict)
    #: MIG UUID -> (parent UUID, parent index, handle)
    migs: dict[str, tuple[str, int, Any]] = field(default_factory=dict)


def text(value: object) -> str:
    """NVML strings: ``str`` in current pynvml, ``bytes`` in old releases."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def mig_profile_name(attrs: Any) -> str:
    """A MIG device's profile from ``nvmlDeviceGetAttributes``: "3g.40gb", "1c.3g.40gb".

    The memory is rounded up to whole GB, as NVIDIA's device plugin names profiles.
    """
    g = int(attrs.gpuInstanceSliceCount)
    c = int(attrs.computeInstanceSliceCount)
    gb = math.ceil(int(attrs.memorySizeMB) / 1024)
    return f"{c}c.{g}g.{gb}gb" if 0 < c < g else f"{g}g.{gb}gb"


def nvml_error(exc: Exception, device: str | None, what: str) -> ReadingError:
    """An ``NVMLError`` as a structured error (not-supported and lost GPUs told apart)."""
    value = getattr(exc, "value", None)
    codes = {NOT_SUPPORTED: ErrorCode.NOT_SUPPORTED, GPU_IS_LOST: ErrorCode.DEVICE_LOST}
    code = codes.get(value if isinstance(value, int) else -1, ErrorCode.NVML_ERROR)
    return ReadingError(code, f"{type(exc).__name__}: {exc}", device=device, field=what or None)


def safe(
    nv: Any, read: Callable[[], R], errors: list[ReadingError], device: str | None, what: str
) -> R | None:
    """One reading, or None with a ReadingError in ``errors`` (logged at debug level)."""
    try:
        return read()
    except nv.NVMLError as exc:
        err = nvml_error(exc, device, what)
    except (AttributeError, TypeError, ValueError) as exc:
        err = ReadingError(ErrorCode.PARSE_ERROR, f"{type(exc).__name__}: {exc}", device, what or None)
    errors.append(err)
    log.debug("NVML reading failed: %s", err.render())
    return None


def discover_device(
    nv: Any, index: int, handles: Handles, warnings: list[ReadingError]
) -> DiscoveredDevice | None:
    """GPU ``index`` with its MIG instances; its handles go into ``handles``."""
    try:
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        uuid = text(nv.nvmlDeviceGetUUID(handle))
        name = text(nv.nvmlDeviceGetName(handle))
        memory = int(nv.nvmlDeviceGetMemoryInfo(handle).total) // MIB
    except nv.NVMLError as exc:
        warnings.append(nvml_error(exc, f"gpu{index}", "device"))
        return None
    bus = safe(nv, lambda: text(nv.nvmlDeviceGetPciInfo(handle).busId), [], uuid, "pci")
    mode = PartitionMode.NONE
    instances: tuple[DeviceInstance, ...] = ()
    try:
        current = int(nv.nvmlDeviceGetMigMode(handle)[0])
    except nv.NVMLError as exc:
        if getattr(exc, "value", None) != NOT_SUPPORTED:  # pre-Ampere GPUs: no MIG at all
            warnings.append(nvml_error(exc, uuid, "mig-mode"))
        current = 0
    if current == 1:
        mode = PartitionMode.MIG
        instances = mig_instances(nv, handle, uuid, index, handles, warnings)
    handles.devices[uuid] = (index, handle)
    return DiscoveredDevice(
        vendor="nvidia", kind="gpu", product_name=name, model_key=model_key_for(name), index=index,
        uuid=uuid, memory_mib=memory, partition_mode=mode, instances=instances, bus_id=bus,
    )  # fmt: skip


def mig_instances(
    nv: Any, parent: Any, parent_uuid: str, parent_index: int, handles: Handles, warnings: list[ReadingError]
) -> tuple[DeviceInstance, ...]:
    """The MIG devices that exist under ``parent`` (empty slots answer NOT_FOUND)."""
    try:
        slots = int(nv.nvmlDeviceGetMaxMigDeviceCount(parent))
    except nv.NVMLError as exc:
        warnings.append(nvml_error(exc, parent_uuid, "mig-count"))
        return ()
    found: list[DeviceInstance] = []
    for slot in range(slots):
        try:
            mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
        except nv.NVMLError as exc:
            if getattr(exc, "value", None) != NOT_FOUND:
                warnings.append(nvml_error(exc, parent_uuid, f"mig-device-{slot}"))
            continue
        inst = mig_instance(nv, parent, parent_uuid, slot, mig, warnings)
        if inst is not None:
            found.append(inst)
            handles.migs[inst.uuid] = (parent_uuid, parent_index, mig)
    return tuple(found)


def mig_instance(
    nv: Any, parent: Any, parent_uuid: str, slot: int, mig: Any, warnings: list[ReadingError]
) -> DeviceInstance | None:
    """One MIG device: UUID, GPU-instance id, memory, profile and (when readable) placement."""
    try:
        mig_uuid = text(nv.nvmlDeviceGetUUID(mig))
        gi_id = int(nv.nvmlDeviceGetGpuInstanceId(mig))
        memory = int(nv.nvmlDeviceGetMemoryInfo(mig).total) // MIB
    except nv.NVMLError as exc:
        warnings.append(nvml_error(exc, parent_uuid, f"mig-device-{slot}"))
        return None
    quiet: list[ReadingError] = []  # optional facts: their absence is not worth a warning
    profile = safe(nv, lambda: mig_profile_name(nv.nvmlDeviceGetAttributes(mig)), quiet, mig_uuid, "")
    if profile is None:
        name = safe(nv, lambda: text(nv.nvmlDeviceGetName(mig)), quiet, mig_uuid, "") or ""
        match = _MIG_NAME.search(name)
        profile = match.group(1) if match else "unknown"
        why = f"attributes unreadable; profile taken from the name {name!r}"
        warnings.append(ReadingError(ErrorCode.NOT_SUPPORTED, why, mig_uuid, "mig-profile"))
    # The GPU instance's placement needs admin rights on some drivers; -1 when unreadable.
    start = safe(
        nv,
        lambda: int(
            nv.nvmlGpuInstanceGetInfo(nv.nvmlDeviceGetGpuInstanceById(parent, gi_id)).placement.start
        ),
        quiet,
        mig_uuid,
        "",
    )
    return DeviceInstance(profile, mig_uuid, gi_id, memory, -1 if start is None else start)


def device_sample(
    nv: Any, uuid: str, index: int, handle: Any, now: float, last_seen_us: dict[str, int]
) -> TelemetrySample:
    """Utilisation, memory and per-process use (memory and SM %) of one GPU."""
    errors: list[ReadingError] = []
    util = safe(nv, lambda: float(nv.nvmlDeviceGetUtilizationRates(handle).gpu), errors, uuid, "utilization")
    mem = safe(nv, lambda: nv.nvmlDeviceGetMemoryInfo(handle), errors, uuid, "memory")
    used = int(mem.used) // MIB if mem is not None else None
    total = int(mem.total) // MIB if mem is not None else None
    by_pid = {p.pid: p for p in running_processes(nv, handle, uuid, errors)}
    for pid, sm in process_utilization(nv, handle, uuid, errors, last_seen_us).items():
        old = by_pid.get(pid, ProcessUsage(pid=pid))
        by_pid[pid] = ProcessUsage(pid, old.memory_mib, sm, old.name, old.gpu_instance_id)
    procs = tuple(by_pid[pid] for pid in sorted(by_pid))
    return TelemetrySample(uuid, index, now, util, used, total, procs, errors=tuple(errors))


def mig_sample(nv: Any, parent: str, mig_uuid: str, index: int, handle: Any, now: float) -> TelemetrySample:
    """Memory and processes of one MIG instance. NVML has no per-instance utilisation
    (DCGM's profiling fields do), so ``utilization_pct`` is None."""
    errors: list[ReadingError] = []
    mem = safe(nv, lambda: nv.nvmlDeviceGetMemoryInfo(handle), errors, mig_uuid, "memory")
    used = int(mem.used) // MIB if mem is not None else None
    total = int(mem.total) // MIB if mem is not None else None
    procs = running_processes(nv, handle, mig_uuid, errors)
    return TelemetrySample(
        parent, index, now, None, used, total, procs, instance=mig_uuid, errors=tuple(errors)
    )


def running_processes(
    nv: Any, handle: Any, uuid: str, errors: list[ReadingError]
) -> tuple[ProcessUsage, ...]:
    """``nvmlDeviceGetComputeRunningProcesses``: PID, memory and MIG instance of each."""
    running = safe(
        nv, lambda: list(nv.nvmlDeviceGetComputeRunningProcesses(handle)), errors, uuid, "processes"
    )
    procs: list[ProcessUsage] = []
    for proc in running or []:
        used = getattr(proc, "usedGpuMemory", None)  # None under Windows WDDM
        gi = getattr(proc, "gpuInstanceId", None)
        procs.append(
            ProcessUsage(
                pid=int(proc.pid),
                memory_mib=None if used is None else int(used) // MIB,
                gpu_instance_id=None if gi is None or int(gi) == NO_INSTANCE else int(gi),
            )
        )
    return tuple(sorted(procs, key=lambda p: p.pid))


def process_utilization(
    nv: Any, handle: Any, uuid: str, errors: list[ReadingError], last_seen_us: dict[str, int]
) -> dict[int, float]:
    """Latest SM % per PID since the previous call (``nvmlDeviceGetProcessUtilization``).

    NVML answers NOT_FOUND when no process ran since ``last_seen_us[uuid]``: no samples,
    not an error. The newest timestamp is kept so the next call only gets new samples.
    """
    since = last_seen_us.get(uuid, 0)
    try:
        raw = list(nv.nvmlDeviceGetProcessUtilization(handle, since))
    except nv.NVMLError as exc:
        if getattr(exc, "value", None) != NOT_FOUND:
            errors.append(nvml_error(exc, uuid, "process-utilization"))
        return {}
    latest: dict[int, tuple[int, float]] = {}
    for s in raw:
        ts, pid = int(s.timeStamp), int(s.pid)
        if pid not in latest or ts >= latest[pid][0]:
            latest[pid] = (ts, float(s.smUtil))
        last_seen_us[uuid] = max(last_seen_us.get(uuid, 0), ts)
    return {pid: util for pid, (_, util) in latest.items()}
