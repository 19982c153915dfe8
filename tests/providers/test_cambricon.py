"""Cambricon provider and the cnmon parser against recorded cnmon output (data/cambricon)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.providers.base import DiscoveredDevice, ErrorCode, ReportStatus, SliceBinding
from flexlab.providers.cambricon import CambriconProvider, parse_cnmon
from flexlab.providers.command import ToolResult

CNMON = ("cnmon",)


@pytest.mark.parametrize(
    ("name", "version", "driver", "cards", "procs", "problems"),
    [
        (
            "cnmon_v4.20.11_mlu370-x4.txt",
            "4.20.11",
            "4.20.11",
            [
                (0, "MLU370-X4", None, 0.0, 32, 0, 23308),
                (1, "MLU370-X4", None, 35.0, 33, 8192, 23308),
                (2, "MLU370-X4", None, 0.0, 30, 0, 23308),
            ],
            [],
            0,
        ),
        (
            "cnmon_v5.10.13_mlu370-x8_procs.txt",
            "5.10.13",
            "5.10.13",
            [
                (0, "MLU370-X8", "0000:39:00.0", 76.0, 47, 20480, 23374),
                (1, "MLU370-X8", "0000:3D:00.0", 0.0, 39, 0, 23374),
            ],
            [(0, 23456, "python3 train.py --epochs 10", 16384), (0, 23501, "python3 serve.py", 4096)],
            0,
        ),
        (
            "cnmon_v6_mlu370-x8_mode.txt",
            "6.2.29",
            "6.2.29",
            [
                (0, "MLU370-X8", "0000:13:00.0", 0.0, 28, 0, 20638),
                (1, "MLU370-X8", "0000:16:00.0", 12.0, 32, 1024, 20638),
            ],
            [],
            0,
        ),
        (
            "cnmon_truncated.txt",
            "5.10.13",
            "5.10.13",
            [(0, "MLU370-X8", "0000:39:00.0", 76.0, 47, 20480, 23374)],
            [],
            1,
        ),
        ("cnmon_no_device.txt", None, None, [], [], 1),
    ],
    ids=["v4-x4", "v5-x8-processes", "v6-mode-column", "truncated", "no-device-message"],
)
def test_parse_cnmon(
    recorded: Callable[..., str],
    name: str,
    version: str | None,
    driver: str | None,
    cards: list[Any],
    procs: list[Any],
    problems: int,
) -> None:
    table = parse_cnmon(recorded("cambricon", name))
    assert (table.version, table.driver, len(table.problems)) == (version, driver, problems)
    got = [
        (c.card, c.name, c.bus_id, c.util_pct, c.temp_c, c.memory_used_mib, c.memory_total_mib)
        for c in table.cards
    ]
    assert got == cards
    assert [(p.card, p.pid, p.command, p.memory_mib) for p in table.processes] == procs


def test_detect_and_sample(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay({CNMON: recorded("cambricon", "cnmon_v5.10.13_mlu370-x8_procs.txt")})
    prov = CambriconProvider(runner=runner)
    report = prov.detect()
    assert (report.status, report.version) == (ReportStatus.OK, "5.10.13")
    d0 = report.devices[0]
    assert (d0.vendor, d0.kind, d0.model_key, d0.index, d0.uuid) == (
        "cambricon",
        "mlu",
        "mlu370-x8",
        0,
        "mlu-0000:39:00.0",
    )
    # cnmon lists each MLU370-X8 chip (about 23 GiB); the catalog entry is the 48 GB board.
    assert [w.field for w in report.warnings] == ["model", "model"]
    sample = prov.sample()
    s0 = sample.samples[0]
    assert (s0.utilization_pct, s0.memory_used_mib, s0.memory_total_mib) == (76.0, 20480, 23374)
    assert [(p.pid, p.memory_mib, p.name) for p in s0.processes] == [
        (23456, 16384, "python3 train.py --epochs 10"),
        (23501, 4096, "python3 serve.py"),
    ]
    assert sample.samples[1].processes == ()
    assert runner.calls == [CNMON, CNMON]


def test_v4_cards_without_bus_id_get_card_ids(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay({CNMON: recorded("cambricon", "cnmon_v4.20.11_mlu370-x4.txt")})
    report = CambriconProvider(runner=runner).detect()
    assert [(d.uuid, d.model_key) for d in report.devices] == [(f"mlu-card{i}", None) for i in range(3)]


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (ToolResult(CNMON, None, "", "", ErrorCode.TOOL_MISSING), ReportStatus.TOOL_MISSING),
        (ToolResult(CNMON, 1, "", "cndev init failed\n", ErrorCode.TOOL_FAILED), ReportStatus.TOOL_FAILED),
        ("cnmon_no_device.txt", ReportStatus.PARSE_ERROR),
    ],
    ids=["missing", "failed", "no-device"],
)
def test_detect_failures_are_reports(
    recorded: Callable[..., str], replay: Any, answer: Any, status: ReportStatus
) -> None:
    value = recorded("cambricon", answer) if isinstance(answer, str) else answer
    prov = CambriconProvider(runner=replay({CNMON: value}))
    report = prov.detect()
    assert (report.status, report.devices) == (status, ())
    if status is ReportStatus.TOOL_FAILED:
        assert (report.stderr, report.returncode) == ("cndev init failed\n", 1)
    telemetry = prov.sample()
    assert telemetry.samples == () or telemetry.errors


def test_sample_reports_lost_card(recorded: Callable[..., str], replay: Any) -> None:
    runner = replay({CNMON: recorded("cambricon", "cnmon_v5.10.13_mlu370-x8_procs.txt")})
    prov = CambriconProvider(runner=runner)
    prov.detect()
    runner.table[CNMON] = recorded("cambricon", "cnmon_truncated.txt")
    report = prov.sample()
    assert [s.device for s in report.samples] == ["mlu-0000:39:00.0"]
    assert [(e.code, e.device) for e in report.errors] == [
        (ErrorCode.PARSE_ERROR, None),
        (ErrorCode.DEVICE_LOST, "mlu-0000:3D:00.0"),
    ]


def test_isolation_env() -> None:
    dev = DiscoveredDevice("cambricon", "mlu", "MLU370-X8", "mlu370-x8", 5, "mlu-0000:3D:00.0", 23374)
    env = CambriconProvider(enabled=False).isolation_env(SliceBinding(dev, 500, 8192))
    assert (env["MLU_VISIBLE_DEVICES"], env["FLEXLAB_MEMORY_LIMIT_MIB"]) == ("5", "8192")
    with pytest.raises(InvalidRequest):
        CambriconProvider(enabled=False).isolation_env(
            SliceBinding(DiscoveredDevice("nvidia", "gpu", "x", None, 0, "GPU-1", 1), 1, 1)
        )
