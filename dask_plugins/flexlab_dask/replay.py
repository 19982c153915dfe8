"""A live replay of the openb benchmark: the trace's pods as leases on a real Dask scheduler.

``flexlab bench openb --live`` runs this. In this process it starts a
``distributed.Scheduler`` on 127.0.0.1 with the :class:`~flexlab_dask.scheduler.FlexScheduler`
plugin (no carving on registration, no Hi loop, the benchmark's policy with a frozen shape
distribution), then:

1. virtual host agents register every node of the trace through ``flexlab_agent_register``
   (the host dicts a ``HostAgent`` sends) in the order the simulator breaks ties by, and
   long-poll ``flexlab_agent_poll`` for their commands, which they acknowledge without
   starting a worker (6,212 slice workers do not fit on a laptop);
2. a client asks one lease per pod, in the protocol's order, through ``flexlab_lease_create``
   (``lease_spec``: the pod's GPU share or whole GPUs, host CPU and memory). A lease that
   holds a slice is a placed pod; one left ``pending`` (it fits nowhere now) is a pod that
   does not fit, and the client gives it back at once, as the protocol skips that pod;
3. after each lease the allocated GPU is read from the plugin's ledger.

Everything from the lease request to the ledger is the shipped path; only the slice
workers are missing, so leases stay ``pending`` with their slice carved (``starting its
worker``): placement and the ledger do not wait for workers.

>>> import asyncio
>>> out = asyncio.run(replay_live(hosts, order, specs, policy="bestfit"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from distributed import Scheduler
from distributed.core import ConnectionPool, rpc

from flexlab.core.placement.fragmentation import ShapeDistribution
from flexlab.core.placement.live import LivePolicy
from flexlab.core.placement.policies import NEEDS_DISTRIBUTION
from flexlab.core.snapshot import WHOLE
from flexlab.core.topology import HostSpec
from flexlab.sim.live_compare import (
    LIVE_LOADS,
    LiveComparison,
    LiveOutcome,
    LiveRun,
    SeedPlan,
    Workload,
    agreement,
    plan,
    register_order,
    simulate,
    unallocated,
)
from flexlab.sim.openb import load_host_specs
from flexlab_dask.scheduler import FlexScheduler
from flexlab_dask.state import host_to_dict

logger = logging.getLogger("flexlab.replay")

#: The owner of the replay's leases.
OWNER = "openb-replay"
#: Longer than any replay (the plugin's default ``lease.max-ttl`` is 7 days).
LEASE_TTL = "1d"
#: Send CPU-only pods as leases. Off: a lease holds a slice of a device, and a CPU-only
#: request fails inside ``LeaseBook.place`` (IndexError on a slice with no device) after
#: its ledger reservation, which then breaks every later lease release (the lease book's
#: retry trips over that reservation). The pods are counted as refused, never sent.
SEND_CPU_ONLY = False
#: Why a pod was not sent.
UNSENT = "not sent: CPU-only (the lease API has no CPU-only lease)"
#: Called with (pods done, pods in all, what is running).
LiveProgress = Callable[[int, int, str], None]


def make_plugin(policy: str, distribution: ShapeDistribution | None) -> FlexScheduler:
    """The plugin as the replay runs it: no carving on registration (no shared slices: the
    leases alone fill the pool, as pods fill the simulator's), no Hi loop (no pre-warming
    or preemption, which the protocol does not have), no state file. Policies that
    measure fragmentation place with ``distribution`` frozen (``LivePolicy.seeded``), as
    an operator would seed a pool from the history of its workload."""
    kwargs: dict[str, Any] = {
        "policy": policy,
        "state_file": "",
        "carve_on_register": False,
        "hi": False,
    }
    if policy in NEEDS_DISTRIBUTION:
        if distribution is None:
            raise ValueError(f"policy {policy!r} needs the workload's shape distribution")
        kwargs["live_policy"] = LivePolicy.seeded(policy, distribution)
    return FlexScheduler(**kwargs)


class _Agents:
    """Virtual host agents: register hosts in a given order, then long-poll each host's
    commands and acknowledge them without starting workers."""

    def __init__(self, address: str, hosts: Sequence[HostSpec], *, poll_timeout: float) -> None:
        self.address = address
        self.hosts = list(hosts)
        self.poll_timeout = poll_timeout
        # One connection per host, as one agent process per host would hold.
        self.pool = ConnectionPool(limit=len(self.hosts) + 8)
        self.commands: Counter[str] = Counter()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    async def register(self) -> None:
        await self.pool.start()
        for spec in self.hosts:
            resp = await self.pool(self.address).flexlab_agent_register(
                host=host_to_dict(spec), agent="openb-replay", running=[], layouts={}
            )
            if resp.get("status") != "OK":
                raise RuntimeError(f"registration of host {spec.name} refused: {resp}")

    def start_polling(self) -> None:
        self._tasks = [asyncio.create_task(self._poll(h.name)) for h in self.hosts]

    async def _poll(self, host: str) -> None:
        while not self._closing:
            resp = await self.pool(self.address).flexlab_agent_poll(
                host=host, running=[], timeout=self.poll_timeout
            )
            if resp.get("status") != "OK":
                raise RuntimeError(f"poll of host {host}: {resp}")
            for cmd in resp.get("commands", ()):
                self.commands[str(cmd["op"])] += 1

    async def close(self) -> None:
        """Stop polling: the long polls in flight are cancelled (their hosts stay
        registered, as agents that go quiet without leaving)."""
        self._closing = True
        for t in self._tasks:
            t.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.close()
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise RuntimeError(f"{len(failed)} virtual agents failed") from failed[0]


async def replay_live(
    hosts: Sequence[HostSpec],
    order: Sequence[int],
    specs: Sequence[str | None],
    *,
    policy: str,
    distribution: ShapeDistribution | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 128,
    poll_timeout: float = 30.0,
) -> LiveOutcome:
    """Replay ``specs`` (one lease request per pod, in arrival order; None: a pod the
    client does not send) on a live pool of ``hosts`` (node-list order) registered in
    ``order`` (indices into ``hosts``)."""
    index = {h.name: i for i, h in enumerate(hosts)}
    plugin = make_plugin(policy, distribution)
    scheduler = Scheduler(host="127.0.0.1", port=0, dashboard=False, dashboard_address="127.0.0.1:0")
    scheduler.add_plugin(plugin, name=plugin.name)
    n = len(specs)
    placed = np.zeros(n, dtype=np.bool_)
    host = np.full(n, -1, dtype=np.int64)
    allocated = np.zeros(n, dtype=np.int64)
    refused = np.zeros(n, dtype=np.bool_)
    refusals: Counter[str] = Counter()
    async with scheduler:
        agents = _Agents(scheduler.address, [hosts[int(i)] for i in order], poll_timeout=poll_timeout)
        t0 = time.perf_counter()
        await agents.register()
        register_s = time.perf_counter() - t0
        names = plugin.pool.ledger.pool.host_names
        if names != [h.name for h in agents.hosts]:
            raise RuntimeError("the live pool's host order is not the registration order")
        agents.start_polling()
        client = rpc(scheduler.address)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            for i, spec in enumerate(specs):
                if spec is None:
                    refusals[UNSENT] += 1
                    where = None
                else:
                    where = await _lease(client, spec, refusals)
                if where is None:
                    refused[i] = True
                elif where:
                    placed[i] = True
                    host[i] = index[where]
                arr = plugin.pool.ledger.pool
                allocated[i] = WHOLE * arr.n_devices - int(arr.dev_compute_free.sum())
                if progress is not None and (i + 1) % progress_every == 0:
                    progress(i + 1, n)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            await _drained(plugin, timeout=30.0)
        finally:
            await client.close_rpc()
            await agents.close()
    if progress is not None:
        progress(n, n)
    return LiveOutcome(
        placed=placed,
        host=host,
        allocated_milli=allocated,
        refused=refused,
        refusals=dict(refusals),
        seconds=seconds,
        cpu_seconds=cpu,
        register_seconds=register_s,
        starts=agents.commands["start"],
        stops=agents.commands["stop"],
        plugin_errors=tuple(plugin.errors),
    )


async def _lease(client: Any, spec: str, refusals: Counter[str]) -> str | None:
    """Ask one lease: the host it was placed on, "" when it fits nowhere now (it is given
    back) or cannot ever fit, None when the lease API refused the request."""
    try:
        resp = await client.flexlab_lease_create(request=spec, owner=OWNER, ttl=LEASE_TTL)
    except Exception as exc:  # the handler raised: an internal error of the shipped path
        refusals[f"internal error: {type(exc).__name__}: {exc}"] += 1
        logger.warning("lease %s: the scheduler raised %s: %s", spec, type(exc).__name__, exc)
        return None
    if resp.get("status") != "OK":
        if resp.get("error") == "Unschedulable":
            return ""  # it can never fit: the simulator fails the pod too
        refusals[f"{resp.get('error')}: {resp.get('field', '')}".rstrip(": ")] += 1
        return None
    lease = resp["lease"]
    if lease.get("host"):
        return str(lease["host"])
    released = await client.flexlab_lease_release(lease_id=lease["lease_id"], owner=OWNER)
    if released.get("status") != "OK":
        raise RuntimeError(f"could not give back lease {lease['lease_id']}: {released}")
    return ""


async def _drained(plugin: FlexScheduler, *, timeout: float) -> None:
    """Wait until the agents took every command (the outbox is empty)."""
    deadline = time.monotonic() + timeout
    while any(plugin.pool.outbox.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def compare(
    work: Workload,
    seed_plan: SeedPlan,
    live: LiveOutcome,
    *,
    sim_progress: Callable[[int, int], None] | None = None,
    loads: Sequence[int] = LIVE_LOADS,
) -> LiveRun:
    """Run the simulator on ``seed_plan`` (and its mirror when the live pool refused pods)
    and set its figures beside ``live``'s."""
    cap = work.capacity_milli
    sim = simulate(work, seed_plan, progress=sim_progress)
    arrived = seed_plan.arrived_milli()
    assert sim.host is not None
    same, same_outcome, first = agreement(sim.host, live.host)
    mirror = simulate(work, seed_plan, skip=live.refused) if live.refused.any() else None
    same_mirror = (
        agreement(mirror.host, live.host)[0] if mirror is not None and mirror.host is not None else None
    )
    return LiveRun(
        workload=seed_plan.workload,
        policy=seed_plan.policy,
        seed=seed_plan.seed,
        pods=len(seed_plan),
        loads=tuple(loads),
        sim=unallocated(arrived, sim.allocated_milli, cap, loads),
        live=unallocated(arrived, live.allocated_milli, cap, loads),
        mirror=unallocated(arrived, mirror.allocated_milli, cap, loads) if mirror is not None else None,
        same_host=same,
        same_outcome=same_outcome,
        first_divergence=first,
        placed_sim=int(sim.placed.sum()),
        placed_live=int(live.placed.sum()),
        refused=int(live.refused.sum()),
        refusals=live.refusals,
        same_host_mirror=same_mirror,
        sim_seconds=sim.seconds,
        live_seconds=live.seconds,
        live_cpu_seconds=live.cpu_seconds,
        register_seconds=live.register_seconds,
        starts=live.starts,
        stops=live.stops,
        plugin_errors=live.plugin_errors,
    )


def run_live_benchmark(
    trace_dir: str,
    workloads: Sequence[str],
    policies: Sequence[str],
    seeds: Sequence[int],
    *,
    hosts: int | None = None,
    pods: int | None = None,
    loads: Sequence[int] = LIVE_LOADS,
    progress: LiveProgress | None = None,
) -> LiveComparison:
    """Replay each workload x policy x seed live and in the simulator (``hosts``: on the
    first that many nodes; ``pods``: only the first that many pods of each order)."""
    host_specs = load_host_specs(trace_dir, hosts=hosts)
    out: LiveComparison | None = None
    for workload in workloads:
        for policy in policies:
            work = plan(trace_dir, workload, policy, seeds, hosts=hosts)
            if out is None:
                out = LiveComparison(str(trace_dir), len(host_specs), work.capacity_milli)
            for whole in work.plans:
                sp = whole if pods is None else replace(whole, order=whole.order[:pods])
                out.runs.append(_run_seed(work, sp, host_specs, loads, progress))
    assert out is not None
    return out


def _run_seed(
    work: Workload,
    sp: SeedPlan,
    host_specs: Sequence[HostSpec],
    loads: Sequence[int],
    progress: LiveProgress | None,
) -> LiveRun:
    label = f"{sp.workload} / {sp.policy} / seed {sp.seed}"

    def live_tick(i: int, n: int) -> None:
        if progress is not None:
            progress(i, n, f"{label}: live")

    def sim_tick(i: int, n: int) -> None:
        if progress is not None:
            progress(i, n, f"{label}: simulator")

    specs = [s if SEND_CPU_ONLY or not s.startswith("cpu:") else None for s in sp.specs()]
    live = asyncio.run(
        replay_live(
            host_specs,
            register_order(len(host_specs), sp.rank).tolist(),
            specs,
            policy=sp.policy,
            distribution=work.distribution,
            progress=live_tick,
        )
    )
    return compare(work, sp, live, sim_progress=sim_tick, loads=loads)
