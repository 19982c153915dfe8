"""Mock devices: a simulation of real catalog models, for the demo, Binder and tests.

A mock device is not a stand-in that pretends to be hardware; it is a simulated instance
of a real catalog model (an A100 80GB, an Ascend 910B3...) with that model's memory and
slicing menu, reported exactly as a real provider reports devices. Its telemetry comes
from a documented simulation hook: the runtime runs the performance model of design.md
section 6 (a task of ``work`` device-seconds with demand ``d`` on a slice of share ``s``
takes ``work / (v * min(s, d))``; a device's utilisation is the sum of what its running
tasks use; :mod:`flexlab.mock.model`, documented in docs/mock-devices.md) and either
writes each device's state into a :class:`MockTelemetryBoard` or lets
:class:`MockModelHook` read the model's accounting directly; :meth:`MockProvider.sample`
reads the hook. Without a hook every device reads idle.

Pool spec (YAML or JSON), ``version: 1``::

    version: 1
    hosts:
      - name: gpu-a              # host name: no '/' or '#'
        cpu: 32                  # cores ("8", 0.5, "500m")
        memory: 256GiB           # RAM ("64GiB", or MiB as a number)
        address: 10.0.0.5        # optional
        devices:
          - model: a100-80gb     # catalog key or alias (flexlab.core.catalog)
            count: 2             # optional, default 1
            mig: [3g.40gb, 3g.40gb]   # optional MIG layout, placed by NVIDIA's rules
          - model: ascend-910b3
            vnpu: [vir05_1c_16g]      # optional vNPU templates
          - model: mlu370-x8
            memory: 24GiB        # optional: override the catalog's memory

Unknown keys, unknown models, profiles not on a model's menu and layouts the hardware
could not hold are refused with ``InvalidRequest`` naming the field
(``hosts[0].devices[1].mig``), the value and what is allowed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from flexlab.core.catalog import DeviceModel, resolve_model
from flexlab.core.errors import InvalidRequest
from flexlab.core.slicing import NO_SLOT, is_valid
from flexlab.core.topology import FRACTION, PROFILE, DeviceSpec, HostSpec
from flexlab.core.units import parse_cpu, parse_memory
from flexlab.mock.env import slice_env
from flexlab.mock.model import mock_devices
from flexlab.providers.base import (
    DeviceInstance,
    DiscoveredDevice,
    ErrorCode,
    PartitionMode,
    ProcessUsage,
    ProviderBase,
    ProviderReport,
    ReadingError,
    ReportStatus,
    SliceBinding,
    TelemetryReport,
    TelemetrySample,
    disabled_report,
    flexlab_slice_env,
)
from flexlab.providers.mig import plan_mig_layout

log = logging.getLogger(__name__)

NAME = "mock"
SPEC_VERSION = 1
_HOST_KEYS = {"name", "cpu", "memory", "address", "devices"}
_DEVICE_KEYS = {"model", "count", "mig", "vnpu", "memory"}


@dataclass(frozen=True)
class MockHost:
    """One simulated machine: its CPU (milli-cores), RAM (MiB) and devices."""

    name: str
    cpu_milli: int
    memory_mib: int
    devices: tuple[DiscoveredDevice, ...]
    address: str = ""

    def to_host_spec(self) -> HostSpec:
        """The core's view of this host (profile-sliced where a layout was given)."""
        specs = tuple(
            DeviceSpec(
                model=d.model_key or "",
                index=d.index,
                uuid=d.uuid,
                mode=PROFILE if d.instances else FRACTION,
                memory_mib=d.memory_mib,
            )
            for d in self.devices
        )
        return HostSpec(self.name, self.cpu_milli, self.memory_mib, specs, self.address)


@dataclass(frozen=True)
class PoolSpec:
    hosts: tuple[MockHost, ...]


def _fail(field: str, value: object, allowed: str) -> InvalidRequest:
    return InvalidRequest(field, value, allowed)


def _check_keys(obj: object, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise _fail(where, obj, "a mapping")
    extra = sorted(set(obj) - allowed)
    if extra:
        raise _fail(f"{where}.{extra[0]}", obj[extra[0]], f"one of the keys {', '.join(sorted(allowed))}")
    return obj


def _layout(model: DeviceModel, wanted: Sequence[str], kind: str, where: str) -> tuple[tuple[str, int], ...]:
    if kind == "mig":
        plan = plan_mig_layout(model, wanted)
        if not plan.ok:
            raise _fail(where, list(wanted), f"a MIG layout {model.key} can hold ({plan.detail})")
        return tuple((p.profile, p.start) for p in plan.placements)
    layout = tuple((name, NO_SLOT) for name in wanted)
    if any(p.mem_slots for p in model.profiles) or not is_valid(model, layout):
        menu = ", ".join(p.name for p in model.profiles) or "none"
        raise _fail(where, list(wanted), f"vNPU templates of {model.key} within its capacity ({menu})")
    return layout


def _devices(host: str, raw: object, where: str) -> tuple[DiscoveredDevice, ...]:
    if not isinstance(raw, list):
        raise _fail(where, raw, "a list of devices")
    found: list[DiscoveredDevice] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        dev = _check_keys(item, _DEVICE_KEYS, at)
        model = resolve_model(str(dev.get("model", "")))
        if model is None or model.kind not in ("gpu", "npu", "mlu"):
            raise _fail(
                f"{at}.model", dev.get("model"), "a catalog model key such as a100-80gb or ascend-910b3"
            )
        count = dev.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _fail(f"{at}.count", count, "a whole number >= 1")
        memory = parse_memory(dev["memory"], field=f"{at}.memory") if "memory" in dev else model.memory_mib
        if not memory:
            raise _fail(f"{at}.memory", dev.get("memory"), f"a size ({model.key} has no catalog memory)")
        kinds = [k for k in ("mig", "vnpu") if k in dev]
        if len(kinds) > 1:
            raise _fail(at, dict(dev), "at most one of mig, vnpu")
        layout: tuple[tuple[str, int], ...] = ()
        if kinds:
            wanted = dev[kinds[0]]
            if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                raise _fail(f"{at}.{kinds[0]}", wanted, "a list of profile names")
            layout = _layout(model, wanted, kinds[0], f"{at}.{kinds[0]}")
        for _ in range(count):
            index = len(found)
            uuid = f"MOCK-{host}-{index}"
            instances = tuple(
                DeviceInstance(name, f"{uuid}-{kinds[0]}{j}", j, model.profile(name).memory_mib, start)
                for j, (name, start) in enumerate(layout)
            )
            mode = PartitionMode.NONE if not kinds else PartitionMode(kinds[0])
            found.append(
                DiscoveredDevice(
                    vendor=model.vendor,
                    kind=model.kind,
                    product_name=model.name,
                    model_key=model.key,
                    index=index,
                    uuid=uuid,
                    memory_mib=memory,
                    partition_mode=mode,
                    instances=instances,
                    health="OK",
                )
            )
    return tuple(found)


def parse_pool_spec(data: object) -> PoolSpec:
    """A pool spec from already-loaded YAML/JSON data (see the module docstring)."""
    top = _check_keys(data, {"version", "hosts"}, "pool")
    if top.get("version", SPEC_VERSION) != SPEC_VERSION:
        raise _fail("version", top.get("version"), str(SPEC_VERSION))
    raw_hosts = top.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise _fail("hosts", raw_hosts, "a non-empty list of hosts")
    hosts: list[MockHost] = []
    for i, item in enumerate(raw_hosts):
        at = f"hosts[{i}]"
        host = _check_keys(item, _HOST_KEYS, at)
        name = host.get("name")
        if not isinstance(name, str) or not name or "/" in name or "#" in name:
            raise _fail(f"{at}.name", name, "a non-empty name without '/' or '#'")
        if any(h.name == name for h in hosts):
            raise _fail(f"{at}.name", name, "a name no other host has")
        hosts.append(
            MockHost(
                name=name,
                cpu_milli=parse_cpu(host.get("cpu", 8), field=f"{at}.cpu"),
                memory_mib=parse_memory(host.get("memory", "32GiB"), field=f"{at}.memory"),
                devices=_devices(name, host.get("devices", []), f"{at}.devices"),
                address=str(host.get("address", "")),
            )
        )
    return PoolSpec(tuple(hosts))


def load_pool_spec(path: str | Path) -> PoolSpec:
    """Read a pool spec file: ``.json`` as JSON, anything else as YAML."""
    text = Path(path).read_text()
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    return parse_pool_spec(data)


@dataclass(frozen=True)
class MockReading:
    """What the simulation says one mock device is doing now."""

    utilization_pct: float
    memory_used_mib: int
    processes: tuple[ProcessUsage, ...] = ()


class SimulationHook(Protocol):
    """Where mock telemetry comes from: the runtime's performance model."""

    def reading(self, device_uuid: str) -> MockReading | None: ...


class MockTelemetryBoard:
    """A thread-safe board the runtime writes simulated device state into."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: dict[str, MockReading] = {}

    def set(
        self,
        device_uuid: str,
        *,
        utilization_pct: float,
        memory_used_mib: int,
        processes: Sequence[ProcessUsage] = (),
    ) -> None:
        with self._lock:
            self._readings[device_uuid] = MockReading(utilization_pct, memory_used_mib, tuple(processes))

    def clear(self, device_uuid: str) -> None:
        with self._lock:
            self._readings.pop(device_uuid, None)

    def reading(self, device_uuid: str) -> MockReading | None:
        with self._lock:
            return self._readings.get(device_uuid)


class MockProvider(ProviderBase):
    """Reports one simulated host's devices like a real provider (see the module docstring)."""

    NAME = NAME
    LABEL = "mock"

    def __init__(self, host: MockHost, *, enabled: bool = True, hook: SimulationHook | None = None) -> None:
        super().__init__(enabled=enabled, logger=log)
        self._host = host
        self._hook = hook

    @property
    def host(self) -> MockHost:
        return self._host

    def detect(self) -> ProviderReport:
        if not self._enabled:
            return disabled_report(NAME)
        status = ReportStatus.OK if self._host.devices else ReportStatus.NO_DEVICES
        detail = "" if self._host.devices else f"mock host {self._host.name} has no devices"
        return ProviderReport(NAME, status, self._host.devices, detail, version=f"mock-spec-{SPEC_VERSION}")

    def _read_telemetry(self, now: float) -> TelemetryReport:
        """The hook's readings (idle without one); out-of-range readings are reported."""
        samples = [self._sample_one(dev, now) for dev in self._host.devices]
        return TelemetryReport(NAME, now, tuple(samples))

    def _sample_one(self, dev: DiscoveredDevice, now: float) -> TelemetrySample:
        try:
            reading = self._hook.reading(dev.uuid) if self._hook is not None else None
        except Exception as exc:  # the simulation is code too: reported and logged, never raised
            log.exception("mock simulation hook failed for %s", dev.uuid)
            error = ReadingError(ErrorCode.INTERNAL_ERROR, repr(exc), dev.uuid, "simulation")
            return TelemetrySample(dev.uuid, dev.index, now, None, None, dev.memory_mib, errors=(error,))
        if reading is None:
            return TelemetrySample(dev.uuid, dev.index, now, 0.0, 0, dev.memory_mib)
        errors: list[ReadingError] = []
        util: float | None = reading.utilization_pct
        used: int | None = reading.memory_used_mib
        if util is not None and not 0.0 <= util <= 100.0:
            errors.append(ReadingError(ErrorCode.PARSE_ERROR, f"utilisation {util} outside 0..100", dev.uuid))
            util = None
        if used is not None and not 0 <= used <= dev.memory_mib:
            errors.append(
                ReadingError(
                    ErrorCode.PARSE_ERROR, f"memory {used} MiB outside 0..{dev.memory_mib}", dev.uuid
                )
            )
            used = None
        return TelemetrySample(
            dev.uuid, dev.index, now, util, used, dev.memory_mib, reading.processes, errors=tuple(errors)
        )

    def isolation_env(self, binding: SliceBinding) -> dict[str, str]:
        """The mock's own variables (:func:`flexlab.mock.env.slice_env`) and the FLEXLAB_* caps.

        ``FLEXLAB_MOCK_DEVICE_ID`` is the device's UUID, so every slice of one mock device
        shares its accounting in :mod:`flexlab.mock.model` (read back by :class:`MockModelHook`).
        """
        if binding.device.uuid not in {d.uuid for d in self._host.devices}:
            raise InvalidRequest("device", binding.device.uuid, f"a device of mock host {self._host.name}")
        slice_id = binding.slice_id or binding.instance or f"{binding.device.uuid}-slice"
        env = flexlab_slice_env(binding)
        model = binding.device.model_key or ""
        env.update(slice_env(slice_id, model, binding.compute_milli, binding.memory_mib, binding.device.uuid))
        env["FLEXLAB_MOCK_HOST"] = self._host.name
        return env


class MockModelHook:
    """A :class:`SimulationHook` reading the mock performance model of this process.

    :mod:`flexlab.mock.model` accounts every running mock task per device id; with the
    variables of :meth:`MockProvider.isolation_env` that id is the device's UUID.
    """

    def reading(self, device_uuid: str) -> MockReading | None:
        for dev in mock_devices():
            if dev.device_id == device_uuid:
                r = dev.readout()
                return MockReading(round(r.utilisation * 100.0, 3), r.memory_used_mib)
        return None


def mock_providers(spec: PoolSpec, *, hook: SimulationHook | None = None) -> dict[str, MockProvider]:
    """One provider per simulated host, by host name."""
    return {h.name: MockProvider(h, hook=hook) for h in spec.hosts}
