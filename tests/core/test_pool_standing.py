"""A lease takes an idle shared slice's running worker (``WarmSlices.take_standing``)."""

from __future__ import annotations

import pytest

from flexlab.core.pool import SHARED, RetagSlice, SlicePool, StartSlice, StopSlice
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("gpu-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("t4", 1)))
ONE = parse_request("gpu:1")
HALF = parse_request("gpu:0.5")


def pool(*, oversize: float = 1.0, ready: bool = True) -> SlicePool:
    """Two idle T4s, each one shared slice (its worker up when ``ready``)."""
    ticks = iter(range(100, 10**6))
    p = SlicePool(policy="binpack", clock=lambda: float(next(ticks)), warm_oversize=oversize)
    p.register_host(HOST)
    for cmd in p.take_commands(HOST.name):
        if ready and isinstance(cmd, StartSlice):
            p.slice_ready(cmd.slice_id, f"w-{cmd.slice_id}")
    return p


def test_a_whole_device_lease_takes_an_idle_devices_running_worker() -> None:
    p = pool()
    shared = {s.slice_id: s.worker for s in p.slices.values()}
    lease = p.create_lease(ONE, owner="ana", ttl_s=60)
    assert lease.slice_id in shared  # a shared slice's, not one carved for it
    s = p.slices[lease.slice_id or ""]
    assert (s.lease_id, s.owner, s.state, s.compute_milli) == (lease.lease_id, "ana", "starting", 1000)
    assert s.carved_for == "gpu:1"  # its size exactly: recycled for gpu:1 like any lease's slice
    # the ledger holds it for the lease, whole, and nothing else changed
    alloc = p.ledger.get(s.alloc_id)
    assert (s.alloc_id, alloc.owner, alloc.slices[0].compute_milli) == (
        f"lease-{lease.lease_id}",
        "ana",
        1000,
    )
    p.ledger.check_invariants()
    # its agent retags the running worker: no worker stopped or started
    (cmd,) = p.take_commands(HOST.name)
    assert isinstance(cmd, RetagSlice)
    assert (cmd.worker, cmd.drop) == (shared[s.slice_id], ())
    assert cmd.resources[lease.resource] == 8.0
    assert lease.state == "pending"
    p.slice_ready(s.slice_id, cmd.worker)
    assert lease.state == "active"
    # tasks are no longer bound there; the other device takes them
    b = p.bind("k", HALF)
    assert b.status == "bound"
    assert b.slice_id != s.slice_id
    # the lease ends: the slice is stopped and the device shared again
    p.release_lease(lease.lease_id, "ana")
    cmds = p.take_commands(HOST.name)
    assert StopSlice(s.slice_id, HOST.name, "released by its owner") in cmds
    assert [c.compute_milli for c in cmds if isinstance(c, StartSlice)] == [1000]
    p.ledger.check_invariants()


@pytest.mark.parametrize(
    ("oversize", "taken"), [(1.0, False), (1.9, False), (2.0, True)], ids=["exact", "below-2x", "2x"]
)
def test_a_smaller_lease_takes_a_larger_running_slice_only_within_the_oversize(
    oversize: float, taken: bool
) -> None:
    p = pool(oversize=oversize)
    shared = set(p.slices)
    lease = p.create_lease(HALF, owner="ana", ttl_s=60)
    assert (lease.slice_id in shared) is taken
    s = p.slices[lease.slice_id or ""]
    assert s.compute_milli == (1000 if taken else 500)
    if taken:
        # held whole, and given back to shared use when it ends (never kept warm for 0.5)
        assert s.carved_for == SHARED
        p.want_warm({"gpu:0.5": 5, SHARED: 5})
        p.slice_ready(s.slice_id, s.worker or "")
        p.release_lease(lease.lease_id, "ana")
        assert s.slice_id not in p.slices
    p.ledger.check_invariants()


def test_a_running_worker_is_taken_before_a_warm_slice_still_starting_not_a_ready_one() -> None:
    p = pool()
    warm = p.prewarm(ONE, "test")
    assert warm is not None
    assert warm.state == "starting"
    assert warm.worker is None
    first = p.create_lease(ONE, owner="ana", ttl_s=60)
    assert first.slice_id not in (None, warm.slice_id)  # the other device's shared worker
    assert warm.warm_for == "gpu:1"
    p.slice_ready(warm.slice_id, "w-warm")
    p.release_lease(first.lease_id, "ana")
    _ready_shared(p)
    second = p.create_lease(ONE, owner="bea", ttl_s=60)
    assert (second.slice_id, second.state) == (warm.slice_id, "active")
    p.ledger.check_invariants()


def _ready_shared(p: SlicePool) -> None:
    for cmd in p.take_commands(HOST.name):
        if isinstance(cmd, StartSlice):
            p.slice_ready(cmd.slice_id, f"w-{cmd.slice_id}")


def test_no_worker_is_taken_that_is_starting_runs_tasks_or_the_runtime_keeps() -> None:
    p = pool(ready=False)  # the shared workers are still starting
    lease = p.create_lease(ONE, owner="ana", ttl_s=60)
    assert lease.slice_id == lease.lease_id  # carved for it
    p2 = pool()
    p2.reusable = lambda s: False
    lease = p2.create_lease(ONE, owner="ana", ttl_s=60)
    assert lease.slice_id == lease.lease_id
    p3 = pool()
    bound = p3.bind("k", HALF)  # a task runs on one shared slice
    lease = p3.create_lease(ONE, owner="ana", ttl_s=60)
    assert lease.slice_id not in (None, bound.slice_id)
    assert p3.slices[lease.slice_id or ""].worker is not None  # the other device's worker


def test_a_private_lease_never_takes_a_pool_worker() -> None:
    p = pool()
    lease = p.create_lease(ONE, owner="ana", ttl_s=60, private="tls://ana-scheduler:8786")
    assert lease.slice_id == lease.lease_id  # carved for it: its worker joins ana's scheduler
    # nor when it is placed again (a retry, after a preemption)
    other = p.create_lease(ONE, owner="bea", ttl_s=60, private="tls://bea-scheduler:8786")
    assert not p.warm.take_standing(other)
    p.ledger.check_invariants()
