"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

``pynvml`` is imported lazily, inside the provider, so flexlab imports without it; NVML is
initialised at most once per process (distributed's ``diagnostics/nvml.py`` pattern). Tests
inject a fake module with the real call names (``NvidiaProvider(nvml=fake)``).

Isolation: ``CUDA_VISIBLE_DEVICES`` by UUID (the ``MIG-...`` UUID for a MIG slice, as
NVIDIA recommends since indices are remapped); for a fractional slice, when an MPS control
daemon runs, ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` and ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``;
always the ``FLEXLAB_*`` variables that :func:`flexlab.providers.memcap.apply_memory_cap`
reads to cap PyTorch and CuPy inside the worker.
"""

from __future__ import annotations

import enum
import importlib
import logging
import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from flexlab.core.errors import InvalidRequest
from flexlab.providers import nvml_read as rd
from flexlab.providers.base import (
    DiscoveredDevice,
    ErrorCode,
    ProviderReport,
    ReadingError,
    ReportStatus,
    SliceBinding,
    TelemetryReport,
    TelemetrySample,
    ToolProvider,
    flexlab_slice_env,
    memory_mismatch,
)
from flexlab.providers.mps import MpsStatus, detect_mps, mps_env

log = logging.getLogger(__name__)

NAME = "nvidia"


class NvmlState(enum.Enum):
    """Where NVML stands in this process."""

    UNINITIALIZED = "uninitialized"
    INITIALIZED = "initialized"
    DISABLED_CONFIG = "disabled-config"
    #: ``pynvml`` is not importable (install flexlab[nvidia]).
    LIBRARY_MISSING = "library-missing"
    #: ``nvmlInit`` failed: no driver, no libnvidia-ml, a driver/library mismatch.
    INIT_FAILED = "init-failed"


class NvidiaProvider(ToolProvider):
    """NVIDIA discovery, telemetry and isolation through NVML.

    >>> NvidiaProvider(enabled=False).detect().status.value
    'disabled'
    """

    NAME = NAME
    LABEL = "NVIDIA"

    def __init__(
        self,
        *,
        enabled: bool = True,
        nvml: ModuleType | None = None,
        mps_probe: Callable[[], MpsStatus] | None = None,
    ) -> None:
        super().__init__(enabled=enabled, logger=log)
        self._injected = nvml
        self._mps_probe = mps_probe or detect_mps
        self._state = NvmlState.UNINITIALIZED if enabled else NvmlState.DISABLED_CONFIG
        self._state_detail = ""
        self._init_pid: int | None = None
        self._module: Any = None
        self._lock = threading.Lock()
        self._handles = rd.Handles()
        self._last_seen_us: dict[str, int] = {}

    @property
    def state(self) -> NvmlState:
        return self._state

    def _nvml(self) -> Any:
        """The initialised NVML module, or None (``state`` says why). Once per process."""
        with self._lock:
            if not self._enabled:
                return None
            if self._init_pid == os.getpid():
                return self._module if self._state is NvmlState.INITIALIZED else None
            self._init_pid = os.getpid()
            self._handles = rd.Handles()
            self._last_seen_us = {}
            module: Any = self._injected
            if module is None:
                try:
                    module = importlib.import_module("pynvml")
                except ImportError as exc:
                    self._state = NvmlState.LIBRARY_MISSING
                    self._state_detail = f"pynvml not importable ({exc}); install flexlab[nvidia]"
                    return None
            try:
                module.nvmlInit()
            except module.NVMLError as exc:
                self._state, self._state_detail = NvmlState.INIT_FAILED, f"nvmlInit failed: {exc}"
                log.info("NVML unavailable: %s", exc)
                return None
            self._module, self._state, self._state_detail = module, NvmlState.INITIALIZED, ""
            return module

    # -- detection -------------------------------------------------------------------

    def redetect(self) -> ProviderReport:
        """Detect again (after a MIG re-carve, or once a missing driver is loaded)."""
        with self._lock:
            if self._state is not NvmlState.INITIALIZED:
                self._init_pid = None
        return super().redetect()

    def _detect(self) -> ProviderReport:
        """The GPUs of this machine with their MIG instances."""
        nv = self._nvml()
        if nv is None:
            missing = self._state is NvmlState.LIBRARY_MISSING
            status = ReportStatus.LIBRARY_MISSING if missing else ReportStatus.TOOL_FAILED
            return ProviderReport(NAME, status, detail=self._state_detail)
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError as exc:
            return ProviderReport(NAME, ReportStatus.TOOL_FAILED, detail=f"nvmlDeviceGetCount failed: {exc}")
        warnings: list[ReadingError] = []
        version = rd.safe(nv, lambda: rd.text(nv.nvmlSystemGetDriverVersion()), warnings, None, "driver")
        devices: list[DiscoveredDevice] = []
        for index in range(count):
            dev = rd.discover_device(nv, index, self._handles, warnings)
            if dev is not None:
                devices.append(dev)
                mismatch = memory_mismatch(dev)
                if mismatch is not None:
                    warnings.append(mismatch)
        status = ReportStatus.OK if devices else ReportStatus.NO_DEVICES
        detail = "" if devices else f"NVML counts {count} GPUs, none readable"
        return ProviderReport(NAME, status, tuple(devices), detail, warnings=tuple(warnings), version=version)

    # -- telemetry -------------------------------------------------------------------

    def _read_telemetry(self, now: float) -> TelemetryReport:
        """Utilisation, memory and per-process use of every GPU and MIG instance."""
        report = self.detect()
        nv = self._nvml()
        if nv is None or not report.ok:
            why = self._state_detail or report.detail or report.status.value
            return TelemetryReport(NAME, now, errors=(ReadingError(ErrorCode.TOOL_FAILED, why),))
        samples: list[TelemetrySample] = [
            rd.device_sample(nv, uuid, index, handle, now, self._last_seen_us)
            for uuid, (index, handle) in self._handles.devices.items()
        ]
        samples += [
            rd.mig_sample(nv, parent, mig_uuid, index, handle, now)
            for mig_uuid, (parent, index, handle) in self._handles.migs.items()
        ]
        return TelemetryReport(NAME, now, tuple(samples))

    # -- isolation -------------------------------------------------------------------

    def isolation_env(self, binding: SliceBinding) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` by UUID, MPS limits for fractional slices, FLEXLAB_* caps."""
        if binding.device.vendor != NAME:
            raise InvalidRequest("device", binding.device.uuid, "an NVIDIA device")
        env = flexlab_slice_env(binding)
        if binding.instance is not None:
            if not binding.instance.startswith("MIG-"):
                raise InvalidRequest("instance", binding.instance, "a MIG device UUID (MIG-...)")
            env["CUDA_VISIBLE_DEVICES"] = binding.instance
            return env
        env["CUDA_VISIBLE_DEVICES"] = binding.device.uuid
        if not binding.whole_device:
            mps = self._mps_probe()
            if mps.running:
                env.update(mps_env(binding, mps))
            else:
                log.debug("no MPS daemon (%s): %s is time-sliced", mps.evidence, binding.device.uuid)
        return env

    def mps_status(self) -> MpsStatus:
        """Whether an MPS daemon serves this machine (checked on every call)."""
        return self._mps_probe()
