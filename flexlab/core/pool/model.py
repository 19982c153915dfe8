"""What the pool is made of: slices, leases, the commands to host agents, bindings and
events (plain data, shared by every part of the pool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flexlab.core.placement.framework import Explanation
from flexlab.core.placement.status import Code
from flexlab.core.request import SliceRequest

SliceState = Literal["starting", "ready", "lost", "stopped"]
LeaseState = Literal["pending", "active", "recovering", "released", "expired"]
BindStatus = Literal["bound", "wait", "fail"]
#: Lease states that hold nothing any more.
ENDED: tuple[LeaseState, ...] = ("released", "expired")
#: Slice states whose worker serves (or is about to serve) tasks.
LIVE: tuple[SliceState, ...] = ("starting", "ready")
RESOURCE_PREFIX = "flexlab-slice-"
#: What a shared slice's allocation is for (its ledger request), and what a lease's slice
#: taken from an idle shared slice larger than the lease goes back to when it ends.
SHARED = "shared"
#: Owner of the warm slices carved ahead of forecast leases.
PREWARM_OWNER = "flexlab-prewarm"
LEASE_PREFIX = "flexlab-lease-"
#: Threads of a slice worker: tasks inside a slice run concurrently up to its resources.
DEFAULT_SLICE_THREADS = 8


@dataclass
class SliceInfo:
    """A carved slice and the worker that serves it."""

    slice_id: str
    alloc_id: str
    host: str
    devices: tuple[str, ...]
    model: str
    kind: str
    vendor: str
    compute_milli: int  # per device
    memory_mib: int  # per device
    profile: str | None = None
    lease_id: str | None = None
    owner: str | None = None
    state: SliceState = "starting"
    worker: str | None = None
    created: float = 0.0
    #: Compute bound to it by queued and running tasks (for balancing).
    load_milli: int = 0
    tasks: int = 0
    #: Last telemetry: utilisation 0..1 and device memory in use.
    utilisation: float = 0.0
    memory_used_mib: int = 0
    #: A warm slice: the request text of the lease it is kept for (None otherwise).
    warm_for: str | None = None
    #: The placement policy that chose where it was carved (None: carved to fill the rest
    #: of a device, or a profile device's layout, with no placement decision).
    policy: str | None = None
    #: A warm slice: the id of the lease that takes it next, whose lease resource its
    #: worker offers (None: the slice id; a recycled slice gets a new one).
    next_lease: str | None = None
    #: The request text it was carved for (a lease's, or a warm slice's): what it is kept
    #: warm for when recycled, even after a smaller lease took it.
    carved_for: str | None = None

    @property
    def resource(self) -> str:
        return f"{RESOURCE_PREFIX}{self.slice_id}"

    def worker_resources(self, nthreads: int = DEFAULT_SLICE_THREADS) -> dict[str, float]:
        """The Dask resources its worker offers: the slice's compute in milli-units (which
        a task's memory counts against too, see ``task_milli``) and, for a lease's or a warm
        slice, the lease resource with one unit per thread."""
        res = {self.resource: float(self.compute_milli)}
        if self.lease_id is not None:
            res[f"{LEASE_PREFIX}{self.lease_id}"] = float(nthreads)
        elif self.warm_for is not None:  # the id its future lease will have
            res[f"{LEASE_PREFIX}{self.next_lease or self.slice_id}"] = float(nthreads)
        return res

    def task_milli(self, compute_milli: int, memory_mib: int) -> int:
        """What a task needing ``compute_milli`` and ``memory_mib`` of this slice holds of its
        Dask resource: its compute, or its memory's share of the slice in compute units if
        that is larger. Tasks running together then never hold more than the slice's compute
        nor more than its memory, with one resource instead of two (each resource a task
        names costs Dask work on every task). The price: a memory-heavy task beside
        compute-heavy ones counts its memory share as compute, so such a mix may run less at
        once than two resources would allow; tasks whose memory follows their compute (the
        default) hold exactly their compute."""
        cap_c, cap_m = self.compute_milli, self.memory_mib
        # Memory up to the compute's share of the slice (rounded up, as a request's default
        # memory is) fits in the compute held: at most 1 MiB a task over, never a unit more.
        if cap_m <= 0 or cap_c <= 0 or memory_mib <= -(-compute_milli * cap_m // cap_c):
            return compute_milli
        return min(cap_c, max(compute_milli, -(-memory_mib * cap_c // cap_m)))

    @property
    def reserved(self) -> bool:
        """Held for one owner (a lease's slice or a warm one): no shared tasks run on it."""
        return self.lease_id is not None or self.warm_for is not None


@dataclass
class LeaseInfo:
    lease_id: str
    owner: str
    request: SliceRequest
    ttl_s: float
    priority: int
    created: float
    expires_at: float
    state: LeaseState = "pending"
    slice_id: str | None = None
    reason: str = ""
    #: Where the lease's slice was last (host, devices, profile start), to restore it there.
    placed_on: tuple[str, tuple[str, ...], int] | None = None
    #: How often it was preempted for higher-priority work.
    preemptions: int = 0
    #: When it first became active: its TTL counts from then (a lease that waits in the
    #: queue does not lose its time), so ``expires_at`` is set again at that moment.
    active_since: float | None = None
    #: The placement policy that chose its slice's place (None until placed).
    policy: str | None = None
    #: When it was released or expired (kept ``forget_ended``'s retention, then forgotten).
    ended_at: float | None = None
    #: A private lease: the address of its owner's own Dask scheduler, which its slice's
    #: worker joins instead of the pool's (None: the pool's). Never a credential.
    private: str | None = None

    @property
    def resource(self) -> str:
        return f"{LEASE_PREFIX}{self.lease_id}"


@dataclass(frozen=True)
class StartSlice:
    """Command to a host agent: start a worker serving this slice."""

    slice_id: str
    host: str
    devices: tuple[str, ...]
    model: str
    compute_milli: int
    memory_mib: int
    profile: str | None
    lease_id: str | None
    owner: str | None
    resources: dict[str, float]
    nthreads: int


@dataclass(frozen=True)
class StopSlice:
    """Command to a host agent: stop the worker of this slice."""

    slice_id: str
    host: str
    reason: str


@dataclass(frozen=True)
class RetagSlice:
    """Command to a host agent: the running worker of this slice (``worker``, its address)
    now offers ``resources`` and no longer ``drop`` (set to 0). A lease's slice kept warm
    for the next lease (recycled) is handed over this way, without a new worker; the
    agent answers as for a start (the slice is ready once the worker offers them)."""

    slice_id: str
    host: str
    worker: str
    resources: dict[str, float]
    drop: tuple[str, ...]


Command = StartSlice | StopSlice | RetagSlice


@dataclass(frozen=True)
class Binding:
    """Where a task goes: its resource restrictions, or why it waits or fails."""

    status: BindStatus
    slice_id: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    code: Code = Code.SUCCESS
    compute_milli: int = 0


@dataclass(frozen=True)
class Event:
    """Something the pool did, with its reason; ``decision_id`` ties it to placement."""

    seq: int
    time: float
    kind: str
    message: str
    owner: str | None = None
    lease_id: str | None = None
    slice_id: str | None = None
    host: str | None = None
    decision_id: str = ""


def shape(s: SliceInfo) -> str:
    """A slice's size for the event log: its profile, else its share and memory."""
    return s.profile or f"{s.compute_milli / 10:g}% and {s.memory_mib} MiB"


def reason_counts(ex: Explanation) -> dict[str, dict[str, int]]:
    """Counted reasons per device class, by reason name (``Unschedulable.reasons``)."""
    return {cls: {r.name: n for r, n in reasons.items()} for cls, reasons in ex.reasons_by_class.items()}


def reason_text(ex: Explanation) -> str:
    """The edge's rendering of an explanation: ``"UNSCHEDULABLE: t4: 2 INSUFFICIENT_COMPUTE"``."""
    parts = []
    for cls, reasons in sorted(ex.reasons_by_class.items()):
        rs = ", ".join(f"{n} {r.name}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        parts.append(f"{cls}: {rs}")
    return f"{ex.code.value}: " + ("; ".join(parts) if parts else "no devices in the pool")
