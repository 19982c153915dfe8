"""The pool as a typed :class:`~flexlab.core.poolstate.PoolState`: what ``flexlab status``,
the REST API and the dashboards read.

The model and its wire format live in ``flexlab/core/poolstate/`` (documented in
``docs/wire.md``); this module only reads the ``SlicePool`` into it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from flexlab.core.catalog import CATALOG
from flexlab.core.placement.live import fixed_state
from flexlab.core.pool import LeaseInfo, SlicePool
from flexlab.core.poolstate import (
    DeviceState,
    HiState,
    HostState,
    LeaseView,
    PluginInfo,
    PolicyState,
    PoolEvent,
    PoolState,
    SliceState,
    WaitingWork,
    from_json,
    to_json,
    vendor_name,
)
from flexlab.core.topology import DeviceSpec, HostSpec


def host_to_dict(spec: HostSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cpu_milli": spec.cpu_milli,
        "memory_mib": spec.memory_mib,
        "address": spec.address,
        "devices": [
            {"model": d.model, "index": d.index, "uuid": d.uuid, "mode": d.mode, "memory_mib": d.memory_mib}
            for d in spec.devices
        ],
    }


def host_from_dict(d: dict[str, Any]) -> HostSpec:
    return HostSpec(
        name=str(d["name"]),
        cpu_milli=int(d.get("cpu_milli", 0)),
        memory_mib=int(d.get("memory_mib", 0)),
        address=str(d.get("address", "")),
        devices=tuple(
            DeviceSpec(
                model=str(x["model"]),
                index=int(x.get("index", 0)),
                uuid=str(x.get("uuid", "")),
                mode=str(x.get("mode", "fraction")),
                memory_mib=x.get("memory_mib"),
            )
            for x in d.get("devices", [])
        ),
    )


def lease_view(pool: SlicePool, lease: LeaseInfo) -> LeaseView:
    s = pool.slices.get(lease.slice_id or "")
    return LeaseView(
        lease_id=lease.lease_id,
        owner=lease.owner,
        request=lease.request.describe(),
        state=lease.state,
        reason=lease.reason,
        priority=lease.priority,
        ttl_s=float(lease.ttl_s),
        created=float(lease.created),
        expires_at=float(lease.expires_at),
        ttl_left_s=max(0.0, lease.expires_at - pool.clock()),
        slice_id=lease.slice_id,
        host=s.host if s else None,
        devices=tuple(s.devices) if s else (),
        model=s.model if s else None,
        compute_milli=s.compute_milli if s else None,
        memory_mib=s.memory_mib if s else None,
        profile=s.profile if s else None,
        utilisation=float(s.utilisation) if s else 0.0,
        memory_used_mib=int(s.memory_used_mib) if s else 0,
        policy=getattr(s, "policy", None) if s else None,
        worker=s.worker if s else None,
        resource=lease.resource,
        preemptions=lease.preemptions,
        private=lease.private is not None,
    )


def lease_dict(pool: SlicePool, lease: LeaseInfo) -> dict[str, Any]:
    """A lease's wire JSON (what the ``flexlab_lease_*`` handlers answer)."""
    out: dict[str, Any] = to_json(lease_view(pool, lease))
    # A private lease's worker joins its owner's scheduler (flexlab_dask.private): its
    # address, never a credential. (Not in LeaseView: readers of the typed view ignore it.)
    if lease.private is not None:
        out["scheduler"] = lease.private
    return out


def policy_state(pool: SlicePool) -> PolicyState:
    """The placement policy and what it learned (``LivePolicy.state()``); a pool that places
    with a fixed profile reports its name and nothing learned."""
    live = getattr(pool, "live_policy", None)
    if live is not None:
        raw: dict[str, Any] = live.state()
    else:
        profile = getattr(pool, "profile", None)
        raw = fixed_state(str(getattr(profile, "name", "") or ""))
    return from_json(PolicyState, raw, "policy")


def build_pool_state(
    pool: SlicePool,
    *,
    waiting: Iterable[WaitingWork] = (),
    plugin: PluginInfo | None = None,
    hi: Mapping[str, Any] | None = None,
    forecast: Mapping[str, Iterable[tuple[float, float]]] | None = None,
) -> PoolState:
    """Hosts, devices with their slices, leases and recent events; with the plugin's waiting
    work, health, Hi loop and forecast when it passes them."""
    led = pool.ledger
    arr = led.pool
    by_device: dict[str, list[SliceState]] = {}
    for s in pool.slices.values():
        entry = SliceState(
            slice_id=s.slice_id,
            compute_milli=s.compute_milli,
            memory_mib=s.memory_mib,
            profile=s.profile,
            lease_id=s.lease_id,
            owner=s.owner,
            warm_for=s.warm_for,
            state=s.state,
            worker=s.worker,
            tasks=s.tasks,
            load_milli=s.load_milli,
            utilisation=round(float(s.utilisation), 4),
            memory_used_mib=int(s.memory_used_mib),
            # the policy that placed it (None where the pool does not record it)
            policy=getattr(s, "policy", None),
        )
        for did in s.devices:
            by_device.setdefault(did, []).append(entry)
    hosts = []
    for h, spec in led.hosts.items():
        hi_ = arr.host_names.index(h)
        devices = []
        for dev in sorted(spec.devices, key=lambda d: (d.model, d.index)):
            did = spec.device_id(dev)
            i = led.device_index(did)
            m = CATALOG[dev.model]
            slices = by_device.get(did, [])
            util = sum(x.utilisation * x.compute_milli / 1000 for x in slices)
            devices.append(
                DeviceState(
                    id=did,
                    model=m.key,
                    name=m.name,
                    vendor=m.vendor,
                    kind=m.kind,
                    index=dev.index,
                    mode=dev.mode,
                    memory_mib=int(arr.dev_mem_total[i]),
                    free_compute_milli=int(arr.dev_compute_free[i]),
                    free_memory_mib=int(arr.dev_mem_free[i]),
                    schedulable=bool(arr.dev_schedulable[i]),
                    utilisation=round(min(1.0, util), 4),
                    memory_used_mib=sum(x.memory_used_mib for x in slices),
                    free_profiles=tuple(sorted(arr.profile_free.get(i, ()))),
                    granularity_milli=m.granularity_milli,
                    profiles=tuple(p.name for p in m.profiles) if dev.mode == "profile" else (),
                    slices=tuple(slices),
                    vendor_name=vendor_name(m.vendor),
                )
            )
        hosts.append(
            HostState(
                name=h,
                address=spec.address,
                cpu_milli=spec.cpu_milli,
                memory_mib=spec.memory_mib,
                free_cpu_milli=int(arr.host_cpu_free[hi_]),
                free_memory_mib=int(arr.host_mem_free[hi_]),
                devices=tuple(devices),
            )
        )
    return PoolState(
        time=time.time(),
        hosts=tuple(hosts),
        leases=tuple(
            lease_view(pool, le) for le in pool.leases.values() if le.state not in ("released", "expired")
        ),
        events=tuple(
            PoolEvent(
                seq=e.seq,
                time=float(e.time),
                kind=e.kind,
                message=e.message,
                owner=e.owner,
                lease_id=e.lease_id,
                slice_id=e.slice_id,
                host=e.host,
                decision_id=e.decision_id,
            )
            for e in list(pool.events)[-50:]
        ),
        waiting=tuple(waiting),
        policy=policy_state(pool),
        plugin=plugin,
        hi=from_json(HiState, dict(hi), "hi") if hi is not None else None,
        forecast={k: tuple((float(t), float(v)) for t, v in pts) for k, pts in (forecast or {}).items()},
    )


def pool_state(pool: SlicePool) -> dict[str, Any]:
    """The bare pool's wire JSON (no plugin, Hi loop or waiting work)."""
    return {"status": "OK", **build_pool_state(pool).to_json()}
