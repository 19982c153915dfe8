"""Ascend provider and npu-smi parsers against recorded npu-smi output (tests/providers/data/ascend)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.providers import npu_smi as ap
from flexlab.providers.ascend import AscendProvider, NpuSmiOp, NpuSmiRequest, npu_smi_argv
from flexlab.providers.base import DiscoveredDevice, ErrorCode, PartitionMode, ReportStatus, SliceBinding
from flexlab.providers.command import ToolResult

INFO = ("npu-smi", "info")
MAPPING = ("npu-smi", "info", "-m")


def vnpu_argv(npu: int, chip: int = 0) -> tuple[str, ...]:
    return ("npu-smi", "info", "-t", "info-vnpu", "-i", str(npu), "-c", str(chip))


# -- parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "chips", "first", "procs", "problems"),
    [
        (
            "info_910b3_x8_npusmi25.3.rc1.txt",
            "25.3.rc1",
            8,
            (0, 0, "910B3", "OK", "0000:C1:00.0", None, 37.0, 94.3, 53, 4487, 65536),
            3,
            0,
        ),
        (
            "info_910b3_wide_hbm_npusmi25.3.rc1.txt",
            "25.3.rc1",
            2,
            (0, 0, "910B3", "OK", "0000:C1:00.0", None, 88.0, 100.9, 40, 58626, 65536),
            2,
            0,
        ),
        (
            "info_910_first_gen_npusmi24.1.0.txt",
            "24.1.0",
            2,
            (0, 0, "910B", "OK", "0000:C1:00.0", None, 0.0, 70.0, 34, 1365, 32768),
            0,
            0,
        ),
        (
            "info_310p3_duo_npusmi25.0.rc1.txt",
            "25.0.rc1.b033",
            4,
            (1, 0, "310P3", "OK", "0000:01:00.0", 0, 12.0, None, 52, 1607, 44280),
            1,
            0,
        ),
        (
            "info_310p3_npusmi23.0.0.txt",
            "23.0.0",
            1,
            (24, 0, "310P3", "OK", "0000:04:00.0", 0, 0.0, None, 29, 1832, 21527),
            0,
            0,
        ),
        (
            "info_310p_vnpu_in_container_npusmi22.0.4.txt",
            "22.0.4",
            1,
            (7, 0, "310Pvir02", "OK", "0000:00:07.0", 0, 0.0, None, 28, 497, 5381),
            0,
            0,
        ),
        (
            "info_910b3_truncated.txt",
            "25.3.rc1",
            2,
            (0, 0, "910B3", "OK", "0000:C1:00.0", None, 37.0, 94.3, 53, 4487, 65536),
            0,
            1,
        ),
        ("info_dcmi_failed.txt", None, 0, None, 0, 1),
    ],
    ids=[
        "910b3-x8",
        "910b3-wide-hbm",
        "910-first-gen",
        "310p3-duo",
        "310p3",
        "vnpu-in-container",
        "truncated",
        "dcmi-error",
    ],
)
def test_parse_info(
    recorded: Callable[..., str],
    name: str,
    version: str | None,
    chips: int,
    first: tuple[Any, ...] | None,
    procs: int,
    problems: int,
) -> None:
    info = ap.parse_info(recorded("ascend", name))
    assert (info.version, len(info.chips), len(info.processes), len(info.problems)) == (
        version,
        chips,
        procs,
        problems,
    )
    if first is not None:
        c = info.chips[0]
        used, total = c.device_memory
        got = (
            c.npu_id,
            c.chip_id,
            c.name,
            c.health,
            c.bus_id,
            c.device_id,
            c.aicore_pct,
            c.power_w,
            c.temp_c,
        )
        assert (*got, used, total) == first


def test_parse_info_process_rows_and_health(recorded: Callable[..., str]) -> None:
    info = ap.parse_info(recorded("ascend", "info_910b3_x8_npusmi25.3.rc1.txt"))
    assert [(p.npu_id, p.chip_id, p.pid, p.name, p.memory_mib) for p in info.processes] == [
        (0, 0, 2698909, "", 600),
        (0, 0, 2701550, "", 538),
        (1, 0, 2698910, "", 600),
    ]
    assert info.chips[7].health == "Warning"
    duo = ap.parse_info(recorded("ascend", "info_310p3_duo_npusmi25.0.rc1.txt"))
    assert [(c.npu_id, c.chip_id, c.device_id, c.health) for c in duo.chips] == [
        (1, 0, 0, "OK"),
        (1, 1, 1, "OK"),
        (4, 0, 2, "Critical"),
        (4, 1, 3, "OK"),
    ]
    assert duo.processes[0].name == "python3"


def test_parse_info_truncation_names_the_npu(recorded: Callable[..., str]) -> None:
    info = ap.parse_info(recorded("ascend", "info_910b3_truncated.txt"))
    assert info.problems == ("NPU 2: unreadable usage cell '0           0    / 0          44'",)
    cut = recorded("ascend", "info_910b3_x8_npusmi25.3.rc1.txt").splitlines()[:13]
    assert ap.parse_info("\n".join(cut)).problems == ("NPU 2: output ends after the first row (truncated?)",)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mapping_910b3_npusmi25.3.rc1.txt", {(n, 0): (n, "Ascend 910B3") for n in range(8)}),
        (
            "mapping_310p3_duo.txt",
            {
                (1, 0): (0, "Ascend 310P3"),
                (1, 1): (1, "Ascend 310P3"),
                (4, 0): (2, "Ascend 310P3"),
                (4, 1): (3, "Ascend 310P3"),
            },
        ),
    ],
    ids=["910b3-with-mcu-rows", "310p3-duo"],
)
def test_parse_mapping(recorded: Callable[..., str], name: str, expected: dict[Any, Any]) -> None:
    assert ap.parse_mapping(recorded("ascend", name)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("usages_910b_npusmi24.1.txt", {0: ("37", "65536", None)}),
        ("usages_doc_no_chip_id.txt", {0: ("0", "131072", "21")}),
        ("usages_two_chips.txt", {0: ("0", "32768", None), 1: ("62", "32768", None)}),
        ("common_two_chips_leading_id.txt", {0: ("0", None, None), 1: ("44", None, None)}),
    ],
    ids=["trailing-chip-id", "no-chip-id", "two-chips", "leading-chip-id"],
)
def test_parse_usages(recorded: Callable[..., str], name: str, expected: dict[int, tuple[Any, ...]]) -> None:
    parsed = ap.parse_usages(recorded("ascend", name))
    keys = ("Aicore Usage Rate(%)", "HBM Capacity(MB)", "NPU Utilization(%)")
    assert {chip: tuple(block.get(k) for k in keys) for chip, block in parsed.items()} == expected


def test_parse_template_info(recorded: Callable[..., str]) -> None:
    b4 = ap.parse_template_info(recorded("ascend", "template_info_910b4.txt"))
    assert [(t.name, t.aicore, t.memory_gb, t.aicpu) for t in b4] == [
        ("vir10_3c_16g", 10, 16, 3),
        ("vir10_4c_16g_m", 10, 16, 4),
        ("vir10_3c_16g_nm", 10, 16, 3),
        ("vir05_1c_8g", 5, 8, 1),
    ]
    p3 = ap.parse_template_info(recorded("ascend", "template_info_310p3.txt"))
    assert [t.name for t in p3] == [
        "vir01",
        "vir02",
        "vir02_1c",
        "vir04",
        "vir04_3c",
        "vir04_3c_ndvpp",
        "vir04_4c_dvpp",
    ]
    assert p3[0] == ap.VnpuTemplate("vir01", 1, 3, 1)


@pytest.mark.parametrize(
    ("name", "resources", "vnpus", "problems"),
    [
        ("info_vnpu_empty_910b4.txt", (20, 20, 28, 32), [], 0),
        (
            "info_vnpu_two_910b4.txt",
            (0, 20, 0, 32),
            [(100, 0, 1, "vir10_3c_16g"), (101, 1, 0, "vir10_3c_16g")],
            0,
        ),
        ("info_vnpu_truncated.txt", (0, 20, 0, 32), [(100, 0, 1, "vir10_3c_16g")], 1),
        ("info_vnpu_310p3_unboxed.txt", (4, 8, 21, 42), [(212, 0, 0, "vir04")], 0),
    ],
    ids=["none", "two", "truncated", "310p3-unboxed"],
)
def test_parse_info_vnpu(
    recorded: Callable[..., str], name: str, resources: tuple[int, ...], vnpus: list[Any], problems: int
) -> None:
    info = ap.parse_info_vnpu(recorded("ascend", name))
    assert (info.aicore_free, info.aicore_total, info.memory_free_gb, info.memory_total_gb) == resources
    assert [(v.vnpu_id, v.vgroup_id, v.status, v.template) for v in info.vnpus] == vnpus
    assert len(info.problems) == problems


# -- command lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "argv"),
    [
        (NpuSmiRequest(NpuSmiOp.INFO), "npu-smi info"),
        (NpuSmiRequest(NpuSmiOp.MAPPING), "npu-smi info -m"),
        (NpuSmiRequest(NpuSmiOp.USAGES, 3), "npu-smi info -t usages -i 3"),
        (NpuSmiRequest(NpuSmiOp.USAGES, 3, 1), "npu-smi info -t usages -i 3 -c 1"),
        (NpuSmiRequest(NpuSmiOp.TEMPLATE_INFO), "npu-smi info -t template-info"),
        (NpuSmiRequest(NpuSmiOp.TEMPLATE_INFO, 0), "npu-smi info -t template-info -i 0"),
        (NpuSmiRequest(NpuSmiOp.INFO_VNPU, 5, 1), "npu-smi info -t info-vnpu -i 5 -c 1"),
        (
            NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, "vir10_3c_32g"),
            "npu-smi set -t create-vnpu -i 0 -c 0 -f vir10_3c_32g",
        ),
        (
            NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, "vir02", vnpu_id=100, vgroup_id=1),
            "npu-smi set -t create-vnpu -i 0 -c 0 -f vir02 -v 100 -g 1",
        ),
        (
            NpuSmiRequest(NpuSmiOp.DESTROY_VNPU, 0, 0, vnpu_id=103),
            "npu-smi set -t destroy-vnpu -i 0 -c 0 -v 103",
        ),
    ],
    ids=[
        "info",
        "mapping",
        "usages",
        "usages-chip",
        "templates",
        "templates-npu",
        "info-vnpu",
        "create",
        "create-id-group",
        "destroy",
    ],
)
def test_npu_smi_argv(req: NpuSmiRequest, argv: str) -> None:
    assert npu_smi_argv(req) == argv.split()


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (NpuSmiRequest(NpuSmiOp.USAGES), "npu_id"),
        (NpuSmiRequest(NpuSmiOp.INFO_VNPU, 0), "chip_id"),
        (NpuSmiRequest(NpuSmiOp.INFO_VNPU, -1, 0), "npu_id"),
        (NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, "vir05; rm -rf /"), "template"),
        (NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, None), "template"),
        (NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, "vir02", vnpu_id=7), "vnpu_id"),
        (NpuSmiRequest(NpuSmiOp.CREATE_VNPU, 0, 0, "vir02", vgroup_id=4), "vgroup_id"),
        (NpuSmiRequest(NpuSmiOp.DESTROY_VNPU, 0, 0), "vnpu_id"),
    ],
    ids=[
        "no-npu",
        "no-chip",
        "negative-npu",
        "shell-in-template",
        "no-template",
        "vnpu-id-range",
        "vgroup",
        "destroy-no-id",
    ],
)
def test_npu_smi_argv_refuses_bad_input(req: NpuSmiRequest, field: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        npu_smi_argv(req)
    assert exc.value.field == field


# -- provider -----------------------------------------------------------------------------


def table_910b3(recorded: Callable[..., str]) -> dict[tuple[str, ...], Any]:
    table: dict[tuple[str, ...], Any] = {
        INFO: recorded("ascend", "info_910b3_x8_npusmi25.3.rc1.txt"),
        MAPPING: recorded("ascend", "mapping_910b3_npusmi25.3.rc1.txt"),
    }
    for npu in range(8):
        table[vnpu_argv(npu)] = recorded("ascend", "info_vnpu_empty_910b4.txt")
    return table


def test_detect_910b3_host(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay(table_910b3(recorded))
    report = AscendProvider(runner=runner).detect()
    assert (report.status, report.version, len(report.devices)) == (ReportStatus.OK, "25.3.rc1", 8)
    dev = report.devices[7]
    assert (dev.vendor, dev.kind, dev.product_name, dev.model_key) == (
        "huawei",
        "npu",
        "910B3",
        "ascend-910b3",
    )
    assert (dev.index, dev.card_id, dev.chip_id, dev.uuid, dev.memory_mib) == (7, 7, 0, "ascend-7-0", 65536)
    assert dev.health == "Warning"
    assert report.warnings == ()
    assert runner.calls[:2] == [INFO, MAPPING]
    assert len(runner.calls) == 10  # info, -m, and one info-vnpu per chip


def test_detect_310p3_duo_uses_logical_ids_and_flags_memory(
    recorded: Callable[..., str], replay: Any
) -> None:
    runner = replay(
        {
            INFO: recorded("ascend", "info_310p3_duo_npusmi25.0.rc1.txt"),
            MAPPING: recorded("ascend", "mapping_310p3_duo.txt"),
            vnpu_argv(1, 0): recorded("ascend", "info_vnpu_310p3_unboxed.txt"),
            vnpu_argv(1, 1): recorded("ascend", "info_vnpu_empty_910b4.txt"),
            vnpu_argv(4, 0): recorded("ascend", "info_vnpu_empty_910b4.txt"),
            vnpu_argv(4, 1): recorded("ascend", "info_vnpu_empty_910b4.txt"),
        }
    )
    report = AscendProvider(runner=runner).detect()
    assert [(d.index, d.card_id, d.chip_id, d.health) for d in report.devices] == [
        (0, 1, 0, "OK"),
        (1, 1, 1, "OK"),
        (2, 4, 0, "Critical"),
        (3, 4, 1, "OK"),
    ]
    first = report.devices[0]
    assert first.partition_mode is PartitionMode.VNPU
    assert [(i.profile, i.instance_id, i.memory_mib) for i in first.instances] == [("vir04", 212, 12288)]
    # A 300I Duo chip reports 44280 MiB; the catalog's 310P3 entry is the 24 GB 300I Pro.
    assert [(w.field, w.device) for w in report.warnings] == [
        ("model", f"ascend-{d.card_id}-{d.chip_id}") for d in report.devices
    ]


def test_detect_first_generation_910_is_not_in_the_catalog(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay({INFO: recorded("ascend", "info_910_first_gen_npusmi24.1.0.txt")})
    report = AscendProvider(runner=runner, query_vnpu=False).detect()
    assert [(d.product_name, d.model_key, d.memory_mib) for d in report.devices] == [
        ("910B", None, 32768)
    ] * 2
    # No -m output: logical ids fall back to table order, and the report says so.
    assert [d.index for d in report.devices] == [0, 1]
    assert [(w.code, w.field) for w in report.warnings] == [(ErrorCode.PARSE_ERROR, "mapping")]


def test_detect_inside_a_vnpu_container(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay({INFO: recorded("ascend", "info_310p_vnpu_in_container_npusmi22.0.4.txt")})
    report = AscendProvider(runner=runner).detect()
    (dev,) = report.devices
    assert (dev.model_key, dev.memory_mib, dev.index) == ("ascend-310p3", 5381, 0)
    assert "vir02 vNPU seen from inside its container" in report.warnings[-1].detail
    assert vnpu_argv(7) not in runner.calls


def test_vnpu_query_stops_after_the_first_unsupported_chip(recorded: Callable[..., str], replay: Any) -> None:
    table = table_910b3(recorded)
    table[vnpu_argv(0)] = ToolResult(
        vnpu_argv(0), 255, "This device does not support querying info-vnpu.\n", ""
    )
    runner = replay(table)
    report = AscendProvider(runner=runner).detect()
    assert len(report.devices) == 8
    assert [(w.code, w.field) for w in report.warnings] == [(ErrorCode.NOT_SUPPORTED, "vnpu")]
    assert sum(1 for c in runner.calls if "info-vnpu" in c) == 1


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (
            ToolResult(INFO, None, "", "", ErrorCode.TOOL_MISSING),
            ReportStatus.TOOL_MISSING,
            "npu-smi not found on PATH",
        ),
        (
            ToolResult(
                INFO,
                255,
                "",
                "dcmi model initialized failed, because the device is used. ret is -8020\n",
                ErrorCode.TOOL_FAILED,
            ),
            ReportStatus.TOOL_FAILED,
            "npu-smi info exited 255: dcmi model initialized failed",
        ),
        (
            ToolResult(INFO, None, "", "", ErrorCode.TIMEOUT),
            ReportStatus.TOOL_FAILED,
            "npu-smi info timed out",
        ),
        ("info_dcmi_failed.txt", ReportStatus.PARSE_ERROR, "no npu-smi info table in the output"),
    ],
    ids=["missing", "failed", "timeout", "garbage"],
)
def test_detect_failures_are_reports(
    recorded: Callable[..., str], replay: Any, answer: Any, status: ReportStatus, detail: str
) -> None:
    value = recorded("ascend", answer) if isinstance(answer, str) else answer
    report = AscendProvider(runner=replay({INFO: value})).detect()
    assert report.status is status
    assert report.detail.startswith(detail)
    assert report.devices == ()
    if status is ReportStatus.TOOL_FAILED and answer.stderr:
        assert report.stderr.startswith("dcmi model")
        assert report.returncode == 255


def test_sample_reads_util_memory_and_processes(recorded: Callable[..., str], replay: Any) -> None:
    prov = AscendProvider(runner=replay(table_910b3(recorded)))
    report = prov.sample()
    assert len(report.samples) == 8
    s0 = report.samples[0]
    assert (s0.device, s0.index, s0.utilization_pct, s0.memory_used_mib, s0.memory_total_mib) == (
        "ascend-0-0",
        0,
        37.0,
        4487,
        65536,
    )
    assert [(p.pid, p.memory_mib) for p in s0.processes] == [(2698909, 600), (2701550, 538)]
    assert report.all_errors() == ()


def test_sample_reports_a_lost_chip_and_a_truncated_table(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay(table_910b3(recorded))
    prov = AscendProvider(runner=runner)
    prov.detect()
    runner.table[INFO] = recorded("ascend", "info_910b3_truncated.txt")
    report = prov.sample()
    assert [s.device for s in report.samples] == ["ascend-0-0", "ascend-1-0"]
    codes = [(e.code, e.device) for e in report.errors]
    assert codes[0] == (ErrorCode.PARSE_ERROR, None)
    assert codes[1:] == [(ErrorCode.DEVICE_LOST, f"ascend-{n}-0") for n in range(2, 8)]


def test_sample_when_npu_smi_times_out(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay(table_910b3(recorded))
    prov = AscendProvider(runner=runner)
    prov.detect()
    runner.table[INFO] = ToolResult(INFO, None, "", "", ErrorCode.TIMEOUT)
    report = prov.sample()
    assert report.samples == ()
    assert [(e.code, e.detail) for e in report.errors] == [(ErrorCode.TIMEOUT, "npu-smi info timed out")]


def test_sample_with_usages_prefers_npu_utilization(recorded: Callable[..., str], replay: Any) -> None:
    table = {INFO: recorded("ascend", "info_310p3_npusmi23.0.0.txt"), MAPPING: ""}
    table[("npu-smi", "info", "-t", "usages", "-i", "24")] = recorded("ascend", "usages_doc_no_chip_id.txt")
    prov = AscendProvider(runner=replay(table), query_vnpu=False, query_usages=True)
    (s,) = prov.sample().samples
    assert (s.utilization_pct, s.memory_used_mib, s.memory_total_mib) == (21.0, 1832, 21527)


# -- isolation and vNPUs ------------------------------------------------------------------------

CHIP = DiscoveredDevice(
    "huawei", "npu", "910B4", "ascend-910b4", 3, "ascend-2-0", 32768, card_id=2, chip_id=0
)


@pytest.mark.parametrize(
    ("binding", "key", "value"),
    [
        (SliceBinding(CHIP, 1000, 32768), "ASCEND_RT_VISIBLE_DEVICES", "3"),
        (SliceBinding(CHIP, 500, 16384), "ASCEND_RT_VISIBLE_DEVICES", "3"),
        (
            SliceBinding(CHIP, 500, 16384, profile="vir10_3c_16g", instance="132"),
            "ASCEND_VISIBLE_DEVICES",
            "132",
        ),
    ],
    ids=["whole", "half", "vnpu"],
)
def test_isolation_env(binding: SliceBinding, key: str, value: str) -> None:
    env = AscendProvider(enabled=False).isolation_env(binding)
    assert env[key] == value
    assert env["FLEXLAB_MEMORY_LIMIT_MIB"] == str(binding.memory_mib)
    other = {"ASCEND_RT_VISIBLE_DEVICES", "ASCEND_VISIBLE_DEVICES"} - {key}
    assert not other & set(env)


def test_isolation_env_refuses_a_bad_instance() -> None:
    with pytest.raises(InvalidRequest):
        AscendProvider(enabled=False).isolation_env(SliceBinding(CHIP, 500, 100, instance="MIG-1"))


def test_create_vnpu_finds_the_new_id(recorded: Callable[..., str], replay: Any) -> None:
    create = ("npu-smi", "set", "-t", "create-vnpu", "-i", "2", "-c", "0", "-f", "vir10_3c_16g")
    runner = replay(
        {
            vnpu_argv(2): recorded("ascend", "info_vnpu_empty_910b4.txt"),
            create: recorded("ascend", "create_vnpu_ok.txt"),
        },
        after={
            create: {vnpu_argv(2): recorded("ascend", "info_vnpu_truncated.txt")}
        },  # the chip now lists vNPU 100
    )
    prov = AscendProvider(runner=runner)
    change = prov.create_vnpu(CHIP, "vir10_3c_16g")
    assert (change.ok, change.vnpu_id, change.message) == (True, 100, "Create vnpu success")
    assert runner.calls == [vnpu_argv(2), create, vnpu_argv(2)]


def test_create_vnpu_failure_keeps_npu_smis_words(recorded: Callable[..., str], replay: Any) -> None:
    create = ("npu-smi", "set", "-t", "create-vnpu", "-i", "2", "-c", "0", "-f", "vir10_3c_16g", "-v", "132")
    no_cores = recorded("ascend", "create_vnpu_no_cores.txt")
    runner = replay({create: ToolResult(create, 255, no_cores, "", ErrorCode.TOOL_FAILED)})
    change = AscendProvider(runner=runner).create_vnpu(CHIP, "vir10_3c_16g", vnpu_id=132)
    assert (change.ok, change.error) == (False, ErrorCode.TOOL_FAILED)
    assert change.message == "Insufficient number of cores available, unallocated cores number:0.000000."
    assert runner.calls == [create]


def test_set_command_exiting_zero_without_ok_is_a_failure(replay: Any) -> None:
    destroy = ("npu-smi", "set", "-t", "destroy-vnpu", "-i", "2", "-c", "0", "-v", "100")
    runner = replay({destroy: "The current vnpu-mode is vm, please set it to docker first.\n"})
    change = AscendProvider(runner=runner).destroy_vnpu(CHIP, 100)
    assert not change.ok
    assert change.message.startswith("The current vnpu-mode is vm")


def test_destroy_vnpu(recorded: Callable[..., str], replay: Any) -> None:
    destroy = ("npu-smi", "set", "-t", "destroy-vnpu", "-i", "2", "-c", "0", "-v", "100")
    runner = replay({destroy: recorded("ascend", "destroy_vnpu_ok.txt")})
    change = AscendProvider(runner=runner).destroy_vnpu(CHIP, 100)
    assert (change.ok, change.vnpu_id, change.argv) == (True, 100, destroy)
    assert change.message == "Destroy vnpu 100 success"


def test_templates(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay(
        {("npu-smi", "info", "-t", "template-info"): recorded("ascend", "template_info_310p3.txt")}
    )
    assert len(AscendProvider(runner=runner).templates()) == 7
    assert AscendProvider(runner=replay({})).templates(0) == ()
