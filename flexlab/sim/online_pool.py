"""What the online replay drives: the shipped ``SlicePool`` on a virtual clock, the shipped
``HiLoop``, and a simulated host agent.

Nothing here decides where a slice goes, which warm slice a lease takes or which lease is
preempted: the pool and the Hi loop do, exactly as under the Dask plugin. This module only
builds them (hosts from the trace's node list, a policy per mode, the plugin's policy
stack) and plays the agents: a ``StartSlice`` command becomes a ``slice_ready`` call
``start_s`` virtual seconds later, a ``StopSlice`` cancels it.

>>> clock = VirtualClock()
>>> clock.now = 12.5
>>> clock()
12.5
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

from flexlab.core.hiloop import GiveBackToWaitingWork, HiLoop, HiPolicy, Preempt, Prewarm
from flexlab.core.pool import RetagSlice, SlicePool, StopSlice
from flexlab.core.prewarm import WarmPlanner
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE
from flexlab.core.topology import HostSpec
from flexlab.sim.openb import load_host_specs

#: Placement policy per mode, and the one used while the pool cannot place with it yet.
POLICY = {
    "whole": "bestfit",
    "fgd": "fgd",
    "flexlab": "flexlab",
    "flexlab+reserve": "flexlab",
    "flexlab+forecast": "flexlab",
}
FALLBACK_POLICY = "bestfit"


class VirtualClock:
    """The pool's clock in the replay: the time of the event being handled."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def openb_hosts(trace_dir: str | Path, *, sample: int = 1) -> list[HostSpec]:
    """The trace's GPU nodes as the hosts agents would register (``load_host_specs``);
    ``sample`` N keeps every N-th node (a smaller pool with the same mix of nodes)."""
    return load_host_specs(trace_dir)[:: max(sample, 1)]


_TEMPLATES: dict[tuple[int, str, bool], tuple[list[HostSpec], SlicePool, str]] = {}


def new_pool(
    hosts: list[HostSpec], policy: str, *, shared: bool = False
) -> tuple[SlicePool, VirtualClock, str]:
    """A fresh pool of ``hosts`` on a virtual clock placing with ``policy``, or with
    ``FALLBACK_POLICY`` while the pool cannot (the third item says which). ``shared``: as
    the live pool (``flexlab.carve-on-register``, on by default), every device's free
    capacity is a shared slice whose worker the agent starts at registration; else leases
    get dedicated slices only (a pool of leases). Registering a thousand hosts takes
    seconds, so a registered pool is kept per host list, policy and carving, and copied."""
    key = (id(hosts), policy, shared)
    cached = _TEMPLATES.get(key)
    if cached is None or cached[0] is not hosts:
        used = policy
        try:
            pool = SlicePool(policy=policy, clock=VirtualClock(), carve_on_register=shared)
        except ValueError:  # InvalidRequest too: a policy the pool cannot place with yet
            used = FALLBACK_POLICY
            pool = SlicePool(policy=used, clock=VirtualClock(), carve_on_register=shared)
        for spec in hosts:
            pool.register_host(spec)
        pool.events.clear()
        cached = _TEMPLATES[key] = (hosts, pool, used)
    pool = copy.deepcopy(cached[1])
    clock = pool.clock
    assert isinstance(clock, VirtualClock)
    return pool, clock, cached[2]


def lease_request(req: SliceRequest, *, whole: bool = False, host_resources: bool = True) -> SliceRequest:
    """A pod's request as a lease asks for it: its text (what warm slices are matched on)
    names all of it, so that a lease takes only a warm slice of exactly its shape.
    ``whole``: a share rounded up to the whole device. ``host_resources`` False: without
    the pod's host CPU and RAM (see ``OnlineConfig.host_resources``)."""
    if whole and 0 < req.compute_milli < WHOLE:
        req = replace(req, compute_milli=WHOLE)
    if not host_resources:
        req = replace(req, host_cpu_milli=0, host_memory_mib=0)
    sel = req.selector
    text = next(iter(sel.models)) if len(sel.models) == 1 else sel.describe()
    if req.compute_milli == 0:
        text = f"cpu:{req.host_cpu_milli / 1000:g}"
    else:
        text += ":1" if req.compute_milli >= WHOLE else f":{req.compute_milli / 10:g}%"
        text += f",devices={req.devices}" if req.devices > 1 else ""
    if req.host_cpu_milli or req.host_memory_mib:
        text += f",cpu={req.host_cpu_milli / 1000:g},ram={req.host_memory_mib}MiB"
    return replace(req, spec=text)


@dataclass
class WarmSettings:
    """The Hi loop's settings (the plugin's ``flexlab.hi.*`` keys)."""

    interval_s: float = 2.0
    bucket_s: float = 2.0
    #: Forecast horizon in buckets; 0: the slice start-up plus one interval (the lead time
    #: a warm slice must be carved ahead by to be ready when its lease comes).
    horizon: int = 0
    season: int = 0
    #: Warm slices at most per request text and in all (the plugin's defaults, 4 and 8,
    #: are for a small pool; 3,000 is about half the openb pool's devices).
    max_per_class: int = 3000
    max_total: int = 3000
    #: Safety stock in standard deviations of the forecast's error (``WarmPlanner.service_z``).
    service_z: float = 0.0
    #: A lease takes a ready warm slice of another request up to this many times its size
    #: when none of its own is ready (``SlicePool(warm_oversize=)``; 1.0: never).
    oversize: float = 1.25
    #: Share of the pool kept warm in the arrival mix (the standing reserve).
    reserve: float = 0.1
    #: Warm slices are given back only above the highest target of this window.
    scale_down_window_s: float = 60.0
    hold_after_wait_s: float = 30.0


def horizon_buckets(w: WarmSettings, start_s: float) -> int:
    if w.horizon > 0:
        return w.horizon
    return max(1, int(-(-(start_s + w.interval_s) // w.bucket_s)))


def make_hiloop(mode: str, w: WarmSettings, *, start_s: float, grace_s: float | None) -> HiLoop | None:
    """The plugin's policy stack for ``mode``: give-back and pre-warming (reserve only in
    ``flexlab+reserve``, forecast and reserve in ``flexlab+forecast``), preemption after
    ``grace_s`` when given. None when the mode runs no policy."""
    policies: list[HiPolicy] = []
    if mode in ("flexlab+reserve", "flexlab+forecast"):
        planner = WarmPlanner(
            bucket_s=w.bucket_s,
            horizon=horizon_buckets(w, start_s),
            season=w.season,
            max_per_class=w.max_per_class,
            max_total=w.max_total,
            service_z=w.service_z,
        )
        policies += [
            GiveBackToWaitingWork(),
            Prewarm(
                planner,
                reserve=w.reserve,
                forecast=mode == "flexlab+forecast",
                scale_down_window_s=w.scale_down_window_s,
            ),
        ]
    if grace_s is not None:
        policies.append(Preempt(grace_s=grace_s))
    return HiLoop(policies, hold_after_wait_s=w.hold_after_wait_s) if policies else None


@dataclass
class SimAgent:
    """The host agents: each ``StartSlice`` is answered by ``slice_ready`` ``start_s``
    later, each ``RetagSlice`` (a running worker handed to the next lease) ``retag_s``
    later, unless a ``StopSlice`` of that slice on that host (or a newer command for it)
    came in between. ``take`` returns (ready at, ticket) to schedule; ``resolve(ticket)``
    gives the slice id and worker to call ``slice_ready`` with, or None when it went stale."""

    start_s: float
    retag_s: float = 1.0
    started: int = 0
    retagged: int = 0
    #: Slice ids stopped, and retagged, by the commands of the last ``take``.
    stopped: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
    _gen: dict[tuple[str, str], int] = field(default_factory=dict)
    _tickets: dict[int, tuple[str, str, int, str]] = field(default_factory=dict)
    _next: int = 0

    def take(self, pool: SlicePool, now: float) -> list[tuple[float, int]]:
        out = []
        self.stopped, self.kept = set(), set()
        for host in list(pool.outbox):
            for cmd in pool.take_commands(host):
                key = (host, cmd.slice_id)
                g = self._gen[key] = self._gen.get(key, 0) + 1
                if isinstance(cmd, StopSlice):
                    self.stopped.add(cmd.slice_id)
                    continue
                self._next += 1
                if isinstance(cmd, RetagSlice):
                    self.retagged += 1
                    self.kept.add(cmd.slice_id)
                    self._tickets[self._next] = (host, cmd.slice_id, g, cmd.worker)
                    out.append((now + self.retag_s, self._next))
                else:
                    self.started += 1
                    self._tickets[self._next] = (host, cmd.slice_id, g, f"worker-{self._next}")
                    out.append((now + self.start_s, self._next))
        return out

    def resolve(self, ticket: int) -> tuple[str, str] | None:
        host, sid, g, worker = self._tickets.pop(ticket)
        return (sid, worker) if self._gen.get((host, sid)) == g else None
