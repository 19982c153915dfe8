"""The wire models of ``/flexlab/api/``: what the REST API sends and what it accepts.

One contract written down three times: these TypedDicts (the source of truth), the
TypeScript interfaces in ``extension/src/models.ts`` and the schemas of ``openapi.yaml``;
``tests/jupyter/test_models.py`` checks that the three agree field by field. Every field has
a comment here and a doc comment there.

The builders (``make_*``) translate the typed pool state (``flexlab.core.poolstate``: the
scheduler's one model, which ``tests/jupyter/test_models.py`` also checks against these) and
the plugin's answers (``handle_explain``, ``handle_events``) into these models: internal
fields (worker addresses, Dask resource names) stay behind.
Nothing here imports Jupyter or Dask.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from flexlab.core.poolstate import (
    DeviceState,
    HostState,
    LeaseView,
    MenuChoice,
    PoolEvent,
    PoolState,
    SliceState,
    from_json,
)

LeaseState = Literal["pending", "active", "recovering", "released", "expired"]
ExplainCode = Literal["SUCCESS", "UNSCHEDULABLE", "UNRESOLVABLE", "ERROR"]
MenuGroup = Literal["any", "kind", "vendor", "model"]


class SliceModel(TypedDict):
    """A slice of one device: shared (any owner's tasks) or held by a lease."""

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
    policy: str | None  # the placement policy that placed it ("flexlab"), None when not recorded


class DeviceModel(TypedDict):
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
    profiles: list[str]  # the profile menu of a profile-sliced device (empty for fractions)
    free_profiles: list[str]  # profiles that could be carved now from its free space
    slices: list[SliceModel]  # the slices carved from it
    vendor_name: str  # the vendor as people read it ("NVIDIA", "Huawei")


class HostModel(TypedDict):
    """A machine of the pool and its accelerators."""

    name: str  # the host's name in the pool ("nvidia-b")
    address: str  # where its agent runs (may be empty for the embedded pool)
    cpu_milli: int  # host CPU in milli-cores
    free_cpu_milli: int  # host CPU not held by slices, in milli-cores
    memory_mib: int  # host RAM in MiB
    free_memory_mib: int  # host RAM not held by slices, in MiB
    devices: list[DeviceModel]  # its accelerators, by model and index


class PolicyShapeModel(TypedDict):
    """A request shape the placement policy expects, and how likely it is."""

    compute_milli: int  # compute per device in milli-units (1000 = the whole device)
    devices: int  # devices on one host (0 for a CPU-only request)
    host_cpu_milli: int  # host CPU in milli-cores
    host_memory_mib: int  # host RAM in MiB (0 where the policy does not count it)
    models: list[str]  # the catalog models it may run on (empty: any)
    weight: float  # its probability, 0..1


class PolicyModel(TypedDict):
    """The pool's placement policy and what it learned of the requests it places."""

    name: str  # the policy: "flexlab", "fgd", "bestfit", "firstfit", "binpack" or "spread"
    description: str  # what it does, for people
    learns: bool  # True when it learns the shapes of requests (fgd, flexlab)
    seeded: bool  # True when it places against shapes given up front (and learns nothing)
    window: int  # how many of the latest requests it learns from
    in_window: int  # requests in that window now
    observations: int  # requests it has seen since the scheduler started
    rebuilds: int  # how often it rebuilt its shapes from the window
    prior_weight: float  # how many requests the cold-start prior counted as at first
    prior_weight_left: float  # how many requests the prior still counts as (0 once learned)
    shapes_total: int  # shapes it expects
    shapes: list[PolicyShapeModel]  # the most likely of them, most likely first


class DeviceChoiceModel(TypedDict):
    """One entry of the request form's device selector, as the scheduler computed it."""

    value: str  # the selector word of the request string ("any", "npu", "huawei", "a100-80gb")
    label: str  # what the menu shows ("Huawei (4)")
    group: MenuGroup  # "any", "kind", "vendor" or "model"
    devices: list[str]  # the ids of the pool's devices it selects
    share: bool  # whether fraction-sliced devices are among them (a share can be asked)
    share_step_milli: int  # the share step in milli-units: the coarsest granularity of those devices
    profiles: list[str]  # the profile menu of its profile-sliced devices (empty: none)
    max_memory_mib: int  # the largest device memory among them, MiB


class PoolModel(TypedDict):
    """``GET /flexlab/api/pool``: the pool by host and device."""

    time: float  # when the scheduler took this snapshot, seconds since the epoch
    user: str  # the lease owner this server acts as for the caller
    hosts: list[HostModel]  # the pool's hosts
    waiting: int  # tasks waiting for capacity
    policy: PolicyModel  # the placement policy and what it learned
    menu: list[DeviceChoiceModel]  # the request form's device selector, in order


class LeaseModel(TypedDict):
    """A slice reserved for one owner (``flexlab.lease``), as the REST API shows it."""

    lease_id: str  # the lease's id ("L3")
    owner: str  # who holds it
    request: str  # what was asked for ("npu:25%,16GiB")
    state: LeaseState  # "pending", "active", "recovering", "released" or "expired"
    reason: str  # why it is in that state (why it waits), may be empty
    priority: int  # its priority, -1000..1000 (higher first)
    ttl_s: float  # its time to live in seconds, from creation or the last renewal
    created: float  # when it was asked for, seconds since the epoch
    expires_at: float  # when its TTL runs out, seconds since the epoch
    ttl_left_s: float  # seconds of TTL left (0 when it ran out)
    slice_id: str | None  # its slice, None while it waits for one
    host: str | None  # the host of its slice
    devices: list[str]  # the device ids of its slice
    model: str | None  # the catalog model of its slice
    compute_milli: int | None  # compute of its slice per device, milli-units
    memory_mib: int | None  # device memory of its slice, MiB
    profile: str | None  # the profile of its slice, None for fractions
    utilisation: float  # busy share of its slice, 0..1
    memory_used_mib: int  # device memory in use, MiB
    policy: str | None  # the placement policy that placed its slice, None while it waits
    private: bool  # its worker joins its owner's own scheduler, which nobody else can reach
    attach_code: str  # Python that re-attaches to it from a kernel


class LeaseListModel(TypedDict):
    """``GET /flexlab/api/leases``: the caller's leases."""

    leases: list[LeaseModel]  # live leases first (pending, active, recovering), newest first


class WhereModel(TypedDict):
    """Where an explained request would land."""

    host: str  # the host
    devices: list[str]  # the device ids
    profile: str | None  # the profile it would get, None for a fraction
    compute_milli: list[int]  # compute per device, milli-units
    memory_mib: list[int]  # device memory per device, MiB


class ReasonCountModel(TypedDict):
    """How many devices of one model rejected a request for one reason."""

    model: str  # a catalog model key, or "no-accelerator"
    reason: str  # a placement reason ("INSUFFICIENT_COMPUTE", "KIND_MISMATCH", ...)
    count: int  # how many devices of that model gave it
    resolvable: bool  # True when a release or re-slice could remove it


class ExplainModel(TypedDict):
    """``POST /flexlab/api/explain``: where a request would land now, or why not."""

    request: str  # the request as understood ("npu:25%,16GiB")
    lease: bool  # explained as a new lease (idle shared slices reclaimable) or as a task
    code: ExplainCode  # SUCCESS, UNSCHEDULABLE (not now) or UNRESOLVABLE (never in this pool)
    fits: bool  # True when it would be placed now
    where: WhereModel | None  # where it would land, when it fits
    summary: str  # one line for people ("would land on nvidia-b/a100-80gb#1 as 1g.10gb")
    considered: int  # candidates (devices or hosts) looked at
    feasible: int  # candidates that would take it
    reasons: list[ReasonCountModel]  # counted reasons of the rejecting candidates, most first


class EventModel(TypedDict):
    """Something the pool did, with its reason."""

    seq: int  # increasing sequence number (use it as ``since``)
    time: float  # when, seconds since the epoch
    kind: str  # "lease", "carve", "reclaim", "wait", "host", ...
    message: str  # what happened, for people
    owner: str | None  # the owner concerned, None for pool-wide events
    lease_id: str | None  # the lease concerned
    slice_id: str | None  # the slice concerned
    host: str | None  # the host concerned
    decision_id: str  # ties the event to a placement decision (may be empty)


class EventListModel(TypedDict):
    """``GET /flexlab/api/events``: the caller's and pool-wide events after ``since``."""

    events: list[EventModel]  # oldest first
    last: int  # the highest ``seq`` seen (pass it as ``since`` next time)


class InfoModel(TypedDict):
    """``GET /flexlab/api/info``: how this server reaches the pool."""

    user: str  # the lease owner this server acts as for the caller
    scheduler: str  # the pool's Dask scheduler address
    embedded: bool  # True when the server runs the embedded mock pool itself
    version: str  # flexlab's version
    default_ttl: str  # the TTL of a lease that names none ("1h")
    max_ttl: str  # the longest TTL a lease may ask for ("7d")


class ErrorModel(TypedDict):
    """Every 4xx/5xx answer of the API."""

    error: str  # the error class ("InvalidRequest", "NotOwner", "UnknownName", ...)
    message: str  # what went wrong, for people
    field: str | None  # the input field at fault, for InvalidRequest
    allowed: str | None  # what that field allows, for InvalidRequest
    code: str | None  # the placement code, for Unschedulable ("UNRESOLVABLE")


class _RequestBody(TypedDict):
    request: str  # required: a request string ("npu:25%,16GiB", "a100:1g.10gb", "any:0.5")


class PrivateModel(TypedDict):
    """A private scheduler's worker credentials: where a private lease's slice worker joins."""

    scheduler: str  # the private scheduler's address ("tls://10.0.0.9:40123")
    ca: str  # PEM of the CA the private scheduler's certificates chain to
    cert: str  # PEM of the certificate the slice worker shows
    key: str  # PEM of that certificate's private key


#: The fields of :class:`PrivateModel`, in order.
PRIVATE_FIELDS = ("scheduler", "ca", "cert", "key")


class LeaseCreateBody(_RequestBody, total=False):
    """``POST /flexlab/api/leases``: ask for a lease."""

    ttl: str | float  # time to live ("30m", "2h", 3600); default: the pool's default TTL
    priority: int  # -1000..1000, default 0
    private: PrivateModel  # a private lease: its worker joins this scheduler, not the pool's


class RenewBody(TypedDict):
    """``POST /flexlab/api/leases/{id}/renew``: a new TTL, counted from now."""

    ttl: str | float  # required: "30m", "2h", 3600, at most the pool's max TTL


class ExplainBody(_RequestBody, total=False):
    """``POST /flexlab/api/explain``: a request to explain."""

    lease: bool  # explain as a new lease (default true) or as a task


# ------------------------------------------------------------------------------ builders
_LIVE = ("pending", "active", "recovering")


def attach_code(lease_id: str, owner: str) -> str:
    """The notebook cell that re-attaches to a lease from a kernel and runs a task on it."""
    return (
        "import flexlab\n"
        "from flexlab.notebook import where\n\n"
        f"lease = flexlab.Lease.attach({lease_id!r}, owner={owner!r})\n"
        "# lease.submit(fn, *args) runs fn on the lease's slice; lease.release() gives it back\n"
        "lease.submit(where).result()"
    )


def make_slice(s: SliceState) -> SliceModel:
    return {
        "slice_id": s.slice_id,
        "compute_milli": s.compute_milli,
        "memory_mib": s.memory_mib,
        "profile": s.profile,
        "lease_id": s.lease_id,
        "owner": s.owner,
        "state": s.state,
        "tasks": s.tasks,
        "utilisation": s.utilisation,
        "memory_used_mib": s.memory_used_mib,
        "policy": s.policy,
    }


def make_device(d: DeviceState) -> DeviceModel:
    return {
        "id": d.id,
        "vendor": d.vendor,
        "model": d.model,
        "name": d.name,
        "kind": d.kind,
        "index": d.index,
        "mode": d.mode,
        "memory_mib": d.memory_mib,
        "free_compute_milli": d.free_compute_milli,
        "free_memory_mib": d.free_memory_mib,
        "schedulable": d.schedulable,
        "utilisation": d.utilisation,
        "memory_used_mib": d.memory_used_mib,
        "granularity_milli": d.granularity_milli,
        "profiles": list(d.profiles),
        "free_profiles": list(d.free_profiles),
        "slices": sorted(
            (make_slice(s) for s in d.slices),
            key=lambda s: (s["lease_id"] is None, -s["compute_milli"], s["slice_id"]),
        ),
        "vendor_name": d.vendor_name,
    }


def make_host(h: HostState) -> HostModel:
    return {
        "name": h.name,
        "address": h.address,
        "cpu_milli": h.cpu_milli,
        "free_cpu_milli": h.free_cpu_milli,
        "memory_mib": h.memory_mib,
        "free_memory_mib": h.free_memory_mib,
        "devices": [make_device(d) for d in h.devices],
    }


def make_policy(state: PoolState) -> PolicyModel:
    """The REST policy model from the pool state's ``policy`` section (from a scheduler
    without one: the name its plugin reports, nothing learned)."""
    p = state.policy
    shapes: list[PolicyShapeModel] = [
        {
            "compute_milli": x.compute_milli,
            "devices": x.devices,
            "host_cpu_milli": x.host_cpu_milli,
            "host_memory_mib": x.host_memory_mib,
            "models": list(x.models),
            "weight": x.weight,
        }
        for x in p.shapes
    ]
    return {
        "name": p.name or (state.plugin.policy if state.plugin else None) or "",
        "description": p.description,
        "learns": p.learns,
        "seeded": p.seeded,
        "window": p.window,
        "in_window": p.in_window,
        "observations": p.observations,
        "rebuilds": p.rebuilds,
        "prior_weight": p.prior_weight,
        "prior_weight_left": p.prior_weight_left,
        "shapes_total": p.shapes_total,
        "shapes": shapes,
    }


def make_choice(c: MenuChoice) -> DeviceChoiceModel:
    return {
        "value": c.value,
        "label": c.label,
        "group": c.group,
        "devices": list(c.devices),
        "share": c.share,
        "share_step_milli": c.share_step_milli,
        "profiles": list(c.profiles),
        "max_memory_mib": c.max_memory_mib,
    }


#: What a user-tier caller sees of a slice another owner's lease holds, instead of its ids and owner.
HIDDEN = "(hidden)"
OTHER_OWNER = "(another user)"


def redact_host(host: HostModel, user: str) -> HostModel:
    """``host`` as a user-tier caller sees it: the occupancy of other owners' lease slices
    (shape, memory, state, utilisation, task count) without their lease ids, slice ids or owners."""
    for d in host["devices"]:
        for s in d["slices"]:
            if s["lease_id"] is not None and s["owner"] != user:
                s["slice_id"], s["lease_id"], s["owner"] = HIDDEN, HIDDEN, OTHER_OWNER
    return host


def make_pool(state: PoolState, user: str, *, redact: bool = False) -> PoolModel:
    """The REST pool model from the typed pool state; ``redact``: as a user-tier ``user`` sees it."""
    hosts = [make_host(h) for h in state.hosts]
    if redact:
        hosts = [redact_host(h, user) for h in hosts]
    return {
        "time": state.time,
        "user": user,
        "hosts": hosts,
        "waiting": len(state.waiting),
        "policy": make_policy(state),
        "menu": [make_choice(c) for c in state.menu],
    }


def make_lease(x: LeaseView | dict[str, Any]) -> LeaseModel:
    """The REST lease model from a lease (or its wire JSON, checked)."""
    le = x if isinstance(x, LeaseView) else from_json(LeaseView, x, "lease")
    return {
        "lease_id": le.lease_id,
        "owner": le.owner,
        "request": le.request,
        "state": le.state,
        "reason": le.reason,
        "priority": le.priority,
        "ttl_s": le.ttl_s,
        "created": le.created,
        "expires_at": le.expires_at,
        "ttl_left_s": le.ttl_left_s,
        "slice_id": le.slice_id,
        "host": le.host,
        "devices": list(le.devices),
        "model": le.model,
        "compute_milli": le.compute_milli,
        "memory_mib": le.memory_mib,
        "profile": le.profile,
        "utilisation": le.utilisation,
        "memory_used_mib": le.memory_used_mib,
        "policy": le.policy,
        "private": le.private,
        "attach_code": attach_code(le.lease_id, le.owner),
    }


def make_lease_list(leases: list[LeaseView] | list[dict[str, Any]]) -> LeaseListModel:
    models = [make_lease(x) for x in leases]
    models.sort(key=lambda m: (m["state"] not in _LIVE, -m["created"]))
    return {"leases": models}


def where_text(where: WhereModel) -> str:
    """``would land on nvidia-b/a100-80gb#1 as 1g.10gb`` (or ``as 30% and 19.2 GiB``)."""
    if where["profile"]:
        shape = where["profile"]
    else:
        pct = where["compute_milli"][0] / 10 if where["compute_milli"] else 100.0
        gib = where["memory_mib"][0] / 1024 if where["memory_mib"] else 0.0
        shape = f"{pct:g}% and {gib:.3g} GiB"
    return f"would land on {', '.join(where['devices'])} as {shape}"


def make_explain(resp: dict[str, Any], *, request: str, lease: bool) -> ExplainModel:
    """The REST explain model from ``handle_explain``'s answer."""
    from flexlab.core.placement.status import Reason

    code = str(resp.get("code", "ERROR"))
    raw_where = resp.get("where")
    where: WhereModel | None = None
    if raw_where:
        where = {
            "host": str(raw_where["host"]),
            "devices": [str(x) for x in raw_where.get("devices", [])],
            "profile": raw_where.get("profile"),
            "compute_milli": [int(x) for x in raw_where.get("compute_milli", [])],
            "memory_mib": [int(x) for x in raw_where.get("memory_mib", [])],
        }
    reasons: list[ReasonCountModel] = []
    for model, counts in (resp.get("reasons") or {}).items():
        for name, n in counts.items():
            resolvable = name in Reason.__members__ and Reason[name].resolvable
            reasons.append({"model": model, "reason": name, "count": int(n), "resolvable": resolvable})
    reasons.sort(key=lambda r: (-r["count"], r["model"], r["reason"]))
    fits = code == "SUCCESS" and where is not None
    if fits and where is not None:
        summary = where_text(where)
    else:
        totals: dict[str, int] = {}
        for r in reasons:
            totals[r["reason"]] = totals.get(r["reason"], 0) + r["count"]
        counted = ", ".join(f"{n} {name}" for name, n in sorted(totals.items(), key=lambda kv: -kv[1]))
        lead = {
            "UNSCHEDULABLE": "no room now" + ("; the lease would wait" if lease else "; the task would wait"),
            "UNRESOLVABLE": "can never fit this pool",
        }.get(code, "cannot be placed")
        summary = f"{lead}: {counted}" if counted else lead
    return {
        "request": request,
        "lease": lease,
        "code": code,  # type: ignore[typeddict-item]
        "fits": fits,
        "where": where,
        "summary": summary,
        "considered": int(resp.get("considered", 0)),
        "feasible": int(resp.get("feasible", 0)),
        "reasons": reasons,
    }


def make_event(x: PoolEvent | dict[str, Any]) -> EventModel:
    e = x if isinstance(x, PoolEvent) else from_json(PoolEvent, x, "event")
    return {
        "seq": e.seq,
        "time": e.time,
        "kind": e.kind,
        "message": e.message,
        "owner": e.owner,
        "lease_id": e.lease_id,
        "slice_id": e.slice_id,
        "host": e.host,
        "decision_id": e.decision_id,
    }


def make_event_list(events: list[dict[str, Any]], since: int) -> EventListModel:
    models = [make_event(e) for e in events]
    return {"events": models, "last": max([since, *(e["seq"] for e in models)])}


def make_error(
    error: str, message: str, *, field: str | None = None, allowed: str | None = None, code: str | None = None
) -> ErrorModel:
    return {"error": error, "message": message, "field": field, "allowed": allowed, "code": code}
