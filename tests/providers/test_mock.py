"""The mock provider: pool specs, the simulation hook, isolation variables."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.core.topology import FRACTION, PROFILE
from flexlab.mock.env import context_from_env
from flexlab.mock.model import mock_device, reset_mock_devices
from flexlab.providers.base import ErrorCode, PartitionMode, ProcessUsage, ReportStatus, SliceBinding
from flexlab.providers.mock import (
    MockModelHook,
    MockProvider,
    MockTelemetryBoard,
    load_pool_spec,
    mock_providers,
    parse_pool_spec,
)

SPEC_YAML = """\
version: 1
hosts:
  - name: gpu-a
    cpu: 32
    memory: 256GiB
    address: 10.0.0.5
    devices:
      - model: a100-80gb
        count: 2
        mig: [1g.10gb, 4g.40gb, 2g.20gb]
      - model: t4
  - name: npu-b
    cpu: "500m"
    memory: 65536
    devices:
      - model: ascend910b3
        vnpu: [vir05_1c_16g, vir10_3c_32g]
      - model: mlu370-x8
        memory: 24GiB
"""


def spec_dict(**device: Any) -> dict[str, Any]:
    return {"version": 1, "hosts": [{"name": "h", "devices": [{"model": "a100-80gb", **device}]}]}


def test_yaml_spec_reports_devices_like_a_real_provider(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(SPEC_YAML)
    spec = load_pool_spec(path)
    assert [(h.name, h.cpu_milli, h.memory_mib, h.address) for h in spec.hosts] == [
        ("gpu-a", 32000, 262144, "10.0.0.5"),
        ("npu-b", 500, 65536, ""),
    ]
    report = MockProvider(spec.hosts[0]).detect()
    assert report.status is ReportStatus.OK
    got = [
        (d.index, d.uuid, d.model_key, d.vendor, d.kind, d.memory_mib, d.partition_mode)
        for d in report.devices
    ]
    assert got == [
        (0, "MOCK-gpu-a-0", "a100-80gb", "nvidia", "gpu", 81920, PartitionMode.MIG),
        (1, "MOCK-gpu-a-1", "a100-80gb", "nvidia", "gpu", 81920, PartitionMode.MIG),
        (2, "MOCK-gpu-a-2", "t4", "nvidia", "gpu", 16384, PartitionMode.NONE),
    ]
    assert [(i.profile, i.start, i.uuid) for i in report.devices[0].instances] == [
        ("4g.40gb", 0, "MOCK-gpu-a-0-mig0"),
        ("2g.20gb", 4, "MOCK-gpu-a-0-mig1"),
        ("1g.10gb", 6, "MOCK-gpu-a-0-mig2"),
    ]
    npu = MockProvider(spec.hosts[1]).detect().devices
    assert [(d.model_key, d.memory_mib, [i.profile for i in d.instances]) for d in npu] == [
        ("ascend-910b3", 65536, ["vir05_1c_16g", "vir10_3c_32g"]),
        ("mlu370-x8", 24576, []),
    ]


def test_json_spec_and_host_spec(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(spec_dict(count=1, mig=["7g.80gb"])))
    host = load_pool_spec(path).hosts[0]
    core = host.to_host_spec()
    assert (core.name, core.cpu_milli, core.memory_mib) == ("h", 8000, 32768)
    assert [(d.model, d.index, d.uuid, d.mode) for d in core.devices] == [
        ("a100-80gb", 0, "MOCK-h-0", PROFILE)
    ]
    plain = parse_pool_spec(spec_dict()).hosts[0].to_host_spec()
    assert plain.devices[0].mode == FRACTION


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"hosts": []}, "hosts"),
        ({"version": 2, "hosts": [{"name": "h"}]}, "version"),
        ({"hosts": [{"name": "a/b"}]}, "hosts[0].name"),
        ({"hosts": [{"name": "h"}, {"name": "h"}]}, "hosts[1].name"),
        ({"hosts": [{"name": "h", "gpus": 2}]}, "hosts[0].gpus"),
        ({"hosts": [{"name": "h", "cpu": "lots"}]}, "hosts[0].cpu"),
        (spec_dict(model="a100-xx"), "hosts[0].devices[0].model"),
        (spec_dict(count=0), "hosts[0].devices[0].count"),
        (spec_dict(mig=["3g.40gb", "3g.40gb", "1g.10gb"]), "hosts[0].devices[0].mig"),
        (spec_dict(mig=["1g.5gb"]), "hosts[0].devices[0].mig"),
        (spec_dict(vnpu=["vir05_1c_16g"]), "hosts[0].devices[0].vnpu"),
        (spec_dict(mig=["7g.80gb"], vnpu=[]), "hosts[0].devices[0]"),
        (spec_dict(memory="lots"), "hosts[0].devices[0].memory"),
        (spec_dict(colour="red"), "hosts[0].devices[0].colour"),
        ({"hosts": [{"name": "h", "devices": [{"model": "openb-g1"}]}]}, "hosts[0].devices[0].memory"),
    ],
    ids=[
        "no-hosts",
        "version",
        "bad-name",
        "duplicate-host",
        "unknown-host-key",
        "bad-cpu",
        "unknown-model",
        "zero-count",
        "mig-does-not-fit",
        "mig-not-on-menu",
        "vnpu-on-a-gpu",
        "mig-and-vnpu",
        "bad-memory",
        "unknown-device-key",
        "model-without-memory",
    ],
)
def test_bad_specs_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_pool_spec(data)
    assert exc.value.field == field


def test_ascend_vnpu_templates_over_capacity_are_refused() -> None:
    data = {"hosts": [{"name": "h", "devices": [{"model": "ascend-910b3", "vnpu": ["vir10_3c_32g"] * 3}]}]}
    with pytest.raises(InvalidRequest, match=r"hosts\[0\]\.devices\[0\]\.vnpu"):
        parse_pool_spec(data)


def test_telemetry_comes_from_the_simulation_board() -> None:
    board = MockTelemetryBoard()
    host = parse_pool_spec(spec_dict(count=2)).hosts[0]
    prov = MockProvider(host, hook=board)
    board.set(
        "MOCK-h-0", utilization_pct=55.5, memory_used_mib=4096, processes=[ProcessUsage(77, 4096, 55.5)]
    )
    s0, s1 = prov.sample().samples
    assert (s0.utilization_pct, s0.memory_used_mib, s0.memory_total_mib, s0.processes) == (
        55.5,
        4096,
        81920,
        (ProcessUsage(77, 4096, 55.5),),
    )
    assert (s1.utilization_pct, s1.memory_used_mib) == (0.0, 0)  # idle: nothing written
    board.clear("MOCK-h-0")
    assert prov.sample().samples[0].utilization_pct == 0.0


@pytest.mark.parametrize(
    ("util", "used", "bad_field"),
    [(130.0, 10, "utilization"), (-1.0, 10, "utilization"), (50.0, 90000, "memory"), (50.0, -5, "memory")],
    ids=["util-over-100", "util-negative", "memory-over-device", "memory-negative"],
)
def test_out_of_range_readings_are_reported(util: float, used: int, bad_field: str) -> None:
    board = MockTelemetryBoard()
    prov = MockProvider(parse_pool_spec(spec_dict()).hosts[0], hook=board)
    board.set("MOCK-h-0", utilization_pct=util, memory_used_mib=used)
    (s,) = prov.sample().samples
    assert [e.code for e in s.errors] == [ErrorCode.PARSE_ERROR]
    assert (s.utilization_pct is None) == (bad_field == "utilization")
    assert (s.memory_used_mib is None) == (bad_field == "memory")


def test_a_failing_hook_is_reported_and_logged(
    caplog: pytest.LogCaptureFixture, fail_on_plugin_exceptions: Any
) -> None:
    class Broken:
        def reading(self, device_uuid: str) -> None:
            raise ZeroDivisionError("model bug")

    prov = MockProvider(parse_pool_spec(spec_dict()).hosts[0], hook=Broken())
    with caplog.at_level(logging.ERROR):
        (s,) = prov.sample().samples
    assert [(e.code, e.field) for e in s.errors] == [(ErrorCode.INTERNAL_ERROR, "simulation")]
    assert "mock simulation hook failed" in caplog.text
    # The traceback was logged on purpose; the suite-wide guard must not fail this test.
    assert len(fail_on_plugin_exceptions.records) == 1
    fail_on_plugin_exceptions.records.clear()


def test_isolation_env_and_disabled() -> None:
    providers = mock_providers(parse_pool_spec(json.loads(json.dumps(spec_dict(mig=["7g.80gb"])))))
    prov = providers["h"]
    dev = prov.detect().devices[0]
    binding = SliceBinding(dev, 1000, 81920, profile="7g.80gb", instance=dev.instances[0].uuid, slice_id="s7")
    env = prov.isolation_env(binding)
    assert {k: v for k, v in env.items() if k.startswith(("FLEXLAB_MOCK", "FLEXLAB_SLICE"))} == {
        "FLEXLAB_MOCK_HOST": "h",
        "FLEXLAB_MOCK_DEVICE": "a100-80gb",
        "FLEXLAB_MOCK_DEVICE_ID": "MOCK-h-0",
        "FLEXLAB_MOCK_SHARE": "1000",
        "FLEXLAB_MOCK_MEMORY_MIB": "81920",
        "FLEXLAB_SLICE_ID": "s7",
    }
    ctx = context_from_env(env)  # the mock runtime reads these back
    assert ctx is not None
    assert (ctx.share, ctx.memory_mib, ctx.device_id, ctx.slice_id) == (1.0, 81920, "MOCK-h-0", "s7")
    assert not any(k.startswith(("CUDA_", "ASCEND_", "MLU_")) for k in env)
    stranger = dev.__class__(**{**dev.__dict__, "uuid": "GPU-real"})
    with pytest.raises(InvalidRequest):
        prov.isolation_env(SliceBinding(stranger, 100, 100))
    off = MockProvider(prov.host, enabled=False)
    assert (off.detect().status, off.sample().samples) == (ReportStatus.DISABLED, ())


def test_model_hook_reads_the_mock_performance_model() -> None:
    reset_mock_devices()
    prov = MockProvider(parse_pool_spec(spec_dict(count=2)).hosts[0], hook=MockModelHook())
    dev = mock_device("MOCK-h-0", "a100-80gb")
    try:
        with dev.holding("s1", 2048, slice_memory_mib=8192), dev.running("s1", 0.3, slice_share_milli=500):
            busy, idle = prov.sample().samples
            assert (busy.utilization_pct, busy.memory_used_mib) == (30.0, 2048)
            assert (idle.utilization_pct, idle.memory_used_mib) == (0.0, 0)  # no accounting yet: idle
        after = prov.sample().samples[0]
        assert (after.utilization_pct, after.memory_used_mib) == (0.0, 0)
    finally:
        reset_mock_devices()
