"""Hosts and devices as the pool knows them (static facts, apart from live telemetry)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flexlab.core.catalog import DeviceModel, get_model
from flexlab.core.errors import InvalidRequest

FRACTION = "fraction"
PROFILE = "profile"
MODES = (FRACTION, PROFILE)


@dataclass(frozen=True)
class DeviceSpec:
    """One physical device on a host.

    ``mode`` says how it is sliced: free fractions (``fraction``) or the model's profile
    menu (``profile``: MIG / vNPU). ``memory_mib`` overrides the catalog's figure (for
    models whose memory the catalog does not know).
    """

    model: str
    index: int = 0
    uuid: str = ""
    mode: str = FRACTION
    memory_mib: int | None = None

    def __post_init__(self) -> None:
        m = get_model(self.model)
        object.__setattr__(self, "model", m.key)
        if self.mode not in MODES:
            raise InvalidRequest("mode", self.mode, " or ".join(MODES))
        if self.mode == PROFILE and not m.profiles:
            raise InvalidRequest("mode", self.mode, f"fraction ({m.key} has no profile menu)")
        if self.mode == FRACTION and m.granularity_milli == 0:
            raise InvalidRequest("mode", self.mode, f"profile ({m.key} is profile-sliced only)")
        if self.memory_mib is not None and self.memory_mib <= 0:
            raise InvalidRequest("memory", self.memory_mib, "a positive number of MiB")
        if self.index < 0:
            raise InvalidRequest("index", self.index, ">= 0")

    @property
    def catalog(self) -> DeviceModel:
        return get_model(self.model)

    @property
    def total_memory_mib(self) -> int:
        """Memory to account against; unknown memory is not a limit (a very large number)."""
        if self.memory_mib is not None:
            return self.memory_mib
        known = self.catalog.memory_mib
        return known if known is not None else UNLIMITED_MEMORY_MIB


#: Stands for "not tracked" (the openb trace does not model GPU memory).
UNLIMITED_MEMORY_MIB = 1 << 40


@dataclass(frozen=True)
class HostSpec:
    """One machine of the pool: its CPU (milli-cores), RAM (MiB) and devices."""

    name: str
    cpu_milli: int
    memory_mib: int
    devices: tuple[DeviceSpec, ...] = ()
    address: str = ""
    labels: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "#" in self.name:
            raise InvalidRequest("host name", self.name, "a non-empty name without '/' or '#'")
        if self.cpu_milli < 0:
            raise InvalidRequest("host cpu", self.cpu_milli, ">= 0 milli-cores")
        if self.memory_mib < 0:
            raise InvalidRequest("host memory", self.memory_mib, ">= 0 MiB")
        seen = [(d.model, d.index) for d in self.devices]
        if len(set(seen)) != len(seen):
            raise InvalidRequest("devices", seen, "distinct (model, index) pairs on one host")

    def device_id(self, dev: DeviceSpec) -> str:
        return device_id(self.name, dev)


def device_id(host: str, dev: DeviceSpec) -> str:
    """The pool-wide name of a device, e.g. ``nvidia-b/a100-80gb#0``."""
    return f"{host}/{dev.model}#{dev.index}"
