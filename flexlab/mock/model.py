"""The mock device performance model (design section 6), stated once and used everywhere.

A mock device is a real catalog model (a V100S, an A100, an Ascend 910B3...) that does no
arithmetic: tasks declare what they would cost and the mock sleeps for it.

The model
---------
A task declares ``work`` (device-seconds on the reference device, the NVIDIA V100S PCIe
32GB), ``demand`` (the largest share of a device it can use, 0 < demand <= 1: about 0.3 for
a small model's inference) and ``memory_mib``. On a slice of share ``s`` of a device whose
speed factor for the task's workload class is ``v`` it takes::

    work / (v * min(s, demand))   seconds

and uses ``min(s, demand)`` of the device while it runs. Memory beyond the slice raises
:class:`MockOutOfMemory`, like a real runtime. A device's utilisation is the sum of what
its running tasks use, each slice counting at most its own share, capped at 1.

Contention: when tasks run without a granted share (two threads on one slice worker, no
Dask resource), they may together ask for more than their slice. They then time-share it:
each progresses at ``share / total`` of its rate (and likewise if a device's slices add up
to more than the device). Under the ledger's grants this never happens and the formula
above holds exactly.

Speed factors
-------------
``v`` comes from a :class:`SpeedTable`: an override for (workload class, model) if one is
set, else the catalog's dense FP16 peak divided by the reference's (130 TFLOP/s), else
``FALLBACK_SPEED`` = 1.0 (the reference's own speed) for models whose peak is not
published. The fallback neither promotes nor demotes an unknown model; set an override when
you have a measurement. Nothing here is tuned to a benchmark.

>>> duration(work=0.6, demand=0.3, share=0.25, speed=1.0)  # the slice limits it
2.4
>>> duration(work=0.6, demand=0.3, share=1.0, speed=1.0)  # its demand limits it
2.0
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from flexlab.core.catalog import DeviceModel, get_model
from flexlab.core.errors import FlexlabError, InvalidRequest
from flexlab.core.units import MILLI_PER_DEVICE
from flexlab.mock.speed import (
    ANY_CLASS,
    DEFAULT_SPEEDS,
    FALLBACK_SPEED,
    REFERENCE_MODEL,
    WORKLOAD_CLASSES,
    SpeedRow,
    SpeedTable,
)

__all__ = [
    "ANY_CLASS",
    "DEFAULT_SPEEDS",
    "FALLBACK_SPEED",
    "REFERENCE_MODEL",
    "WORKLOAD_CLASSES",
    "DeviceReadout",
    "MockDevice",
    "MockOutOfMemory",
    "SliceContext",
    "SliceReadout",
    "SpeedRow",
    "SpeedTable",
    "duration",
    "mock_device",
    "mock_devices",
    "reset_mock_devices",
    "used_share",
]


def used_share(share: float, demand: float) -> float:
    """The part of a device a task uses on a slice of ``share``: ``min(share, demand)``."""
    return min(share, demand)


def duration(work: float, demand: float, share: float, speed: float) -> float:
    """Seconds a task takes alone on a slice: ``work / (speed * min(share, demand))``.

    ``share`` and ``demand`` are fractions of a whole device.

    >>> duration(work=1.0, demand=0.5, share=1.0, speed=2.0)
    1.0
    """
    _check_fraction("demand", demand)
    _check_fraction("share", share)
    if not (math.isfinite(speed) and speed > 0):
        raise InvalidRequest("speed", speed, "a finite factor > 0")
    if not (math.isfinite(work) and work >= 0):
        raise InvalidRequest("work", work, "finite device-seconds >= 0")
    return work / (speed * used_share(share, demand))


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
        raise InvalidRequest(name, value, "a fraction of a device in (0, 1]")


class MockOutOfMemory(MemoryError, FlexlabError):
    """A mock allocation beyond its slice (or device), worded like CUDA's error.

    ``requested_mib``, ``capacity_mib`` and ``in_use_mib`` describe the ``scope``
    ("slice" or "device") that ran out.
    """

    def __init__(
        self,
        requested_mib: int,
        capacity_mib: int,
        in_use_mib: int,
        slice_id: str,
        model_key: str,
        scope: str = "slice",
    ) -> None:
        self.requested_mib = requested_mib
        self.capacity_mib = capacity_mib
        self.in_use_mib = in_use_mib
        self.slice_id = slice_id
        self.model_key = model_key
        self.scope = scope
        free = max(capacity_mib - in_use_mib, 0)
        super().__init__(
            f"mock {model_key} out of memory on slice {slice_id!r}: tried to allocate "
            f"{requested_mib} MiB; {scope} has {capacity_mib} MiB total, {in_use_mib} MiB in use "
            f"({free} MiB free)"
        )

    def __reduce__(self) -> tuple[type[MockOutOfMemory], tuple[int, int, int, str, str, str]]:
        # Dask ships exceptions to the client by pickle; rebuild from the fields.
        args = (self.requested_mib, self.capacity_mib, self.in_use_mib, self.slice_id, self.model_key)
        return (type(self), (*args, self.scope))


@dataclass(frozen=True, kw_only=True)
class SliceContext:
    """Where a task runs: one slice of one mock device, as a slice worker knows it.

    >>> ctx = SliceContext(share_milli=250, memory_mib=8192, model_key="a100-40gb",
    ...                    device_id="host-a/0", slice_id="s1")
    >>> ctx.share, ctx.model_key
    (0.25, 'a100-40gb')
    """

    #: The slice's compute share in milli (1000 = the whole device).
    share_milli: int
    #: The slice's memory in MiB.
    memory_mib: int
    #: Catalog key (aliases are resolved to the key).
    model_key: str
    #: The physical device; slices with one device id share accounting in a process.
    device_id: str
    slice_id: str
    speed: SpeedTable = DEFAULT_SPEEDS
    #: The running task's granted share in milli; None = the whole slice.
    granted_milli: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_key", get_model(self.model_key).key)
        if not (isinstance(self.share_milli, int) and 1 <= self.share_milli <= MILLI_PER_DEVICE):
            raise InvalidRequest("share_milli", self.share_milli, "an integer in 1..1000")
        if not (isinstance(self.memory_mib, int) and self.memory_mib >= 0):
            raise InvalidRequest("memory_mib", self.memory_mib, "an integer number of MiB >= 0")
        for name in ("device_id", "slice_id"):
            if not getattr(self, name):
                raise InvalidRequest(name, getattr(self, name), "a non-empty string")
        granted = self.granted_milli
        if granted is not None and not (isinstance(granted, int) and 1 <= granted <= self.share_milli):
            raise InvalidRequest("granted_milli", granted, f"an integer in 1..{self.share_milli} (the slice)")

    @property
    def share(self) -> float:
        """The slice's share of its device as a fraction."""
        return self.share_milli / MILLI_PER_DEVICE

    @property
    def task_share(self) -> float:
        """The running task's share as a fraction: its grant, or the whole slice."""
        milli = self.share_milli if self.granted_milli is None else self.granted_milli
        return milli / MILLI_PER_DEVICE

    @property
    def model(self) -> DeviceModel:
        return get_model(self.model_key)

    def for_task(self, granted_milli: int | None) -> SliceContext:
        """This slice as seen by a task granted ``granted_milli`` (None = the whole slice)."""
        return replace(self, granted_milli=granted_milli)

    def device(self) -> MockDevice:
        """The process-wide accounting object of this slice's physical device."""
        return mock_device(self.device_id, self.model_key)


@dataclass(frozen=True)
class SliceReadout:
    """One slice's telemetry: utilisation as a fraction of the whole device."""

    slice_id: str
    share_milli: int
    utilisation: float
    memory_used_mib: int
    memory_total_mib: int
    running: int


@dataclass(frozen=True)
class DeviceReadout:
    """One device's telemetry, summed over its slices in this process."""

    device_id: str
    model_key: str
    utilisation: float
    memory_used_mib: int
    #: None when the catalog does not know the model's memory.
    memory_total_mib: int | None
    slices: tuple[SliceReadout, ...]


@dataclass
class _Slice:
    share_milli: int = MILLI_PER_DEVICE
    memory_total_mib: int = 0
    memory_used_mib: int = 0
    uses: dict[int, float] = field(default_factory=dict)

    def demand(self) -> float:
        return sum(self.uses.values())

    def utilisation(self) -> float:
        return min(self.demand(), self.share_milli / MILLI_PER_DEVICE)


class MockDevice:
    """Thread-safe accounting of one mock device: memory held and running tasks per slice.

    Telemetry samples :meth:`utilisation`, :meth:`memory_used` or :meth:`readout`.

    >>> dev = MockDevice("d0", "v100s-32gb")
    >>> with dev.running("s0", 0.3, slice_share_milli=500):
    ...     dev.utilisation()
    0.3
    """

    def __init__(self, device_id: str, model_key: str, *, memory_mib: int | None = None) -> None:
        model = get_model(model_key)
        self.device_id = device_id
        self.model_key = model.key
        #: None = the catalog does not know; only slice limits apply then.
        self.memory_mib = memory_mib if memory_mib is not None else model.memory_mib
        self._lock = threading.Lock()
        self._slices: dict[str, _Slice] = {}
        self._task_slice: dict[int, str] = {}
        self._tokens = itertools.count(1)

    def __repr__(self) -> str:
        return f"MockDevice({self.device_id!r}, {self.model_key!r})"

    def _slice(self, slice_id: str) -> _Slice:
        return self._slices.setdefault(slice_id, _Slice())

    def allocate(self, slice_id: str, mib: int, *, slice_memory_mib: int) -> None:
        """Hold ``mib`` on a slice of ``slice_memory_mib``; :class:`MockOutOfMemory` if it won't fit."""
        if mib < 0:
            raise InvalidRequest("memory", mib, "MiB >= 0")
        with self._lock:
            sl = self._slice(slice_id)
            sl.memory_total_mib = slice_memory_mib
            if sl.memory_used_mib + mib > slice_memory_mib:
                raise MockOutOfMemory(mib, slice_memory_mib, sl.memory_used_mib, slice_id, self.model_key)
            used = sum(s.memory_used_mib for s in self._slices.values())
            if self.memory_mib is not None and used + mib > self.memory_mib:
                raise MockOutOfMemory(mib, self.memory_mib, used, slice_id, self.model_key, "device")
            sl.memory_used_mib += mib

    def free(self, slice_id: str, mib: int) -> None:
        """Give back ``mib`` held on a slice."""
        with self._lock:
            sl = self._slice(slice_id)
            if mib < 0 or mib > sl.memory_used_mib:
                raise ValueError(f"cannot free {mib} MiB on slice {slice_id!r}: {sl.memory_used_mib} held")
            sl.memory_used_mib -= mib

    @contextmanager
    def holding(self, slice_id: str, mib: int, *, slice_memory_mib: int) -> Iterator[None]:
        """Hold memory for the block, freed on the way out (also after an exception)."""
        self.allocate(slice_id, mib, slice_memory_mib=slice_memory_mib)
        try:
            yield
        finally:
            self.free(slice_id, mib)

    def start(self, slice_id: str, use: float, *, slice_share_milli: int) -> int:
        """Register a running task using ``use`` of the device; returns its token."""
        _check_fraction("use", use)
        with self._lock:
            token = next(self._tokens)
            sl = self._slice(slice_id)
            sl.share_milli = slice_share_milli
            sl.uses[token] = use
            self._task_slice[token] = slice_id
            return token

    def finish(self, token: int) -> None:
        """Unregister a task; idempotent."""
        with self._lock:
            slice_id = self._task_slice.pop(token, None)
            if slice_id is not None:
                self._slices[slice_id].uses.pop(token, None)

    @contextmanager
    def running(self, slice_id: str, use: float, *, slice_share_milli: int) -> Iterator[int]:
        """Register a task for the block; yields its token."""
        token = self.start(slice_id, use, slice_share_milli=slice_share_milli)
        try:
            yield token
        finally:
            self.finish(token)

    def rate_factor(self, token: int) -> float:
        """The part of its nominal rate a task gets now: 1.0 unless its slice or device is oversubscribed."""
        with self._lock:
            slice_id = self._task_slice.get(token)
            if slice_id is None:
                return 1.0
            sl = self._slices[slice_id]
            demand = sl.demand()
            f_slice = min(1.0, (sl.share_milli / MILLI_PER_DEVICE) / demand) if demand > 0 else 1.0
            device = sum(s.utilisation() for s in self._slices.values())
            f_device = min(1.0, 1.0 / device) if device > 0 else 1.0
            return f_slice * f_device

    def utilisation(self) -> float:
        """Fraction of the device in use: the sum over slices (each at most its share), capped at 1."""
        with self._lock:
            return min(1.0, sum(s.utilisation() for s in self._slices.values()))

    def memory_used(self) -> int:
        """MiB held over all slices."""
        with self._lock:
            return sum(s.memory_used_mib for s in self._slices.values())

    def slice_utilisation(self, slice_id: str) -> float:
        with self._lock:
            sl = self._slices.get(slice_id)
            return sl.utilisation() if sl else 0.0

    def slice_memory_used(self, slice_id: str) -> int:
        with self._lock:
            sl = self._slices.get(slice_id)
            return sl.memory_used_mib if sl else 0

    def running_tasks(self) -> int:
        with self._lock:
            return len(self._task_slice)

    def readout(self) -> DeviceReadout:
        """A consistent snapshot of the device and its slices."""
        with self._lock:
            slices = tuple(
                SliceReadout(
                    sid, s.share_milli, s.utilisation(), s.memory_used_mib, s.memory_total_mib, len(s.uses)
                )
                for sid, s in sorted(self._slices.items())
            )
        util = min(1.0, sum(s.utilisation for s in slices))
        used = sum(s.memory_used_mib for s in slices)
        return DeviceReadout(self.device_id, self.model_key, util, used, self.memory_mib, slices)


_REGISTRY: dict[str, MockDevice] = {}
_REGISTRY_LOCK = threading.Lock()


def mock_device(device_id: str, model_key: str) -> MockDevice:
    """The process-wide :class:`MockDevice` for ``device_id``, created on first use."""
    key = get_model(model_key).key
    with _REGISTRY_LOCK:
        dev = _REGISTRY.get(device_id)
        if dev is None:
            dev = _REGISTRY[device_id] = MockDevice(device_id, key)
        elif dev.model_key != key:
            raise InvalidRequest(f"model of mock device {device_id!r}", model_key, dev.model_key)
        return dev


def mock_devices() -> tuple[MockDevice, ...]:
    """Every mock device this process has accounted for, by device id."""
    with _REGISTRY_LOCK:
        return tuple(dev for _, dev in sorted(_REGISTRY.items()))


def reset_mock_devices() -> None:
    """Forget every device (tests; a fresh demo)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
