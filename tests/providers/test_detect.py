"""detect_all and its text: every vendor reported, a broken one never hides the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flexlab.providers import get_provider
from flexlab.providers.ascend import AscendProvider
from flexlab.providers.base import (
    DiscoveredDevice,
    ErrorCode,
    ProviderReport,
    ReadingError,
    ReportStatus,
    SliceBinding,
    TelemetryReport,
)
from flexlab.providers.cambricon import CambriconProvider
from flexlab.providers.command import ToolResult
from flexlab.providers.detect import default_providers, detect_all, enabled_map, render_reports
from flexlab.providers.mock import MockProvider, parse_pool_spec
from flexlab.providers.nvidia import NvidiaProvider


class Exploding:
    name = "exploding"
    enabled = True

    def detect(self) -> ProviderReport:
        raise RuntimeError("provider bug")

    def sample(self) -> TelemetryReport:
        raise RuntimeError("provider bug")

    def isolation_env(self, binding: SliceBinding) -> dict[str, str]:
        return {}


def test_a_raising_provider_does_not_hide_the_others(
    recorded: Callable[..., str], replay: Any, fail_on_plugin_exceptions: Any
) -> None:
    cnmon = replay({("cnmon",): recorded("cambricon", "cnmon_v6_mlu370-x8_mode.txt")})
    npu = replay({("npu-smi", "info"): ToolResult(("npu-smi",), None, "", "", ErrorCode.TOOL_MISSING)})
    reports = detect_all([Exploding(), AscendProvider(runner=npu), CambriconProvider(runner=cnmon)])
    assert [(r.provider, r.status) for r in reports] == [
        ("exploding", ReportStatus.INTERNAL_ERROR),
        ("ascend", ReportStatus.TOOL_MISSING),
        ("cambricon", ReportStatus.OK),
    ]
    assert reports[0].detail == "RuntimeError('provider bug')"
    assert len(reports[2].devices) == 2
    # The traceback was logged on purpose; the suite-wide guard must not fail this test.
    assert len(fail_on_plugin_exceptions.records) == 1
    fail_on_plugin_exceptions.records.clear()


def test_render_reports() -> None:
    gpu = DiscoveredDevice("nvidia", "gpu", "NVIDIA H100 80GB HBM3", "h100-80gb", 0, "GPU-1", 81559)
    npu = DiscoveredDevice("huawei", "npu", "910B", None, 3, "ascend-3-0", 32768, health="Critical")
    reports = [
        ProviderReport("nvidia", ReportStatus.OK, (gpu,), version="550.54.15"),
        ProviderReport(
            "ascend",
            ReportStatus.OK,
            (npu,),
            version="24.1.0",
            warnings=(ReadingError(ErrorCode.PARSE_ERROR, "logical ids guessed", field="mapping"),),
        ),
        ProviderReport(
            "cambricon",
            ReportStatus.TOOL_FAILED,
            detail="cnmon exited 1: cndev init failed",
            command=("cnmon",),
            returncode=1,
            stderr="loading\ncndev init failed\n",
        ),
        ProviderReport("mock", ReportStatus.DISABLED, detail="mock provider switched off in config"),
    ]
    assert render_reports(reports) == [
        "nvidia: 1 device (550.54.15)",
        "  [0] NVIDIA H100 80GB HBM3 -> h100-80gb  79.6 GiB  GPU-1",
        "ascend: 1 device (24.1.0)",
        "  [3] 910B -> not in catalog  32 GiB  ascend-3-0  health Critical",
        "  warning: mapping: parse-error: logical ids guessed",
        "cambricon: tool-failed - cnmon exited 1: cndev init failed",
        "  command: cnmon (exit 1)",
        "  stderr: loading",
        "  stderr: cndev init failed",
        "mock: disabled - mock provider switched off in config",
        "2 devices from 2 of 4 providers",
    ]


def test_render_mock_host_with_mig() -> None:
    host = parse_pool_spec(
        {"hosts": [{"name": "h", "devices": [{"model": "a100-40gb", "mig": ["3g.20gb"] * 2}]}]}
    )
    lines = render_reports(detect_all([MockProvider(host.hosts[0])]))
    assert lines == [
        "mock: 1 device (mock-spec-1)",
        "  [0] NVIDIA A100 40GB -> a100-40gb  40 GiB  MOCK-h-0  mig: 3g.20gb, 3g.20gb",
        "1 device from 1 of 1 providers",
    ]


def test_enabled_map_and_default_providers() -> None:
    on = enabled_map({"nvidia": {"enabled": False}, "cambricon": {"enabled": True}, "junk": 1})
    assert on == {"nvidia": False, "ascend": True, "cambricon": True, "mock": True}
    providers = default_providers(enabled=on)
    assert [(p.name, p.enabled) for p in providers] == [
        ("nvidia", False),
        ("ascend", True),
        ("cambricon", True),
    ]
    assert isinstance(get_provider("nvidia", enabled=False), NvidiaProvider)


def test_default_providers_with_a_mock_spec(tmp_path: Any) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("hosts:\n  - name: a\n    devices: [{model: t4}]\n  - name: b\n")
    providers = default_providers(
        enabled={"nvidia": False, "ascend": False, "cambricon": False}, mock_spec=path
    )
    reports = detect_all(providers)
    assert [(r.provider, r.status) for r in reports] == [
        ("nvidia", ReportStatus.DISABLED),
        ("ascend", ReportStatus.DISABLED),
        ("cambricon", ReportStatus.DISABLED),
        ("mock", ReportStatus.OK),
        ("mock", ReportStatus.NO_DEVICES),
    ]
