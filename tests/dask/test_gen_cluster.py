"""The plugin inside distributed's own test harness (``gen_cluster``): registered at run time
with ``register_scheduler_plugin``, two in-process host agents, asynchronous client."""

from __future__ import annotations

import asyncio
from typing import Any

import dask
from distributed import Client, Scheduler
from distributed.utils_test import gen_cluster
from flexlab_dask import FlexScheduler, HostAgent

from flexlab.core.topology import PROFILE, DeviceSpec, HostSpec

HOST_A = HostSpec("npu-a", 16_000, 64 * 1024, (DeviceSpec("ascend-910b3", 0),))
HOST_B = HostSpec("gpu-b", 16_000, 64 * 1024, (DeviceSpec("t4", 0), DeviceSpec("a100-80gb", 1, mode=PROFILE)))


def where() -> str:
    from distributed import get_worker

    return str(get_worker().name)


async def _ready(plugin: FlexScheduler, n: int) -> None:
    for _ in range(200):
        if sum(s.state == "ready" for s in plugin.pool.slices.values()) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"slices not ready: {plugin.pool.slices}")


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=60)
async def test_register_plugin_and_two_agents(c: Client, s: Scheduler, w: Any) -> None:
    plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1)
    await s.register_scheduler_plugin(plugin, idempotent=False)
    agents = [HostAgent(s.address, h, processes=False, telemetry_interval=0.2) for h in (HOST_A, HOST_B)]
    for a in agents:
        await a.start()
    try:
        # npu: one fraction slice; t4: one; a100: the default MIG layout (4 instances)
        await _ready(plugin, 6)
        slices = {f"flexlab-slice-{sid}": sl for sid, sl in plugin.pool.slices.items()}
        for spec, want in (("npu:0.3", "ascend-910b3"), ("t4:0.5", "t4"), ("a100:2g.20gb", "a100-80gb")):
            with dask.annotate(flexlab=spec):
                futs = c.map(lambda i: where(), range(5), pure=False)
            names = await c.gather(futs)
            assert {slices[n].model for n in names} == {want}, (spec, names)
        # Plain tasks run anywhere, as before.
        assert await c.submit(sum, [1, 2, 3]) == 6
        assert plugin.errors == []
        assert plugin._stats["bound"] == 15
    finally:
        for a in agents:
            await a.close(leave=False)
