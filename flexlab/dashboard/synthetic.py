"""A synthetic pool state (typed, :class:`~flexlab.core.poolstate.PoolState`) and history at any size.

For the dashboard benchmark (``benchmarks/dashboard_bench.py``) and the scale tests: hosts of
eight devices mixing NVIDIA (A100 in MIG profiles, V100S, T4), Ascend 910B3 (fractions and
vNPU templates) and Cambricon MLU370, slices with owners and utilisation, leases, waiting
tasks and events. Seeded: the same arguments give the same state.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from flexlab.core.catalog import CATALOG
from flexlab.core.placement.live import LivePolicy
from flexlab.core.poolstate import (
    DeviceState,
    HostState,
    LeaseView,
    PluginInfo,
    PolicyState,
    PoolEvent,
    PoolState,
    SliceState,
    WaitingWork,
    from_json,
)
from flexlab.core.request import parse_request

_MODELS: tuple[tuple[str, str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("a100-80gb", "profile", ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"), (428, 285, 142, 142)),
    ("v100s-32gb", "fraction", (), ()),
    ("t4", "fraction", (), ()),
    ("ascend-910b3", "profile", ("vir10_3c_32g", "vir05_1c_16g", "vir05_1c_16g"), (500, 250, 250)),
    ("ascend-910b3", "fraction", (), ()),
    ("mlu370-x8", "fraction", (), ()),
)
OWNERS = ("alice", "bob", "carol", "dave", "erin")
CLASSES = ("any:0.25,4GiB", "gpu:0.5", "npu:vir05_1c_16g", "a100-80gb:1g.10gb", "gpu:1", "mlu:0.3")


def synthetic_state(
    n_devices: int = 1000, *, per_host: int = 8, seed: int = 0, now: float = 1.8e9
) -> PoolState:
    """A typed pool state of ``n_devices`` devices."""
    rng = random.Random(seed)
    hosts: list[HostState] = []
    leases: list[LeaseView] = []
    seq = 0
    for h in range((n_devices + per_host - 1) // per_host):
        name = f"node-{h:04d}"
        devs = []
        for i in range(min(per_host, n_devices - h * per_host)):
            model, mode, profiles, shares = _MODELS[(h + i // 2) % len(_MODELS)]
            m = CATALOG[model]
            mem = int(m.memory_mib or 0)
            slices: list[SliceState] = []
            if mode == "profile":
                parts = list(zip(profiles, shares, strict=True))
            else:
                cuts = sorted(rng.sample(range(100, 1000, 100), rng.randint(0, 3)))
                bounds = [0, *cuts, 1000]
                parts = [("", b - a) for a, b in itertools.pairwise(bounds)]
            for j, (prof, share) in enumerate(parts):
                seq += 1
                owner = rng.choice(OWNERS) if rng.random() < 0.25 else None
                lease_id = f"L{seq}" if owner else None
                util = rng.random() * (share / 1000)
                smem = mem * share // 1000
                slices.append(
                    SliceState(
                        slice_id=f"s{seq}",
                        compute_milli=share,
                        memory_mib=smem,
                        profile=prof or None,
                        lease_id=lease_id,
                        owner=owner,
                        state="ready",
                        worker=f"tcp://w/{seq}",
                        tasks=rng.randint(0, 3),
                        load_milli=rng.randint(0, share),
                        utilisation=round(min(1.0, util * 1000 / share), 4),
                        memory_used_mib=rng.randint(0, smem),
                        policy="flexlab",
                    )
                )
                if owner and lease_id:
                    leases.append(
                        LeaseView(
                            lease_id=lease_id,
                            owner=owner,
                            request=f"{m.kind}:{share / 1000:g}",
                            state="active",
                            reason="",
                            priority=0,
                            ttl_s=3600.0,
                            created=now - 60,
                            expires_at=now + 3540,
                            ttl_left_s=3540.0,
                            slice_id=f"s{seq}",
                            host=name,
                            devices=(f"{name}/{model}#{i}",),
                            model=model,
                            compute_milli=share,
                            memory_mib=smem,
                            profile=prof or None,
                            utilisation=slices[-1].utilisation,
                            memory_used_mib=0,
                            policy="flexlab",
                        )
                    )
                if j == len(parts) - 1 and rng.random() < 0.3:
                    slices.pop()  # leave the last part uncarved
            carved = sum(s.compute_milli for s in slices)
            devs.append(
                DeviceState(
                    id=f"{name}/{model}#{i}",
                    model=model,
                    name=m.name,
                    vendor=m.vendor,
                    kind=m.kind,
                    index=i,
                    mode=mode,
                    memory_mib=mem,
                    free_compute_milli=1000 - carved,
                    free_memory_mib=max(0, mem - sum(s.memory_mib for s in slices)),
                    schedulable=True,
                    utilisation=_device_util(slices),
                    memory_used_mib=sum(s.memory_used_mib for s in slices),
                    free_profiles=() if mode == "fraction" or carved >= 997 else (profiles[-1],),
                    granularity_milli=m.granularity_milli,
                    profiles=tuple(profiles),
                    slices=tuple(slices),
                )
            )
        hosts.append(
            HostState(
                name=name,
                address="",
                cpu_milli=64000,
                memory_mib=262144,
                free_cpu_milli=32000,
                free_memory_mib=131072,
                devices=tuple(devs),
            )
        )
    waiting = tuple(
        WaitingWork(
            key=f"task-{k}", request=rng.choice(CLASSES), reason="UNSCHEDULABLE: 12 INSUFFICIENT_COMPUTE"
        )
        for k in range(40)
    )
    kinds = ("carve", "reclaim", "lease", "wait", "lost", "preempt", "reslice")
    events = tuple(
        PoolEvent(
            seq=k + 1,
            time=now - 50 + k,
            kind=kinds[k % len(kinds)],
            message=f"event {k % 17}",
            owner=rng.choice(OWNERS),
            lease_id=None,
            slice_id=f"s{k}",
            host="node-0000",
            decision_id="",
        )
        for k in range(50)
    )
    return PoolState(
        time=now,
        hosts=tuple(hosts),
        leases=tuple(leases),
        events=events,
        waiting=waiting,
        plugin=PluginInfo(errors=0, stats={}, policy="flexlab", agents={}),
        policy=synthetic_policy(seed=seed),
    )


def _device_util(slices: Sequence[SliceState]) -> float:
    return round(min(1.0, sum(s.utilisation * s.compute_milli / 1000 for s in slices)), 4)


def synthetic_policy(requests: int = 500, *, seed: int = 0) -> PolicyState:
    """The ``policy`` section of a pool whose flexlab policy has seen ``requests`` of the
    request classes (prior gone after 200)."""
    rng = random.Random(seed)
    live = LivePolicy("flexlab")
    parsed = [parse_request(c) for c in CLASSES]
    for _ in range(requests):
        live.observe(rng.choice(parsed))
    return from_json(PolicyState, live.state(), "policy")


def synthetic_history(state: PoolState, seconds: int = 600, *, seed: int = 0) -> list[dict[str, Any]]:
    """One frame per second for ``seconds`` up to the state's time, with arrivals per class."""
    rng = random.Random(seed)
    vendors = sorted({d.vendor for _, d in state.devices()})
    models = sorted({d.model for _, d in state.devices()})
    frames = []
    for k in range(seconds):
        t = state.time - seconds + 1 + k
        frames.append(
            {
                "time": t,
                "by_vendor": {v: [rng.random(), 1024 * rng.randint(0, 64), 1024 * 64] for v in vendors},
                "by_model": {m: [rng.random(), 1024 * rng.randint(0, 32), 1024 * 32] for m in models},
                "total": [rng.random(), 1024 * rng.randint(0, 640), 1024 * 640],
                "leased": rng.random() * 0.3,
                "waiting": rng.randint(0, 40),
                "arrivals": {c: rng.randint(0, 3) for c in CLASSES if rng.random() < 0.5},
            }
        )
    return frames


class SyntheticPool:
    """A ``PoolSource`` over :func:`synthetic_state`: utilisation moves on every call and the
    history grows one frame a second (for scale tests of the live page, no cluster needed)."""

    def __init__(self, n_devices: int = 1000, *, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._state = synthetic_state(n_devices, seed=seed, now=time.time())
        self._frames = synthetic_history(self._state, 60, seed=seed)

    def pool_state(self) -> PoolState:
        """The state with every slice's utilisation moved a little (and its devices' with it)."""
        hosts = []
        for h in self._state.hosts:
            devs = []
            for d in h.devices:
                slices = tuple(
                    replace(
                        s,
                        utilisation=round(min(1.0, max(0.0, s.utilisation + self.rng.uniform(-0.2, 0.2))), 4),
                    )
                    for s in d.slices
                )
                devs.append(replace(d, slices=slices, utilisation=_device_util(slices)))
            hosts.append(replace(h, devices=tuple(devs)))
        self._state = replace(self._state, hosts=tuple(hosts), time=time.time())
        return self._state

    def history(self, since: float = 0.0) -> list[dict[str, Any]]:
        last = self._frames[-1]["time"]
        now = time.time()
        while last + 1.0 <= now:
            last += 1.0
            frame = dict(synthetic_history(self._state, 1, seed=self.rng.randrange(1 << 30))[0], time=last)
            self._frames.append(frame)
        del self._frames[:-600]
        return [f for f in self._frames if f["time"] > since]
