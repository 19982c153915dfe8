"""Profile-sliced devices (MIG, vNPU) in the live pool: the capacity a lease leaves or gives
back goes into shared use again as instances of the device's layout."""

from __future__ import annotations

from flexlab.core.pool import SlicePool, StartSlice
from flexlab.core.request import parse_request
from flexlab.core.topology import PROFILE, DeviceSpec, HostSpec

HOST = HostSpec("mig-h", 32_000, 128 * 1024, (DeviceSpec("a100-80gb", 0, mode=PROFILE),))
A100 = HOST.device_id(HOST.devices[0])
LAYOUT = ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb")


def mig_pool(layouts: dict[str, tuple[str, ...]]) -> SlicePool:
    ticks = iter(range(100, 10**6))
    p = SlicePool(policy="binpack", clock=lambda: float(next(ticks)))
    p.register_host(HOST, layouts=layouts)
    for s in list(p.slices.values()):
        p.slice_ready(s.slice_id, f"w-{s.slice_id}")
    p.take_commands(HOST.name)
    return p


def shared(p: SlicePool) -> list[str]:
    return sorted(s.profile or "" for s in p.slices.values() if s.lease_id is None)


def test_the_rest_of_a_mig_device_is_carved_again_around_a_lease_and_after_it() -> None:
    p = mig_pool({A100: LAYOUT})
    assert shared(p) == sorted(LAYOUT)
    lease = p.create_lease(parse_request("a100:4g.40gb"), owner="ann", ttl_s=60)
    assert lease.slice_id is not None, lease.reason
    # 4g takes compute slots 0-3, so the idle 2g and 1g instances went; a 3g of the layout
    # still fits in slots 4-6 and serves tasks again (regression: the device kept the lease only)
    assert sorted(g for g, _ in p.ledger.layout(A100)) == ["3g.40gb", "4g.40gb"]
    assert shared(p) == ["3g.40gb"]
    started = [c for c in p.take_commands(HOST.name) if isinstance(c, StartSlice)]
    assert sorted(c.slice_id for c in started) == sorted(s.slice_id for s in p.slices.values())
    p.release_lease(lease.lease_id, "ann")
    # the whole layout is back, the instance that stayed counted once
    assert shared(p) == sorted(LAYOUT)
    assert sorted(g for g, _ in p.ledger.layout(A100)) == sorted(LAYOUT)


def test_the_model_default_layout_is_used_when_the_host_registered_none() -> None:
    ticks = iter(range(100, 10**6))
    p = SlicePool(
        policy="binpack", clock=lambda: float(next(ticks)), default_layouts={"a100-80gb": ("7g.80gb",)}
    )
    p.register_host(HOST)
    assert shared(p) == ["7g.80gb"]
    lease = p.create_lease(parse_request("a100:1g.10gb"), owner="bob", ttl_s=60)
    assert lease.slice_id is not None, lease.reason
    assert shared(p) == []  # a 7g instance no longer fits beside the 1g one
    p.release_lease(lease.lease_id, "bob")
    assert shared(p) == ["7g.80gb"]
