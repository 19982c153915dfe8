"""The speed-aware vs heterogeneity-blind batch: one fixed batch of whole-device tasks on a
mock pool mixing a fast and a slow model, with workload classes whose speed ratio differs
by model; makespans against the offline LP lower bound and an offline greedy schedule.

The shipped path is ``flexlab.sim.online_binder`` (the pool's binder, as the plugin runs
it). The pull dispatcher (``AdvantageDispatcher``) and the push dispatcher (``run_batch``)
here are this experiment's own schedulers, not shipped: they show what binding late (when
a device frees) would give, beside what binding at submission gives."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flexlab.core.placement.framework import PlacementProfile, place
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.core.speed import AdvantageDispatcher, ExpectedFinishScore, PendingTask, ThroughputTable
from flexlab.sim.online_binder import run_batch_binder


@dataclass(frozen=True)
class BatchResult:
    """Makespans of one fixed batch on a mixed pool (seconds)."""

    aware_s: float
    blind_s: float
    lower_bound_s: float
    offline_greedy_s: float
    tasks: int
    devices: dict[str, int]
    #: The same two tables with the push dispatcher of ``run_batch``, for reference.
    aware_push_s: float = math.nan
    blind_push_s: float = math.nan
    #: Through the shipped binder: rounds of submission -> (speed-aware, blind) makespans.
    binder_s: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.blind_s / self.aware_s

    def summary(self) -> dict[str, object]:
        return {
            "tasks": self.tasks,
            "devices": self.devices,
            "makespan_speed_aware_s": self.aware_s,
            "makespan_blind_s": self.blind_s,
            "speedup": self.speedup,
            "offline_lower_bound_s": self.lower_bound_s,
            "offline_greedy_true_speeds_s": self.offline_greedy_s,
            "gap_to_lower_bound": self.aware_s / self.lower_bound_s - 1.0,
            "push_dispatch_speed_aware_s": self.aware_push_s,
            "push_dispatch_blind_s": self.blind_push_s,
            "binder": {
                str(waves): {"speed_aware_s": a, "blind_s": b, "speedup": b / a}
                for waves, (a, b) in self.binder_s.items()
            },
        }


#: True throughput per (workload class, model) of the mock batch: the speed ratio of the
#: fast model over the slow one differs by class (8x for training, 1.5x for inference),
#: while the catalog prior says 4.8x for both.
BATCH_TRUE_RATES: dict[tuple[str, str], float] = {
    ("training", "a100-80gb"): 4.0,
    ("training", "t4"): 0.5,
    ("inference", "a100-80gb"): 1.2,
    ("inference", "t4"): 0.8,
}


def batch_pool(n_fast: int = 4, n_slow: int = 12) -> PoolArrays:
    """One host per device, fast A100s first (node order favours the blind policy)."""
    from flexlab.core.placement.testing import ModelSpec, build_pool

    hosts = [(f"fast-{i}", 64000, 262144, ["a100-80gb"]) for i in range(n_fast)]
    hosts += [(f"slow-{i}", 64000, 262144, ["t4"]) for i in range(n_slow)]
    return build_pool(hosts, [ModelSpec("a100-80gb", memory_mib=81920), ModelSpec("t4")])


def batch_tasks(n: int = 400, seed: int = 7) -> list[SliceRequest]:
    """A fixed batch: half training, half inference, work log-normal (reference seconds)."""
    rng = np.random.default_rng(seed)
    works = rng.lognormal(mean=math.log(600.0), sigma=0.6, size=n)
    classes = rng.permutation(["training"] * (n // 2) + ["inference"] * (n - n // 2))
    return [
        SliceRequest(compute_milli=WHOLE, workload_class=str(c), expected_duration_s=float(w))
        for c, w in zip(classes, works, strict=True)
    ]


def run_batch(
    pool: PoolArrays,
    tasks: Sequence[SliceRequest],
    table: ThroughputTable,
    true_rates: dict[tuple[str, str], float],
    *,
    noise: float = 0.1,
    seed: int = 0,
    depth: int = 2,
) -> float:
    """Makespan of ``tasks`` (whole devices, one task per device at a time) dispatched in
    order by expected finish time (``ExpectedFinishScore`` with each device's expected
    time to free, from ``table``); each device holds at most ``depth`` tasks queued behind
    the running one; measured durations are fed back to ``table`` as tasks finish."""
    rng = np.random.default_rng(seed)
    nd = pool.n_devices
    free_at = np.zeros(nd)  # expected time each device finishes what it holds
    queued: list[list[int]] = [[] for _ in range(nd)]
    running: list[int | None] = [None] * nd
    view = pool.copy()  # all devices look free: ready_at carries the backlog
    score = ExpectedFinishScore(table)
    profile = PlacementProfile("eft", ((score, 1.0),), device_choice="first")
    events: list[tuple[float, int]] = []
    now = 0.0
    pending = list(range(len(tasks)))
    model_of = [pool.model_keys[int(pool.dev_model[d])] for d in range(nd)]
    end = 0.0
    measured = np.zeros(nd)

    def expected(j: int, d: int) -> float:
        t = tasks[j]
        return table.expected_s(t.workload_class, model_of[d], float(t.expected_duration_s or 1.0))

    def begin(j: int, d: int, t0: float) -> None:
        t = tasks[j]
        true = true_rates[(str(t.workload_class), model_of[d])]
        dur = float(t.expected_duration_s or 1.0) / true * float(rng.lognormal(0.0, noise))
        running[d] = j
        measured[d] = dur
        heapq.heappush(events, (t0 + dur, d))

    while pending or events:
        # Dispatch while some device can take a task (idle, or busy with an empty slot).
        while pending:
            open_ = np.array([running[d] is None or len(queued[d]) < depth for d in range(nd)])
            if not any(running[d] is None for d in range(nd)):
                break
            view.dev_schedulable[:] = open_
            ready = np.maximum(free_at - now, 0.0)
            ready[np.array([running[d] is None for d in range(nd)])] = 0.0
            score.ready_at = ready
            j = pending[0]
            decision = place(tasks[j], view, profile)
            if not decision.ok:
                break
            d = decision.devices[0]
            pending.pop(0)
            if running[d] is None:
                begin(j, d, now)
                free_at[d] = now + expected(j, d)
            else:
                queued[d].append(j)
                free_at[d] = max(free_at[d], now) + expected(j, d)
        if not events:
            break
        now, d = heapq.heappop(events)
        j_done = running[d]
        assert j_done is not None
        t = tasks[j_done]
        end = max(end, now)
        running[d] = None
        nxt = queued[d].pop(0) if queued[d] else None
        table.observe(
            t.workload_class,
            model_of[d],
            work=float(t.expected_duration_s or 1.0),
            duration_s=float(measured[d]),
        )
        if nxt is not None:
            begin(nxt, d, now)
            free_at[d] = now + expected(nxt, d)
    return end


def makespan_lower_bound(
    tasks: Sequence[SliceRequest], counts: dict[str, int], true_rates: dict[tuple[str, str], float]
) -> float:
    """The LP-relaxation lower bound on the makespan with two device models: work may be
    split across devices; the fluid optimum puts each class on the fast model in order of
    comparative advantage (exact for two models). Also at least the longest task on its
    best device. Bisection on the makespan."""
    fast, slow = sorted(counts, key=lambda m: -max(r for (c, mm), r in true_rates.items() if mm == m))
    work: dict[str, float] = {}
    for t in tasks:
        work[str(t.workload_class)] = work.get(str(t.workload_class), 0.0) + float(t.expected_duration_s or 1)
    order = sorted(work, key=lambda c: -true_rates[(c, fast)] / true_rates[(c, slow)])
    longest = max(
        float(t.expected_duration_s or 1) / max(true_rates[(str(t.workload_class), m)] for m in counts)
        for t in tasks
    )

    def feasible(limit: float) -> bool:
        cap_fast = limit * counts[fast]
        need_slow = 0.0
        for c in order:
            on_fast = min(work[c], cap_fast * true_rates[(c, fast)])
            cap_fast -= on_fast / true_rates[(c, fast)]
            need_slow += (work[c] - on_fast) / true_rates[(c, slow)]
        return need_slow <= limit * counts[slow] + 1e-9

    lo, hi = 0.0, sum(work.values()) / min(true_rates.values())
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if feasible(mid) else (mid, hi)
    return max(hi, longest)


def offline_greedy(
    pool: PoolArrays, tasks: Sequence[SliceRequest], true_rates: dict[tuple[str, str], float]
) -> float:
    """An offline schedule with the true speeds (no noise): longest work first, each task to
    the device where it finishes earliest. An achievable makespan, for reference."""
    model_of = [pool.model_keys[int(pool.dev_model[d])] for d in range(pool.n_devices)]
    free = np.zeros(pool.n_devices)
    for t in sorted(tasks, key=lambda t: -float(t.expected_duration_s or 1)):
        w = float(t.expected_duration_s or 1)
        fin = free + np.array([w / true_rates[(str(t.workload_class), m)] for m in model_of])
        d = int(np.argmin(fin))
        free[d] = fin[d]
    return float(free.max())


def run_batch_pull(
    pool: PoolArrays,
    tasks: Sequence[SliceRequest],
    table: ThroughputTable,
    true_rates: dict[tuple[str, str], float],
    *,
    noise: float = 0.1,
    seed: int = 0,
    slack: float = 1.0,
) -> float:
    """Makespan of ``tasks`` (whole devices, one task per device at a time) with pull
    dispatch: whenever a device is free it asks ``AdvantageDispatcher`` (rates from
    ``table``) for a task; measured durations are fed back to ``table`` as tasks finish."""
    rng = np.random.default_rng(seed)
    nd = pool.n_devices
    model_of = [pool.model_keys[int(pool.dev_model[d])] for d in range(nd)]
    models = sorted(set(model_of))
    disp = AdvantageDispatcher(table, slack=slack)
    pending = [PendingTask(t.workload_class, float(t.expected_duration_s or 1.0)) for t in tasks]
    idx = list(range(len(tasks)))
    busy_until = np.zeros(nd)  # expected free time (from the table) of each device
    running: list[int | None] = [None] * nd
    measured = np.zeros(nd)
    events: list[tuple[float, int]] = []
    now = end = 0.0

    def dispatch() -> None:
        for d in range(nd):
            if running[d] is not None or not pending:
                continue
            others = {
                m: [float(busy_until[e]) for e in range(nd) if e != d and model_of[e] == m] for m in models
            }
            k = disp.pick(model_of[d], now, pending, others)
            if k is None:
                continue
            task = pending.pop(k)
            j = idx.pop(k)
            true = true_rates[(str(task.workload_class), model_of[d])]
            dur = task.work / true * float(rng.lognormal(0.0, noise))
            running[d] = j
            measured[d] = dur
            busy_until[d] = now + table.expected_s(task.workload_class, model_of[d], task.work)
            heapq.heappush(events, (now + dur, d))

    dispatch()
    while events:
        now, d = heapq.heappop(events)
        j = running[d]
        assert j is not None
        t = tasks[j]
        end = max(end, now)
        running[d] = None
        busy_until[d] = now
        table.observe(
            t.workload_class,
            model_of[d],
            work=float(t.expected_duration_s or 1.0),
            duration_s=float(measured[d]),
        )
        # Overdue devices (slower than expected) are re-estimated as free now.
        np.maximum(busy_until, now, out=busy_until)
        dispatch()
    if pending:  # unreachable: with every device idle, a task's best model takes it
        raise RuntimeError(f"{len(pending)} tasks left undispatched")
    return end


def batch_experiment(
    *, n_fast: int = 4, n_slow: int = 12, n_tasks: int = 400, seed: int = 7, waves: Sequence[int] = (1, 4, 10)
) -> BatchResult:
    """Speed-aware (catalog prior, learned online) vs blind (every device 1.0, no learning)
    on one batch, both with the same pull dispatcher (comparative advantage; for the blind
    table that is longest-work-first list scheduling). The push dispatcher of ``run_batch``
    (batch order, expected finish time, two queued per device) is measured too, and the
    shipped binder with the batch submitted in each of ``waves`` rounds."""
    pool = batch_pool(n_fast, n_slow)
    tasks = batch_tasks(n_tasks, seed)

    def blind_table() -> ThroughputTable:
        return ThroughputTable(prior=lambda _m: 1.0, learn=False)

    aware = run_batch_pull(pool, tasks, ThroughputTable(alpha=0.3), BATCH_TRUE_RATES, seed=seed)
    blind = run_batch_pull(pool, tasks, blind_table(), BATCH_TRUE_RATES, seed=seed)
    aware_push = run_batch(pool, tasks, ThroughputTable(alpha=0.3), BATCH_TRUE_RATES, seed=seed)
    blind_push = run_batch(pool, tasks, blind_table(), BATCH_TRUE_RATES, seed=seed)
    counts = {"a100-80gb": n_fast, "t4": n_slow}
    return BatchResult(
        aware_s=aware,
        blind_s=blind,
        lower_bound_s=makespan_lower_bound(tasks, counts, BATCH_TRUE_RATES),
        offline_greedy_s=offline_greedy(pool, tasks, BATCH_TRUE_RATES),
        tasks=len(tasks),
        devices=counts,
        aware_push_s=aware_push,
        blind_push_s=blind_push,
        binder_s={
            w: tuple(  # type: ignore[misc]
                run_batch_binder(
                    tasks, BATCH_TRUE_RATES, aware=a, n_fast=n_fast, n_slow=n_slow, waves=w, seed=seed
                )
                for a in (True, False)
            )
            for w in waves
        },
    )
