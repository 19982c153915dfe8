"""From the runtime's start-slice command to a :class:`SliceBinding` and its environment.

The scheduler plugin tells a host agent to start a worker for a slice with a command such
as ``{"slice_id": "s3", "devices": ["gpu-a/a100-80gb#0"], "model": "a100-80gb",
"compute_milli": 428, "memory_mib": 40960, "profile": "3g.40gb", ...}``. The agent keeps
one :class:`SliceEnvFactory` per provider; ``env_for(cmd)`` is what it gives the worker
process (``HostAgent(env_for=factory.env_for)``), and ``release(slice_id)`` frees the
hardware instance (MIG device, vNPU) the slice held.

>>> dev = DiscoveredDevice("nvidia", "gpu", "Tesla T4", "t4", 0, "GPU-1", 15360)
>>> cmd = {"slice_id": "s1", "devices": ["h/t4#0"], "compute_milli": 250, "memory_mib": 4096}
>>> binding_for_command(cmd, [dev]).compute_milli
250
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flexlab.core.errors import InvalidRequest, UnknownName
from flexlab.providers.base import DeviceProvider, DiscoveredDevice, SliceBinding

_DEVICE_ID = re.compile(r"^(?P<host>[^/#]+)/(?P<model>[^/#]+)#(?P<index>\d+)$")


def parse_device_id(device_id: str) -> tuple[str, str, int]:
    """``"host/model#index"`` (the pool's device id) as (host, model key, index)."""
    m = _DEVICE_ID.match(device_id)
    if m is None:
        raise InvalidRequest("device id", device_id, "host/model#index, such as gpu-a/a100-80gb#0")
    return m["host"], m["model"], int(m["index"])


def binding_for_command(
    cmd: Mapping[str, Any], devices: Sequence[DiscoveredDevice], *, taken: Collection[str] = ()
) -> SliceBinding:
    """The binding of one start command: its device, share, memory and free instance.

    A profile slice on a device that holds hardware instances gets a free instance of that
    profile (not in ``taken``); on a device without instances (not carved yet, or a mock)
    the slice is bound to the whole device with its compute and memory limits.
    """
    ids = list(cmd.get("devices", ()))
    if len(ids) != 1:
        raise InvalidRequest("devices", ids, "exactly one device per slice")
    _, model, index = parse_device_id(str(ids[0]))
    dev = next((d for d in devices if d.model_key == model and d.index == index), None)
    if dev is None:
        raise UnknownName("device", ids[0], [f"{d.model_key}#{d.index}" for d in devices])
    profile = cmd.get("profile") or None
    instance = None
    if profile is not None and dev.instances:
        free = [i.uuid for i in dev.instances if i.profile == profile and i.uuid not in taken]
        if not free:
            have = ", ".join(f"{i.profile}:{i.uuid}" for i in dev.instances)
            raise InvalidRequest("profile", profile, f"a free instance on {dev.uuid} (has {have})")
        instance = free[0]
    return SliceBinding(
        dev,
        int(cmd["compute_milli"]),
        int(cmd["memory_mib"]),
        profile,
        instance,
        slice_id=str(cmd["slice_id"]),
    )


class SliceEnvFactory:
    """Environments for one provider's slice workers; tracks which instances are in use."""

    def __init__(self, provider: DeviceProvider, devices: Sequence[DiscoveredDevice]) -> None:
        self._provider = provider
        self._devices = tuple(devices)
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}

    def binding(self, cmd: Mapping[str, Any]) -> SliceBinding:
        sid = str(cmd["slice_id"])
        with self._lock:
            taken = {inst for s, inst in self._held.items() if s != sid}
            b = binding_for_command(cmd, self._devices, taken=taken)
            if b.instance is not None:
                self._held[sid] = b.instance
            return b

    def env_for(self, cmd: Mapping[str, Any]) -> dict[str, str]:
        """The variables of the worker process serving ``cmd``'s slice."""
        return self._provider.isolation_env(self.binding(cmd))

    def release(self, slice_id: str) -> None:
        """The slice's worker stopped: its instance is free again (idempotent)."""
        with self._lock:
            self._held.pop(slice_id, None)

    def held(self) -> dict[str, str]:
        """Instances in use, by slice id."""
        with self._lock:
            return dict(self._held)
