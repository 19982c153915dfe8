"""The pool state: one typed model of what ``flexlab status``, the REST API, the notebook
helpers and the dashboards read.

The scheduler plugin builds a :class:`PoolState` from its ``SlicePool``
(``flexlab_dask/state.py``) and sends ``to_json()``; every reader turns the JSON back with
:meth:`PoolState.from_json`, which checks every field and raises :class:`MalformedPoolState`
naming the path, what it found and what is allowed. The field names are the wire contract,
documented in ``docs/wire.md``; a field with a default may be absent (an older scheduler),
keys this model does not know are ignored (a newer one).

The request form's device menu is computed here once (:func:`device_menu`) and sent with the
state, so the notebook widget and the JupyterLab panel offer the same choices under the same
names.

>>> s = PoolState.from_json({"time": 1.0, "hosts": []})
>>> [c.label for c in s.menu]
['Any accelerator (0)']
>>> PoolState.from_json({"time": "noon", "hosts": []})
Traceback (most recent call last):
...
flexlab.core.poolstate.MalformedPoolState: pool state: time: expected a number, got 'noon' (str)
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flexlab.core.errors import FlexlabError

LeaseStateName = Literal["pending", "active", "recovering", "released", "expired"]
MenuGroup = Literal["any", "kind", "vendor", "model"]
T = TypeVar("T")

#: How people read the catalog's vendor keys (the menu's labels, ``flexlab status --watch``).
VENDOR_NAMES: dict[str, str] = {
    "nvidia": "NVIDIA",
    "huawei": "Huawei",
    "cambricon": "Cambricon",
    "mock": "Mock",
}


def vendor_name(vendor: str) -> str:
    """``"huawei"`` -> ``"Huawei"``; an unknown vendor as it is."""
    return VENDOR_NAMES.get(vendor, vendor)


class MalformedPoolState(FlexlabError, ValueError):
    """A pool state payload that does not follow the wire contract (``docs/wire.md``)."""

    def __init__(self, path: str, value: object, expected: str) -> None:
        self.path = path
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        got = "nothing" if value is _MISSING else f"{shown} ({type(value).__name__})"
        super().__init__(f"pool state: {path}: expected {expected}, got {got}")


# ------------------------------------------------------------------ the model
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
class MenuChoice:
    """One entry of the request form's device selector."""

    value: str  # the selector word of the request string ("any", "npu", "huawei", "a100-80gb")
    label: str  # what the menu shows ("Huawei (4)")
    group: MenuGroup  # "any", "kind", "vendor" or "model"
    devices: tuple[str, ...]  # the ids of the pool's devices it selects
    share: bool  # whether fraction-sliced devices are among them (a share can be asked)
    share_step_milli: int  # the share step in milli-units: the coarsest granularity of those devices
    profiles: tuple[str, ...]  # the profile menu of its profile-sliced devices (empty: none)
    max_memory_mib: int  # the largest device memory among them, MiB


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
        out = _encode(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_json(cls, payload: object) -> PoolState:
        """The state from its wire JSON; :class:`MalformedPoolState` names what is wrong."""
        return _decoder(cls)(payload, "")


def from_json(cls: type[T], payload: object, path: str = "") -> T:
    """Any model of this module from its wire JSON: ``from_json(LeaseView, answer["lease"])``
    (the ``flexlab_lease_*`` answers carry a lease's fields)."""
    return _decoder(cls)(payload, path)


def to_json(obj: object) -> Any:
    """Any model of this module as plain JSON."""
    return _encode(obj)


# ------------------------------------------------------------------ the device menu
def device_menu(hosts: Iterable[HostState]) -> tuple[MenuChoice, ...]:
    """Any accelerator, then each kind, vendor and model present in the pool, each with the
    devices it selects and how they can be sliced."""
    devices = [d for h in hosts for d in h.devices]
    out = [_choice("any", f"Any accelerator ({len(devices)})", "any", devices)]
    groups: tuple[tuple[MenuGroup, Callable[[DeviceState], str]], ...] = (
        ("kind", lambda d: d.kind),
        ("vendor", lambda d: d.vendor),
        ("model", lambda d: d.model),
    )
    for group, key in groups:
        by: dict[str, list[DeviceState]] = {}
        for d in devices:
            by.setdefault(key(d), []).append(d)
        for value, ds in sorted(by.items()):
            shown = {"kind": f"Any {value.upper()}", "vendor": vendor_name(value), "model": ds[0].name}[group]
            out.append(_choice(value, f"{shown} ({len(ds)})", group, ds))
    return tuple(out)


def _choice(value: str, label: str, group: MenuGroup, ds: list[DeviceState]) -> MenuChoice:
    fractions = [d for d in ds if d.mode != "profile"]
    profiles: list[str] = []
    for d in ds:
        if d.mode == "profile":
            profiles.extend(p for p in d.profiles if p not in profiles)
    return MenuChoice(
        value=value,
        label=label,
        group=group,
        devices=tuple(d.id for d in ds),
        share=bool(fractions),
        share_step_milli=max([10, *(d.granularity_milli or 10 for d in fractions)]),
        profiles=tuple(profiles),
        max_memory_mib=max([0, *(d.memory_mib for d in ds)]),
    )


# ------------------------------------------------------------------ the codec
_MISSING: Any = object()
Decoder = Callable[[Any, Any], Any]


Encoder = Callable[[Any], Any]
_ENCODERS: dict[type, Encoder] = {}


def _identity(v: Any) -> Any:
    return v


def _encoder(cls: type) -> Encoder:
    """A JSON encoder for a model class, built once per class from its field types."""
    known = _ENCODERS.get(cls)
    if known is None:
        known = _ENCODERS[cls] = _build_encoder(cls)
    return known


def _type_encoder(tp: Any) -> Encoder:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _encoder(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        enc_inner = _type_encoder(inner[0]) if len(inner) == 1 else _encode
        if enc_inner is _identity:
            return _identity
        return lambda v: None if v is None else enc_inner(v)
    if origin is tuple:
        encs = [_type_encoder(a) for a in args if a is not Ellipsis]
        if all(e is _identity for e in encs):
            return list
        if len(args) == 2 and args[1] is Ellipsis:
            enc_item = encs[0]
            return lambda v: [enc_item(x) for x in v]
        return lambda v: [e(x) for e, x in zip(encs, v, strict=True)]
    if origin is dict:
        enc_value = _type_encoder(args[1])
        return lambda v: {k: enc_value(x) for k, x in v.items()}
    return _identity  # str, int, float, bool, Literal


def _build_encoder(cls: type) -> Encoder:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = tuple(f.metadata.get("wire", f.name) for f in fields)
    # All values at once (attrgetter runs in C), then the nested ones encoded in place.
    get = operator.attrgetter(*(f.name for f in fields))
    nested = [
        (i, enc) for i, f in enumerate(fields) if (enc := _type_encoder(hints[f.name])) is not _identity
    ]
    if len(fields) == 1:
        only = nested[0][1] if nested else _identity
        return lambda obj: {names[0]: only(get(obj))}

    def encode(obj: Any) -> dict[str, Any]:
        values = list(get(obj))
        for i, enc in nested:
            values[i] = enc(values[i])
        return dict(zip(names, values, strict=True))

    return encode


def _encode(obj: object) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encoder(type(obj))(obj)
    if isinstance(obj, (tuple, list)):
        return [_encode(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): _encode(v) for k, v in obj.items()}
    return obj


# A path into the payload is built only when an error names it: "" (the root), a name such as
# "lease", or (parent path, key) for a field or a list item.
def _render(path: Any) -> str:
    keys: list[str | int] = []
    while isinstance(path, tuple):
        path, key = path
        keys.append(key)
    out = str(path)
    for k in reversed(keys):
        out = f"{out}[{k}]" if isinstance(k, int) else (f"{out}.{k}" if out else k)
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dec_bool(v: Any, path: Any) -> bool:
    if not isinstance(v, bool):
        raise MalformedPoolState(_render(path), v, "true or false")
    return v


def _dec_int(v: Any, path: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise MalformedPoolState(_render(path), v, "an integer")
    return v


def _dec_float(v: Any, path: Any) -> float:
    if not _is_number(v):
        raise MalformedPoolState(_render(path), v, "a number")
    return float(v)


def _dec_str(v: Any, path: Any) -> str:
    if not isinstance(v, str):
        raise MalformedPoolState(_render(path), v, "a string")
    return v


_SCALARS: dict[Any, tuple[Decoder, str]] = {
    # type: (its decoder, a Python expression on x that is true when x needs no decoding)
    bool: (_dec_bool, "x is True or x is False"),
    int: (_dec_int, "x.__class__ is int"),
    float: (_dec_float, "x.__class__ is float"),
    str: (_dec_str, "x.__class__ is str"),
}


def _fast_check(tp: Any) -> str | None:
    """A Python expression on ``x``, true when ``x`` is already a valid ``tp`` (None: no
    such shortcut, always decode)."""
    if tp in _SCALARS:
        return _SCALARS[tp][1]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        fast = _fast_check(inner[0]) if len(inner) == 1 else None
        return f"x is None or {fast}" if fast else None
    return None


def _type_decoder(tp: Any) -> Decoder:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decoder(tp)
    if tp in _SCALARS:
        return _SCALARS[tp][0]
    if origin is Literal:
        allowed = args

        def dec_literal(v: Any, path: Any) -> Any:
            if not isinstance(v, str) or v not in allowed:
                raise MalformedPoolState(_render(path), v, "one of " + ", ".join(map(str, allowed)))
            return v

        return dec_literal
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no decoder for {tp!r}")
        dec_inner = _type_decoder(inner[0])

        def dec_optional(v: Any, path: Any) -> Any:
            return None if v is None else dec_inner(v, path)

        return dec_optional
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            dec_item = _type_decoder(args[0])
            item_type = args[0] if args[0] in (str, int) else None

            def dec_seq(v: Any, path: Any) -> tuple[Any, ...]:
                if not isinstance(v, (list, tuple)):
                    raise MalformedPoolState(_render(path), v, "a list")
                if item_type is not None and all(x.__class__ is item_type for x in v):
                    return tuple(v)
                return tuple([dec_item(x, (path, i)) for i, x in enumerate(v)])

            return dec_seq
        decs = [_type_decoder(a) for a in args]

        def dec_fixed(v: Any, path: Any) -> tuple[Any, ...]:
            if not isinstance(v, (list, tuple)) or len(v) != len(decs):
                raise MalformedPoolState(_render(path), v, f"a list of {len(decs)} items")
            return tuple(d(x, (path, i)) for i, (d, x) in enumerate(zip(decs, v, strict=True)))

        return dec_fixed
    if origin is dict:
        dec_value = _type_decoder(args[1])

        def dec_dict(v: Any, path: Any) -> dict[str, Any]:
            if not isinstance(v, Mapping):
                raise MalformedPoolState(_render(path), v, "an object")
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise MalformedPoolState(_render(path), k, "string keys")
                out[k] = dec_value(x, (path, k))
            return out

        return dec_dict
    raise TypeError(f"no decoder for {tp!r}")  # a model this module cannot read: a bug here


_DECODERS: dict[type, Decoder] = {}


def _decoder(cls: type[T]) -> Callable[[Any, Any], T]:
    """A checking decoder for a model class, built once per class."""
    known = _DECODERS.get(cls)
    if known is None:
        known = _DECODERS[cls] = _build_decoder(cls)
    return known


def _build_decoder(cls: type) -> Decoder:
    """The decoder of a model class as generated Python (as ``dataclasses`` makes ``__init__``):
    one ``get`` per field, a type check inline for scalars, and a field's own decoder only for
    nested values or when the check fails (it then names the path)."""
    hints = typing.get_type_hints(cls)
    ns: dict[str, Any] = {
        "Mapping": Mapping,
        "MalformedPoolState": MalformedPoolState,
        "_render": _render,
        "_MISSING": _MISSING,
        "cls": cls,
        "new": object.__new__,
        "what": f"an object ({cls.__name__})",
        "required": "a value: the field is required",
    }
    body = [
        "def decode(v, path):",
        "    if not isinstance(v, Mapping):",
        "        raise MalformedPoolState(_render(path) or 'the payload', v, what)",
        "    get = v.get",
    ]
    kwargs = []
    for i, f in enumerate(dataclasses.fields(cls)):
        wire = f.metadata.get("wire", f.name)
        tp = hints[f.name]
        ns[f"d{i}"] = _type_decoder(tp)
        body += [f"    x = get({wire!r}, _MISSING)", "    if x is _MISSING:"]
        if f.default is not dataclasses.MISSING:
            ns[f"default{i}"] = f.default
            body.append(f"        x = default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"factory{i}"] = f.default_factory
            body.append(f"        x = factory{i}()")
        else:
            body.append(f"        raise MalformedPoolState(_render((path, {wire!r})), x, required)")
        fast = _fast_check(tp)
        body.append(f"    elif not ({fast}):" if fast else "    else:")
        body += [f"        x = d{i}(x, (path, {wire!r}))", f"    x{i} = x"]
        kwargs.append(f"{f.name}=x{i}")
    # Every field was checked: fill the frozen instance directly (its __init__ sets each
    # field through object.__setattr__, three times slower), then run its __post_init__.
    body += [
        "    o = new(cls)",
        f"    o.__dict__.update({', '.join(kwargs)})",
        *(["    o.__post_init__()"] if hasattr(cls, "__post_init__") else []),
        "    return o",
    ]
    exec("\n".join(body), ns)  # generated from the class's own fields, as dataclasses does
    decode: Decoder = ns["decode"]
    return decode


__all__ = [
    "DeviceState",
    "ForecastError",
    "HiClass",
    "HiMove",
    "HiState",
    "HostState",
    "LeaseView",
    "MalformedPoolState",
    "MenuChoice",
    "PluginInfo",
    "PolicyShape",
    "PolicyState",
    "PoolEvent",
    "PoolState",
    "SliceState",
    "SpeedRate",
    "WaitingWork",
    "WarmSlice",
    "device_menu",
    "from_json",
    "to_json",
    "vendor_name",
]
