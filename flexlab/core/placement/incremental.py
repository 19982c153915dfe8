"""Change tracking for score plugins that cache per-host work between placements.

A ``PoolWatcher`` keeps a copy of the mutable arrays of the pool it last saw and, on each
``sync``, finds the hosts whose free capacity changed (whoever changed it: the ledger, the
simulator, a test). Each changed host gets a new tick; a cache entry computed at tick ``t``
is stale for exactly the hosts whose tick is above ``t``. After one placement only one host
is recomputed, which is what makes fragmentation-aware scoring cheap.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flexlab.core.snapshot import PoolArrays

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def host_device_matrix(pool: PoolArrays) -> I64:
    """Device indices per host, padded with -1: shape (hosts, max devices per host)."""
    counts = np.diff(pool.host_dev_start)
    width = max(int(counts.max(initial=0)), 1)
    mat = np.full((pool.n_hosts, width), -1, dtype=np.int64)
    col = np.arange(pool.n_devices) - pool.host_dev_start[pool.dev_host]
    mat[pool.dev_host, col] = np.arange(pool.n_devices)
    return mat


class PoolWatcher:
    """Which hosts changed since a tick. ``generation`` changes when the pool is replaced."""

    def __init__(self) -> None:
        self._ref: weakref.ReferenceType[PoolArrays] | None = None
        self.generation = 0
        self.tick = 0
        self.host_tick: I64 = np.zeros(0, dtype=np.int64)
        self.layout: I64 = np.zeros((0, 1), dtype=np.int64)
        self._cpu: I64 = np.zeros(0, dtype=np.int64)
        self._mem: I64 = np.zeros(0, dtype=np.int64)
        self._dev: I64 = np.zeros(0, dtype=np.int64)
        self._dmem: I64 = np.zeros(0, dtype=np.int64)
        self._sched = np.zeros(0, dtype=np.bool_)

    def _reset(self, pool: PoolArrays) -> None:
        self._ref = weakref.ref(pool)
        self.generation += 1
        self.tick = 1
        self.host_tick = np.ones(pool.n_hosts, dtype=np.int64)
        self.layout = host_device_matrix(pool)
        self._copy(pool)

    def _copy(self, pool: PoolArrays) -> None:
        self._cpu = pool.host_cpu_free.copy()
        self._mem = pool.host_mem_free.copy()
        self._dev = pool.dev_compute_free.copy()
        self._dmem = pool.dev_mem_free.copy()
        self._sched = pool.dev_schedulable.copy()

    def sync(self, pool: PoolArrays) -> I64:
        """Record the current state; return the hosts that changed since the last sync
        (all of them for a pool not seen before)."""
        if (
            self._ref is None
            or self._ref() is not pool
            or self._cpu.shape[0] != pool.n_hosts
            or self._dev.shape[0] != pool.n_devices
        ):
            self._reset(pool)
            return np.arange(pool.n_hosts, dtype=np.int64)
        dev_changed = (
            (pool.dev_compute_free != self._dev)
            | (pool.dev_mem_free != self._dmem)
            | (pool.dev_schedulable != self._sched)
        )
        host_changed = (pool.host_cpu_free != self._cpu) | (pool.host_mem_free != self._mem)
        devs = np.flatnonzero(dev_changed)
        if devs.size:
            host_changed[pool.dev_host[devs]] = True
        hosts = np.flatnonzero(host_changed).astype(np.int64)
        if hosts.size:
            self.tick += 1
            self.host_tick[hosts] = self.tick
            self._cpu[hosts] = pool.host_cpu_free[hosts]
            self._mem[hosts] = pool.host_mem_free[hosts]
            self._dev[devs] = pool.dev_compute_free[devs]
            self._dmem[devs] = pool.dev_mem_free[devs]
            self._sched[devs] = pool.dev_schedulable[devs]
        return hosts

    def stale_since(self, tick: int) -> I64:
        """Hosts changed after ``tick``."""
        return np.flatnonzero(self.host_tick > tick).astype(np.int64)

    def devices_of(self, hosts: I64) -> I64:
        """Device indices of ``hosts`` (in host order)."""
        rows = self.layout[hosts].ravel()
        out: I64 = rows[rows >= 0]
        return out


@dataclass
class CachedValues:
    """Per-candidate values of one request shape: ``values[i]`` was computed at tick
    ``computed[i]`` (0 = never) of watcher generation ``generation``."""

    values: F64
    computed: I64
    generation: int = -1

    @classmethod
    def empty(cls, size: int, generation: int) -> CachedValues:
        return cls(np.zeros(size), np.zeros(size, dtype=np.int64), generation)

    def stale(self, watcher: PoolWatcher, index: I64, host: I64) -> npt.NDArray[np.bool_]:
        """Which of the candidates ``index`` (on hosts ``host``) need computing again."""
        out: npt.NDArray[np.bool_] = watcher.host_tick[host] > self.computed[index]
        return out
