"""Agents' messages in any order: registrations twice or after leaving, polls and leaves from
hosts that never registered or already left, reports of slices that are not theirs, and
leases asked and given back in between. The pool's invariants hold after every message and
the plugin never raises (issue 15: the scheduler's own API under bad input)."""

from __future__ import annotations

import asyncio
from typing import Any

from distributed import Scheduler
from flexlab_dask import FlexScheduler
from flexlab_dask.state import host_to_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexlab.core.pool.audit import audit
from flexlab.core.topology import DeviceSpec, HostSpec

HOSTS = {
    "gpu-h": HostSpec("gpu-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("v100s-32gb", 1))),
    "npu-h": HostSpec("npu-h", 64_000, 256 * 1024, (DeviceSpec("ascend-910b3", 0),)),
}
OWNERS = ("ana", "bob")
REQUESTS = ("gpu:0.5", "npu:0.25", "any:1", "gpu:0.25,4GiB")

host_name = st.sampled_from([*HOSTS, "ghost"])
op = st.one_of(
    st.tuples(st.just("register"), host_name, st.booleans()),
    st.tuples(st.just("poll"), host_name, st.booleans()),
    st.tuples(st.just("leave"), host_name, st.booleans()),
    st.tuples(st.just("lease"), st.sampled_from(REQUESTS), st.sampled_from(OWNERS)),
    st.tuples(st.just("release"), st.integers(0, 9), st.sampled_from(OWNERS)),
)


async def play(ops: list[tuple[Any, ...]]) -> None:
    plugin = FlexScheduler(state_file="", hi=False, loop_interval=3600)
    async with Scheduler(port=0, dashboard_address=":0", plugins=[plugin]):
        leases: list[str] = []
        for i, (kind, a, b) in enumerate(ops):
            # running: what the agent says it runs; with b, slice ids that are not its own too
            running = [s.slice_id for s in plugin.pool.slices.values() if s.host == a]
            if b:
                running += [s.slice_id for s in plugin.pool.slices.values() if s.host != a] + ["s999"]
            if kind == "register":
                spec = HOSTS.get(a, HostSpec(a, 1000, 1024, (DeviceSpec("t4", 0),)))
                out = plugin.handle_agent_register(
                    host=host_to_dict(spec), agent=f"agent-{a}", running=running
                )
            elif kind == "poll":
                out = await plugin.handle_agent_poll(host=a, running=running, timeout=0.0)
            elif kind == "leave":
                out = plugin.handle_agent_leave(host=a)
            elif kind == "lease":
                out = plugin.handle_lease_create(request=a, owner=b, ttl="1h")
                if out["status"] == "OK":
                    leases.append(out["lease"]["lease_id"])
            else:
                lease_id = leases[a % len(leases)] if leases else f"L{a}"
                out = plugin.handle_lease_release(lease_id=lease_id, owner=b)
            assert isinstance(out, dict), (i, kind, out)
            assert out.get("status") in ("OK", "error", "unregistered"), (i, kind, out)
            if out["status"] == "error":
                assert out.get("message"), out
            broken = audit(plugin.pool)
            assert broken == [], (i, kind, a, b, broken)
            assert plugin.errors == [], (i, kind, plugin.errors)
            assert set(plugin.pool.ledger.hosts) <= set(HOSTS) | {"ghost"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=4, max_size=24))
def test_agent_messages_in_any_order_keep_the_pool_whole(ops: list[tuple[Any, ...]]) -> None:
    asyncio.run(play(ops))
