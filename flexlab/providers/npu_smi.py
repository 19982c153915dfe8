"""Huawei ``npu-smi``: the command lines flexlab runs and parsers of their output (pure).

Formats, as printed by npu-smi 23.0 to 25.5 (recorded samples in
``tests/providers/data/ascend``):

* ``npu-smi info``: a table of two rows per chip. 910-class chips print
  ``Chip | Bus-Id | AICore(%) Memory-Usage(MB) HBM-Usage(MB)``; 310-class chips print
  ``Chip Device | Bus-Id | AICore(%) Memory-Usage(MB)`` (the Device column is the logical
  id). A second table lists processes per NPU and chip, or "No running processes found".
* ``npu-smi info -m``: NPU ID, Chip ID, Chip Logic ID, Chip Name columns; ``Mcu`` rows
  have no logic id and are skipped.
* ``npu-smi info -t usages -i ID``: ``key : value`` lines; on a multi-chip card each
  chip's block is closed by its ``Chip ID`` line.
* ``npu-smi info -t template-info`` and ``-t info-vnpu``: boxed tables of vNPU templates
  and of the vNPUs that exist on a chip.

Parsers never raise on odd input: what they cannot read goes into ``problems``.
:func:`npu_smi_argv` is the one builder of command lines; the provider runs them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from flexlab.core.errors import InvalidRequest

TOOL = "npu-smi"
_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_VERSION = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)")
_BUS = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")
_TEMPLATE = re.compile(r"^vir\d{2}(?:_[0-9a-z]+)*$")


@dataclass(frozen=True)
class NpuChip:
    """One chip of ``npu-smi info``: the two table rows combined."""

    npu_id: int
    chip_id: int
    name: str
    health: str
    bus_id: str | None
    #: The Device column of 310-class tables (the logical id); None on 910-class tables.
    device_id: int | None
    aicore_pct: float | None
    power_w: float | None
    temp_c: int | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    hbm_used_mib: int | None
    hbm_total_mib: int | None

    @property
    def device_memory(self) -> tuple[int | None, int | None]:
        """(used, total) of the memory a program allocates: HBM where the chip has it."""
        if self.hbm_total_mib:
            return self.hbm_used_mib, self.hbm_total_mib
        return self.memory_used_mib, self.memory_total_mib


@dataclass(frozen=True)
class NpuProcess:
    npu_id: int
    chip_id: int
    pid: int
    name: str
    memory_mib: int | None


@dataclass(frozen=True)
class NpuSmiInfo:
    version: str | None
    chips: tuple[NpuChip, ...]
    processes: tuple[NpuProcess, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class VnpuTemplate:
    name: str
    aicore: int
    memory_gb: int
    aicpu: int


@dataclass(frozen=True)
class Vnpu:
    vnpu_id: int
    vgroup_id: int
    container_id: str
    status: int
    template: str


@dataclass(frozen=True)
class VnpuInfo:
    """``info-vnpu`` of one chip: free/total AI cores and memory (GB), and its vNPUs."""

    aicore_free: int | None
    aicore_total: int | None
    memory_free_gb: int | None
    memory_total_gb: int | None
    vnpus: tuple[Vnpu, ...]
    problems: tuple[str, ...]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_info(text: str) -> NpuSmiInfo:
    """``npu-smi info``: chips with health, AI core %, memory, and the process table."""
    version = None
    chips: list[NpuChip] = []
    procs: list[NpuProcess] = []
    problems: list[str] = []
    has_hbm = False
    in_procs = False
    saw_header = False
    pending: tuple[int, str, str, float | None, int | None] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if (m := _VERSION.search(line)) is not None:
            version = m.group(2)
            continue
        if not line.startswith("|") or set(line) <= set("|+-= "):
            continue
        cells = _cells(line)
        if "Process id" in line:
            in_procs = True
            continue
        if "Bus-Id" in line:  # second header row: which memory columns follow
            has_hbm = "HBM-Usage" in line
            continue
        if "Health" in line and "Name" in line:
            saw_header = True
            continue
        if in_procs:
            proc = _process_row(cells)
            if proc is not None:
                procs.append(proc)
            elif not line.strip("| ").startswith("No running processes"):
                problems.append(f"unreadable process row: {line!r}")
            continue
        if len(cells) < 3:
            problems.append(f"unreadable row: {line!r}")
            continue
        head = cells[0].split()
        if len(head) >= 2 and head[0].isdigit() and not head[1].isdigit():  # "<npu> <name>"
            if pending is not None:
                problems.append(f"NPU {pending[0]}: first row without its second row")
            power_temp = cells[2].split()
            power = _num(power_temp[0]) if power_temp else None
            temp = _int(power_temp[1]) if len(power_temp) > 1 else None
            pending = (int(head[0]), " ".join(head[1:]), cells[1], power, temp)
            continue
        if pending is None or not head or not head[0].isdigit():
            problems.append(f"unreadable row: {line!r}")
            continue
        chip = _second_row(pending, head, cells, has_hbm, problems)
        pending = None
        if chip is not None:
            chips.append(chip)
    if pending is not None:
        problems.append(f"NPU {pending[0]}: output ends after the first row (truncated?)")
    if not saw_header:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        problems.append(f"no npu-smi info table in the output (it begins {first[:80]!r})")
    return NpuSmiInfo(version, tuple(chips), tuple(procs), tuple(problems))


def _second_row(
    first: tuple[int, str, str, float | None, int | None],
    head: list[str],
    cells: list[str],
    has_hbm: bool,
    problems: list[str],
) -> NpuChip | None:
    npu_id, name, health, power, temp = first
    bus = cells[1] if _BUS.match(cells[1]) else None
    numbers = cells[2].split()
    pairs = [(int(a), int(b)) for a, b in _PAIR.findall(cells[2])]
    if not numbers or len(pairs) < (2 if has_hbm else 1):
        problems.append(f"NPU {npu_id}: unreadable usage cell {cells[2]!r}")
        return None
    mem = pairs[0]
    hbm = pairs[1] if has_hbm else (None, None)
    return NpuChip(
        npu_id=npu_id, chip_id=int(head[0]), name=name, health=health, bus_id=bus,
        device_id=_int(head[1]) if len(head) > 1 else None, aicore_pct=_num(numbers[0]),
        power_w=power, temp_c=temp, memory_used_mib=mem[0], memory_total_mib=mem[1],
        hbm_used_mib=hbm[0], hbm_total_mib=hbm[1],
    )  # fmt: skip


def _process_row(cells: list[str]) -> NpuProcess | None:
    if len(cells) < 4:
        return None
    ids = cells[0].split()
    if len(ids) != 2 or not all(i.isdigit() for i in ids) or not cells[1].isdigit():
        return None
    return NpuProcess(int(ids[0]), int(ids[1]), int(cells[1]), cells[2], _int(cells[3]))


def parse_mapping(text: str) -> dict[tuple[int, int], tuple[int, str]]:
    """``npu-smi info -m``: (NPU ID, Chip ID) -> (Chip Logic ID, Chip Name); MCUs skipped."""
    header: list[str] | None = None
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for raw in text.splitlines():
        cols = [c for c in re.split(r"\s{2,}|\t", raw.strip()) if c]
        if not cols:
            continue
        if "NPU ID" in cols and "Chip ID" in cols:
            header = cols
            continue
        if header is None or len(cols) != len(header):
            continue
        row = dict(zip(header, cols, strict=True))
        npu, chip, logic = row.get("NPU ID", ""), row.get("Chip ID", ""), row.get("Chip Logic ID", "")
        if npu.isdigit() and chip.isdigit() and logic.isdigit():
            found[(int(npu), int(chip))] = (int(logic), row.get("Chip Name", ""))
    return found


def parse_usages(text: str) -> dict[int, dict[str, str]]:
    """``npu-smi info -t usages -i ID``: chip id -> {field: value}.

    npu-smi closes each chip's block with its ``Chip ID`` line (``-t common`` opens it
    instead; both are read); output without any ``Chip ID`` line is chip 0.
    """
    chips: dict[int, dict[str, str]] = {}
    block: dict[str, str] = {}
    lead: int | None = None  # a Chip ID line that opened the current block (``-t common`` style)
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in ("NPU ID", "Chip Count"):
            continue
        if key == "Chip ID" and value.isdigit():
            if block and lead is None:
                chips[int(value)] = block  # the line closes the block before it
            elif block and lead is not None:
                chips[lead] = block
                lead = int(value)
            else:
                lead = int(value)
            block = {}
            continue
        block[key] = value
    if block:
        chips[lead if lead is not None else (max(chips) + 1 if chips else 0)] = block
    return chips


def parse_template_info(text: str) -> tuple[VnpuTemplate, ...]:
    """``npu-smi info -t template-info``: name, AI cores, memory (GB) and AI CPUs."""
    found: list[VnpuTemplate] = []
    for raw in text.splitlines():
        cols = raw.strip().strip("|").split()
        if len(cols) >= 4 and _TEMPLATE.match(cols[0]) and all(c.isdigit() for c in cols[1:4]):
            found.append(VnpuTemplate(cols[0], int(cols[1]), int(cols[2]), int(cols[3])))
    return tuple(found)


def parse_info_vnpu(text: str) -> VnpuInfo:
    """``npu-smi info -t info-vnpu -i ID -c CHIP``: free/total resources and the vNPUs."""
    problems: list[str] = []
    vnpus: list[Vnpu] = []
    resources: list[tuple[int | None, int | None]] = []
    declared: int | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if (m := re.search(r"Total number of vnpu:\s*(\d+)", line)) is not None:
            declared = int(m.group(1))
            continue
        if not resources and len(_PAIR.findall(line)) >= 2:
            resources = [(_int(a), _int(b)) for a, b in re.findall(r"(\w+)/(\w+)", line)]
            continue
        cells = [c for c in _cells(line) if c != ""]
        if len(cells) == 5 and cells[0].isdigit() and _TEMPLATE.match(cells[4]):
            if cells[1].isdigit() and cells[3].isdigit():
                vnpus.append(Vnpu(int(cells[0]), int(cells[1]), cells[2], int(cells[3]), cells[4]))
            else:
                problems.append(f"unreadable vNPU row: {line!r}")
    if declared is None:
        problems.append("no 'Total number of vnpu' line")
    elif declared != len(vnpus):
        problems.append(f"{declared} vNPUs declared, {len(vnpus)} rows read (truncated?)")
    aic = resources[0] if resources else (None, None)
    mem = resources[1] if len(resources) > 1 else (None, None)
    return VnpuInfo(aic[0], aic[1], mem[0], mem[1], tuple(vnpus), tuple(problems))


def parse_set_result(text: str) -> tuple[bool, str]:
    """``npu-smi set ...``: (Status is OK, the Message line or the whole output)."""
    status = message = ""
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if sep and key.strip() == "Status":
            status = value.strip()
        elif sep and key.strip() == "Message":
            message = value.strip()
    return status.upper() == "OK", message or text.strip()


class NpuSmiOp(str, enum.Enum):
    """The npu-smi commands flexlab runs."""

    INFO = "info"
    MAPPING = "mapping"
    USAGES = "usages"
    TEMPLATE_INFO = "template-info"
    INFO_VNPU = "info-vnpu"
    CREATE_VNPU = "create-vnpu"
    DESTROY_VNPU = "destroy-vnpu"


@dataclass(frozen=True)
class NpuSmiRequest:
    """One npu-smi command: the operation and its ids (``-i`` NPU, ``-c`` chip, ``-v`` vNPU)."""

    op: NpuSmiOp
    npu_id: int | None = None
    chip_id: int | None = None
    template: str | None = None
    vnpu_id: int | None = None
    vgroup_id: int | None = None


def _need(value: int | None, field: str, allowed: str = "an integer >= 0") -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(field, value, allowed)
    return str(value)


def npu_smi_argv(req: NpuSmiRequest, tool: str = TOOL) -> list[str]:
    """The argv of one npu-smi command (pure; ``InvalidRequest`` on a bad id or template).

    >>> npu_smi_argv(NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, "vir05_1c_16g", vnpu_id=103))
    ['npu-smi', 'set', '-t', 'create-vnpu', '-i', '0', '-c', '0', '-f', 'vir05_1c_16g', '-v', '103']
    """
    op = req.op
    if op is NpuSmiOp.INFO:
        return [tool, "info"]
    if op is NpuSmiOp.MAPPING:
        return [tool, "info", "-m"]
    if op is NpuSmiOp.TEMPLATE_INFO:
        tail = [] if req.npu_id is None else ["-i", _need(req.npu_id, "npu_id")]
        return [tool, "info", "-t", "template-info", *tail]
    npu = _need(req.npu_id, "npu_id")
    if op is NpuSmiOp.USAGES:
        tail = [] if req.chip_id is None else ["-c", _need(req.chip_id, "chip_id")]
        return [tool, "info", "-t", "usages", "-i", npu, *tail]
    chip = _need(req.chip_id, "chip_id")
    if op is NpuSmiOp.INFO_VNPU:
        return [tool, "info", "-t", "info-vnpu", "-i", npu, "-c", chip]
    if op is NpuSmiOp.CREATE_VNPU:
        if req.template is None or not _TEMPLATE.match(req.template):
            raise InvalidRequest("template", req.template, "a vNPU template name such as vir05_1c_16g")
        argv = [tool, "set", "-t", "create-vnpu", "-i", npu, "-c", chip, "-f", req.template]
        if req.vnpu_id is not None:
            if isinstance(req.vnpu_id, bool) or req.vnpu_id < 100:
                raise InvalidRequest("vnpu_id", req.vnpu_id, "an id >= 100 (npu-smi: phy_id*16+100 .. +115)")
            argv += ["-v", str(req.vnpu_id)]
        if req.vgroup_id is not None:
            if req.vgroup_id not in (0, 1, 2, 3):
                raise InvalidRequest("vgroup_id", req.vgroup_id, "0, 1, 2 or 3")
            argv += ["-g", str(req.vgroup_id)]
        return argv
    if op is NpuSmiOp.DESTROY_VNPU:
        if req.vnpu_id is None or req.vnpu_id < 100:
            raise InvalidRequest("vnpu_id", req.vnpu_id, "an existing vNPU id (>= 100)")
        return [tool, "set", "-t", "destroy-vnpu", "-i", npu, "-c", chip, "-v", str(req.vnpu_id)]
    raise InvalidRequest("op", op, ", ".join(o.value for o in NpuSmiOp))
