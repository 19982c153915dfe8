"""The speed-aware batch through the shipped binder: ``SlicePool.bind_many`` and
``SlicePool.learn``, as the Dask plugin calls them, on a virtual clock.

Every device of the batch pool is one shared whole-device slice (the pool carves them when
its hosts register; the agents start their workers at once). The batch is submitted as
``waves`` rounds, each one ``client.map`` per workload class (the plugin binds a map's
tasks together, ``bind_many``), a round submitted when the last one has finished (a loop of
``client.gather(client.map(...))``). Each slice runs the tasks bound to it one at a time
in submission order (whole-device tasks: the slice's Dask resources admit one); a finished
task's measured duration goes to ``learn``. Speed-aware: the pool's ``ThroughputTable``
(the plugin's default); blind: no table.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence

import numpy as np

from flexlab.core.pool import SlicePool
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE
from flexlab.core.speed import ThroughputTable
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.sim.online_pool import VirtualClock


def binder_pool(n_fast: int, n_slow: int, *, aware: bool) -> SlicePool:
    """One host per device, fast A100s first; every device one shared slice, ready."""
    pool = SlicePool(policy="binpack", clock=VirtualClock(), speed=ThroughputTable() if aware else None)
    models = ["a100-80gb"] * n_fast + ["t4"] * n_slow
    for i, model in enumerate(models):
        kind = "fast" if model == "a100-80gb" else "slow"
        pool.register_host(HostSpec(f"{kind}-{i}", 64000, 262144, (DeviceSpec(model, 0),)))
    for host in list(pool.outbox):
        for cmd in pool.take_commands(host):
            pool.slice_ready(cmd.slice_id, f"worker-{cmd.slice_id}")
    return pool


def run_batch_binder(
    tasks: Sequence[SliceRequest],
    true_rates: dict[tuple[str, str], float],
    *,
    aware: bool,
    n_fast: int = 4,
    n_slow: int = 12,
    waves: int = 1,
    noise: float = 0.1,
    seed: int = 0,
) -> float:
    """Makespan of ``tasks`` bound by the pool's binder (see the module docstring)."""
    rng = np.random.default_rng(seed)
    pool = binder_pool(n_fast, n_slow, aware=aware)
    now = 0.0
    per_wave = -(-len(tasks) // max(waves, 1))
    for w in range(0, len(tasks), per_wave):
        now = _run_wave(pool, tasks, range(w, min(w + per_wave, len(tasks))), now, true_rates, rng, noise)
    return now


def _run_wave(
    pool: SlicePool,
    tasks: Sequence[SliceRequest],
    wave: range,
    now: float,
    true_rates: dict[tuple[str, str], float],
    rng: np.random.Generator,
    noise: float,
) -> float:
    """Submit one round (a map per class), run it to its end; the time it ends."""
    clock = pool.clock
    assert isinstance(clock, VirtualClock)
    queues: dict[str, deque[int]] = {}
    for cls in sorted({str(tasks[j].workload_class) for j in wave}):
        keys: list[object] = [j for j in wave if tasks[j].workload_class == cls]
        request = SliceRequest(compute_milli=WHOLE, workload_class=cls)
        for j, b in zip(keys, pool.bind_many(keys, request), strict=True):
            if b.status != "bound" or b.slice_id is None:
                raise RuntimeError(f"task {j} of the batch was not bound: {b.reason}")
            assert isinstance(j, int)
            queues.setdefault(b.slice_id, deque()).append(j)
    events: list[tuple[float, str, int, float]] = []

    def begin(sid: str, t0: float) -> None:
        j = queues[sid].popleft()
        t = tasks[j]
        true = true_rates[(str(t.workload_class), pool.slices[sid].model)]
        dur = float(t.expected_duration_s or 1.0) / true * float(rng.lognormal(0.0, noise))
        heapq.heappush(events, (t0 + dur, sid, j, dur))

    for sid in queues:
        begin(sid, now)
    while events:
        now, sid, j, dur = heapq.heappop(events)
        clock.now = now
        pool.task_finished(j)
        pool.learn(str(tasks[j].workload_class), sid, 1.0, dur)
        if queues[sid]:
            begin(sid, now)
    return now
