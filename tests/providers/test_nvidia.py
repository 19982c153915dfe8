"""NVIDIA provider against a fake NVML module with pynvml's names and errors."""

from __future__ import annotations

import inspect
import logging
import os
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from flexlab.core.errors import InvalidRequest
from flexlab.providers.base import (
    DiscoveredDevice,
    ErrorCode,
    PartitionMode,
    ReportStatus,
    SliceBinding,
    slice_usage,
)
from flexlab.providers.mps import MpsStatus, detect_mps
from flexlab.providers.nvidia import NvidiaProvider, NvmlState
from flexlab.providers.nvml_read import mig_profile_name

NOT_SUPPORTED, NOT_FOUND, GPU_IS_LOST, LIBRARY_NOT_FOUND = 3, 6, 15, 12
NO_MPS = MpsStatus(False, "/tmp/nvidia-mps", "test: no daemon")
MPS_ON = MpsStatus(True, "/run/mps", "test: daemon")


def provider(fake: Any, mps: MpsStatus = NO_MPS) -> NvidiaProvider:
    return NvidiaProvider(nvml=fake.module, mps_probe=lambda: mps)


# -- the fake is faithful to pynvml -----------------------------------------------------


def test_fake_nvml_has_pynvml_names_and_signatures(nvml_kit: SimpleNamespace) -> None:
    real = pytest.importorskip("pynvml")
    fake = nvml_kit.FakeNvml([]).module
    names = [n for n in dir(fake) if n.startswith("nvml")]
    assert len(names) == 20
    for name in names:
        real_params = list(inspect.signature(getattr(real, name)).parameters)
        assert list(inspect.signature(getattr(fake, name)).parameters) == real_params, name
    for err in (
        "NVMLError_NotSupported",
        "NVMLError_NotFound",
        "NVMLError_GpuIsLost",
        "NVMLError_LibraryNotFound",
    ):
        assert issubclass(getattr(real, err), real.NVMLError)
        assert issubclass(getattr(fake, err), fake.NVMLError)
    assert type(fake.NVMLError(NOT_SUPPORTED)) is fake.NVMLError_NotSupported
    assert fake.NVMLError_GpuIsLost().value == real.NVMLError_GpuIsLost().value == GPU_IS_LOST


# -- discovery ----------------------------------------------------------------------------


def test_discovers_mig_and_plain_gpus_with_catalog_keys(nvml_kit: SimpleNamespace) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.a100_mig(), nvml_kit.h100()])
    report = provider(fake).detect()
    assert report.status is ReportStatus.OK
    assert report.version == "550.54.15"
    a100, h100 = report.devices
    assert (a100.product_name, a100.model_key, a100.memory_mib) == (
        "NVIDIA A100-SXM4-80GB",
        "a100-80gb",
        81920,
    )
    assert (h100.model_key, h100.index, h100.kind, h100.vendor) == ("h100-80gb", 1, "gpu", "nvidia")
    assert a100.partition_mode is PartitionMode.MIG
    assert h100.partition_mode is PartitionMode.NONE
    assert [(i.profile, i.start, i.instance_id, i.memory_mib) for i in a100.instances] == [
        ("3g.40gb", 0, 2, 40192),
        ("2g.20gb", 4, 3, 19968),
        ("1g.10gb", 6, 9, 9856),
    ]
    assert a100.instances[0].uuid == "MIG-11111111-0000-0000-0000-000000000001"
    assert a100.bus_id == "00000000:17:00.0"
    assert report.warnings == ()


@pytest.mark.parametrize(
    ("name", "total_mib", "key", "mismatch"),
    [
        ("Tesla T4", 15360, "t4", False),
        ("Tesla V100S-PCIE-32GB", 32768, "v100s-32gb", False),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100-40gb", False),
        ("NVIDIA A100 80GB PCIe", 81920, "a100-80gb", False),
        ("NVIDIA H100 80GB HBM3", 81559, "h100-80gb", False),
        ("NVIDIA H100 NVL", 95830, "h100-nvl", False),
        ("NVIDIA GeForce RTX 4090", 24564, None, False),
    ],
    ids=["t4", "v100s", "a100-40-pcie", "a100-80-pcie", "h100-sxm", "h100-nvl", "not-in-catalog"],
)
def test_product_names_map_to_catalog(
    nvml_kit: SimpleNamespace, name: str, total_mib: int, key: str | None, mismatch: bool
) -> None:
    gpu = nvml_kit.FakeGpu(name=name, uuid="GPU-x", total_mib=total_mib, mig_mode=None)
    report = provider(nvml_kit.FakeNvml([gpu])).detect()
    assert report.devices[0].model_key == key
    assert [w.field for w in report.warnings] == (["model"] if mismatch else [])


def test_old_pynvml_bytes_are_decoded(nvml_kit: SimpleNamespace) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()], as_bytes=True)
    dev = provider(fake).detect().devices[0]
    assert (dev.uuid, dev.product_name) == (
        "GPU-bbbbbbbb-0000-0000-0000-000000000002",
        "NVIDIA H100 80GB HBM3",
    )


def test_lost_gpu_is_skipped_and_reported(nvml_kit: SimpleNamespace) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100(), nvml_kit.a100_mig()])
    fake.fail[("nvmlDeviceGetUUID", 1)] = GPU_IS_LOST
    report = provider(fake).detect()
    assert report.status is ReportStatus.OK
    assert [d.uuid for d in report.devices] == ["GPU-bbbbbbbb-0000-0000-0000-000000000002"]
    assert [(w.code, w.device) for w in report.warnings] == [(ErrorCode.DEVICE_LOST, "gpu1")]


def test_mig_profile_falls_back_to_the_device_name(nvml_kit: SimpleNamespace) -> None:
    gpu = nvml_kit.a100_mig()
    gpu.migs[0].name = "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
    fake = nvml_kit.FakeNvml([gpu])
    fake.fail[("nvmlDeviceGetAttributes", 0)] = NOT_SUPPORTED
    report = provider(fake).detect()
    profiles = [i.profile for i in report.devices[0].instances]
    assert profiles == ["3g.40gb", "unknown", "unknown"]
    assert sum(w.field == "mig-profile" for w in report.warnings) == 3


def test_placement_unreadable_gives_start_minus_one(nvml_kit: SimpleNamespace) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.a100_mig()])
    fake.fail[("nvmlDeviceGetGpuInstanceById", 0)] = 4  # NO_PERMISSION without admin rights
    report = provider(fake).detect()
    assert [i.start for i in report.devices[0].instances] == [-1, -1, -1]
    assert report.warnings == ()


@pytest.mark.parametrize(
    ("init_error", "status", "state", "words"),
    [
        (LIBRARY_NOT_FOUND, ReportStatus.TOOL_FAILED, NvmlState.INIT_FAILED, "LibraryNotFound"),
        (9, ReportStatus.TOOL_FAILED, NvmlState.INIT_FAILED, "DriverNotLoaded"),
    ],
    ids=["no-libnvidia-ml", "driver-not-loaded"],
)
def test_nvml_init_failure_is_a_report(
    nvml_kit: SimpleNamespace, init_error: int, status: ReportStatus, state: NvmlState, words: str
) -> None:
    prov = provider(nvml_kit.FakeNvml([nvml_kit.h100()], init_error=init_error))
    report = prov.detect()
    assert (report.status, prov.state) == (status, state)
    assert words in report.detail
    telemetry = prov.sample()
    assert telemetry.samples == ()
    assert [e.code for e in telemetry.errors] == [ErrorCode.TOOL_FAILED]


def test_real_pynvml_without_a_driver_is_a_report() -> None:
    real = pytest.importorskip("pynvml")
    try:
        real.nvmlInit()
    except real.NVMLError:
        report = NvidiaProvider().detect()
        assert report.status is ReportStatus.TOOL_FAILED
        assert report.detail.startswith("nvmlInit failed")
        return
    real.nvmlShutdown()
    pytest.skip("an NVIDIA driver is present here")


def test_missing_pynvml_is_library_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    prov = NvidiaProvider()
    report = prov.detect()
    assert report.status is ReportStatus.LIBRARY_MISSING
    assert "flexlab[nvidia]" in report.detail
    assert prov.state is NvmlState.LIBRARY_MISSING


def test_pynvml_is_imported_lazily_and_initialised_once(
    nvml_kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    prov = NvidiaProvider(mps_probe=lambda: NO_MPS)
    assert fake.calls == []  # constructing touches nothing
    prov.detect()
    prov.sample()
    prov.sample()
    prov.detect()
    assert fake.calls.count("nvmlInit") == 1
    assert fake.calls.count("nvmlDeviceGetHandleByIndex") == 1


def test_a_forked_process_initialises_again(
    nvml_kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()])
    prov = provider(fake)
    prov.detect()
    monkeypatch.setattr(os, "getpid", lambda: 999_999_999)
    prov.sample()
    assert fake.calls.count("nvmlInit") == 2
    assert fake.calls.count("nvmlDeviceGetHandleByIndex") == 2


def test_disabled_provider_touches_nothing(nvml_kit: SimpleNamespace) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()])
    prov = NvidiaProvider(enabled=False, nvml=fake.module)
    assert prov.detect().status is ReportStatus.DISABLED
    assert prov.sample().samples == ()
    assert fake.calls == []


# -- telemetry ----------------------------------------------------------------------------


def test_sample_reads_utilisation_memory_and_processes(nvml_kit: SimpleNamespace) -> None:
    prov = provider(nvml_kit.FakeNvml([nvml_kit.h100()]))
    report = prov.sample()
    (s,) = report.samples
    assert (s.utilization_pct, s.memory_used_mib, s.memory_total_mib) == (37.0, 20480, 81559)
    by_pid = {p.pid: (p.memory_mib, p.utilization_pct, p.gpu_instance_id) for p in s.processes}
    # 101: newest of its two samples; 103: seen only by process utilisation (no memory).
    assert by_pid == {101: (8192, 25.0, None), 102: (12288, 10.0, None), 103: (None, 5.0, None)}
    assert report.all_errors() == ()


def test_process_utilisation_only_returns_new_samples(nvml_kit: SimpleNamespace) -> None:
    gpu = nvml_kit.h100()
    fake = nvml_kit.FakeNvml([gpu])
    prov = provider(fake)
    prov.sample()
    gpu.proc_util.append((102, 3_000, 60))
    second = prov.sample().samples[0]
    assert {p.pid: p.utilization_pct for p in second.processes} == {101: None, 102: 60.0}
    third = prov.sample().samples[0]  # no new samples: NVML answers NOT_FOUND, not an error
    assert {p.pid: p.utilization_pct for p in third.processes} == {101: None, 102: None}
    assert third.errors == ()


def test_mig_gpu_reports_per_instance_memory_and_processes(nvml_kit: SimpleNamespace) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.a100_mig()])
    fake.fail[("nvmlDeviceGetUtilizationRates", 0)] = NOT_SUPPORTED  # as on a MIG-enabled GPU
    report = provider(fake).sample()
    parent = next(s for s in report.samples if s.instance is None)
    assert parent.utilization_pct is None
    assert [(e.code, e.field) for e in parent.errors] == [(ErrorCode.NOT_SUPPORTED, "utilization")]
    assert {p.pid: p.gpu_instance_id for p in parent.processes} == {501: 2, 502: 9}
    inst = {
        s.instance: (s.memory_used_mib, s.memory_total_mib, [p.pid for p in s.processes])
        for s in report.samples
    }
    assert inst["MIG-11111111-0000-0000-0000-000000000001"] == (12000, 40192, [501])
    assert inst["MIG-11111111-0000-0000-0000-000000000003"] == (0, 9856, [502])


@pytest.mark.parametrize(
    ("call", "error", "code", "field"),
    [
        ("nvmlDeviceGetUtilizationRates", GPU_IS_LOST, ErrorCode.DEVICE_LOST, "utilization"),
        ("nvmlDeviceGetMemoryInfo", 999, ErrorCode.NVML_ERROR, "memory"),
        ("nvmlDeviceGetComputeRunningProcesses", 4, ErrorCode.NVML_ERROR, "processes"),
        ("nvmlDeviceGetProcessUtilization", NOT_SUPPORTED, ErrorCode.NOT_SUPPORTED, "process-utilization"),
        ("nvmlDeviceGetUtilizationRates", ValueError("odd struct"), ErrorCode.PARSE_ERROR, "utilization"),
    ],
    ids=["gpu-lost", "memory-unknown-error", "processes-no-permission", "procutil-unsupported", "odd-value"],
)
def test_a_bad_reading_is_reported_not_raised(
    nvml_kit: SimpleNamespace, call: str, error: int | Exception, code: ErrorCode, field: str
) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()])
    prov = provider(fake)
    prov.detect()
    fake.fail[(call, 0)] = error
    (s,) = prov.sample().samples
    assert [(e.code, e.field, e.device) for e in s.errors] == [
        (code, field, "GPU-bbbbbbbb-0000-0000-0000-000000000002")
    ]
    if field == "memory":
        assert (s.memory_used_mib, s.utilization_pct) == (None, 37.0)


def test_an_unexpected_exception_is_logged_and_reported(
    nvml_kit: SimpleNamespace, caplog: pytest.LogCaptureFixture, fail_on_plugin_exceptions: Any
) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()])
    prov = provider(fake)
    prov.detect()
    fake.fail[("nvmlDeviceGetUtilizationRates", 0)] = RuntimeError("binding bug")
    with caplog.at_level(logging.ERROR, logger="flexlab.providers.nvidia"):
        report = prov.sample()
    assert [e.code for e in report.errors] == [ErrorCode.INTERNAL_ERROR]
    assert "binding bug" in report.errors[0].detail
    assert "NVIDIA telemetry failed" in caplog.text
    # The traceback was logged on purpose; the suite-wide guard must not fail this test.
    assert len(fail_on_plugin_exceptions.records) == 1
    fail_on_plugin_exceptions.records.clear()


def test_slice_usage_sums_a_slices_pids(nvml_kit: SimpleNamespace) -> None:
    report = provider(nvml_kit.FakeNvml([nvml_kit.h100()])).sample()
    usage = slice_usage(report.samples, [101, 103, 4242])
    assert (usage.memory_mib, usage.utilization_pct, usage.pids) == (8192, 30.0, (101, 103))
    assert slice_usage(report.samples, [4242]).memory_mib is None


# -- isolation ----------------------------------------------------------------------------

GPU = DiscoveredDevice("nvidia", "gpu", "NVIDIA H100 80GB HBM3", "h100-80gb", 0, "GPU-abc", 81559)


@pytest.mark.parametrize(
    ("binding", "mps", "expected"),
    [
        (SliceBinding(GPU, 1000, 81559), MPS_ON, {"CUDA_VISIBLE_DEVICES": "GPU-abc"}),
        (
            SliceBinding(GPU, 250, 8192),
            MPS_ON,
            {
                "CUDA_VISIBLE_DEVICES": "GPU-abc",
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
                "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=8192M",
                "CUDA_MPS_PIPE_DIRECTORY": "/run/mps",
            },
        ),
        (SliceBinding(GPU, 1, 100), MPS_ON, {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "1"}),
        (SliceBinding(GPU, 1000, 4096), MPS_ON, {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100"}),
        (
            SliceBinding(GPU, 500, 40000),
            NO_MPS,
            {"CUDA_VISIBLE_DEVICES": "GPU-abc", "FLEXLAB_MEMORY_LIMIT_MIB": "40000"},
        ),
        (
            SliceBinding(GPU, 428, 40960, profile="3g.40gb", instance="MIG-123"),
            MPS_ON,
            {"CUDA_VISIBLE_DEVICES": "MIG-123", "FLEXLAB_PROFILE": "3g.40gb", "FLEXLAB_INSTANCE": "MIG-123"},
        ),
    ],
    ids=["whole-device", "quarter-with-mps", "tiny-share", "full-compute-part-memory", "half-no-mps", "mig"],
)
def test_isolation_env(binding: SliceBinding, mps: MpsStatus, expected: dict[str, str]) -> None:
    env = NvidiaProvider(enabled=False, mps_probe=lambda: mps).isolation_env(binding)
    assert {k: env[k] for k in expected} == expected
    has_mps = any(k.startswith("CUDA_MPS_ACTIVE") for k in env)
    assert has_mps == (mps.running and not binding.whole_device and binding.instance is None)
    assert env["FLEXLAB_DEVICE_UUID"] == "GPU-abc"
    assert env["FLEXLAB_COMPUTE_MILLI"] == str(binding.compute_milli)


@pytest.mark.parametrize(
    "binding",
    [
        SliceBinding(GPU, 500, 100, instance="GPU-abc"),
        SliceBinding(DiscoveredDevice("huawei", "npu", "910B3", None, 0, "x", 1), 500, 100),
    ],
    ids=["instance-not-mig", "not-nvidia"],
)
def test_isolation_env_refuses_bad_bindings(binding: SliceBinding) -> None:
    with pytest.raises(InvalidRequest):
        NvidiaProvider(enabled=False).isolation_env(binding)


def test_mig_profile_names_follow_nvidias_naming() -> None:
    attrs = SimpleNamespace(gpuInstanceSliceCount=3, computeInstanceSliceCount=1, memorySizeMB=40192)
    assert mig_profile_name(attrs) == "1c.3g.40gb"
    attrs.computeInstanceSliceCount = 3
    assert mig_profile_name(attrs) == "3g.40gb"


# -- MPS detection --------------------------------------------------------------------------


def test_mps_detected_by_control_pipe(tmp_path: Any) -> None:
    os.mkfifo(tmp_path / "control")
    status = detect_mps({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}, proc_root=str(tmp_path / "noproc"))
    assert status.running
    assert status.pipe_directory == str(tmp_path)


def test_mps_detected_by_process(tmp_path: Any) -> None:
    proc = tmp_path / "proc"
    for pid, comm in (("1", "systemd"), ("4242", "nvidia-cuda-mps-control"), ("self", "x")):
        (proc / pid).mkdir(parents=True)
        (proc / pid / "comm").write_text(comm + "\n")
    status = detect_mps({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "none")}, proc_root=str(proc))
    assert (status.running, status.evidence) == (True, "nvidia-cuda-mps-control running as pid 4242")


def test_no_mps_daemon(tmp_path: Any) -> None:
    (tmp_path / "proc" / "7").mkdir(parents=True)
    (tmp_path / "proc" / "7" / "comm").write_text("python\n")
    (tmp_path / "control").write_text("not a fifo")
    status = detect_mps({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}, proc_root=str(tmp_path / "proc"))
    assert not status.running


def test_bad_readings_are_logged_once(nvml_kit: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    fake = nvml_kit.FakeNvml([nvml_kit.h100()])
    prov = provider(fake)
    prov.detect()
    fake.fail[("nvmlDeviceGetMemoryInfo", 0)] = 999  # from now on, every sample fails this reading
    with caplog.at_level(logging.WARNING, logger="flexlab.providers.nvidia"):
        prov.sample()
        prov.sample()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "telemetry: GPU-bbbbbbbb-0000-0000-0000-000000000002: memory: nvml-error: NVMLError_Unknown: Unknown"
    ]
