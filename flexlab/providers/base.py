"""The provider protocol and the values every device provider returns.

A provider is the edge between flexlab and one vendor's tools (NVML, ``npu-smi``,
``cnmon``) or the mock simulation. It answers three questions:

* ``detect()``: which devices are here (static facts), as a :class:`ProviderReport` that
  also says why nothing was found (tool missing, tool failed with its stderr, output that
  did not parse).
* ``sample()``: live telemetry, as a :class:`TelemetryReport`. A bad reading never raises:
  it becomes a :class:`ReadingError` in the report and a log line.
* ``isolation_env(binding)``: the environment a slice worker process gets, so that it
  sees only its slice.

Hardware is touched lazily, at most once per process for detection (see
:class:`PerProcess`), and every provider takes ``enabled`` (fed from the dask.config key
``flexlab.providers.<name>.enabled``); a disabled provider reports ``DISABLED`` and runs
nothing. The providers derive from :class:`ProviderBase`, which holds what they share (the
name, ``enabled``, and a ``sample()`` that never raises and logs each new error once).
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from flexlab.core.catalog import CATALOG, lookup_product_name

MIB = 1024 * 1024

#: Relative difference between the memory a device reports and its catalog entry above
#: which detection adds a warning (NVML reports a little under nominal: a T4 shows 15360
#: of 16384 MiB; a larger gap means the product name mapped to the wrong entry).
MEMORY_MISMATCH_TOLERANCE = 0.15


class PartitionMode(str, enum.Enum):
    """How a physical device is partitioned in hardware right now."""

    NONE = "none"
    MIG = "mig"
    VNPU = "vnpu"


class ReportStatus(str, enum.Enum):
    """Outcome of one provider's detection."""

    OK = "ok"
    NO_DEVICES = "no-devices"
    DISABLED = "disabled"
    #: The vendor's command-line tool is not on PATH.
    TOOL_MISSING = "tool-missing"
    #: The Python binding (pynvml) is not installed.
    LIBRARY_MISSING = "library-missing"
    #: The tool or library ran and failed (exit code, NVML error, timeout).
    TOOL_FAILED = "tool-failed"
    #: The tool ran but its output could not be read.
    PARSE_ERROR = "parse-error"
    #: The provider itself raised; a bug, logged with its traceback.
    INTERNAL_ERROR = "internal-error"


class ErrorCode(str, enum.Enum):
    """Why one reading (or one device) is missing from a report."""

    TOOL_MISSING = "tool-missing"
    TOOL_FAILED = "tool-failed"
    TIMEOUT = "timeout"
    PARSE_ERROR = "parse-error"
    NVML_ERROR = "nvml-error"
    NOT_SUPPORTED = "not-supported"
    DEVICE_LOST = "device-lost"
    UNKNOWN_DEVICE = "unknown-device"
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True)
class ReadingError:
    """A structured problem with a reading: what failed, where, and the vendor's words."""

    code: ErrorCode
    detail: str
    #: The device (UUID or vendor id) it concerns; None for the whole provider.
    device: str | None = None
    #: The quantity that could not be read ("utilization", "memory", "processes", ...).
    field: str | None = None

    def render(self) -> str:
        where = f"{self.device}: " if self.device else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.code.value}: {self.detail}"


@dataclass(frozen=True)
class DeviceInstance:
    """A hardware partition that already exists on a device (a MIG instance, a vNPU)."""

    profile: str
    #: MIG device UUID ("MIG-...") or the vNPU id as a string.
    uuid: str
    #: MIG GPU-instance id or vNPU id.
    instance_id: int
    memory_mib: int | None = None
    #: MIG placement (first memory slice) when known; -1 when not slot-ruled or unknown.
    start: int = -1


@dataclass(frozen=True)
class DiscoveredDevice:
    """One device as its vendor tool reports it (static facts only).

    ``index`` is the number the vendor's visibility variable takes (the CUDA index, the
    Ascend logical id, the MLU card number); ``card_id``/``chip_id`` are the tool's own
    coordinates where they differ (``npu-smi -i ID -c CHIP``).
    """

    vendor: str
    kind: str
    #: The product name exactly as the tool printed it ("NVIDIA A100-SXM4-80GB", "910B3").
    product_name: str
    #: The catalog key it maps to ("a100-80gb"), or None when the catalog has no entry.
    model_key: str | None
    index: int
    #: NVML UUID ("GPU-..."), or a stable vendor id where the tool prints no UUID.
    uuid: str
    memory_mib: int
    partition_mode: PartitionMode = PartitionMode.NONE
    instances: tuple[DeviceInstance, ...] = ()
    bus_id: str | None = None
    health: str | None = None
    card_id: int | None = None
    chip_id: int | None = None


@dataclass(frozen=True)
class ProviderReport:
    """What one provider found, or why it found nothing."""

    provider: str
    status: ReportStatus
    devices: tuple[DiscoveredDevice, ...] = ()
    #: One line for a person: the reason behind a non-OK status.
    detail: str = ""
    #: The command that failed (argv) and what it said, when a tool failed.
    command: tuple[str, ...] = ()
    returncode: int | None = None
    stderr: str = ""
    #: Problems that did not stop detection (one unreadable device, a catalog mismatch).
    warnings: tuple[ReadingError, ...] = ()
    #: Driver / tool version when the provider could read it.
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is ReportStatus.OK


@dataclass(frozen=True)
class ProcessUsage:
    """One process's use of a device, where the vendor reports it (None = not reported)."""

    pid: int
    memory_mib: int | None = None
    utilization_pct: float | None = None
    name: str | None = None
    #: MIG GPU-instance id the process runs in (NVML), when any.
    gpu_instance_id: int | None = None


@dataclass(frozen=True)
class TelemetrySample:
    """Live readings of one device, or of one hardware instance on it (MIG)."""

    device: str
    index: int
    timestamp: float
    utilization_pct: float | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    processes: tuple[ProcessUsage, ...] = ()
    #: Set for a MIG instance's own sample: its "MIG-..." UUID.
    instance: str | None = None
    errors: tuple[ReadingError, ...] = ()


@dataclass(frozen=True)
class TelemetryReport:
    """One round of sampling by one provider."""

    provider: str
    timestamp: float
    samples: tuple[TelemetrySample, ...] = ()
    errors: tuple[ReadingError, ...] = ()

    def all_errors(self) -> tuple[ReadingError, ...]:
        return self.errors + tuple(e for s in self.samples for e in s.errors)


@dataclass(frozen=True)
class SliceBinding:
    """What one slice worker is pinned to: the input of ``isolation_env``.

    The runtime builds it from the core's slice: the discovered device, the slice's
    compute (milli, 1000 = whole device) and memory (MiB), and the hardware instance it
    runs in (a MIG UUID, a vNPU id) when the slice is a profile.
    """

    device: DiscoveredDevice
    compute_milli: int
    memory_mib: int
    profile: str | None = None
    instance: str | None = None
    #: The pool's id of the slice (``FLEXLAB_SLICE_ID``), when the runtime has one.
    slice_id: str | None = None

    @property
    def whole_device(self) -> bool:
        return (
            self.instance is None and self.compute_milli >= 1000 and self.memory_mib >= self.device.memory_mib
        )


@dataclass(frozen=True)
class SliceUsage:
    """What a slice's processes use of their device, summed over its PIDs."""

    memory_mib: int | None
    utilization_pct: float | None
    pids: tuple[int, ...] = ()


@runtime_checkable
class DeviceProvider(Protocol):
    """One vendor's discovery, telemetry and isolation. See the module docstring."""

    @property
    def name(self) -> str: ...

    @property
    def enabled(self) -> bool: ...

    def detect(self) -> ProviderReport: ...

    def sample(self) -> TelemetryReport: ...

    def isolation_env(self, binding: SliceBinding) -> dict[str, str]: ...


T = TypeVar("T")


class PerProcess(Generic[T]):
    """A value computed at most once per process (recomputed after a fork).

    Detection is cached here: worker processes forked from the agent must not reuse the
    parent's NVML handles (distributed's ``NVML_OWNER_PID`` check).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._value: T | None = None

    def get(self, factory: Callable[[], T]) -> T:
        with self._lock:
            if self._pid != os.getpid() or self._value is None:
                self._value = factory()
                self._pid = os.getpid()
            return self._value

    def reset(self) -> None:
        with self._lock:
            self._pid = None
            self._value = None


def model_key_for(product_name: str) -> str | None:
    """The catalog key of a product name as a vendor tool reports it, or None.

    The one place providers map names to the catalog (``flexlab.core.catalog``).

    >>> model_key_for("NVIDIA A100-SXM4-80GB"), model_key_for("910B3"), model_key_for("Foo")
    ('a100-80gb', 'ascend-910b3', None)
    """
    name = product_name.strip()
    if not name:
        return None
    model = lookup_product_name(name)
    return model.key if model is not None else None


def catalog_memory_mib(model_key: str | None) -> int | None:
    """The catalog's memory figure for a key, None when unknown."""
    if model_key is None or model_key not in CATALOG:
        return None
    return CATALOG[model_key].memory_mib


def memory_mismatch(device: DiscoveredDevice) -> ReadingError | None:
    """A warning when the reported memory is far from the catalog entry's figure."""
    expected = catalog_memory_mib(device.model_key)
    if expected is None or device.memory_mib <= 0:
        return None
    if abs(device.memory_mib - expected) <= MEMORY_MISMATCH_TOLERANCE * expected:
        return None
    return ReadingError(
        ErrorCode.UNKNOWN_DEVICE,
        f"{device.product_name!r} maps to catalog entry {device.model_key!r} ({expected} MiB) "
        f"but reports {device.memory_mib} MiB; the catalog may need an entry for this variant",
        device=device.uuid,
        field="model",
    )


def slice_usage(samples: Iterable[TelemetrySample], pids: Iterable[int]) -> SliceUsage:
    """Attribute device use to one slice by the PIDs of its worker processes.

    Memory and utilisation are summed over the slice's processes. A process is counted
    once: from its device's sample, or else from a MIG instance's sample (NVML may list
    a MIG process only under its instance). A quantity no process reports stays None.
    """
    wanted = set(pids)
    found: dict[int, ProcessUsage] = {}
    for sample in sorted(samples, key=lambda s: s.instance is not None):  # devices first
        for proc in sample.processes:
            if proc.pid in wanted and proc.pid not in found:
                found[proc.pid] = proc
    mems = [p.memory_mib for p in found.values() if p.memory_mib is not None]
    utils = [p.utilization_pct for p in found.values() if p.utilization_pct is not None]
    return SliceUsage(
        memory_mib=sum(mems) if mems else None,
        utilization_pct=sum(utils) if utils else None,
        pids=tuple(sorted(found)),
    )


def flexlab_slice_env(binding: SliceBinding) -> dict[str, str]:
    """Vendor-neutral variables every slice worker gets (read by ``apply_memory_cap``)."""
    env = {
        "FLEXLAB_DEVICE_UUID": binding.device.uuid,
        "FLEXLAB_COMPUTE_MILLI": str(binding.compute_milli),
        "FLEXLAB_MEMORY_LIMIT_MIB": str(binding.memory_mib),
        "FLEXLAB_DEVICE_MEMORY_MIB": str(binding.device.memory_mib),
    }
    if binding.profile:
        env["FLEXLAB_PROFILE"] = binding.profile
    if binding.instance:
        env["FLEXLAB_INSTANCE"] = binding.instance
    if binding.slice_id:
        env["FLEXLAB_SLICE_ID"] = binding.slice_id
    return env


class ErrorLog:
    """Logs each distinct reading error once, at WARNING (telemetry repeats every second).

    >>> import logging
    >>> elog = ErrorLog(logging.getLogger("demo"))
    >>> elog.report([ReadingError(ErrorCode.TIMEOUT, "npu-smi info timed out")])
    1
    >>> elog.report([ReadingError(ErrorCode.TIMEOUT, "npu-smi info timed out")])
    0
    """

    def __init__(self, logger: logging.Logger, *, limit: int = 1000) -> None:
        self._logger = logger
        self._limit = limit
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str | None, str | None, str]] = set()

    def report(self, errors: Iterable[ReadingError]) -> int:
        """Log the errors not seen before; returns how many were new."""
        new = 0
        with self._lock:
            for e in errors:
                key = (e.code.value, e.device, e.field, e.detail)
                if key in self._seen:
                    continue
                if len(self._seen) >= self._limit:
                    self._seen.clear()
                self._seen.add(key)
                self._logger.warning("telemetry: %s", e.render())
                new += 1
        return new


def disabled_report(name: str) -> ProviderReport:
    return ProviderReport(name, ReportStatus.DISABLED, detail=f"{name} provider switched off in config")


def disabled_telemetry(name: str) -> TelemetryReport:
    return TelemetryReport(
        name, time.time(), errors=(ReadingError(ErrorCode.NOT_SUPPORTED, "provider disabled"),)
    )


class ProviderBase:
    """What every provider shares: its name, whether it is switched on, and ``sample()``,
    which never raises and logs each new reading error once, at WARNING. A provider sets
    ``NAME`` (its config and report name) and ``LABEL`` (how log lines name it) and reads
    its telemetry in ``_read_telemetry``; an exception there is a bug, reported in the
    telemetry and logged with its traceback."""

    NAME: ClassVar[str]
    LABEL: ClassVar[str]

    def __init__(self, *, enabled: bool, logger: logging.Logger) -> None:
        self._enabled = enabled
        self._log = logger
        self._errlog = ErrorLog(logger)

    @property
    def name(self) -> str:
        return self.NAME

    @property
    def enabled(self) -> bool:
        return self._enabled

    def sample(self) -> TelemetryReport:
        """Live telemetry of this provider's devices (``_read_telemetry``); never raises.

        Each new reading error is logged once, at WARNING.
        """
        if not self._enabled:
            report = disabled_telemetry(self.NAME)
        else:
            now = time.time()
            try:
                report = self._read_telemetry(now)
            except Exception as exc:  # a bug or an unexpected binding: reported, never raised
                self._log.exception("%s telemetry failed", self.LABEL)
                report = TelemetryReport(
                    self.NAME, now, errors=(ReadingError(ErrorCode.INTERNAL_ERROR, repr(exc)),)
                )
        self._errlog.report(report.all_errors())
        return report

    def _read_telemetry(self, now: float) -> TelemetryReport:
        raise NotImplementedError


class ToolProvider(ProviderBase):
    """A provider that asks the machine's tools or libraries which devices are here: once
    per process (:class:`PerProcess`), again on ``redetect()``. Its ``_detect`` never has
    to catch a bug: one is reported as ``INTERNAL_ERROR`` and logged with its traceback,
    and each new warning of a detection is logged once."""

    def __init__(self, *, enabled: bool, logger: logging.Logger) -> None:
        super().__init__(enabled=enabled, logger=logger)
        self._report: PerProcess[ProviderReport] = PerProcess()

    def detect(self) -> ProviderReport:
        """This machine's devices (cached per process); ``DISABLED`` when switched off."""
        if not self._enabled:
            return disabled_report(self.NAME)
        return self._report.get(self._detect_guarded)

    def redetect(self) -> ProviderReport:
        """Detect again, not from the cache."""
        self._report.reset()
        return self.detect()

    def _detect_guarded(self) -> ProviderReport:
        try:
            report = self._detect()
        except Exception as exc:  # a bug or an unexpected binding: reported and logged
            self._log.exception("%s detection failed", self.LABEL)
            return ProviderReport(self.NAME, ReportStatus.INTERNAL_ERROR, detail=repr(exc))
        self._errlog.report(report.warnings)
        return report

    def _detect(self) -> ProviderReport:
        raise NotImplementedError


def merge_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top: the environment for a slice worker process."""
    merged = dict(base)
    merged.update(extra)
    return merged
