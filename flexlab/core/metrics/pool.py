"""The pool's Prometheus metrics, computed from the live objects: the ``SlicePool``, the Hi
loop, its warm planner and the recorder's counters (no Prometheus, no Dask).

:func:`collect` returns :class:`~flexlab.core.metrics.model.Family` objects; the Dask
plugin's collector translates them for ``prometheus_client``. ``docs/metrics.md`` lists every
family with its labels and how many series it has.

Label cardinality stays bounded (:class:`MetricLimits`):

* per device: one series per device and family (the pool's size);
* per slice: only while the pool has at most ``max_slice_series`` live slices (then one
  series per slice and device); above, none (the device series carry the sums);
* ``owner``: the ``max_owners`` owners holding the most leased compute (then by name);
  the rest are summed under ``owner="__other__"``;
* ``class``: the forecaster's request classes (kind x size bucket x priority), a fixed
  small set; ``reason``: placement's reason codes and a few of flexlab's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from flexlab.core.errors import InvalidRequest
from flexlab.core.metrics.activity import (
    counter_families,
    hi_families,
    runtime_families,
    stranded_families,
)
from flexlab.core.metrics.model import Family
from flexlab.core.metrics.recorder import WAIT_KINDS, MetricsRecorder
from flexlab.core.placement.framework import Explanation
from flexlab.core.placement.status import Code
from flexlab.core.pool.model import ENDED, LIVE, LeaseInfo, SliceInfo
from flexlab.core.request import SliceRequest

if TYPE_CHECKING:
    from flexlab.core.hiloop import HiLoop
    from flexlab.core.pool import SlicePool
    from flexlab.core.prewarm import WarmPlanner

MIB = 1 << 20
OTHER_OWNER = "__other__"
LEASE_STATES = ("pending", "active", "recovering", "released", "expired")
#: Reasons of waiting work besides placement's (``Reason`` names).
STARTING = "WORKER_STARTING"  # its slice is carved; its worker is starting
FITS_NOW = "FITS_NOW"  # it fits now and is bound on the next pass
NO_OPEN_WORKER = "NO_OPEN_WORKER"  # a plain task: every worker serves a lease or warm slice


@dataclass(frozen=True)
class MetricLimits:
    """Caps on label cardinality (``flexlab.metrics.*`` in the runtime's configuration)."""

    max_slice_series: int = 200
    max_owners: int = 20

    def __post_init__(self) -> None:
        if self.max_slice_series < 0:
            raise InvalidRequest("metrics.max-slice-series", self.max_slice_series, "an integer >= 0")
        if self.max_owners < 1:
            raise InvalidRequest("metrics.max-owners", self.max_owners, "an integer >= 1")


@dataclass
class RuntimeFacts:
    """What the runtime knows beyond the pool."""

    policy: str = ""
    plugin_errors: int = 0
    #: Host -> when its agent last called (seconds since the epoch).
    agents_last_seen: Mapping[str, float] = field(default_factory=dict)
    plain_waiting: int = 0
    hi: HiLoop | None = None
    warm: WarmPlanner | None = None


class WaitReasons:
    """Why a request waits, explained once per request and pool version (an explanation
    asks every device; waiting work shares a few requests)."""

    def __init__(self) -> None:
        self._version = -1
        self._cache: dict[SliceRequest, str] = {}

    def reason(self, pool: SlicePool, request: SliceRequest) -> str:
        if pool.table.version != self._version:
            self._cache.clear()
            self._version = pool.table.version
        r = self._cache.get(request)
        if r is None:
            r = self._cache[request] = dominant_reason(pool.explain(request))
        return str(r)


def dominant_reason(ex: Explanation) -> str:
    """The reason that kept the most candidates out, preferring those a release can lift."""
    if ex.code is Code.SUCCESS:
        return FITS_NOW
    counts = ex.reasons
    pick = {r: n for r, n in counts.items() if r.resolvable} or counts
    if not pick:
        return str(ex.code.value)
    return max(pick.items(), key=lambda kv: (kv[1], -int(kv[0])))[0].name


def collect(
    pool: SlicePool,
    recorder: MetricsRecorder,
    *,
    now: float,
    facts: RuntimeFacts | None = None,
    limits: MetricLimits | None = None,
    reasons: WaitReasons | None = None,
) -> list[Family]:
    """Every family of the pool's metrics, as of ``now``."""
    facts = facts or RuntimeFacts()
    limits = limits or MetricLimits()
    out: list[Family] = []
    out += _devices(pool)
    owner_of = _owner_labels(pool, limits.max_owners)
    out += _slices(pool, limits, owner_of)
    out += _owners(pool, owner_of)
    out += _waiting(pool, recorder, now, facts, reasons or WaitReasons())
    out += counter_families(recorder)
    out += hi_families(pool, now, hi=facts.hi, planner=facts.warm)
    out += stranded_families(pool)
    out += runtime_families(
        pool, policy=facts.policy, errors=facts.plugin_errors, agents_last_seen=facts.agents_last_seen
    )
    return out


def _held(s_lease: str | None, warm: str | None) -> bool:
    return s_lease is not None or warm is not None


def _devices(pool: SlicePool) -> list[Family]:
    led = pool.ledger
    arr = led.pool
    n = arr.n_devices
    alloc_c = np.zeros(n)
    alloc_m = np.zeros(n)
    used_c = np.zeros(n)
    used_m = np.zeros(n)
    for s in pool.slices.values():
        if s.state not in LIVE:
            continue
        if _held(s.lease_id, s.warm_for):
            c, m = float(s.compute_milli), float(s.memory_mib)
        else:  # a shared slice: what its tasks hold, memory in the same proportion
            c = float(min(max(s.load_milli, 0), s.compute_milli))
            m = s.memory_mib * c / s.compute_milli if s.compute_milli else 0.0
        u = s.utilisation * s.compute_milli
        for did in s.devices:
            i = led.device_index(did)
            alloc_c[i] += c
            alloc_m[i] += m
            used_c[i] += u
            used_m[i] += s.memory_used_mib
    labels = ("host", "device", "vendor", "model")
    fams = {
        "cap_c": Family(
            "flexlab_device_compute_capacity",
            "gauge",
            "Compute of the device in device-equivalents (1 = the whole device)",
            labels,
        ),
        "alloc_c": Family(
            "flexlab_device_compute_allocated",
            "gauge",
            "Compute held by leases, warm slices and tasks bound to shared slices, in device-equivalents",
            labels,
        ),
        "used_c": Family(
            "flexlab_device_compute_used",
            "gauge",
            "Compute in use by the device's slices (telemetry), in device-equivalents",
            labels,
        ),
        "cap_m": Family("flexlab_device_memory_capacity_bytes", "gauge", "Memory of the device", labels),
        "alloc_m": Family(
            "flexlab_device_memory_allocated_bytes",
            "gauge",
            "Device memory held by leases, warm slices and tasks bound to shared slices "
            "(a shared slice's memory in proportion to the compute its tasks hold)",
            labels,
        ),
        "used_m": Family(
            "flexlab_device_memory_used_bytes",
            "gauge",
            "Device memory in use by the device's slices (telemetry)",
            labels,
        ),
        "sched": Family(
            "flexlab_device_schedulable",
            "gauge",
            "1 when placement may use the device, 0 when it is cordoned or unhealthy",
            labels,
        ),
    }
    hosts = arr.host_names
    vendors, models = arr.model_vendor, arr.model_keys
    labs = [
        (hosts[h], did, vendors[k], models[k])
        for did, h, k in zip(led.device_ids(), arr.dev_host.tolist(), arr.dev_model.tolist(), strict=True)
    ]
    # one list per family, built at C speed (a pool of 1,000 devices has 7,000 of these)
    columns = {
        "cap_c": [1.0] * n,
        "alloc_c": (alloc_c / 1000).tolist(),
        "used_c": np.minimum(used_c / 1000, 1.0).tolist(),
        "cap_m": (arr.dev_mem_total * float(MIB)).tolist(),
        "alloc_m": (alloc_m * MIB).tolist(),
        "used_m": (used_m * MIB).tolist(),
        "sched": arr.dev_schedulable.astype(float).tolist(),
    }
    for key, column in columns.items():
        fams[key].samples = list(zip(labs, column, strict=True))
    hosts_f = Family("flexlab_hosts", "gauge", "Hosts registered in the pool")
    hosts_f.add((), float(arr.n_hosts))
    return [*fams.values(), hosts_f]


def _owner_labels(pool: SlicePool, cap: int) -> dict[str, str]:
    """Owner -> its label value: the ``cap`` owners holding the most, the rest ``__other__``."""
    held: Counter[str] = Counter()
    for lease in pool.leases.values():
        held[lease.owner] += 0
        s = pool.slices.get(lease.slice_id or "")
        if s is not None and lease.state not in ENDED:
            held[lease.owner] += s.compute_milli * len(s.devices)
    ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    return {o: (o if i < cap else OTHER_OWNER) for i, (o, _) in enumerate(ranked)}


def _holder(lease_id: str | None, warm: str | None) -> str:
    return "lease" if lease_id is not None else "warm" if warm is not None else "shared"


def _slices(pool: SlicePool, limits: MetricLimits, owner_of: dict[str, str]) -> list[Family]:
    live = [s for s in pool.slices.values() if s.state in LIVE]
    labels = ("host", "device", "slice", "vendor", "model", "holder", "owner")
    fams = [
        Family(
            "flexlab_slice_compute_capacity",
            "gauge",
            "Compute of the slice on the device, in device-equivalents",
            labels,
        ),
        Family(
            "flexlab_slice_compute_allocated",
            "gauge",
            "Compute of the slice held: all of it for a lease's or warm slice, what bound tasks "
            "hold for a shared one; device-equivalents",
            labels,
        ),
        Family(
            "flexlab_slice_compute_used",
            "gauge",
            "Compute the slice uses (telemetry), in device-equivalents",
            labels,
        ),
        Family("flexlab_slice_memory_capacity_bytes", "gauge", "Device memory of the slice", labels),
        Family(
            "flexlab_slice_memory_allocated_bytes",
            "gauge",
            "Device memory of the slice held: all of it for a lease's or warm slice, for a shared one "
            "in proportion to the compute its tasks hold",
            labels,
        ),
        Family(
            "flexlab_slice_memory_used_bytes", "gauge", "Device memory the slice uses (telemetry)", labels
        ),
        Family("flexlab_slice_tasks", "gauge", "Tasks bound to the slice (queued or running)", labels),
    ]
    count = Family("flexlab_slices", "gauge", "Live slices by holder (shared, lease, warm)", ("holder",))
    by_holder = Counter(_holder(s.lease_id, s.warm_for) for s in live)
    for h in ("shared", "lease", "warm"):
        count.add((h,), float(by_holder.get(h, 0)))
    if len(live) > limits.max_slice_series:
        return [count]
    for s in live:
        holder = _holder(s.lease_id, s.warm_for)
        owner = owner_of.get(s.owner or "", OTHER_OWNER) if holder == "lease" else ""
        cap = s.compute_milli / 1000
        held = cap if holder != "shared" else min(max(s.load_milli, 0), s.compute_milli) / 1000
        values = (
            cap,
            held,
            s.utilisation * cap,
            float(s.memory_mib * MIB),
            s.memory_mib * MIB * (held / cap if cap else 0.0),
            float(s.memory_used_mib * MIB),
            float(s.tasks),
        )
        for did in s.devices:
            lab = (s.host, did, s.slice_id, s.vendor, s.model, holder, owner)
            for f, v in zip(fams, values, strict=True):
                f.samples.append((lab, v))
    return [count, *fams]


def _owners(pool: SlicePool, owner_of: dict[str, str]) -> list[Family]:
    leased: dict[tuple[str, str], float] = {}
    busy: dict[tuple[str, str], float] = {}
    memory: dict[tuple[str, str], float] = {}
    states: Counter[tuple[str, str]] = Counter()
    by_state: Counter[str] = Counter()
    for lease in pool.leases.values():
        owner = owner_of.get(lease.owner, OTHER_OWNER)
        states[(owner, lease.state)] += 1
        by_state[lease.state] += 1
        s = _held_slice(pool, lease)
        if s is None:
            continue
        key = (owner, s.vendor)
        size = s.compute_milli * len(s.devices) / 1000
        leased[key] = leased.get(key, 0.0) + size
        busy[key] = busy.get(key, 0.0) + size * s.utilisation
        memory[key] = memory.get(key, 0.0) + s.memory_mib * len(s.devices) * MIB
    lab = ("owner", "vendor")
    f_leased = Family(
        "flexlab_owner_compute_leased",
        "gauge",
        "Compute held by the owner's leases (from when the slice is carved until the lease "
        "ends), in device-equivalents",
        lab,
    )
    f_busy = Family(
        "flexlab_owner_compute_busy",
        "gauge",
        "Compute the owner's leases use (telemetry), in device-equivalents",
        lab,
    )
    f_mem = Family(
        "flexlab_owner_memory_leased_bytes", "gauge", "Device memory held by the owner's leases", lab
    )
    for key in sorted(leased):
        f_leased.add(key, leased[key])
        f_busy.add(key, busy[key])
        f_mem.add(key, float(memory[key]))
    f_states = Family("flexlab_owner_leases", "gauge", "Leases of the owner by state", ("owner", "state"))
    for key in sorted(states):
        f_states.add(key, float(states[key]))
    f_all = Family(
        "flexlab_leases",
        "gauge",
        "Leases by state (ended ones stay for flexlab.lease.keep-ended)",
        ("state",),
    )
    for st in LEASE_STATES:
        f_all.add((st,), float(by_state.get(st, 0)))
    return [f_leased, f_busy, f_mem, f_states, f_all]


def _held_slice(pool: SlicePool, lease: LeaseInfo) -> SliceInfo | None:
    if lease.state in ENDED:
        return None
    return pool.slices.get(lease.slice_id or "")


def _waiting(
    pool: SlicePool, recorder: MetricsRecorder, now: float, facts: RuntimeFacts, reasons: WaitReasons
) -> list[Family]:
    counts: Counter[tuple[str, str]] = Counter()
    for req, _ in pool.pending.values():
        counts[("task", reasons.reason(pool, req))] += 1
    for lease in pool.leases.values():
        if lease.state not in ("pending", "recovering"):
            continue
        if lease.slice_id is not None and lease.slice_id in pool.slices:
            counts[("lease", STARTING)] += 1
        else:
            counts[("lease", reasons.reason(pool, lease.request))] += 1
    if facts.plain_waiting:
        counts[("plain_task", NO_OPEN_WORKER)] += facts.plain_waiting
    f = Family(
        "flexlab_waiting_work",
        "gauge",
        "Tasks and leases that wait, by kind and the reason that keeps the most devices out",
        ("kind", "reason"),
    )
    for key in sorted(counts):
        f.add(key, float(counts[key]))
    oldest = Family(
        "flexlab_waiting_oldest_seconds",
        "gauge",
        "How long the longest-waiting task or lease of each kind has waited (0: none waits)",
        ("kind",),
    )
    ages = recorder.oldest_wait(now)
    for kind in WAIT_KINDS:
        oldest.add((kind,), ages[kind])
    return [f, oldest]
