"""``FlexCluster``: scheduler, flexlab plugin, host agents and mock devices in one process.

The embedded default for ``flexlab demo``, notebooks, Binder and tests::

    from flexlab_dask import FlexCluster
    from distributed import Client

    with FlexCluster() as cluster, Client(cluster) as client:
        ...

The built-in pool (``default_mock_pool()``) mixes vendors and slicing schemes: two Ascend
910B3 on ``ascend-a`` (one in 10% fractions, one in vNPU templates), a V100S and a MIG-sliced
A100-80GB on ``nvidia-b``, a T4 and a Cambricon MLU370-X8 on ``mixed-c``, and a CPU-only host
``cpu-d`` served by plain Dask workers. Mock devices are a documented simulation
(``docs/mock-devices.md``), not real hardware.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from distributed import LocalCluster

from flexlab.core.topology import PROFILE, DeviceSpec, HostSpec
from flexlab_dask.agent import HostAgent
from flexlab_dask.scheduler import FlexScheduler

GIB = 1024


def default_mock_pool() -> list[HostSpec]:
    """The heterogeneous mock pool of the demo (see the module docstring)."""
    return [
        HostSpec(
            "ascend-a",
            96_000,
            512 * GIB,
            (DeviceSpec("ascend-910b3", 0), DeviceSpec("ascend-910b3", 1, mode=PROFILE)),
        ),
        HostSpec(
            "nvidia-b",
            64_000,
            256 * GIB,
            (DeviceSpec("v100s-32gb", 0), DeviceSpec("a100-80gb", 1, mode=PROFILE)),
        ),
        HostSpec("mixed-c", 32_000, 128 * GIB, (DeviceSpec("t4", 0), DeviceSpec("mlu370-x8", 1))),
    ]


class FlexCluster(LocalCluster):
    """A LocalCluster whose scheduler runs the flexlab plugin and whose hosts are mock.

    ``hosts``: the accelerator hosts (default: ``default_mock_pool()``); each gets an
    in-process host agent. ``cpu_workers``: plain Dask workers for the CPU-only host.
    ``processes``: False (default) runs slice workers as threads of this process, so a
    laptop or a Binder pod holds a dozen of them; True starts each as its own process.
    ``state_file``: where leases are kept (default: in memory only). ``tls``: a folder that
    ``flexlab certs`` wrote: every connection is then mutual TLS (``tls://`` addresses), the
    scheduler, agents, workers and ``Client(cluster)`` each with their own certificate.
    """

    def __init__(
        self,
        hosts: Sequence[HostSpec] | None = None,
        *,
        processes: bool = False,
        cpu_workers: int = 1,
        threads_per_worker: int = 2,
        state_file: str = ":memory:",
        policy: str | None = None,
        loop_interval: float | None = None,
        telemetry_interval: float = 1.0,
        wait_for_slices: float = 30.0,
        plugin: FlexScheduler | None = None,
        tls: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.flex_hosts = list(hosts) if hosts is not None else default_mock_pool()
        self.flex_plugin = plugin or FlexScheduler(
            state_file=state_file, policy=policy, loop_interval=loop_interval
        )
        self.flex_processes = processes
        self.telemetry_interval = telemetry_interval
        self.wait_for_slices = wait_for_slices
        self.agents: list[HostAgent] = []
        self.tls = tls
        kwargs.setdefault("host", "127.0.0.1")
        if tls:
            from flexlab.tls import pool_security

            kwargs["protocol"] = "tls://"
            kwargs["security"] = pool_security(tls, scheduler="scheduler", worker="worker", client="client")
        kwargs.setdefault("protocol", "tcp://")
        kwargs.setdefault("dashboard_address", None)
        scheduler_kwargs = dict(kwargs.pop("scheduler_kwargs", None) or {})
        scheduler_kwargs["plugins"] = [*scheduler_kwargs.get("plugins", ()), self.flex_plugin]
        # Without a dashboard the scheduler still serves /health etc.: on a free local port,
        # never on 8787 of every interface.
        if kwargs.get("dashboard_address") is None:
            scheduler_kwargs.setdefault("dashboard_address", "127.0.0.1:0")
        super().__init__(
            n_workers=cpu_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            scheduler_kwargs=scheduler_kwargs,
            **kwargs,
        )

    async def _start(self) -> None:
        await super()._start()
        address = self.scheduler.address
        for spec in self.flex_hosts:
            agent = HostAgent(
                address,
                spec,
                provider="mock",
                processes=self.flex_processes,
                telemetry_interval=self.telemetry_interval,
                tls=self.tls,
            )
            self.agents.append(await agent.start())
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.wait_for_slices
        while time.monotonic() < deadline:
            slices = self.flex_plugin.pool.slices.values()
            registered = set(self.flex_plugin.pool.ledger.hosts)
            if registered >= {h.name for h in self.flex_hosts} and all(s.state == "ready" for s in slices):
                return
            await asyncio.sleep(0.05)
        waiting = [s.slice_id for s in self.flex_plugin.pool.slices.values() if s.state != "ready"]
        raise TimeoutError(f"flexlab: slices {waiting} not ready after {self.wait_for_slices} s")

    async def _close(self) -> None:
        for agent in self.agents:
            await agent.close(leave=False)
        self.agents.clear()
        await super()._close()

    @property
    def pool(self) -> Any:
        """The plugin's live ``SlicePool`` (in-process clusters only)."""
        return self.flex_plugin.pool
