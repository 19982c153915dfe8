"""Huawei Ascend NPUs through ``npu-smi``: discovery, telemetry, vNPUs and isolation.

Every ``npu-smi`` command line is built by one pure function, :func:`npu_smi_argv`, and
run by one function, the provider's runner (:func:`flexlab.providers.command.run_tool`:
no shell, a timeout). Tests pass a runner that returns recorded output and check the
argv it was given, so nothing here needs hardware.

Isolation: ``ASCEND_RT_VISIBLE_DEVICES`` takes the chip's logical id (``npu-smi info -m``,
"Chip Logic ID"); a vNPU slice gets ``ASCEND_VISIBLE_DEVICES=<vnpu id>``, which the Ascend
Docker runtime reads to mount ``/dev/vdavinci<id>`` (a vNPU is reached through a container).
Fractional slices without a vNPU are not enforced by hardware; the worker's
:func:`~flexlab.providers.memcap.apply_memory_cap` caps torch_npu's allocator.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from flexlab.core.catalog import CATALOG
from flexlab.core.errors import InvalidRequest
from flexlab.providers import npu_smi as ap
from flexlab.providers.base import (
    DeviceInstance,
    DiscoveredDevice,
    ErrorCode,
    PartitionMode,
    ProcessUsage,
    ProviderReport,
    ReadingError,
    ReportStatus,
    SliceBinding,
    TelemetryReport,
    TelemetrySample,
    ToolProvider,
    flexlab_slice_env,
    memory_mismatch,
    model_key_for,
)
from flexlab.providers.command import DEFAULT_TIMEOUT_S, Runner, ToolResult, run_tool
from flexlab.providers.npu_smi import NpuSmiOp, NpuSmiRequest, npu_smi_argv

log = logging.getLogger(__name__)

NAME = "ascend"
VENDOR = "huawei"
TOOL = ap.TOOL
_IN_CONTAINER_VNPU = re.compile(r"^(?P<chip>.+?)(?P<template>vir\d{2}\w*)$")


@dataclass(frozen=True)
class VnpuChange:
    """The outcome of creating or destroying a vNPU."""

    ok: bool
    argv: tuple[str, ...]
    message: str
    vnpu_id: int | None = None
    error: ErrorCode | None = None


def _tool_report(res: ToolResult) -> ProviderReport:
    status = ReportStatus.TOOL_MISSING if res.error is ErrorCode.TOOL_MISSING else ReportStatus.TOOL_FAILED
    return ProviderReport(
        NAME, status, detail=res.describe(), command=res.argv, returncode=res.returncode, stderr=res.stderr
    )


class AscendProvider(ToolProvider):
    """Ascend discovery, telemetry, vNPU management and isolation through npu-smi."""

    NAME = NAME
    LABEL = "Ascend"

    def __init__(
        self,
        *,
        enabled: bool = True,
        runner: Runner = run_tool,
        tool: str = TOOL,
        timeout: float = DEFAULT_TIMEOUT_S,
        query_vnpu: bool = True,
        query_usages: bool = False,
    ) -> None:
        super().__init__(enabled=enabled, logger=log)
        self._runner = runner
        self._tool = tool
        self._timeout = timeout
        self._query_vnpu = query_vnpu
        self._query_usages = query_usages

    def run(self, req: NpuSmiRequest) -> ToolResult:
        """Build and run one npu-smi command."""
        return self._runner(npu_smi_argv(req, self._tool), self._timeout)

    # -- detection -------------------------------------------------------------------

    def _detect(self) -> ProviderReport:
        """The NPU chips of this machine with their vNPUs."""
        res = self.run(NpuSmiRequest(NpuSmiOp.INFO))
        if not res.ok:
            return _tool_report(res)
        info = ap.parse_info(res.stdout)
        warnings = [ReadingError(ErrorCode.PARSE_ERROR, p, field="npu-smi info") for p in info.problems]
        if not info.chips:
            status = ReportStatus.PARSE_ERROR if info.problems else ReportStatus.NO_DEVICES
            detail = "; ".join(info.problems) or "npu-smi lists no NPU"
            return ProviderReport(NAME, status, detail=detail, command=res.argv, warnings=tuple(warnings))
        mres = self.run(NpuSmiRequest(NpuSmiOp.MAPPING))
        mapping = ap.parse_mapping(mres.stdout) if mres.ok else {}
        if not mapping:
            why = mres.describe() if not mres.ok else "no chip rows in npu-smi info -m"
            warnings.append(
                ReadingError(ErrorCode.PARSE_ERROR, f"logical ids guessed: {why}", field="mapping")
            )
        devices: list[DiscoveredDevice] = []
        vnpu_ok = self._query_vnpu
        for pos, chip in enumerate(info.chips):
            logic = mapping.get((chip.npu_id, chip.chip_id), (None, ""))[0]
            index = logic if logic is not None else chip.device_id if chip.device_id is not None else pos
            uuid = f"ascend-{chip.npu_id}-{chip.chip_id}"
            key = model_key_for(chip.name)
            instances: tuple[DeviceInstance, ...] = ()
            inner = _IN_CONTAINER_VNPU.match(chip.name)
            if inner is not None:
                why = f"{chip.name} is a {inner['template']} vNPU seen from inside its container"
                warnings.append(ReadingError(ErrorCode.NOT_SUPPORTED, why, uuid, "vnpu"))
            elif vnpu_ok:
                instances, vnpu_ok = self._vnpus(chip, uuid, key, warnings)
            dev = DiscoveredDevice(
                vendor=VENDOR, kind="npu", product_name=chip.name, model_key=key, index=index, uuid=uuid,
                memory_mib=chip.device_memory[1] or 0,
                partition_mode=PartitionMode.VNPU if instances else PartitionMode.NONE,
                instances=instances, bus_id=chip.bus_id, health=chip.health, card_id=chip.npu_id,
                chip_id=chip.chip_id,
            )  # fmt: skip
            devices.append(dev)
            mismatch = memory_mismatch(dev)
            if mismatch is not None and inner is None:
                warnings.append(mismatch)
        return ProviderReport(
            NAME, ReportStatus.OK, tuple(devices), warnings=tuple(warnings), version=info.version
        )

    def _vnpus(
        self, chip: ap.NpuChip, uuid: str, key: str | None, warnings: list[ReadingError]
    ) -> tuple[tuple[DeviceInstance, ...], bool]:
        """The chip's vNPUs, and whether to keep asking other chips (False once unsupported)."""
        res = self.run(NpuSmiRequest(NpuSmiOp.INFO_VNPU, chip.npu_id, chip.chip_id))
        parsed = ap.parse_info_vnpu(res.stdout) if res.ok else None
        if parsed is None or (parsed.problems and not parsed.vnpus):
            why = res.describe() if parsed is None else "; ".join(parsed.problems)
            warnings.append(ReadingError(ErrorCode.NOT_SUPPORTED, f"vNPU query skipped: {why}", uuid, "vnpu"))
            return (), False
        warnings.extend(ReadingError(ErrorCode.PARSE_ERROR, p, uuid, "vnpu") for p in parsed.problems)
        model = CATALOG.get(key) if key else None
        found = tuple(
            DeviceInstance(
                profile=v.template,
                uuid=str(v.vnpu_id),
                instance_id=v.vnpu_id,
                memory_mib=model.profile(v.template).memory_mib
                if model and model.has_profile(v.template)
                else None,
            )
            for v in parsed.vnpus
        )
        return found, True

    # -- telemetry -------------------------------------------------------------------

    def _read_telemetry(self, now: float) -> TelemetryReport:
        """AI core %, memory and per-process memory of every chip."""
        res = self.run(NpuSmiRequest(NpuSmiOp.INFO))
        if not res.ok:
            return TelemetryReport(
                NAME, now, errors=(ReadingError(res.error or ErrorCode.TOOL_FAILED, res.describe()),)
            )
        info = ap.parse_info(res.stdout)
        errors = [ReadingError(ErrorCode.PARSE_ERROR, p, field="npu-smi info") for p in info.problems]
        known = {(d.card_id, d.chip_id): d for d in self.detect().devices}
        usages: dict[int, dict[int, dict[str, str]]] = {}
        samples: list[TelemetrySample] = []
        for pos, chip in enumerate(info.chips):
            dev = known.pop((chip.npu_id, chip.chip_id), None)
            uuid = dev.uuid if dev else f"ascend-{chip.npu_id}-{chip.chip_id}"
            chip_errors: list[ReadingError] = []
            if dev is None:
                chip_errors.append(ReadingError(ErrorCode.UNKNOWN_DEVICE, "not seen at detection", uuid))
            util = chip.aicore_pct
            if self._query_usages:
                util = self._usage_util(chip, usages, chip_errors, uuid)
            procs = tuple(
                ProcessUsage(pid=p.pid, memory_mib=p.memory_mib, name=p.name or None)
                for p in info.processes
                if (p.npu_id, p.chip_id) == (chip.npu_id, chip.chip_id)
            )
            used, total = chip.device_memory
            index = dev.index if dev else pos
            samples.append(
                TelemetrySample(uuid, index, now, util, used, total, procs, errors=tuple(chip_errors))
            )
        errors += [
            ReadingError(ErrorCode.DEVICE_LOST, "missing from npu-smi info", d.uuid) for d in known.values()
        ]
        return TelemetryReport(NAME, now, tuple(samples), tuple(errors))

    def _usage_util(
        self,
        chip: ap.NpuChip,
        cache: dict[int, dict[int, dict[str, str]]],
        errors: list[ReadingError],
        uuid: str,
    ) -> float | None:
        """ "NPU Utilization(%)" (newer drivers) else "Aicore Usage Rate(%)" from ``-t usages``."""
        if chip.npu_id not in cache:
            res = self.run(NpuSmiRequest(NpuSmiOp.USAGES, chip.npu_id))
            cache[chip.npu_id] = ap.parse_usages(res.stdout) if res.ok else {}
            if not res.ok:
                errors.append(
                    ReadingError(res.error or ErrorCode.TOOL_FAILED, res.describe(), uuid, "usages")
                )
        block = cache[chip.npu_id].get(chip.chip_id, {})
        for key in ("NPU Utilization(%)", "Aicore Usage Rate(%)"):
            value = block.get(key, "")
            if value.replace(".", "", 1).isdigit():
                return float(value)
        if cache[chip.npu_id]:
            errors.append(ReadingError(ErrorCode.PARSE_ERROR, "no utilisation field", uuid, "usages"))
        return chip.aicore_pct

    # -- isolation and vNPUs ---------------------------------------------------------

    def isolation_env(self, binding: SliceBinding) -> dict[str, str]:
        """``ASCEND_RT_VISIBLE_DEVICES`` by logical id, or ``ASCEND_VISIBLE_DEVICES`` by vNPU id."""
        if binding.device.vendor != VENDOR:
            raise InvalidRequest("device", binding.device.uuid, "a Huawei Ascend device")
        env = flexlab_slice_env(binding)
        if binding.instance is not None:
            if not binding.instance.isdigit():
                raise InvalidRequest("instance", binding.instance, "a vNPU id such as 100")
            env["ASCEND_VISIBLE_DEVICES"] = binding.instance
        else:
            env["ASCEND_RT_VISIBLE_DEVICES"] = str(binding.device.index)
        return env

    def templates(self, npu_id: int | None = None) -> tuple[ap.VnpuTemplate, ...]:
        """The vNPU templates npu-smi offers (empty, logged, when the query fails)."""
        res = self.run(NpuSmiRequest(NpuSmiOp.TEMPLATE_INFO, npu_id))
        if not res.ok:
            log.warning("vNPU templates unavailable: %s", res.describe())
            return ()
        return ap.parse_template_info(res.stdout)

    def vnpus(self, device: DiscoveredDevice) -> ap.VnpuInfo | None:
        """The vNPUs on one chip now, or None when the query fails."""
        res = self.run(NpuSmiRequest(NpuSmiOp.INFO_VNPU, device.card_id, device.chip_id))
        return ap.parse_info_vnpu(res.stdout) if res.ok else None

    def create_vnpu(
        self,
        device: DiscoveredDevice,
        template: str,
        *,
        vnpu_id: int | None = None,
        vgroup_id: int | None = None,
    ) -> VnpuChange:
        """Create a vNPU from ``template``; the new id comes from ``-v`` or from a re-query."""
        req = NpuSmiRequest(
            NpuSmiOp.CREATE_VNPU, device.card_id, device.chip_id, template, vnpu_id, vgroup_id
        )
        argv = npu_smi_argv(req, self._tool)
        before = self.vnpus(device) if vnpu_id is None else None
        res = self._runner(argv, self._timeout)
        ok, message = ap.parse_set_result(res.stdout)
        if not (res.ok and ok):
            log.warning("create-vnpu on %s failed: %s", device.uuid, message or res.describe())
            return VnpuChange(
                False, tuple(argv), message or res.describe(), None, res.error or ErrorCode.TOOL_FAILED
            )
        self._report.reset()
        new_id = vnpu_id
        if new_id is None and before is not None:
            after = self.vnpus(device)
            fresh = {v.vnpu_id for v in after.vnpus} - {v.vnpu_id for v in before.vnpus} if after else set()
            new_id = fresh.pop() if len(fresh) == 1 else None
        return VnpuChange(True, tuple(argv), message, new_id)

    def destroy_vnpu(self, device: DiscoveredDevice, vnpu_id: int) -> VnpuChange:
        """Destroy vNPU ``vnpu_id`` on the device's chip."""
        req = NpuSmiRequest(NpuSmiOp.DESTROY_VNPU, device.card_id, device.chip_id, vnpu_id=vnpu_id)
        argv = npu_smi_argv(req, self._tool)
        res = self._runner(argv, self._timeout)
        ok, message = ap.parse_set_result(res.stdout)
        if not (res.ok and ok):
            log.warning("destroy-vnpu %s on %s failed: %s", vnpu_id, device.uuid, message or res.describe())
            return VnpuChange(
                False, tuple(argv), message or res.describe(), vnpu_id, res.error or ErrorCode.TOOL_FAILED
            )
        self._report.reset()
        return VnpuChange(True, tuple(argv), message, vnpu_id)
