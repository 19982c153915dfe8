"""The pool as arrays: what placement reads and what the ledger mutates.

One ``PoolArrays`` holds every host and device of a pool in flat numpy arrays so that
filters and scores are evaluated for all candidates at once (thousands of devices in well
under a millisecond). The ledger owns the instance and updates it in place on every
reserve and release; placement only reads it.

Layout
------
Hosts are indexed ``0..H-1`` and devices ``0..D-1``. Devices are stored grouped by host:
the devices of host ``h`` are ``host_dev_start[h]:host_dev_start[h + 1]`` (CSR offsets), so
``dev_host`` is non-decreasing.

Units are the core's integers: compute in milli-units (1000 = one whole device), host CPU
in milli-cores, memory in MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
BoolArr = npt.NDArray[np.bool_]

#: A device's compute when wholly free.
WHOLE = 1000


@dataclass
class PoolArrays:
    """Capacity and free capacity of every host and device, as flat arrays."""

    host_names: list[str]
    host_cpu_total: I64
    host_cpu_free: I64
    host_mem_total: I64
    host_mem_free: I64
    #: CSR offsets, length H + 1.
    host_dev_start: I64

    #: Index of the host of each device (non-decreasing).
    dev_host: I32
    #: Index into ``model_keys`` of each device's catalog model.
    dev_model: I32
    dev_compute_free: I64
    dev_mem_total: I64
    dev_mem_free: I64
    #: False for a device that is unhealthy, cordoned or draining.
    dev_schedulable: BoolArr
    #: Catalog keys of the models present, indexed by ``dev_model``.
    model_keys: list[str]
    #: Device kind per model ("gpu", "npu", "mlu"), vendor per model.
    model_kind: list[str] = field(default_factory=list)
    model_vendor: list[str] = field(default_factory=list)
    #: Compute granularity per model in milli (100 = 10% steps); 0 = profile-sliced only.
    model_granularity: list[int] = field(default_factory=list)
    #: For profile-sliced devices (MIG, vNPU templates): device index -> the profile names
    #: that can be carved on it right now, given the instances it already holds. The ledger
    #: keeps this current. Devices absent from the map are fraction-sliced.
    profile_free: dict[int, frozenset[str]] = field(default_factory=dict)
    #: Per model: profile name -> (compute milli, memory MiB) it takes when carved. Empty
    #: for fraction-sliced models; a profile absent here is unsupported by the model. When
    #: the whole list is empty, placement trusts ``profile_free`` and the request's sizes.
    model_profiles: list[dict[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def n_hosts(self) -> int:
        return len(self.host_names)

    @property
    def n_devices(self) -> int:
        return int(self.dev_host.shape[0])

    def host_devices(self, host: int) -> range:
        """Device indices of one host."""
        return range(int(self.host_dev_start[host]), int(self.host_dev_start[host + 1]))

    def dev_whole_free(self) -> BoolArr:
        """Devices with nothing reserved on them."""
        whole: BoolArr = (self.dev_compute_free == WHOLE) & (self.dev_mem_free == self.dev_mem_total)
        return whole

    def host_whole_free_count(self) -> I64:
        """Number of wholly free, schedulable devices per host."""
        free = (self.dev_whole_free() & self.dev_schedulable).astype(np.int64)
        csum = np.concatenate(([0], np.cumsum(free)))
        return (csum[self.host_dev_start[1:]] - csum[self.host_dev_start[:-1]]).astype(np.int64)

    def copy(self) -> PoolArrays:
        """A deep copy of the mutable arrays (catalog lists are shared)."""
        return PoolArrays(
            host_names=self.host_names,
            host_cpu_total=self.host_cpu_total.copy(),
            host_cpu_free=self.host_cpu_free.copy(),
            host_mem_total=self.host_mem_total.copy(),
            host_mem_free=self.host_mem_free.copy(),
            host_dev_start=self.host_dev_start,
            dev_host=self.dev_host,
            dev_model=self.dev_model,
            dev_compute_free=self.dev_compute_free.copy(),
            dev_mem_total=self.dev_mem_total,
            dev_mem_free=self.dev_mem_free.copy(),
            dev_schedulable=self.dev_schedulable.copy(),
            model_keys=self.model_keys,
            model_kind=self.model_kind,
            model_vendor=self.model_vendor,
            model_granularity=self.model_granularity,
            profile_free=dict(self.profile_free),
            model_profiles=self.model_profiles,
        )
