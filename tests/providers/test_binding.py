"""Start-slice commands to bindings and environments, as the host agent will use them."""

from __future__ import annotations

from typing import Any

import pytest

from flexlab.core.errors import InvalidRequest, UnknownName
from flexlab.providers.base import DeviceInstance, DiscoveredDevice, PartitionMode
from flexlab.providers.binding import SliceEnvFactory, binding_for_command, parse_device_id
from flexlab.providers.mps import MpsStatus
from flexlab.providers.nvidia import NvidiaProvider

A100 = DiscoveredDevice(
    "nvidia",
    "gpu",
    "NVIDIA A100-SXM4-80GB",
    "a100-80gb",
    1,
    "GPU-a",
    81920,
    PartitionMode.MIG,
    (
        DeviceInstance("1g.10gb", "MIG-1", 9, 9856, 6),
        DeviceInstance("1g.10gb", "MIG-2", 10, 9856, 5),
        DeviceInstance("3g.40gb", "MIG-3", 2, 40192, 0),
    ),
)
T4 = DiscoveredDevice("nvidia", "gpu", "Tesla T4", "t4", 0, "GPU-t", 15360)


def cmd(sid: str, device: str, milli: int, mib: int, profile: str | None = None) -> dict[str, Any]:
    model = parse_device_id(device)[1]
    return {"slice_id": sid, "devices": [device], "model": model, "compute_milli": milli, "memory_mib": mib,
            "profile": profile}  # fmt: skip


def test_parse_device_id() -> None:
    assert parse_device_id("gpu-a/a100-80gb#12") == ("gpu-a", "a100-80gb", 12)
    with pytest.raises(InvalidRequest):
        parse_device_id("gpu-a/a100-80gb")


@pytest.mark.parametrize(
    ("command", "device", "instance"),
    [
        (cmd("s1", "h/t4#0", 250, 4096), "GPU-t", None),
        (cmd("s2", "h/a100-80gb#1", 428, 40960, "3g.40gb"), "GPU-a", "MIG-3"),
        (cmd("s3", "h/a100-80gb#1", 142, 10240, "1g.10gb"), "GPU-a", "MIG-1"),
    ],
    ids=["fraction", "mig-3g", "mig-1g"],
)
def test_binding_for_command(command: dict[str, Any], device: str, instance: str | None) -> None:
    b = binding_for_command(command, [T4, A100])
    assert (b.device.uuid, b.instance, b.slice_id, b.compute_milli) == (
        device,
        instance,
        command["slice_id"],
        command["compute_milli"],
    )


@pytest.mark.parametrize(
    ("command", "taken", "error"),
    [
        (cmd("s1", "h/t4#3", 250, 4096), (), UnknownName),
        ({**cmd("s1", "h/t4#0", 1, 1), "devices": ["h/t4#0", "h/t4#1"]}, (), InvalidRequest),
        (cmd("s1", "h/a100-80gb#1", 428, 40960, "3g.40gb"), ("MIG-3",), InvalidRequest),
        (cmd("s1", "h/a100-80gb#1", 285, 20480, "2g.20gb"), (), InvalidRequest),
    ],
    ids=["unknown-device", "two-devices", "instance-taken", "profile-not-carved"],
)
def test_binding_refusals(command: dict[str, Any], taken: tuple[str, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        binding_for_command(command, [T4, A100], taken=taken)


def test_factory_hands_out_free_instances_and_takes_them_back() -> None:
    prov = NvidiaProvider(enabled=False, mps_probe=lambda: MpsStatus(False, "/tmp/nvidia-mps", "none"))
    factory = SliceEnvFactory(prov, [T4, A100])
    first = factory.env_for(cmd("a", "h/a100-80gb#1", 142, 10240, "1g.10gb"))
    second = factory.env_for(cmd("b", "h/a100-80gb#1", 142, 10240, "1g.10gb"))
    assert (first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"]) == ("MIG-1", "MIG-2")
    assert first["FLEXLAB_SLICE_ID"] == "a"
    with pytest.raises(InvalidRequest):
        factory.env_for(cmd("c", "h/a100-80gb#1", 142, 10240, "1g.10gb"))
    factory.release("a")
    factory.release("a")
    assert (
        factory.env_for(cmd("c", "h/a100-80gb#1", 142, 10240, "1g.10gb"))["CUDA_VISIBLE_DEVICES"] == "MIG-1"
    )
    # A restarted slice keeps its own instance.
    assert (
        factory.env_for(cmd("b", "h/a100-80gb#1", 142, 10240, "1g.10gb"))["CUDA_VISIBLE_DEVICES"] == "MIG-2"
    )
    assert factory.held() == {"b": "MIG-2", "c": "MIG-1"}
    assert factory.env_for(cmd("t", "h/t4#0", 500, 7000))["CUDA_VISIBLE_DEVICES"] == "GPU-t"
