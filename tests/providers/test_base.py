"""Shared provider pieces: catalog mapping, per-process caching, the tool runner, and the
base every provider samples through."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from flexlab.providers.base import (
    DiscoveredDevice,
    ErrorCode,
    PerProcess,
    ProviderBase,
    ProviderReport,
    ReportStatus,
    SliceBinding,
    TelemetryReport,
    ToolProvider,
    flexlab_slice_env,
    memory_mismatch,
    model_key_for,
)
from flexlab.providers.command import run_tool


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "a100-80gb"),
        ("Tesla V100S-PCIE-32GB", "v100s-32gb"),
        ("Tesla V100-SXM2-16GB", "v100-16gb"),
        ("Tesla T4", "t4"),
        ("NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("Ascend910B3", "ascend-910b3"),
        ("Ascend 910B3", "ascend-910b3"),
        ("910B3", "ascend-910b3"),
        ("910B2", "ascend-910b2"),
        ("310P3", "ascend-310p3"),
        ("310Pvir01", "ascend-310p3"),
        ("MLU370-X8", "mlu370-x8"),
        ("  Tesla T4  ", "t4"),
        ("910B", None),
        ("MLU370-X4", None),
        ("NVIDIA GeForce RTX 4090", None),
        ("", None),
    ],
    ids=lambda v: v if isinstance(v, str) and v else repr(v),
)
def test_model_key_for(name: str, key: str | None) -> None:
    assert model_key_for(name) == key


@pytest.mark.parametrize(
    ("key", "memory", "flagged"),
    [("t4", 15360, False), ("a100-80gb", 81920, False), ("ascend-310p3", 44280, True), (None, 5, False)],
    ids=["t4-nvml-total", "a100-exact", "300i-duo-chip", "unknown-model"],
)
def test_memory_mismatch(key: str | None, memory: int, flagged: bool) -> None:
    dev = DiscoveredDevice("x", "gpu", "name", key, 0, "id", memory)
    warning = memory_mismatch(dev)
    assert (warning is not None) == flagged
    if warning is not None:
        assert (warning.code, warning.field, warning.device) == (ErrorCode.UNKNOWN_DEVICE, "model", "id")


def test_per_process_recomputes_after_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    cache: PerProcess[int] = PerProcess()

    def factory() -> int:
        made.append(1)
        return len(made)

    assert (cache.get(factory), cache.get(factory)) == (1, 1)
    monkeypatch.setattr(os, "getpid", lambda: -7)
    assert cache.get(factory) == 2
    cache.reset()
    assert cache.get(factory) == 3


def test_flexlab_slice_env() -> None:
    dev = DiscoveredDevice("nvidia", "gpu", "Tesla T4", "t4", 1, "GPU-9", 15360)
    assert flexlab_slice_env(SliceBinding(dev, 300, 4096)) == {
        "FLEXLAB_DEVICE_UUID": "GPU-9",
        "FLEXLAB_COMPUTE_MILLI": "300",
        "FLEXLAB_MEMORY_LIMIT_MIB": "4096",
        "FLEXLAB_DEVICE_MEMORY_MIB": "15360",
    }
    assert SliceBinding(dev, 1000, 15360).whole_device
    assert not SliceBinding(dev, 1000, 15000).whole_device


def test_run_tool_captures_output_and_exit_codes() -> None:
    ok = run_tool([sys.executable, "-c", "print('hello')"])
    assert (ok.ok, ok.returncode, ok.stdout, ok.error) == (True, 0, "hello\n", None)
    bad = run_tool([sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"])
    assert (bad.error, bad.returncode, bad.stderr) == (ErrorCode.TOOL_FAILED, 3, "boom\n")
    assert bad.describe().endswith("exited 3: boom")


def test_run_tool_missing_and_timeout() -> None:
    missing = run_tool(["flexlab-no-such-tool-xyz", "info"])
    assert (missing.error, missing.describe()) == (
        ErrorCode.TOOL_MISSING,
        "flexlab-no-such-tool-xyz not found on PATH",
    )
    slow = run_tool([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3)
    assert (slow.error, slow.returncode) == (ErrorCode.TIMEOUT, None)


def test_slice_usage_counts_each_process_once_and_falls_back_to_instances() -> None:
    from flexlab.providers.base import ProcessUsage, TelemetrySample, slice_usage

    parent = TelemetrySample("GPU-1", 0, 0.0, None, 10, 100, (ProcessUsage(7, 300, 40.0),))
    inst_a = TelemetrySample("GPU-1", 0, 0.0, None, 3, 50, (ProcessUsage(7, 300),), instance="MIG-a")
    inst_b = TelemetrySample("GPU-1", 0, 0.0, None, 3, 50, (ProcessUsage(8, 200),), instance="MIG-b")
    usage = slice_usage([inst_a, inst_b, parent], [7, 8])
    assert (usage.memory_mib, usage.utilization_pct, usage.pids) == (500, 40.0, (7, 8))


def _providers(enabled: bool) -> list[ProviderBase]:

    from flexlab.providers.ascend import AscendProvider
    from flexlab.providers.cambricon import CambriconProvider
    from flexlab.providers.mock import MockProvider, parse_pool_spec
    from flexlab.providers.nvidia import NvidiaProvider

    from .test_mock import spec_dict

    host = parse_pool_spec(spec_dict()).hosts[0]
    return [
        NvidiaProvider(enabled=enabled),
        AscendProvider(enabled=enabled),
        CambriconProvider(enabled=enabled),
        MockProvider(host, enabled=enabled),
    ]


@pytest.mark.parametrize("index", range(4), ids=["nvidia", "ascend", "cambricon", "mock"])
def test_every_provider_samples_without_raising_and_logs_a_new_error_once(
    index: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fail_on_plugin_exceptions: Any,
) -> None:
    off = _providers(False)[index]
    report = off.sample()
    assert (off.name, off.enabled) == (report.provider, False)
    assert [(e.code, e.detail) for e in report.errors] == [(ErrorCode.NOT_SUPPORTED, "provider disabled")]

    prov = _providers(True)[index]

    def broken(now: float) -> TelemetryReport:
        raise RuntimeError("unexpected reply")

    monkeypatch.setattr(prov, "_read_telemetry", broken)
    for _ in range(2):
        report = prov.sample()
        assert report.samples == ()
        assert [(e.code, e.detail) for e in report.errors] == [
            (ErrorCode.INTERNAL_ERROR, "RuntimeError('unexpected reply')")
        ]
    # the bug's traceback each time, the reading error once
    assert sum("telemetry failed" in r.getMessage() for r in caplog.records) == 2
    assert sum("unexpected reply" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records) == 1
    # The tracebacks were logged on purpose; the suite-wide guard must not fail this test.
    assert len(fail_on_plugin_exceptions.records) == 2
    fail_on_plugin_exceptions.records.clear()


@pytest.mark.parametrize("index", range(3), ids=["nvidia", "ascend", "cambricon"])
def test_every_tool_provider_detects_once_a_process_and_reports_a_bug(
    index: int, monkeypatch: pytest.MonkeyPatch, fail_on_plugin_exceptions: Any
) -> None:
    prov = _providers(True)[index]
    assert isinstance(prov, ToolProvider)
    calls = []

    def broken() -> ProviderReport:
        calls.append(1)
        raise RuntimeError("unexpected reply")

    monkeypatch.setattr(prov, "_detect", broken)
    for _ in range(2):  # cached: asked once
        report = prov.detect()
        assert (report.provider, report.status) == (prov.name, ReportStatus.INTERNAL_ERROR)
        assert report.detail == "RuntimeError('unexpected reply')"
    assert len(calls) == 1
    assert prov.redetect().status is ReportStatus.INTERNAL_ERROR
    assert len(calls) == 2
    off = _providers(False)[index]
    assert isinstance(off, ToolProvider)
    assert off.detect().status is ReportStatus.DISABLED
    # The tracebacks were logged on purpose; the suite-wide guard must not fail this test.
    assert len(fail_on_plugin_exceptions.records) == 2
    fail_on_plugin_exceptions.records.clear()
