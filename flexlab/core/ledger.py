"""The ledger: the one place where capacity is reserved and released.

Invariants that never break (checked before any change, so a refused call changes
nothing; ``check_invariants`` verifies them from scratch):

* per device, reserved compute <= 1000 milli and reserved memory <= its memory;
* a profile-mode device holds only a valid combination of its model's profiles;
* a fraction-mode device holds no profile instance, and a profile-mode device only
  profile instances or one whole-device reservation;
* per host, reserved CPU and RAM <= the host's;
* ``release`` is idempotent: releasing an unknown or already released id is a no-op.

The ledger keeps the pool as flat arrays (``PoolArrays``) that placement reads directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from flexlab.core.catalog import DeviceModel, get_model
from flexlab.core.errors import InvalidRequest, LedgerConflict, UnknownName
from flexlab.core.slicing import Layout, find_start, free_profiles, is_valid
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.core.topology import FRACTION, PROFILE, DeviceSpec, HostSpec, device_id


@dataclass(frozen=True)
class SliceGrant:
    """One slice of one device inside an allocation."""

    device: str  # pool-wide device id, "host/model#index"
    compute_milli: int
    memory_mib: int
    profile: str | None = None
    #: MIG start slot of a profile instance (-1 when the model has no slot rule).
    start: int = -1


@dataclass(frozen=True)
class Allocation:
    """Capacity held by one owner on one host: device slices plus host CPU and RAM."""

    alloc_id: str
    host: str
    slices: tuple[SliceGrant, ...]
    host_cpu_milli: int = 0
    host_memory_mib: int = 0
    owner: str | None = None
    decision_id: str = ""
    request: str = ""


def default_memory_mib(compute_milli: int, total_memory_mib: int) -> int:
    """Device memory given with a share when the request names none: the same share."""
    return -(-compute_milli * total_memory_mib // WHOLE)


def round_compute(compute_milli: int, granularity_milli: int) -> int:
    """Round a share up to the device's slicing step (10% steps: 250 -> 300)."""
    if granularity_milli <= 1:
        return compute_milli
    return min(WHOLE, -(-compute_milli // granularity_milli) * granularity_milli)


@dataclass
class _DeviceState:
    spec: DeviceSpec
    host: str
    model: DeviceModel
    index: int  # position in the arrays
    grants: dict[str, SliceGrant] = field(default_factory=dict)  # alloc_id -> grant
    schedulable: bool = True

    @property
    def layout(self) -> Layout:
        return tuple((g.profile, g.start) for g in self.grants.values() if g.profile is not None)


class Ledger:
    """Reserve and release capacity on a pool of hosts and devices."""

    def __init__(self, hosts: Iterable[HostSpec] = ()) -> None:
        self._hosts: dict[str, HostSpec] = {}
        self._devices: dict[str, _DeviceState] = {}
        self._allocs: dict[str, Allocation] = {}
        self._ids = itertools.count(1)
        self.pool = _empty_pool()
        for h in hosts:
            self._hosts[h.name] = h
        self._rebuild()

    # -- topology ---------------------------------------------------------------------
    @property
    def hosts(self) -> dict[str, HostSpec]:
        return dict(self._hosts)

    def add_host(self, spec: HostSpec) -> None:
        """Add a host, or replace its spec (allocations on devices that remain are kept;
        a changed device list must not drop a device that holds an allocation)."""
        if spec.name in self._hosts:
            keep = {device_id(spec.name, d) for d in spec.devices}
            busy = [
                a.alloc_id
                for a in self._allocs.values()
                if a.host == spec.name and any(g.device not in keep for g in a.slices)
            ]
            if busy:
                raise LedgerConflict(f"host {spec.name!r}: new spec drops devices held by {busy}")
        self._hosts[spec.name] = spec
        self._rebuild()

    def remove_host(self, name: str) -> list[Allocation]:
        """Remove a host; its allocations are released and returned."""
        if name not in self._hosts:
            raise UnknownName("host", name, self._hosts)
        dropped = [a for a in self._allocs.values() if a.host == name]
        for a in dropped:
            del self._allocs[a.alloc_id]
        del self._hosts[name]
        self._rebuild()
        return dropped

    def device_ids(self) -> list[str]:
        return list(self._devices)

    def device_spec(self, dev: str) -> DeviceSpec:
        return self._state(dev).spec

    def device_index(self, dev: str) -> int:
        return self._state(dev).index

    def device_at(self, index: int) -> str:
        return self._order[index]

    def set_schedulable(self, dev: str, schedulable: bool) -> None:
        """Cordon (False) or uncordon a device; allocations on it are untouched."""
        st = self._state(dev)
        st.schedulable = schedulable
        self.pool.dev_schedulable[st.index] = schedulable

    def _state(self, dev: str) -> _DeviceState:
        try:
            return self._devices[dev]
        except KeyError:
            raise UnknownName("device", dev, self._devices) from None

    def _rebuild(self) -> None:
        old = self._devices
        self._devices = {}
        self._order: list[str] = []
        for host in self._hosts.values():
            for spec in sorted(host.devices, key=lambda d: (d.model, d.index)):
                did = device_id(host.name, spec)
                prev = old.get(did)
                self._devices[did] = _DeviceState(
                    spec=spec,
                    host=host.name,
                    model=spec.catalog,
                    index=len(self._order),
                    schedulable=prev.schedulable if prev else True,
                )
                self._order.append(did)
        self.pool = _build_pool(list(self._hosts.values()), self._devices, self._order)
        self._host_pos = {name: i for i, name in enumerate(self.pool.host_names)}
        for a in self._allocs.values():
            self._apply(a, +1)

    # -- reserve / release ------------------------------------------------------------
    def new_id(self, prefix: str = "a") -> str:
        while True:
            aid = f"{prefix}{next(self._ids)}"
            if aid not in self._allocs:
                return aid

    def reserve(
        self,
        *,
        host: str,
        devices: Sequence[str] = (),
        compute_milli: int = WHOLE,
        memory_mib: int = 0,
        profile: str | None = None,
        host_cpu_milli: int = 0,
        host_memory_mib: int = 0,
        owner: str | None = None,
        decision_id: str = "",
        request: str = "",
        alloc_id: str | None = None,
        start: int | None = None,
    ) -> Allocation:
        """Reserve ``compute_milli``/``memory_mib`` (or ``profile``) on each of ``devices``
        plus host CPU and RAM, all or nothing. ``memory_mib`` 0 means the same share of the
        device's memory as of its compute. Raises ``InvalidRequest``, ``UnknownName`` or
        ``LedgerConflict`` and changes nothing when it cannot."""
        if host not in self._hosts:
            raise UnknownName("host", host, self._hosts)
        if alloc_id is not None and alloc_id in self._allocs:
            raise LedgerConflict(f"allocation id {alloc_id!r} is already in use")
        if len(set(devices)) != len(devices):
            raise InvalidRequest("devices", list(devices), "distinct devices")
        if not 0 <= compute_milli <= WHOLE:
            raise InvalidRequest("compute", compute_milli, f"0..{WHOLE} milli")
        if memory_mib < 0:
            raise InvalidRequest("memory", memory_mib, ">= 0 MiB")
        if host_cpu_milli < 0 or host_memory_mib < 0:
            raise InvalidRequest("host resources", (host_cpu_milli, host_memory_mib), ">= 0")
        hidx = self._host_pos[host]
        if host_cpu_milli > self.pool.host_cpu_free[hidx]:
            raise LedgerConflict(
                f"{host}: {host_cpu_milli}m CPU asked, {int(self.pool.host_cpu_free[hidx])}m free"
            )
        if host_memory_mib > self.pool.host_mem_free[hidx]:
            raise LedgerConflict(
                f"{host}: {host_memory_mib} MiB RAM asked, {int(self.pool.host_mem_free[hidx])} MiB free"
            )
        if profile is not None and len(devices) > 1:
            raise InvalidRequest("devices", list(devices), "one device for a profile instance")
        grants = tuple(self._grant(host, d, compute_milli, memory_mib, profile, start) for d in devices)
        if not devices and compute_milli not in (0, WHOLE):
            raise InvalidRequest("devices", [], "at least one device for a device share")
        alloc = Allocation(
            alloc_id=alloc_id or self.new_id(),
            host=host,
            slices=grants,
            host_cpu_milli=host_cpu_milli,
            host_memory_mib=host_memory_mib,
            owner=owner,
            decision_id=decision_id,
            request=request,
        )
        self._allocs[alloc.alloc_id] = alloc
        self._apply(alloc, +1)
        return alloc

    def _grant(
        self, host: str, dev: str, compute: int, memory: int, profile: str | None, start: int | None
    ) -> SliceGrant:
        st = self._state(dev)
        if st.host != host:
            raise InvalidRequest("devices", dev, f"devices of host {host!r}")
        i = st.index
        free_c = int(self.pool.dev_compute_free[i])
        free_m = int(self.pool.dev_mem_free[i])
        total_m = int(self.pool.dev_mem_total[i])
        if profile is not None:
            if st.spec.mode != PROFILE:
                raise LedgerConflict(
                    f"{dev} is fraction-sliced; profile {profile!r} needs a profile-mode device"
                )
            prof = st.model.profile(profile)
            if any(g.profile is None for g in st.grants.values()):
                raise LedgerConflict(f"{dev} is held whole")
            slot = find_start(st.model, st.layout, prof)
            if start is not None and start != slot:
                # A restored instance keeps the slot it had; check it there.
                slot = start if is_valid(st.model, (*st.layout, (profile, start))) else None
            if slot is None:
                raise LedgerConflict(
                    f"{dev}: profile {profile} does not fit beside {[p for p, _ in st.layout]}"
                )
            need_c = st.model.profile_milli(prof)
            need_m = min(prof.memory_mib, total_m)
            return SliceGrant(dev, need_c, need_m, profile, slot)
        if st.spec.mode == PROFILE and compute != WHOLE:
            raise LedgerConflict(f"{dev} is profile-sliced ({st.model.key}); ask for one of its profiles")
        need_c = round_compute(compute, max(st.model.granularity_milli, 1))
        need_m = memory or (total_m if need_c == WHOLE else default_memory_mib(need_c, total_m))
        if need_c == WHOLE and memory == 0:
            need_m = total_m
        if need_c > free_c:
            raise LedgerConflict(f"{dev}: {need_c} milli asked, {free_c} free")
        if need_m > free_m:
            raise LedgerConflict(f"{dev}: {need_m} MiB asked, {free_m} MiB free")
        return SliceGrant(dev, need_c, need_m, None, -1)

    def reinstate(self, alloc: Allocation) -> Allocation:
        """Reserve a released allocation again exactly as it was: same id, devices, sizes
        per device and profile slots (a reservation that gave back room it did not need).
        Raises ``LedgerConflict`` and changes nothing when it no longer fits."""
        if alloc.alloc_id in self._allocs:
            raise LedgerConflict(f"allocation id {alloc.alloc_id!r} is already in use")
        if alloc.host not in self._hosts:
            raise UnknownName("host", alloc.host, self._hosts)
        hidx = self._host_pos[alloc.host]
        if (
            alloc.host_cpu_milli > self.pool.host_cpu_free[hidx]
            or alloc.host_memory_mib > self.pool.host_mem_free[hidx]
        ):
            raise LedgerConflict(f"{alloc.host}: no room for {alloc.alloc_id}'s CPU and RAM any more")
        for g in alloc.slices:  # each device as it was (several devices may differ in memory)
            got = self._grant(
                alloc.host, g.device, g.compute_milli, g.memory_mib, g.profile, g.start if g.profile else None
            )
            if got != g:
                raise LedgerConflict(f"{g.device}: {alloc.alloc_id} would come back as {got}, not {g}")
        self._allocs[alloc.alloc_id] = alloc
        self._apply(alloc, +1)
        return alloc

    def release(self, alloc_id: str) -> Allocation | None:
        """Release an allocation; returns it, or None if it was unknown or already released."""
        alloc = self._allocs.pop(alloc_id, None)
        if alloc is not None:
            self._apply(alloc, -1)
        return alloc

    def _apply(self, alloc: Allocation, sign: int) -> None:
        self._count(self.pool, alloc, sign)
        for g in alloc.slices:
            st = self._devices[g.device]
            if sign > 0:
                st.grants[alloc.alloc_id] = g
            else:
                st.grants.pop(alloc.alloc_id, None)
            if st.spec.mode == PROFILE:
                self.pool.profile_free[st.index] = _profile_free(st, st.grants.values())

    def _count(self, pool: PoolArrays, alloc: Allocation, sign: int) -> None:
        """Add (``sign`` -1: give back) an allocation's sizes to ``pool``'s free arrays."""
        hidx = self._host_pos[alloc.host]
        pool.host_cpu_free[hidx] -= sign * alloc.host_cpu_milli
        pool.host_mem_free[hidx] -= sign * alloc.host_memory_mib
        for g in alloc.slices:
            i = self._devices[g.device].index
            pool.dev_compute_free[i] -= sign * g.compute_milli
            pool.dev_mem_free[i] -= sign * g.memory_mib

    def pool_without(self, alloc_ids: Iterable[str]) -> PoolArrays:
        """A copy of the pool arrays as they would be with ``alloc_ids`` released (unknown
        ids are skipped), to ask placement "what if". The ledger itself does not change."""
        allocs, devices, host_pos = self._allocs, self._devices, self._host_pos
        gone = {a for a in alloc_ids if a in allocs}
        pool = self.pool.copy()
        # Gathered first and added in one go: a what-if that gives back every idle slice
        # of a large pool (thousands) is asked for each lease.
        dev: list[int] = []
        compute: list[int] = []
        memory: list[int] = []
        hosts: list[tuple[int, int, int]] = []
        touched: dict[str, _DeviceState] = {}
        for aid in gone:
            alloc = allocs[aid]
            if alloc.host_cpu_milli or alloc.host_memory_mib:
                hosts.append((host_pos[alloc.host], alloc.host_cpu_milli, alloc.host_memory_mib))
            for g in alloc.slices:
                st = devices[g.device]
                dev.append(st.index)
                compute.append(g.compute_milli)
                memory.append(g.memory_mib)
                if st.spec.mode == PROFILE:
                    touched[g.device] = st
        if dev:
            np.add.at(pool.dev_compute_free, dev, compute)
            np.add.at(pool.dev_mem_free, dev, memory)
        for h, cpu, mem in hosts:
            pool.host_cpu_free[h] += cpu
            pool.host_mem_free[h] += mem
        for st in touched.values():
            kept = [g for a, g in st.grants.items() if a not in gone]
            pool.profile_free[st.index] = _profile_free(st, kept)
        return pool

    # -- reading ------------------------------------------------------------------------
    def get(self, alloc_id: str) -> Allocation:
        try:
            return self._allocs[alloc_id]
        except KeyError:
            raise UnknownName("allocation", alloc_id) from None

    def __contains__(self, alloc_id: object) -> bool:
        return alloc_id in self._allocs

    def allocations(self) -> list[Allocation]:
        return list(self._allocs.values())

    def grants_on(self, dev: str) -> dict[str, SliceGrant]:
        """alloc_id -> grant of everything held on one device."""
        return dict(self._state(dev).grants)

    def layout(self, dev: str) -> Layout:
        return self._state(dev).layout

    def check_invariants(self) -> None:
        """Recompute every total from the allocations; raise ``LedgerConflict`` on a breach."""
        p = self.pool
        for did, st in self._devices.items():
            used_c = sum(g.compute_milli for g in st.grants.values())
            used_m = sum(g.memory_mib for g in st.grants.values())
            i = st.index
            if used_c > WHOLE or used_m > int(p.dev_mem_total[i]):
                raise LedgerConflict(f"{did} over-committed: {used_c} milli, {used_m} MiB")
            if WHOLE - used_c != p.dev_compute_free[i] or p.dev_mem_total[i] - used_m != p.dev_mem_free[i]:
                raise LedgerConflict(f"{did}: arrays disagree with grants")
            if st.spec.mode == FRACTION and st.layout:
                raise LedgerConflict(f"{did}: profile instances on a fraction-mode device")
            if st.spec.mode == PROFILE and not is_valid(st.model, st.layout):
                raise LedgerConflict(f"{did}: invalid profile layout {st.layout}")
        for hidx, name in enumerate(p.host_names):
            cpu = sum(a.host_cpu_milli for a in self._allocs.values() if a.host == name)
            mem = sum(a.host_memory_mib for a in self._allocs.values() if a.host == name)
            if cpu > p.host_cpu_total[hidx] or mem > p.host_mem_total[hidx]:
                raise LedgerConflict(f"host {name} over-committed")
            if p.host_cpu_total[hidx] - cpu != p.host_cpu_free[hidx]:
                raise LedgerConflict(f"host {name}: arrays disagree with allocations")


def _profile_free(st: _DeviceState, grants: Iterable[SliceGrant]) -> frozenset[str]:
    """Profiles a profile-mode device can still take beside ``grants`` (none when held whole)."""
    held = list(grants)
    if any(g.profile is None for g in held):
        return frozenset()
    return free_profiles(st.model, tuple((g.profile, g.start) for g in held if g.profile is not None))


def _empty_pool() -> PoolArrays:
    z = np.zeros(0, dtype=np.int64)
    return PoolArrays(
        host_names=[],
        host_cpu_total=z,
        host_cpu_free=z.copy(),
        host_mem_total=z.copy(),
        host_mem_free=z.copy(),
        host_dev_start=np.zeros(1, dtype=np.int64),
        dev_host=np.zeros(0, dtype=np.int32),
        dev_model=np.zeros(0, dtype=np.int32),
        dev_compute_free=z.copy(),
        dev_mem_total=z.copy(),
        dev_mem_free=z.copy(),
        dev_schedulable=np.zeros(0, dtype=np.bool_),
        model_keys=[],
    )


def _build_pool(hosts: list[HostSpec], devices: dict[str, _DeviceState], order: list[str]) -> PoolArrays:
    model_keys: list[str] = []
    model_pos: dict[str, int] = {}
    dev_host = np.zeros(len(order), dtype=np.int32)
    dev_model = np.zeros(len(order), dtype=np.int32)
    dev_mem = np.zeros(len(order), dtype=np.int64)
    sched = np.ones(len(order), dtype=np.bool_)
    host_pos = {h.name: i for i, h in enumerate(hosts)}
    starts = np.zeros(len(hosts) + 1, dtype=np.int64)
    profile_free: dict[int, frozenset[str]] = {}
    for i, did in enumerate(order):
        st = devices[did]
        if st.model.key not in model_pos:
            model_pos[st.model.key] = len(model_keys)
            model_keys.append(st.model.key)
        dev_host[i] = host_pos[st.host]
        dev_model[i] = model_pos[st.model.key]
        dev_mem[i] = st.spec.total_memory_mib
        sched[i] = st.schedulable
        starts[host_pos[st.host] + 1] += 1
        if st.spec.mode == PROFILE:
            profile_free[i] = free_profiles(st.model, ())
    models = [get_model(k) for k in model_keys]
    return PoolArrays(
        host_names=[h.name for h in hosts],
        host_cpu_total=np.array([h.cpu_milli for h in hosts], dtype=np.int64),
        host_cpu_free=np.array([h.cpu_milli for h in hosts], dtype=np.int64),
        host_mem_total=np.array([h.memory_mib for h in hosts], dtype=np.int64),
        host_mem_free=np.array([h.memory_mib for h in hosts], dtype=np.int64),
        host_dev_start=np.cumsum(starts),
        dev_host=dev_host,
        dev_model=dev_model,
        dev_compute_free=np.full(len(order), WHOLE, dtype=np.int64),
        dev_mem_total=dev_mem,
        dev_mem_free=dev_mem.copy(),
        dev_schedulable=sched,
        model_keys=model_keys,
        model_kind=[m.kind for m in models],
        model_vendor=[m.vendor for m in models],
        model_granularity=[m.granularity_milli for m in models],
        profile_free=profile_free,
    )
