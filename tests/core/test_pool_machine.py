"""The live pool driven by random sequences (a hypothesis state machine): leases asked,
released, renewed, expired and preempted; tasks bound and finished; workers started and
lost; warm slices carved and dissolved; hosts leaving and coming back. After every step the
pool's invariants hold: no device holds more than it has, every slice is one ledger
allocation and the other way round, a lease holds at most one slice and a slice serves at
most one lease, and every bound task sits on a live shared slice that fits it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from flexlab.core.catalog import CATALOG
from flexlab.core.errors import InvalidRequest, NotOwner, Unschedulable
from flexlab.core.ledger import Ledger, default_memory_mib, round_compute
from flexlab.core.placement.framework import explain
from flexlab.core.placement.status import Code
from flexlab.core.pool import (
    PREWARM_OWNER,
    LeaseInfo,
    RetagSlice,
    SliceInfo,
    SlicePool,
    StartSlice,
    StopSlice,
)
from flexlab.core.request import SliceRequest, parse_request
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.core.topology import PROFILE, DeviceSpec, HostSpec

GIB = 1024
HOSTS = {
    h.name: h
    for h in (
        HostSpec("gpu-a", 8_000, 32 * GIB, (DeviceSpec("t4", 0), DeviceSpec("t4", 1))),
        HostSpec(
            "mig-b", 16_000, 64 * GIB, (DeviceSpec("v100s-32gb", 0), DeviceSpec("a100-80gb", 1, mode=PROFILE))
        ),
        HostSpec(
            "npu-c",
            16_000,
            64 * GIB,
            (DeviceSpec("ascend-910b3", 0), DeviceSpec("ascend-910b3", 1, mode=PROFILE)),
        ),
    )
}
LAYOUTS = {
    "a100-80gb": ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"),
    "ascend-910b3": ("vir10_3c_32g", "vir05_1c_16g", "vir05_1c_16g"),
}
REQUESTS = [
    "gpu:0.25",
    "gpu:0.5",
    "t4:0.5",
    "t4:1.0",
    "t4:0.3,8GiB",
    "v100s:0.5",
    "nvidia:0.25,cpu=2,ram=4GiB",
    "a100:1g.10gb",
    "a100:2g.20gb",
    "a100:3g.40gb",
    "a100:4g.40gb",
    "npu:0.5",
    "910b3:0.3",
    "910b3:vir05_1c_16g",
    "910b3:vir10_3c_32g",
    "a100:0.5",  # a profile-only device asked for a share: never fits
    "mlu:0.5",  # no such device in the pool
]
LEASE_REQUESTS = [*REQUESTS, "t4:devices=2", "gpu:devices=2,cpu=1"]
TASK_REQUESTS = [*REQUESTS, "gpu:devices=2", "t4:0.25,cpu=1"]
OWNERS = ["ann", "bob", "cy"]
ENDED = ("released", "expired")


def fits(req: SliceRequest, s: SliceInfo, dev_mem: int) -> bool:
    """Whether a task of ``req`` fits slice ``s`` (on a device of ``dev_mem`` MiB),
    computed apart from the binder."""
    model = CATALOG[s.model]
    if len(s.devices) != req.devices or not req.selector.matches(model):
        return False
    if req.profile is not None:
        return s.profile == req.profile
    need_c = round_compute(req.compute_milli, max(1, model.granularity_milli))
    need_m = req.memory_mib or (dev_mem if need_c == WHOLE else default_memory_mib(need_c, dev_mem))
    return need_c <= s.compute_milli and need_m <= s.memory_mib


def arrays(p: PoolArrays) -> tuple[object, ...]:
    return (
        p.dev_compute_free.tolist(),
        p.dev_mem_free.tolist(),
        p.host_cpu_free.tolist(),
        p.host_mem_free.tolist(),
        dict(p.profile_free),
    )


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.settings: dict[str, object] = {"policy": "binpack", "carve_on_register": True}
        self.pool = self._new_pool()
        self.registered: set[str] = set()
        self.keys = itertools.count(1)
        self.workers = itertools.count(1)
        #: Our own record of the tasks bound and waiting, and of what each one asked.
        self.bound: dict[object, SliceRequest] = {}
        self.waiting: dict[object, SliceRequest] = {}
        #: Workers started by the "agents" and not ready yet, and those serving a slice.
        self.starting: dict[str, str] = {}
        self.serving: dict[str, str] = {}

    @initialize(policy=st.sampled_from(["binpack", "spread"]), carve=st.booleans())
    def build(self, policy: str, carve: bool) -> None:
        """Shared slices carved when a host registers (the default), or only for tasks."""
        self.settings = {"policy": policy, "carve_on_register": carve}
        self.pool = self._new_pool()
        for name in HOSTS:
            self._register(name)

    # -- helpers -------------------------------------------------------------------------
    def _new_pool(self) -> SlicePool:
        return SlicePool(clock=lambda: self.now, default_layouts=LAYOUTS, **self.settings)  # type: ignore[arg-type]

    def _leases(self, *states: str) -> list[LeaseInfo]:
        return sorted(
            (x for x in self.pool.leases.values() if not states or x.state in states),
            key=lambda x: x.lease_id,
        )

    def _register(self, name: str) -> None:
        self.pool.register_host(HOSTS[name])
        self.registered.add(name)

    def _forget(self, keys: list[object]) -> None:
        for k in keys:  # the runtime binds them again; here they are simply done
            assert k in self.bound, k
            del self.bound[k]

    def _ledger_state(self) -> tuple[object, ...]:
        return (*arrays(self.pool.ledger.pool), sorted(a.alloc_id for a in self.pool.ledger.allocations()))

    # -- leases --------------------------------------------------------------------------
    @rule(
        data=st.data(),
        owner=st.sampled_from(OWNERS),
        priority=st.integers(-1, 3),
        ttl=st.sampled_from([5.0, 30.0, 600.0]),
        start_now=st.booleans(),
    )
    def create_lease(
        self, data: st.DataObject, owner: str, priority: int, ttl: float, start_now: bool
    ) -> None:
        """Ask a lease (as often as not one a warm slice was carved for); its worker may
        start at once."""
        warm = sorted({s.warm_for or "" for s in self.pool.warm_slices()})
        text = data.draw(
            st.sampled_from(LEASE_REQUESTS + warm * len(LEASE_REQUESTS) if warm else LEASE_REQUESTS)
        )
        self._lease(parse_request(text), owner, priority, ttl, start_now)

    @rule(
        text=st.sampled_from(["gpu:0.5", "t4:1.0", "nvidia:1.0", "a100:3g.40gb", "npu:1.0"]),
        n=st.integers(2, 5),
        priority=st.integers(-1, 1),
    )
    def burst(self, text: str, n: int, priority: int) -> None:
        """Several leases at once, running at once: the pool fills up (and leases wait)."""
        for i in range(n):
            self._lease(parse_request(text), OWNERS[i % len(OWNERS)], priority, 600.0, True)

    def _lease(self, req: SliceRequest, owner: str, priority: int, ttl: float, start_now: bool) -> None:
        # Refused exactly when it could not fit the registered hosts with nothing on them.
        empty = Ledger([HOSTS[n] for n in sorted(self.registered)]).pool
        if explain(req, empty, self.pool.profile).code is Code.UNRESOLVABLE:
            with pytest.raises(Unschedulable, match="can never fit") as refused:
                self.pool.create_lease(req, owner=owner, ttl_s=ttl, priority=priority)
            assert refused.value.code == "UNRESOLVABLE"
            return
        lease = self.pool.create_lease(req, owner=owner, ttl_s=ttl, priority=priority)
        assert lease.owner == owner
        assert lease.state in ("pending", "active")
        if lease.state == "pending":
            assert lease.reason
        s = self.pool.slices.get(lease.slice_id or "")
        if s is not None and start_now:
            self._poll(s.host, start_now=True)
            self._ready(s.slice_id)
            assert lease.state == "active"

    @precondition(lambda self: bool(self.pool.leases))
    @rule(data=st.data(), by_owner=st.booleans())
    def release_lease(self, data: st.DataObject, by_owner: bool) -> None:
        lease = data.draw(st.sampled_from(self._leases()))
        if by_owner:
            self.pool.release_lease(lease.lease_id, lease.owner)
            assert lease.state in ENDED
        else:
            try:
                self.pool.release_lease(lease.lease_id, "mallory")
            except NotOwner:
                pass
            else:
                raise AssertionError("someone else released a lease")
        self._take_rebound()

    @precondition(lambda self: bool(self._leases("pending", "active", "recovering")))
    @rule(data=st.data(), ttl=st.sampled_from([5.0, 60.0]))
    def renew_lease(self, data: st.DataObject, ttl: float) -> None:
        lease = data.draw(st.sampled_from(self._leases("pending", "active", "recovering")))
        self.pool.renew_lease(lease.lease_id, lease.owner, ttl)
        assert lease.expires_at == self.now + ttl

    @rule(dt=st.sampled_from([1.0, 10.0, 100.0]))
    def expire(self, dt: float) -> None:
        self.now += dt
        for lease in self.pool.expire():
            assert lease.state == "expired"
            assert lease.expires_at <= self.now
        self._take_rebound()

    @precondition(lambda self: bool(self._leases("pending")))
    @rule(data=st.data())
    def preempt(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self._leases("pending")))
        before = self._ledger_state()
        victims = self.pool.preemption_victims(lease)
        assert self._ledger_state() == before  # asking changes nothing
        for v in victims:
            assert v.priority < lease.priority
            assert v.state == "active"
        for v in victims:
            self.pool.preempt_lease(v.lease_id, f"for {lease.lease_id}")
            assert v.state == "pending"
            assert v.lease_id in self.pool.leases
        self.pool.retry_leases()

    # -- tasks ---------------------------------------------------------------------------
    @rule(text=st.sampled_from(TASK_REQUESTS), n=st.integers(1, 4), many=st.booleans())
    def bind(self, text: str, n: int, many: bool) -> None:
        req = parse_request(text)
        keys: list[object] = [f"k{next(self.keys)}" for _ in range(n)]
        out = self.pool.bind_many(keys, req) if many else [self.pool.bind(k, req) for k in keys]
        for k, b in zip(keys, out, strict=True):
            if b.status == "bound":
                self.bound[k] = req
            elif b.status == "wait":
                self.waiting[k] = req
            else:
                assert b.reason.startswith("UNRESOLVABLE"), b.reason
        self._take_rebound()

    def _take_rebound(self) -> None:
        for k, b in self.pool.take_rebound():
            req = self.waiting.pop(k)
            if b.status == "bound":
                self.bound[k] = req

    @precondition(lambda self: bool(self.bound or self.waiting))
    @rule(data=st.data())
    def finish_task(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(map(str, [*self.bound, *self.waiting]))))
        self.pool.task_finished(key)
        self.bound.pop(key, None)
        self.waiting.pop(key, None)
        self._take_rebound()

    # -- agents and workers --------------------------------------------------------------
    @precondition(lambda self: any(self.pool.outbox.values()))
    @rule(data=st.data(), start_now=st.booleans())
    def agent_polls(self, data: st.DataObject, start_now: bool) -> None:
        """A host's agent takes its commands; its workers are ready at once, or later."""
        self._poll(
            data.draw(st.sampled_from(sorted(h for h, cmds in self.pool.outbox.items() if cmds))), start_now
        )

    def _poll(self, host: str, start_now: bool) -> None:
        for cmd in self.pool.take_commands(host):
            if isinstance(cmd, StartSlice):
                self.starting[cmd.slice_id] = f"w{next(self.workers)}"
                if start_now:
                    self._ready(cmd.slice_id)
            elif isinstance(cmd, RetagSlice):
                # a running worker handed to a lease (recycled, or an idle shared slice's):
                # it keeps running and is ready for the lease once retagged
                if self.serving.get(cmd.slice_id) != cmd.worker:
                    continue  # lost since: the agent skips it, the pool was told
                self.starting[cmd.slice_id] = cmd.worker
                if start_now:
                    self._ready(cmd.slice_id)
            else:
                assert isinstance(cmd, StopSlice)
                self.starting.pop(cmd.slice_id, None)
                worker = self.serving.pop(cmd.slice_id, None)
                if worker is not None:  # the stopped worker leaves: nothing left to lose
                    assert self.pool.worker_lost(worker) == []

    @precondition(lambda self: bool(self.starting))
    @rule(data=st.data())
    def worker_ready(self, data: st.DataObject) -> None:
        self._ready(data.draw(st.sampled_from(sorted(self.starting))))

    def _ready(self, sid: str) -> None:
        if sid not in self.starting:
            return  # ready already
        s = self.pool.slices.get(sid)
        if s is not None and any(
            isinstance(c, StopSlice) and c.slice_id == sid for c in self.pool.outbox.get(s.host, [])
        ):
            return  # its id went to a new slice the agent has not heard of yet
        worker = self.starting.pop(sid)
        self.pool.slice_ready(sid, worker)
        if sid in self.pool.slices:
            self.serving[sid] = worker
            assert self.pool.slices[sid].state == "ready"
            assert self.pool.slice_of_worker(worker) is self.pool.slices[sid]

    @precondition(lambda self: bool(self.serving))
    @rule(data=st.data())
    def worker_lost(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.serving)))
        worker = self.serving.pop(sid)
        if self.starting.get(sid) == worker:
            del self.starting[sid]  # its retag will never be answered
        s = self.pool.slices.get(sid)
        lease_id = s.lease_id if s is not None else None
        self._forget(self.pool.worker_lost(worker))
        assert sid not in self.pool.slices or self.pool.slices[sid].worker != worker
        if lease_id is not None and self.pool.leases[lease_id].state not in ENDED:
            assert self.pool.leases[lease_id].state in ("recovering", "active", "pending")
        self._take_rebound()

    @precondition(lambda self: bool(self.pool.slices))
    @rule(data=st.data(), utilisation=st.sampled_from([0.0, 0.7]))
    def telemetry(self, data: st.DataObject, utilisation: float) -> None:
        sid = data.draw(st.sampled_from(sorted(self.pool.slices)))
        self.pool.telemetry(sid, utilisation=utilisation, memory_used_mib=100)

    # -- warm slices ---------------------------------------------------------------------
    @rule(text=st.sampled_from(REQUESTS))
    def prewarm(self, text: str) -> None:
        before = {k: v.slice_id for k, v in self.pool.leases.items()}
        s = self.pool.prewarm(parse_request(text), "test")
        if s is not None:
            assert s.warm_for == parse_request(text).describe()
            assert (s.lease_id, s.owner) == (None, None)
            assert s.slice_id not in self.pool.leases
        assert {k: v.slice_id for k, v in self.pool.leases.items()} == before

    @precondition(lambda self: bool(self.pool.warm_slices()))
    @rule(data=st.data())
    def dissolve_warm(self, data: st.DataObject) -> None:
        s = data.draw(st.sampled_from(sorted(self.pool.warm_slices(), key=lambda x: x.slice_id)))
        assert self.pool.dissolve_warm(s.slice_id, "test")
        assert s.slice_id not in self.pool.slices
        assert not self.pool.dissolve_warm(s.slice_id, "twice")

    # -- hosts ---------------------------------------------------------------------------
    @precondition(lambda self: bool(self.registered))
    @rule(data=st.data())
    def host_leaves(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.registered)))
        self._forget(self.pool.unregister_host(name))
        self.registered.discard(name)
        assert all(s.host != name for s in self.pool.slices.values())
        self._take_rebound()

    @precondition(lambda self: len(self.registered) < len(HOSTS))
    @rule(data=st.data())
    def host_returns(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(set(HOSTS) - self.registered)))
        self._register(name)
        self._take_rebound()

    @rule(data=st.data())
    def scheduler_restarts(self, data: st.DataObject) -> None:
        """A new pool: the leases kept on disk come back and wait for their hosts, which
        register again in any order; tasks and workers are gone with the old scheduler."""
        kept = [x for x in self.pool.leases.values() if x.state not in ENDED]
        keep = self.pool.keep
        self.pool = self._new_pool()
        self.pool.keep = keep
        for x in sorted(kept, key=lambda x: x.lease_id):
            self.pool.restore_lease(
                LeaseInfo(
                    lease_id=x.lease_id,
                    owner=x.owner,
                    request=x.request,
                    ttl_s=x.ttl_s,
                    priority=x.priority,
                    created=x.created,
                    expires_at=x.expires_at,
                    state="recovering",
                    placed_on=x.placed_on,
                    reason="scheduler restarted; waiting for its host",
                )
            )
        self.bound.clear()
        self.waiting.clear()
        self.starting.clear()
        self.serving.clear()
        for name in data.draw(st.permutations(sorted(self.registered))):
            self._register(name)
        self.pool.retry_leases()

    @precondition(lambda self: bool(self.registered))
    @rule(data=st.data())
    def host_registers_again(self, data: st.DataObject) -> None:
        """An agent that reconnects registers the same spec: nothing changes but the log."""
        before = self._ledger_state()
        slices = sorted(self.pool.slices)
        self._register(data.draw(st.sampled_from(sorted(self.registered))))
        assert (self._ledger_state(), sorted(self.pool.slices)) == (before, slices)

    @rule(on=st.booleans())
    def runtime_keeps(self, on: bool) -> None:
        """The runtime's say on idle slices whose worker holds results (every other one)."""
        self.pool.keep = (lambda s: s.slice_id.endswith(("0", "2", "4", "6", "8"))) if on else None

    @precondition(lambda self: bool(self.pool.leases))
    @rule(data=st.data(), other=st.booleans())
    def lease_task(self, data: st.DataObject, other: bool) -> None:
        lease = data.draw(st.sampled_from(self._leases()))
        b = self.pool.bind_lease_task(
            f"k{next(self.keys)}", lease.lease_id, "mallory" if other else lease.owner
        )
        if other or lease.state in ENDED:
            assert b.status == "fail"
        else:
            assert (b.status, b.slice_id, b.resources) == ("bound", lease.slice_id, {lease.resource: 1.0})

    # -- the one "what if" ---------------------------------------------------------------
    @rule(text=st.sampled_from(REQUESTS), data=st.data())
    def what_if(self, text: str, data: st.DataObject) -> None:
        led = self.pool.ledger
        before = self._ledger_state()
        self.pool.explain_as_lease(parse_request(text))
        assert self._ledger_state() == before
        allocs = sorted(led.allocations(), key=lambda a: a.alloc_id)
        chosen = (
            data.draw(st.lists(st.sampled_from(allocs), unique_by=lambda a: a.alloc_id)) if allocs else []
        )
        copy = led.pool_without([a.alloc_id for a in chosen])
        assert self._ledger_state() == before
        # The copy is what releasing them would give (profile instances included).
        for a in chosen:
            led.release(a.alloc_id)
        assert arrays(copy) == arrays(led.pool)
        for a in chosen:
            led.reinstate(a)
        assert self._ledger_state() == before

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def no_device_beyond_itself(self) -> None:
        led = self.pool.ledger
        p = led.pool
        assert p.dev_compute_free.min(initial=0) >= 0
        assert p.dev_compute_free.max(initial=0) <= WHOLE
        assert p.dev_mem_free.min(initial=0) >= 0
        assert np.all(p.dev_mem_free <= p.dev_mem_total)
        assert p.host_cpu_free.min(initial=0) >= 0
        assert p.host_mem_free.min(initial=0) >= 0
        led.check_invariants()

    @invariant()
    def slices_are_the_allocations(self) -> None:
        led = self.pool.ledger
        slices = self.pool.slices
        assert sorted(s.alloc_id for s in slices.values()) == sorted(a.alloc_id for a in led.allocations())
        for sid, s in slices.items():
            assert s.slice_id == sid
            assert s.state in ("starting", "ready")
            a = led.get(s.alloc_id)
            assert (a.host, tuple(g.device for g in a.slices)) == (s.host, s.devices)
            assert s.host in self.registered
            assert (a.slices[0].compute_milli, a.slices[0].memory_mib) == (s.compute_milli, s.memory_mib)

    @invariant()
    def leases_and_slices_pair_up(self) -> None:
        slices = self.pool.slices
        leases = self.pool.leases
        per_lease: dict[str, int] = {}
        for s in slices.values():
            if s.lease_id is not None:
                per_lease[s.lease_id] = per_lease.get(s.lease_id, 0) + 1
                lease = leases[s.lease_id]
                assert lease.state not in ENDED, (lease.lease_id, lease.state)  # ended: no slice
                assert lease.slice_id == s.slice_id
                assert s.owner == lease.owner
                assert s.warm_for is None
        assert all(n == 1 for n in per_lease.values()), per_lease  # no lease on two slices
        claimed = [x.slice_id for x in leases.values() if x.state not in ENDED and x.slice_id in slices]
        assert len(claimed) == len(set(claimed))  # no slice claimed by two leases
        for x in leases.values():
            assert x.owner != PREWARM_OWNER
            if x.state == "active":
                s = slices.get(x.slice_id or "")
                assert s is not None, x.lease_id
                assert (s.lease_id, s.state in ("starting", "ready")) == (x.lease_id, True)
            if x.state not in ENDED and x.slice_id in slices:
                assert slices[x.slice_id or ""].lease_id == x.lease_id

    @invariant()
    def bound_tasks_sit_on_live_fitting_slices(self) -> None:
        pool = self.pool
        assert set(pool.task_slice) == set(self.bound)
        assert set(pool.pending) == set(self.waiting)
        tasks: dict[str, int] = {}
        load: dict[str, int] = {}
        for key, (sid, milli) in pool.task_slice.items():
            s = pool.slices[sid]
            assert (s.state in ("starting", "ready"), s.reserved) == (True, False)
            dev_mem = int(pool.ledger.pool.dev_mem_total[pool.ledger.device_index(s.devices[0])])
            assert fits(self.bound[key], s, dev_mem), (key, sid)
            tasks[sid] = tasks.get(sid, 0) + 1
            load[sid] = load.get(sid, 0) + milli
        for sid, s in pool.slices.items():
            assert s.tasks == tasks.get(sid, 0)
            assert s.load_milli == load.get(sid, 0)

    @invariant()
    def warm_slices_serve_nobody(self) -> None:
        for s in self.pool.warm_slices():
            assert (s.lease_id, s.owner, s.reserved) == (None, None, True)


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_a_lease_that_can_never_fit_is_refused() -> None:
    pool = SlicePool(clock=lambda: 0.0, default_layouts=LAYOUTS)
    pool.register_host(HOSTS["mig-b"])
    with pytest.raises(Unschedulable, match="can never fit") as refused:
        pool.create_lease(parse_request("a100:0.5"), owner="ann", ttl_s=60)
    assert refused.value.reasons == {
        "a100-80gb": {"PROFILE_UNSUPPORTED": 1},
        "v100s-32gb": {"MODEL_MISMATCH": 1},
    }
    with pytest.raises(InvalidRequest, match="owner"):
        pool.create_lease(parse_request("a100:1g.10gb"), owner="", ttl_s=60)
    assert pool.leases == {}


# -- what the machine found, as examples -----------------------------------------------------
def full_pool() -> SlicePool:
    pool = SlicePool(clock=lambda: 0.0, default_layouts=LAYOUTS)
    for h in HOSTS.values():
        pool.register_host(h)
    return pool


def test_a_host_that_leaves_keeps_no_slice() -> None:
    """Regression: the capacity of a leaving host's lost slices was carved into shared slices
    (and its leases placed) on that same host again, just before the ledger forgot it."""
    pool = full_pool()
    lease = pool.create_lease(parse_request("t4:0.5"), owner="ann", ttl_s=60)
    assert lease.placed_on is not None
    assert lease.placed_on[0] == "gpu-a"
    pool.unregister_host("gpu-a")
    assert [s.slice_id for s in pool.slices.values() if s.host == "gpu-a"] == []
    assert sorted(s.alloc_id for s in pool.slices.values()) == sorted(
        a.alloc_id for a in pool.ledger.allocations()
    )
    assert (lease.state, lease.slice_id in pool.slices) == ("recovering", False)  # no other T4
    pool.register_host(HOSTS["gpu-a"])
    assert (lease.slice_id in pool.slices, pool.slices[lease.slice_id or ""].host) == (True, "gpu-a")


def test_a_waiting_task_that_can_never_fit_any_more_stops_waiting() -> None:
    """Regression: a waiting task whose retry failed stayed ``pending``, so it was counted as
    waiting and failed again on every later retry."""
    pool = full_pool()
    assert pool.bind("k", parse_request("a100:4g.40gb")).status == "wait"  # the layout fills the A100
    pool.unregister_host("mig-b")  # loses five slices, one retry each
    assert [(k, b.status) for k, b in pool.take_rebound()] == [("k", "fail")]
    assert pool.pending == {}


def test_idle_slices_a_lease_did_not_need_come_back_as_they_were() -> None:
    """Regression: a lease reclaiming idle slices put back those it did not need with the
    first device's size on every device, which failed for a slice over an A100 and a
    V100S (and left that slice without its allocation)."""
    pool = SlicePool(clock=lambda: 0.0, default_layouts=LAYOUTS, carve_on_register=False, policy="binpack")
    pool.register_host(HOSTS["gpu-a"])
    pool.register_host(HOSTS["mig-b"])
    keys: list[object] = ["k1", "k2", "k3"]
    pool.bind_many(keys, parse_request("gpu:devices=2"))  # one slice per host, both devices each
    for k in keys:
        pool.task_finished(k)
    two = {s.host: s for s in pool.slices.values()}
    assert sorted((h, len(s.devices)) for h, s in two.items()) == [("gpu-a", 2), ("mig-b", 2)]
    lease = pool.create_lease(parse_request("t4:0.5"), owner="ann", ttl_s=60)
    assert lease.placed_on is not None
    assert lease.placed_on[0] == "gpu-a"
    assert two["gpu-a"].slice_id not in pool.slices  # reclaimed for the lease
    kept = pool.ledger.get(two["mig-b"].alloc_id)  # put back as it was
    assert [(g.device, g.memory_mib) for g in kept.slices] == [
        ("mig-b/a100-80gb#1", 81920),
        ("mig-b/v100s-32gb#0", 32768),
    ]
    pool.ledger.check_invariants()
