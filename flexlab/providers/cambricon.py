"""Cambricon MLUs through ``cnmon``: discovery, telemetry and isolation.

``cnmon`` (no arguments) prints one table of two rows per card and a process table; its
layout has changed across releases (samples in ``tests/providers/data/cambricon``):

* v4.x: ``Card VF Name Firmware | Inited Driver | Util Ecc-Error`` then
  ``Fan Temp Pwr:Usage/Cap | Memory-Usage | vMemory-Usage``;
* v5.x and later: the middle column is ``Bus-Id`` and the last second-row column is
  ``SR-IOV Compute-Mode`` (v5) or ``Mode Compute-Mode`` (v6).

Isolation: ``MLU_VISIBLE_DEVICES`` takes the card number. Fractional slices are not
enforced by hardware here (sMLU/vMLU need Cambricon's device plugin); the worker's
:func:`~flexlab.providers.memcap.apply_memory_cap` caps torch_mlu when it offers
``set_per_process_memory_fraction``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from flexlab.core.errors import InvalidRequest
from flexlab.providers.base import (
    DiscoveredDevice,
    ErrorCode,
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

log = logging.getLogger(__name__)

NAME = "cambricon"
TOOL = "cnmon"
_VERSION = re.compile(r"CNMON\s+v(\S+)")
_DRIVER = re.compile(r"Driver\s+v(\S+)")
_MEM = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")
_BUS = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")
_CARD = re.compile(r"^(\d+)\s+(\S+)\s+(\S+)\s+(\S+)$")
_PROC = re.compile(r"^(\d+)\s+(\S+)\s+(\d+)\s+(.*?)\s+(\d+)\s*MiB$")


@dataclass(frozen=True)
class MluCard:
    """One card of the ``cnmon`` table: both rows combined."""

    card: int
    vf: str
    name: str
    firmware: str
    bus_id: str | None
    util_pct: float | None
    temp_c: int | None
    memory_used_mib: int
    memory_total_mib: int


@dataclass(frozen=True)
class MluProcess:
    card: int
    pid: int
    command: str
    memory_mib: int


@dataclass(frozen=True)
class CnmonTable:
    version: str | None
    driver: str | None
    cards: tuple[MluCard, ...]
    processes: tuple[MluProcess, ...]
    problems: tuple[str, ...]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_cnmon(text: str) -> CnmonTable:
    """``cnmon``: cards with utilisation and memory, and the process table."""
    version = driver = None
    cards: list[MluCard] = []
    procs: list[MluProcess] = []
    problems: list[str] = []
    pending: tuple[int, str, str, str, str | None, float | None] | None = None
    in_procs = saw_header = False
    for raw in text.splitlines():
        line = raw.strip()
        if (m := _VERSION.search(line)) is not None:
            version = m.group(1)
            driver = d.group(1) if (d := _DRIVER.search(line)) else driver
            continue
        if not line.startswith("|") or set(line) <= set("|+-= "):
            continue
        if "Processes:" in line or "Command Line" in line:
            in_procs = True
            continue
        if "Firmware" in line or "Pwr:Usage/Cap" in line:
            saw_header = True
            continue
        cells = _cells(line)
        if in_procs:
            if (p := _PROC.match(cells[0])) is not None:
                procs.append(MluProcess(int(p[1]), int(p[3]), p[4], int(p[5])))
            elif "No running processes" not in line:
                problems.append(f"unreadable process row: {line!r}")
            continue
        if len(cells) == 3 and (c := _CARD.match(cells[0])) is not None:
            if pending is not None:
                problems.append(f"card {pending[0]}: first row without its second row")
            bus = cells[1] if _BUS.match(cells[1]) else None
            if bus is None and (d := re.search(r"v(\d\S*)", cells[1])):  # v4: "On  v4.20.11"
                driver = driver or d.group(1)
            util_text = cells[2].split()[0].rstrip("%") if cells[2] else ""
            util = float(util_text) if util_text.isdigit() else None
            pending = (int(c[1]), c[2], c[3], c[4], bus, util)
            continue
        mem = _MEM.search(cells[1]) if len(cells) >= 2 else None
        if pending is None or mem is None:
            problems.append(f"unreadable row: {line!r}")
            pending = None
            continue
        temp_m = re.search(r"(\d+)C\b", cells[0])
        temp = int(temp_m[1]) if temp_m else None
        card, vf, name, firmware, bus, util = pending
        pending = None
        cards.append(MluCard(card, vf, name, firmware, bus, util, temp, int(mem[1]), int(mem[2])))
    if pending is not None:
        problems.append(f"card {pending[0]}: output ends after the first row (truncated?)")
    if not saw_header:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        problems.append(f"no cnmon table in the output (it begins {first[:80]!r})")
    return CnmonTable(version, driver, tuple(cards), tuple(procs), tuple(problems))


class CambriconProvider(ToolProvider):
    """Cambricon discovery, telemetry and isolation through ``cnmon``."""

    NAME = NAME
    LABEL = "Cambricon"

    def __init__(
        self,
        *,
        enabled: bool = True,
        runner: Runner = run_tool,
        tool: str = TOOL,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(enabled=enabled, logger=log)
        self._runner = runner
        self._tool = tool
        self._timeout = timeout

    def cnmon_argv(self) -> list[str]:
        """The one command this provider runs: ``cnmon`` with no arguments."""
        return [self._tool]

    def _run(self) -> ToolResult:
        return self._runner(self.cnmon_argv(), self._timeout)

    def _detect(self) -> ProviderReport:
        """The MLU cards of this machine."""
        res = self._run()
        if not res.ok:
            missing = res.error is ErrorCode.TOOL_MISSING
            status = ReportStatus.TOOL_MISSING if missing else ReportStatus.TOOL_FAILED
            return ProviderReport(
                NAME,
                status,
                detail=res.describe(),
                command=res.argv,
                returncode=res.returncode,
                stderr=res.stderr,
            )
        table = parse_cnmon(res.stdout)
        warnings = [ReadingError(ErrorCode.PARSE_ERROR, p, field="cnmon") for p in table.problems]
        if not table.cards:
            status = ReportStatus.PARSE_ERROR if table.problems else ReportStatus.NO_DEVICES
            detail = "; ".join(table.problems) or "cnmon lists no MLU"
            return ProviderReport(NAME, status, detail=detail, command=res.argv, warnings=tuple(warnings))
        devices = []
        for card in table.cards:
            dev = DiscoveredDevice(
                vendor=NAME, kind="mlu", product_name=card.name, model_key=model_key_for(card.name),
                index=card.card, uuid=f"mlu-{card.bus_id}" if card.bus_id else f"mlu-card{card.card}",
                memory_mib=card.memory_total_mib, bus_id=card.bus_id, card_id=card.card,
            )  # fmt: skip
            devices.append(dev)
            if (mismatch := memory_mismatch(dev)) is not None:
                warnings.append(mismatch)
        version = table.driver or table.version
        return ProviderReport(
            NAME, ReportStatus.OK, tuple(devices), warnings=tuple(warnings), version=version
        )

    def _read_telemetry(self, now: float) -> TelemetryReport:
        """Utilisation, memory and per-process memory of every card."""
        res = self._run()
        if not res.ok:
            error = ReadingError(res.error or ErrorCode.TOOL_FAILED, res.describe())
            return TelemetryReport(NAME, now, errors=(error,))
        table = parse_cnmon(res.stdout)
        errors = [ReadingError(ErrorCode.PARSE_ERROR, p, field="cnmon") for p in table.problems]
        known = {d.card_id: d for d in self.detect().devices}
        samples = []
        for card in table.cards:
            dev = known.pop(card.card, None)
            uuid = dev.uuid if dev else f"mlu-card{card.card}"
            procs = tuple(
                ProcessUsage(pid=p.pid, memory_mib=p.memory_mib, name=p.command)
                for p in table.processes
                if p.card == card.card
            )
            errs = () if dev else (ReadingError(ErrorCode.UNKNOWN_DEVICE, "not seen at detection", uuid),)
            used, total = card.memory_used_mib, card.memory_total_mib
            samples.append(
                TelemetrySample(uuid, card.card, now, card.util_pct, used, total, procs, errors=errs)
            )
        errors += [ReadingError(ErrorCode.DEVICE_LOST, "missing from cnmon", d.uuid) for d in known.values()]
        return TelemetryReport(NAME, now, tuple(samples), tuple(errors))

    def isolation_env(self, binding: SliceBinding) -> dict[str, str]:
        """``MLU_VISIBLE_DEVICES`` by card number, plus the FLEXLAB_* caps."""
        if binding.device.vendor != NAME:
            raise InvalidRequest("device", binding.device.uuid, "a Cambricon MLU")
        env = flexlab_slice_env(binding)
        env["MLU_VISIBLE_DEVICES"] = str(binding.device.index)
        return env
