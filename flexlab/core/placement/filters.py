"""Filter plugins: reject candidates with a structured reason, for all candidates at once.

A filter returns an int8 array of ``Reason`` codes, one per device (``level == "device"``)
or per host (``level == "host"``), ``0`` where the candidate passes; or ``None`` when it
has nothing to say about this request (cheaper than an all-zero array). Static filters
check facts that no release changes (model, sizes) and run first, so a candidate's first
reason tells whether it could ever fit.

The per-device footprint of a request (``Need``) is computed once per placement: compute
rounded up to the model's granularity, memory proportional to compute when the request
names none, a profile's own size on profile-sliced devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from flexlab.core.catalog import CATALOG
from flexlab.core.placement.request_view import RequestView, is_cpu_only
from flexlab.core.placement.status import Reason
from flexlab.core.snapshot import WHOLE, PoolArrays

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
BoolArr = npt.NDArray[np.bool_]
Level = Literal["device", "host"]


@dataclass(frozen=True)
class Need:
    """What a request would take from each device of the pool, were it placed there."""

    #: Compute milli per device (granularity applied; a profile's size on profile devices).
    compute: I64
    #: Device memory MiB per device.
    memory: I64
    #: Devices sliced by profiles (MIG / vNPU) rather than by fractions.
    profile_sliced: BoolArr


def profile_sliced_mask(pool: PoolArrays) -> BoolArr:
    """Devices listed in ``pool.profile_free`` (profile-sliced), or of a profile-only model."""
    mask = np.zeros(pool.n_devices, dtype=np.bool_)
    profile_only = [g == 0 for g in pool.model_granularity]
    if any(profile_only):
        mask |= np.asarray(profile_only, dtype=np.bool_)[pool.dev_model]
    if pool.profile_free:
        mask[np.fromiter(pool.profile_free.keys(), dtype=np.int64)] = True
    return mask


def compute_need(request: RequestView, pool: PoolArrays) -> Need:
    """The per-device footprint of ``request`` on every device of ``pool``."""
    n_models = len(pool.model_keys)
    sliced = profile_sliced_mask(pool)
    if request.profile is not None:
        comp_m = np.full(n_models, request.compute_milli, dtype=np.int64)
        mem_m = np.full(n_models, request.memory_mib, dtype=np.int64)
        for m in range(n_models):
            size = profile_size(pool, m, request.profile)
            if size is not None:
                comp_m[m], mem_m[m] = size
        compute = comp_m[pool.dev_model]
        memory = np.minimum(mem_m[pool.dev_model], pool.dev_mem_total)
        return Need(compute, memory, sliced)
    c = int(request.compute_milli)
    gran = (
        np.asarray(pool.model_granularity, dtype=np.int64)
        if len(pool.model_granularity) == n_models
        else np.ones(n_models, dtype=np.int64)
    )
    safe = np.maximum(gran, 1)
    comp_m = np.minimum(-(-c // safe) * safe, WHOLE)
    compute = comp_m[pool.dev_model]
    if request.memory_mib > 0:
        memory = np.full(pool.n_devices, request.memory_mib, dtype=np.int64)
    else:
        # The ledger's rule: the same share of the device's memory, rounded up.
        memory = -(-pool.dev_mem_total * compute // WHOLE)
    return Need(compute, memory, sliced)


def profile_size(pool: PoolArrays, model: int, profile: str) -> tuple[int, int] | None:
    """(compute milli, memory MiB) of ``profile`` on model index ``model``: from
    ``pool.model_profiles`` when the pool carries it, else from the catalog."""
    if pool.model_profiles:
        return pool.model_profiles[model].get(profile) if model < len(pool.model_profiles) else None
    entry = CATALOG.get(pool.model_keys[model])
    if entry is None or not entry.has_profile(profile):
        return None
    prof = entry.profile(profile)
    return entry.profile_milli(prof), prof.memory_mib


def offers_profile(pool: PoolArrays, model: int, profile: str) -> bool:
    """Whether the model can be carved into ``profile`` at all (unknown models: assume so)."""
    if not pool.model_profiles and pool.model_keys[model] not in CATALOG:
        return True
    return profile_size(pool, model, profile) is not None


class FilterPlugin(Protocol):
    """One step of the filter chain."""

    name: str
    level: Level
    static: bool

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None: ...


def _per_model(pool: PoolArrays, reasons: list[int]) -> I8 | None:
    arr = np.asarray(reasons, dtype=np.int8)
    if not arr.any():
        return None
    out: I8 = arr[pool.dev_model]
    return out


class SelectorFilter:
    """Kind, vendor and model of the device against the request's selector."""

    name = "Selector"
    level: Level = "device"
    static = True

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        sel = request.selector
        if not (sel.kinds or sel.vendors or sel.models):
            return None
        reasons: list[int] = []
        for m, key in enumerate(pool.model_keys):
            kind = pool.model_kind[m] if m < len(pool.model_kind) else ""
            vendor = pool.model_vendor[m] if m < len(pool.model_vendor) else ""
            if sel.kinds and kind not in sel.kinds:
                reasons.append(Reason.KIND_MISMATCH)
            elif sel.vendors and vendor not in sel.vendors:
                reasons.append(Reason.VENDOR_MISMATCH)
            elif sel.models and key not in sel.models:
                reasons.append(Reason.MODEL_MISMATCH)
            else:
                reasons.append(Reason.OK)
        return _per_model(pool, reasons)


class SliceModeFilter:
    """Profiles only on profile-sliced devices whose model offers them; shares only on
    fraction-sliced devices (a profile device takes a share only as a whole device)."""

    name = "SliceMode"
    level: Level = "device"
    static = True

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        sliced = need.profile_sliced
        if request.profile is not None:
            offers = np.array(
                [offers_profile(pool, m, request.profile) for m in range(len(pool.model_keys))],
                dtype=np.bool_,
            )
            bad = ~sliced | ~offers[pool.dev_model]
        else:
            if not sliced.any():
                return None
            bad = sliced & (need.compute < WHOLE)
        if not bad.any():
            return None
        return np.where(bad, np.int8(Reason.PROFILE_UNSUPPORTED), np.int8(0)).astype(np.int8)


class DeviceSizeFilter:
    """A device smaller than the request (or the selector's minimum memory) never fits."""

    name = "DeviceSize"
    level: Level = "device"
    static = True

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        floor = request.selector.min_memory_mib
        bad = (pool.dev_mem_total < need.memory) | (pool.dev_mem_total < floor)
        if not bad.any():
            return None
        return np.where(bad, np.int8(Reason.DEVICE_TOO_SMALL), np.int8(0)).astype(np.int8)


class HostSizeFilter:
    """A host whose total CPU or memory is below the request never fits."""

    name = "HostSize"
    level: Level = "host"
    static = True

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        cpu, mem = request.host_cpu_milli, request.host_memory_mib
        if cpu <= 0 and mem <= 0:
            return None
        out = np.zeros(pool.n_hosts, dtype=np.int8)
        out[pool.host_mem_total < mem] = Reason.HOST_MEMORY_TOO_SMALL
        out[pool.host_cpu_total < cpu] = Reason.HOST_CPU_TOO_SMALL
        return out


class SchedulableFilter:
    """Unhealthy, cordoned or draining devices take nothing new."""

    name = "Schedulable"
    level: Level = "device"
    static = False

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        if pool.dev_schedulable.all():
            return None
        return np.where(pool.dev_schedulable, np.int8(0), np.int8(Reason.DEVICE_UNSCHEDULABLE)).astype(
            np.int8
        )


class DeviceCapacityFilter:
    """Free compute and memory on fraction devices; a free profile slot on profile devices.

    A whole-device request on a profile-sliced device needs the device wholly free.
    """

    name = "DeviceCapacity"
    level: Level = "device"
    static = False

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        out = np.where(
            pool.dev_compute_free < need.compute,
            np.int8(Reason.INSUFFICIENT_COMPUTE),
            np.where(pool.dev_mem_free < need.memory, np.int8(Reason.INSUFFICIENT_MEMORY), np.int8(0)),
        )
        if request.profile is not None and pool.profile_free:
            unavailable = np.ones(pool.n_devices, dtype=np.bool_)
            for dev, names in pool.profile_free.items():
                if request.profile in names:
                    unavailable[dev] = False
            out[unavailable & need.profile_sliced] = Reason.PROFILE_UNAVAILABLE
        return out


class HostResourcesFilter:
    """Free host CPU and memory (Kubernetes' NodeResourcesFit)."""

    name = "HostResources"
    level: Level = "host"
    static = False

    def filter(self, *, request: RequestView, pool: PoolArrays, need: Need, **kwargs: Any) -> I8 | None:
        cpu, mem = request.host_cpu_milli, request.host_memory_mib
        if cpu <= 0 and mem <= 0:
            return None
        out = np.zeros(pool.n_hosts, dtype=np.int8)
        out[pool.host_mem_free < mem] = Reason.INSUFFICIENT_HOST_MEMORY
        out[pool.host_cpu_free < cpu] = Reason.INSUFFICIENT_HOST_CPU
        return out


#: The default chain, static filters first.
DEFAULT_FILTERS: tuple[FilterPlugin, ...] = (
    SelectorFilter(),
    SliceModeFilter(),
    DeviceSizeFilter(),
    HostSizeFilter(),
    SchedulableFilter(),
    DeviceCapacityFilter(),
    HostResourcesFilter(),
)


def first_reason(current: I8, new: I8 | None) -> I8:
    """Keep each candidate's first rejection: fill ``new`` only where ``current`` is OK
    (in place: ``current`` must be a fresh array the caller owns)."""
    if new is not None:
        np.copyto(current, new, where=current == 0)
    return current


__all__ = [
    "DEFAULT_FILTERS",
    "DeviceCapacityFilter",
    "DeviceSizeFilter",
    "FilterPlugin",
    "HostResourcesFilter",
    "HostSizeFilter",
    "Level",
    "Need",
    "SchedulableFilter",
    "SelectorFilter",
    "SliceModeFilter",
    "compute_need",
    "first_reason",
    "is_cpu_only",
    "profile_sliced_mask",
]
