"""The pool as JSON: what ``flexlab status``, the REST API and the dashboards read.

This is the wire contract of the pool state; field names are stable and documented in
``docs/wire.md``.
"""

from __future__ import annotations

import time
from typing import Any

from flexlab.core.catalog import CATALOG
from flexlab.core.placement.live import fixed_state
from flexlab.core.pool import LeaseInfo, SlicePool
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


def lease_dict(pool: SlicePool, lease: LeaseInfo) -> dict[str, Any]:
    s = pool.slices.get(lease.slice_id or "")
    return {
        "lease_id": lease.lease_id,
        "owner": lease.owner,
        "request": lease.request.describe(),
        "state": lease.state,
        "reason": lease.reason,
        "priority": lease.priority,
        "ttl_s": lease.ttl_s,
        "created": lease.created,
        "expires_at": lease.expires_at,
        "ttl_left_s": max(0.0, lease.expires_at - pool.clock()),
        "slice_id": lease.slice_id,
        "host": s.host if s else None,
        "devices": list(s.devices) if s else [],
        "model": s.model if s else None,
        "compute_milli": s.compute_milli if s else None,
        "memory_mib": s.memory_mib if s else None,
        "profile": s.profile if s else None,
        "worker": s.worker if s else None,
        "utilisation": s.utilisation if s else 0.0,
        "memory_used_mib": s.memory_used_mib if s else 0,
        "resource": lease.resource,
        "preemptions": lease.preemptions,
        "policy": getattr(s, "policy", None) if s else None,
    }


def policy_state(pool: SlicePool) -> dict[str, Any]:
    """The placement policy and what it learned (``LivePolicy.state()``); a pool that places
    with a fixed profile reports its name and nothing learned."""
    live = getattr(pool, "live_policy", None)
    if live is not None:
        state: dict[str, Any] = live.state()
        return state
    profile = getattr(pool, "profile", None)
    return fixed_state(str(getattr(profile, "name", "") or ""))


def pool_state(pool: SlicePool) -> dict[str, Any]:
    """Hosts, devices with their slices, leases and recent events, as plain JSON."""
    led = pool.ledger
    arr = led.pool
    by_device: dict[str, list[dict[str, Any]]] = {}
    for s in pool.slices.values():
        entry = {
            "slice_id": s.slice_id,
            "compute_milli": s.compute_milli,
            "memory_mib": s.memory_mib,
            "profile": s.profile,
            "lease_id": s.lease_id,
            "owner": s.owner,
            "warm_for": s.warm_for,
            "state": s.state,
            "worker": s.worker,
            "tasks": s.tasks,
            "load_milli": s.load_milli,
            "utilisation": round(s.utilisation, 4),
            "memory_used_mib": s.memory_used_mib,
            # the policy that placed it (None where the pool does not record it)
            "policy": getattr(s, "policy", None),
        }
        for did in s.devices:
            by_device.setdefault(did, []).append(entry)
    hosts = []
    for h, spec in led.hosts.items():
        hi = arr.host_names.index(h)
        devices = []
        for dev in sorted(spec.devices, key=lambda d: (d.model, d.index)):
            did = spec.device_id(dev)
            i = led.device_index(did)
            m = CATALOG[dev.model]
            slices = by_device.get(did, [])
            util = sum(x["utilisation"] * x["compute_milli"] / 1000 for x in slices)
            devices.append(
                {
                    "id": did,
                    "model": m.key,
                    "name": m.name,
                    "vendor": m.vendor,
                    "kind": m.kind,
                    "index": dev.index,
                    "mode": dev.mode,
                    "memory_mib": int(arr.dev_mem_total[i]),
                    "free_compute_milli": int(arr.dev_compute_free[i]),
                    "free_memory_mib": int(arr.dev_mem_free[i]),
                    "schedulable": bool(arr.dev_schedulable[i]),
                    "utilisation": round(min(1.0, util), 4),
                    "memory_used_mib": sum(x["memory_used_mib"] for x in slices),
                    "free_profiles": sorted(arr.profile_free.get(i, ())),
                    "granularity_milli": m.granularity_milli,
                    "profiles": [p.name for p in m.profiles] if dev.mode == "profile" else [],
                    "slices": slices,
                }
            )
        hosts.append(
            {
                "name": h,
                "address": spec.address,
                "cpu_milli": spec.cpu_milli,
                "memory_mib": spec.memory_mib,
                "free_cpu_milli": int(arr.host_cpu_free[hi]),
                "free_memory_mib": int(arr.host_mem_free[hi]),
                "devices": devices,
            }
        )
    return {
        "status": "OK",
        "time": time.time(),
        "hosts": hosts,
        "leases": [
            lease_dict(pool, le) for le in pool.leases.values() if le.state not in ("released", "expired")
        ],
        "events": [vars(e) for e in list(pool.events)[-50:]],
        "waiting": [],
        "policy": policy_state(pool),
    }
