"""The pool state's model: frozen dataclasses, each field with what it means (the comment
after it, which ``docs/wire.md`` and the REST models repeat). The wire names are the field
names unless a field's ``metadata["wire"]`` says otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from flexlab.core.poolstate.codec import decoder, encode
from flexlab.core.poolstate.menu import MenuChoice, device_menu, vendor_name

LeaseStateName = Literal["pending", "active", "recovering", "released", "expired"]


@dataclass(frozen=True)
class SliceState:
    """A slice of one device: shared (any owner's tasks), warm, or held by a lease."""

    slice_id: str  # the slice's id in the pool ("s3"; a lease's slice is named after it, "L2")
    compute_milli: int  # compute per device in milli-units (1000 = the whole device)
    memory_mib: int  # device memory of the slice in MiB
    profile: str | None  # the named profile (MIG "1g.10gb", vNPU "vir05_1c_16g"), None for fractions
    lease_id: str | None  # the lease holding it, None for a shared slice
    owner: str | None  # the lease's owner, None for a shared slice
    state: str  # "starting", "ready", "lost" or "stopped"
    tasks: int  # tasks bound to it now (queued and running)
    utilisation: float  # busy share of the slice's compute, 0..1, from the last telemetry
    memory_used_mib: int  # device memory in use in MiB, from the last telemetry
    policy: str | None = None  # the placement policy that placed it ("flexlab"), None when not recorded
    warm_for: str | None = None  # the request a warm slice was carved for, None otherwise
    worker: str | None = None  # the Dask worker that serves it, None until it registered
    load_milli: int = 0  # compute its bound tasks ask for, in milli-units


@dataclass(frozen=True)
class DeviceState:
    """One accelerator of a host and how it is sliced."""

    id: str  # the pool's device id, "host/model#index" ("nvidia-b/a100-80gb#1")
    vendor: str  # "nvidia", "huawei", "cambricon" or "mock"
    model: str  # the catalog key ("a100-80gb", "ascend-910b3")
    name: str  # the product name ("NVIDIA A100 80GB")
    kind: str  # "gpu", "npu" or "mlu"
    index: int  # the device's index on its host
    mode: str  # "fraction" (shares in steps of granularity_milli) or "profile" (named profiles)
    memory_mib: int  # total device memory in MiB
    free_compute_milli: int  # compute not carved into any slice, in milli-units
    free_memory_mib: int  # memory not carved into any slice, in MiB
    schedulable: bool  # False while the device is drained or failed
    utilisation: float  # busy share of the whole device, 0..1
    memory_used_mib: int  # device memory in use in MiB
    granularity_milli: int  # the smallest step of a fraction, in milli-units (100 = 10%)
    profiles: tuple[str, ...]  # the profile menu of a profile-sliced device (empty for fractions)
    free_profiles: tuple[str, ...]  # profiles that could be carved now from its free space
    slices: tuple[SliceState, ...]  # the slices carved from it
    vendor_name: str = ""  # the vendor as people read it ("NVIDIA", "Huawei")

    def __post_init__(self) -> None:
        if not self.vendor_name:
            object.__setattr__(self, "vendor_name", vendor_name(self.vendor))


@dataclass(frozen=True)
class HostState:
    """A machine of the pool and its accelerators."""

    name: str  # the host's name in the pool ("nvidia-b")
    address: str  # where its agent runs (may be empty for the embedded pool)
    cpu_milli: int  # host CPU in milli-cores
    free_cpu_milli: int  # host CPU not held by slices, in milli-cores
    memory_mib: int  # host RAM in MiB
    free_memory_mib: int  # host RAM not held by slices, in MiB
    devices: tuple[DeviceState, ...]  # its accelerators, by model and index


@dataclass(frozen=True)
class LeaseView:
    """A slice reserved for one owner (``flexlab.lease``)."""

    lease_id: str  # the lease's id ("L3")
    owner: str  # who holds it
    request: str  # what was asked for ("npu:25%,16GiB")
    state: LeaseStateName  # "pending", "active", "recovering", "released" or "expired"
    reason: str  # why it is in that state (why it waits), may be empty
    priority: int  # its priority, -1000..1000 (higher first)
    ttl_s: float  # its time to live in seconds, from creation or the last renewal
    created: float  # when it was asked for, seconds since the epoch
    expires_at: float  # when its TTL runs out, seconds since the epoch
    ttl_left_s: float  # seconds of TTL left (0 when it ran out)
    slice_id: str | None  # its slice, None while it waits for one
    host: str | None  # the host of its slice
    devices: tuple[str, ...]  # the device ids of its slice
    model: str | None  # the catalog model of its slice
    compute_milli: int | None  # compute of its slice per device, milli-units
    memory_mib: int | None  # device memory of its slice, MiB
    profile: str | None  # the profile of its slice, None for fractions
    utilisation: float  # busy share of its slice, 0..1
    memory_used_mib: int  # device memory in use, MiB
    policy: str | None = None  # the placement policy that placed its slice, None while it waits
    worker: str | None = None  # the Dask worker of its slice
    resource: str | None = None  # the Dask resource name its tasks ask for
    preemptions: int = 0  # how often it was preempted for higher-priority work
    private: bool = False  # its worker joins its owner's own scheduler, which nobody else can reach

    @property
    def live(self) -> bool:
        """Pending, active or recovering (not released or expired)."""
        return self.state in ("pending", "active", "recovering")

    @property
    def shape(self) -> str:
        """Its slice's size: the profile, else the share (``"25%"``); empty while it waits."""
        if self.profile:
            return self.profile
        return f"{self.compute_milli / 10:g}%" if self.compute_milli else ""


@dataclass(frozen=True)
class WaitingWork:
    """A task that waits for capacity, and why."""

    key: str  # the Dask task key
    request: str  # what it asks for ("gpu:0.5"; empty for a plain task that needs any worker)
    reason: str  # why it waits, for people ("UNSCHEDULABLE: 3 INSUFFICIENT_COMPUTE")


@dataclass(frozen=True)
class PoolEvent:
    """Something the pool did, with its reason."""

    seq: int  # increasing sequence number (use it as ``since``)
    time: float  # when, seconds since the epoch
    kind: str  # "lease", "carve", "reclaim", "wait", "host", ...
    message: str  # what happened, for people
    owner: str | None = None  # the owner concerned, None for pool-wide events
    lease_id: str | None = None  # the lease concerned
    slice_id: str | None = None  # the slice concerned
    host: str | None = None  # the host concerned
    decision_id: str = ""  # ties the event to a placement decision (may be empty)


@dataclass(frozen=True)
class PolicyShape:
    """A request shape the placement policy expects, and how likely it is."""

    compute_milli: int  # compute per device in milli-units (1000 = the whole device)
    devices: int  # devices on one host (0 for a CPU-only request)
    host_cpu_milli: int  # host CPU in milli-cores
    host_memory_mib: int  # host RAM in MiB (0 where the policy does not count it)
    models: tuple[str, ...]  # the catalog models it may run on (empty: any)
    weight: float  # its probability, 0..1


@dataclass(frozen=True)
class PolicyState:
    """The pool's placement policy and what it learned of the requests it places."""

    name: str  # the policy: "flexlab", "fgd", "bestfit", "firstfit", "binpack" or "spread"
    description: str = ""  # what it does, for people
    learns: bool = False  # True when it learns the shapes of requests (fgd, flexlab)
    seeded: bool = False  # True when it places against shapes given up front (and learns nothing)
    window: int = 0  # how many of the latest requests it learns from
    in_window: int = 0  # requests in that window now
    observations: int = 0  # requests it has seen since the scheduler started
    rebuilds: int = 0  # how often it rebuilt its shapes from the window
    prior_weight: float = 0.0  # how many requests the cold-start prior counted as at first
    prior_weight_left: float = 0.0  # how many requests the prior still counts as (0 once learned)
    shapes_total: int = 0  # shapes it expects
    shapes: tuple[PolicyShape, ...] = ()  # the most likely of them, most likely first


@dataclass(frozen=True)
class PluginInfo:
    """The scheduler plugin's own health."""

    errors: int = 0  # exceptions the plugin caught and logged since it started
    stats: dict[str, int] = field(default_factory=dict)  # counters: tasks bound, waited, failed, ...
    policy: str | None = None  # the placement policy it was started with
    agents: dict[str, float] = field(default_factory=dict)  # per host: seconds since its agent was heard


@dataclass(frozen=True)
class HiClass:
    """Forecast against actual lease arrivals of one request class."""

    request_class: str  # the request class ("gpu:0.25")
    request: str  # the request text warm slices are carved for
    forecast: float  # expected arrivals over the horizon
    last_bucket: float  # arrivals in the last closed bucket
    predicted_last: float  # what was forecast for that bucket
    target: int  # warm slices wanted


@dataclass(frozen=True)
class WarmSlice:
    """A slice the Hi loop carved ahead of a forecast lease."""

    slice_id: str  # the slice
    request: str | None  # the request it waits for
    devices: tuple[str, ...]  # its device ids
    state: str  # "starting", "ready", ...


@dataclass(frozen=True)
class HiMove:
    """One move the Hi loop proposed, and what came of it."""

    time: float  # when, seconds since the epoch
    action: str  # "prewarm", "dissolve", "preempt", ...
    why: str  # the reason code
    policy: str  # the policy that proposed it
    request: str  # the request text it concerns (may be empty)
    slice_id: str | None  # the slice it concerns
    lease_id: str | None  # the lease it preempts
    for_lease: str | None  # the lease that waits for its room
    slices: tuple[str, ...]  # slices carved or given back
    reason: str  # what it did, for people
    rejected: str | None  # why the manager rejected it, None when enacted


@dataclass(frozen=True)
class SpeedRate:
    """Learned throughput of one task class on one device model, against the reference."""

    task_class: str = field(metadata={"wire": "class"})  # the task prefix
    model: str = ""  # the catalog model
    rate: float = 0.0  # speed relative to the reference device
    samples: int = 0  # measured durations it learned from


@dataclass(frozen=True)
class ForecastError:
    """How far the Hi loop's forecasts were off (None until it can tell)."""

    mape: float | None = None  # mean absolute percentage error
    smape: float | None = None  # symmetric mean absolute percentage error


@dataclass(frozen=True)
class HiState:
    """The Hi loop: forecast vs actual per class, warm slices, moves and what it learned."""

    enabled: bool  # whether it runs
    bucket_s: float  # the forecast's bucket, seconds
    horizon: int  # buckets forecast ahead
    classes: tuple[HiClass, ...] = ()  # forecast against actual per request class
    targets: dict[str, int] = field(default_factory=dict)  # warm slices wanted per request text
    warm: tuple[WarmSlice, ...] = ()  # warm slices now
    moves: tuple[HiMove, ...] = ()  # its latest moves, oldest first
    rejected: dict[str, int] = field(default_factory=dict)  # rejected moves by reason
    forecast_error: ForecastError = ForecastError()  # how far its forecasts were off
    preemptions: int = 0  # leases it preempted
    preempt_grace_s: float = 0.0  # notice a preempted lease gets, seconds
    speed: tuple[SpeedRate, ...] = ()  # learned speed per task class and model


@dataclass(frozen=True)
class PoolState:
    """The pool by host and device, its leases, waiting work, recent events and policy."""

    time: float  # when the scheduler took this snapshot, seconds since the epoch
    hosts: tuple[HostState, ...]  # the pool's hosts
    leases: tuple[LeaseView, ...] = ()  # leases not released or expired
    waiting: tuple[WaitingWork, ...] = ()  # tasks waiting for capacity (at most 200)
    events: tuple[PoolEvent, ...] = ()  # the latest events (at most 50), oldest first
    policy: PolicyState = PolicyState("")  # the placement policy and what it learned
    menu: tuple[MenuChoice, ...] = ()  # the request form's device selector (computed when absent)
    plugin: PluginInfo | None = None  # the plugin's health (None from a bare pool)
    hi: HiState | None = None  # the Hi loop (None from a bare pool)
    forecast: dict[str, tuple[tuple[float, float], ...]] = field(
        default_factory=dict
    )  # per request: (time, expected arrivals a second) ahead

    def __post_init__(self) -> None:
        if not self.menu:  # a pool always has the "any" entry, so () means "not sent"
            object.__setattr__(self, "menu", device_menu(self.hosts))

    # -------------------------------------------------------------- reading
    def devices(self) -> Iterable[tuple[HostState, DeviceState]]:
        """(host, device) pairs, in the state's order."""
        for h in self.hosts:
            for d in h.devices:
                yield h, d

    def slices(self) -> Iterable[tuple[DeviceState, SliceState]]:
        for _, d in self.devices():
            for s in d.slices:
                yield d, s

    @property
    def pending_leases(self) -> tuple[LeaseView, ...]:
        return tuple(le for le in self.leases if le.state == "pending")

    @property
    def policy_name(self) -> str:
        """The placement policy's name (from the plugin when the state has no policy section)."""
        if self.policy.name:
            return self.policy.name
        return (self.plugin.policy if self.plugin else None) or "?"

    def choice(self, value: str) -> MenuChoice | None:
        return next((c for c in self.menu if c.value == value), None)

    # -------------------------------------------------------------- the wire
    def to_json(self) -> dict[str, Any]:
        """Plain JSON (dicts, lists, str, numbers, bools, None), the wire format."""
        out = encode(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_json(cls, payload: object) -> PoolState:
        """The state from its wire JSON; :class:`MalformedPoolState` names what is wrong."""
        return decoder(cls)(payload, "")
