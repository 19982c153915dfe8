"""``flexlab agent`` on a host with devices of two vendors: each slice's worker gets the
environment and the telemetry provider of its own device's vendor."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from flexlab.commands.runtime import HardwareHost
from flexlab.providers.cambricon import CambriconProvider
from flexlab.providers.mps import MpsStatus
from flexlab.providers.nvidia import NvidiaProvider

NO_MPS = MpsStatus(False, "/tmp/nvidia-mps", "test: no daemon")


def test_each_slice_gets_its_own_vendors_provider(
    nvml_kit: SimpleNamespace, replay: Any, recorded: Callable[..., str]
) -> None:
    nvml = nvml_kit.FakeNvml([nvml_kit.h100()])
    cnmon = replay({("cnmon",): recorded("cambricon", "cnmon_v6_mlu370-x8_mode.txt")})
    hw = HardwareHost(
        "mixed",
        providers=[
            NvidiaProvider(nvml=nvml.module, mps_probe=lambda: NO_MPS),
            CambriconProvider(runner=cnmon),
        ],
    )
    models = [(d.model, d.index) for d in hw.spec.devices]
    assert models == [("h100-80gb", 0), ("mlu370-x8", 0), ("mlu370-x8", 1)]
    gpu = {"slice_id": "s1", "devices": ["mixed/h100-80gb#0"], "compute_milli": 500, "memory_mib": 40000}
    mlu = {"slice_id": "s2", "devices": ["mixed/mlu370-x8#1"], "compute_milli": 1000, "memory_mib": 24000}
    # regression: every slice read its telemetry through the first provider found (NVML)
    assert hw.provider_for(gpu) == "nvidia"
    assert hw.provider_for(mlu) == "cambricon"
    assert "CUDA_VISIBLE_DEVICES" in hw.env_for(gpu)
    assert "MLU_VISIBLE_DEVICES" in hw.env_for(mlu)
