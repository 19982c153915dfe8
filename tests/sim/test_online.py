from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flexlab.core.placement.testing import ModelSpec, build_pool
from flexlab.core.request import Selector, SliceRequest
from flexlab.core.snapshot import PoolArrays
from flexlab.sim import online_cli
from flexlab.sim.online import OnlineConfig, Workload, load_openb_workload, simulate
from flexlab.sim.online_batch import BATCH_TRUE_RATES, batch_experiment, makespan_lower_bound

GPU = Selector(kinds=frozenset({"gpu"}))


def _pool(n_dev: int) -> PoolArrays:
    return build_pool([("h", 64000, 262144, ["t4"] * n_dev)], [ModelSpec("t4", granularity=1)])


def _wl(reqs: list[SliceRequest], jobs: Sequence[tuple[int, float, float, int]]) -> Workload:
    """jobs: (request index, arrival, duration, priority)."""
    return Workload(
        "test",
        reqs,
        np.array([j[0] for j in jobs], dtype=np.int64),
        np.array([j[1] for j in jobs], dtype=np.float64),
        np.array([j[2] for j in jobs], dtype=np.float64),
        np.array([j[3] for j in jobs], dtype=np.int64),
    )


WHOLE_REQ = SliceRequest(selector=GPU, compute_milli=1000)
HALF_REQ = SliceRequest(selector=GPU, compute_milli=500)


@pytest.mark.parametrize(
    ("mode", "n_dev", "reqs", "jobs", "config", "waits", "preemptions"),
    [
        # Two devices, three whole jobs at t=0: the third waits for the first departure.
        ("whole", 2, [WHOLE_REQ], [(0, 0, 10, 0), (0, 0, 10, 0), (0, 0, 10, 0)], {}, [0, 0, 10], 0),
        # Fractional mode: two halves share one device, each waits for its slice to start.
        ("flexlab", 1, [HALF_REQ], [(0, 0, 10, 0), (0, 0, 10, 0)], {"slice_start_s": 5.0}, [5, 5], 0),
        # Whole rounding: two halves take the device one after the other.
        ("whole", 1, [HALF_REQ], [(0, 0, 10, 0), (0, 0, 10, 0)], {}, [0, 10], 0),
        # Priority order: at t=10 the high job (arrived later) goes first.
        (
            "whole",
            1,
            [WHOLE_REQ],
            [(0, 0, 10, 0), (0, 1, 5, 0), (0, 2, 5, 1)],
            {},
            [0, 14, 8],
            0,
        ),
        # Preemption after a 3 s grace: the high job evicts the low one, which resumes later
        # with its remaining 96 s (no work lost).
        (
            "whole",
            1,
            [WHOLE_REQ],
            [(0, 0, 100, 0), (0, 1, 5, 1)],
            {"grace_s": 3.0},
            [0, 3],
            1,
        ),
    ],
    ids=["whole-queue", "fraction-share", "whole-rounding", "priority-order", "preempt"],
)
def test_simulate_waits(
    mode: str,
    n_dev: int,
    reqs: list[SliceRequest],
    jobs: list[tuple[int, float, float, int]],
    config: dict[str, Any],
    waits: list[float],
    preemptions: int,
) -> None:
    res = simulate(_pool(n_dev), _wl(reqs, jobs), mode, config=OnlineConfig(bucket_s=1.0, **config))
    assert res.wait.tolist() == pytest.approx(waits)
    assert res.preemptions == preemptions
    assert res.completed == len(jobs)
    useful = sum(reqs[j[0]].compute_milli / 1000 * j[2] for j in jobs)
    assert res.completed_work_gpu_s == pytest.approx(useful)


def test_preempted_job_resumes_with_its_remaining_time() -> None:
    jobs = [(0, 0, 100, 0), (0, 1, 5, 1)]
    res = simulate(_pool(1), _wl([WHOLE_REQ], jobs), "whole", config=OnlineConfig(grace_s=3.0))
    # Low ran 0..4, high 4..9, low resumes at 9 with 96 s left: ends at 105.
    assert res.makespan_s == pytest.approx(105.0)
    assert res.wait_stats(1) == {"n": 1, "mean": 3.0, "p95": 3.0, "p99": 3.0}


def test_forecast_prewarms_slices_that_jobs_claim() -> None:
    # A steady stream of half-device jobs, two per 10 s bucket, each running 15 s.
    jobs = [(0, 5.0 * k, 15.0, 0) for k in range(60)]
    cfg = OnlineConfig(bucket_s=10.0, slice_start_s=5.0, prewarm_budget=0.5, horizon=1)
    plain = simulate(_pool(4), _wl([HALF_REQ], jobs), "flexlab", config=cfg)
    warm = simulate(_pool(4), _wl([HALF_REQ], jobs), "flexlab+forecast", config=cfg)
    assert plain.prewarm_claims == 0
    assert float(np.nanmax(plain.wait)) == 5.0
    assert warm.prewarm_moves > 0
    assert warm.prewarm_claims > 40
    assert warm.wait_stats()["mean"] < plain.wait_stats()["mean"]
    assert warm.completed == plain.completed == 60
    assert warm.forecast_smape == pytest.approx(0.0, abs=1e-9) or warm.forecast_smape < 30.0


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        simulate(_pool(1), _wl([WHOLE_REQ], [(0, 0, 1, 0)]), "random")


def test_load_openb_workload_compresses_arrivals(tiny_trace: Path) -> None:
    wl = load_openb_workload(tiny_trace, "tiny", compress=10.0)
    assert len(wl) == 42
    assert wl.arrival[:3].tolist() == [0.0, 0.1, 0.2]
    assert set(wl.duration.tolist()) == {100.0}
    assert set(wl.priority.tolist()) == {1}


@pytest.mark.parametrize(
    ("works", "counts", "rates", "bound"),
    [
        # One class, fast 2.0 x1, slow 1.0 x1: fluid 3 T = 30 -> 10.
        ([10.0, 10.0, 10.0], {"a100-80gb": 1, "t4": 1}, {("c", "a100-80gb"): 2.0, ("c", "t4"): 1.0}, 10.0),
        # A single long task bounds it from below: 100 / 2.
        ([100.0], {"a100-80gb": 1, "t4": 3}, {("c", "a100-80gb"): 2.0, ("c", "t4"): 1.0}, 50.0),
    ],
    ids=["fluid", "longest-task"],
)
def test_makespan_lower_bound(
    works: list[float], counts: dict[str, int], rates: dict[tuple[str, str], float], bound: float
) -> None:
    tasks = [SliceRequest(workload_class="c", expected_duration_s=w) for w in works]
    assert makespan_lower_bound(tasks, counts, rates) == pytest.approx(bound, rel=1e-6)


def test_batch_experiment_orders_its_makespans() -> None:
    res = batch_experiment(n_tasks=120)
    assert res.lower_bound_s <= res.offline_greedy_s
    assert res.lower_bound_s <= res.aware_s
    assert res.speedup > 1.25
    assert res.aware_s < res.aware_push_s  # pull by comparative advantage beats batch order
    assert res.aware_s / res.lower_bound_s < 1.3  # 120 tasks: learning the speeds costs more


def test_batch_experiment_default_figures() -> None:
    # The figures in benchmarks/online/README.md (seed 7, 400 tasks).
    res = batch_experiment()
    assert res.aware_s == pytest.approx(12596, rel=1e-3)
    assert res.blind_s == pytest.approx(17843, rel=1e-3)
    assert res.lower_bound_s == pytest.approx(11770, rel=1e-3)
    assert res.speedup >= 1.25
    assert set(BATCH_TRUE_RATES) == {(c, m) for c in ("training", "inference") for m in ("a100-80gb", "t4")}


def test_cli_writes_json(tiny_trace: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    online_cli.add_arguments(parser)
    out = tmp_path / "online.json"
    args = parser.parse_args(
        [
            "--trace-dir",
            str(tiny_trace),
            "--workload",
            "tiny",
            "--json",
            str(out),
            "--no-batch",
            "--compress",
            "1",
        ]
    )
    assert online_cli.main(args) == 0
    data = json.loads(out.read_text())
    assert [r["mode"] for r in data["online"]] == ["whole", "fgd", "flexlab", "flexlab+forecast"]
    assert all(r["completed"] == 42 for r in data["online"])


def test_cli_refuses_unknown_mode(tiny_trace: Path) -> None:
    parser = argparse.ArgumentParser()
    online_cli.add_arguments(parser)
    args = parser.parse_args(["--trace-dir", str(tiny_trace), "--workload", "tiny", "--modes", "nope"])
    assert online_cli.main(args) == 2


def test_departing_slice_is_kept_warm_for_the_next_job() -> None:
    # One device. A arrives at 0: the planner pre-warms a whole slice (ready at 30) and A
    # claims it while it starts (waits 30). A leaves at 40; its slice is kept warm (the
    # reserve wants one), so B, arriving at 50, starts at once.
    jobs = [(0, 0.0, 10.0, 0), (0, 50.0, 10.0, 0)]
    cfg = OnlineConfig(bucket_s=1.0, horizon=1, slice_start_s=30.0, reserve=1.0, prewarm_budget=1.0)
    res = simulate(_pool(1), _wl([WHOLE_REQ], jobs), "flexlab+forecast", config=cfg)
    assert res.wait.tolist() == pytest.approx([30.0, 0.0])
    assert res.recycled == 2  # A's slice, then B's (the reserve still wants one)
    assert res.prewarm_claims == 2
    plain = simulate(_pool(1), _wl([WHOLE_REQ], jobs), "flexlab", config=cfg)
    assert plain.wait.tolist() == pytest.approx([30.0, 30.0])


def test_warm_slices_never_block_work() -> None:
    # Two devices, a reserve that pre-warms half slices on both: a whole job must still
    # start (the warm slices in its way are given back), after its slice start-up.
    jobs = [(0, 0.0, 50.0, 0), (1, 5.0, 10.0, 0)]
    cfg = OnlineConfig(bucket_s=1.0, slice_start_s=2.0, reserve=1.0, prewarm_budget=1.0)
    res = simulate(_pool(2), _wl([HALF_REQ, WHOLE_REQ], jobs), "flexlab+forecast", config=cfg)
    assert res.completed == 2
    assert res.wait[1] == pytest.approx(2.0)


def test_high_job_evicts_low_work_on_several_devices_of_one_host() -> None:
    # Two low whole-device jobs fill the host; a high two-device job evicts both after its
    # 3 s grace. They resume with their remaining 96 s: no work is lost.
    two = SliceRequest(selector=GPU, compute_milli=1000, devices=2)
    jobs = [(0, 0, 100, 0), (0, 0, 100, 0), (1, 1, 5, 1)]
    res = simulate(_pool(2), _wl([WHOLE_REQ, two], jobs), "whole", config=OnlineConfig(grace_s=3.0))
    assert res.wait.tolist() == pytest.approx([0, 0, 3])
    assert res.preemptions == 2
    assert res.completed == 3
    assert res.makespan_s == pytest.approx(9.0 + 96.0)
    assert res.completed_work_gpu_s == pytest.approx(100 + 100 + 2 * 5)


def test_eviction_takes_the_device_with_least_low_work() -> None:
    # Device 0 holds two low halves, device 1 one low half and free room: a high whole job
    # evicts only the one half on device 1.
    jobs = [(0, 0, 100, 0), (0, 0, 100, 0), (0, 0, 100, 0), (1, 1, 5, 1)]
    cfg = OnlineConfig(grace_s=3.0, slice_start_s=0.0)
    res = simulate(_pool(2), _wl([HALF_REQ, WHOLE_REQ], jobs), "flexlab", config=cfg)
    assert res.preemptions == 1
    assert res.completed == 4


def test_repeat_low_copies_are_low_priority(tiny_trace: Path) -> None:
    wl = load_openb_workload(tiny_trace, "tiny", compress=10.0, repeat=2, repeat_low=True)
    assert len(wl) == 84
    assert int(wl.priority.sum()) == 42  # the trace's own pods keep their (high) qos


def test_job_claims_a_larger_warm_slice_shrunk_to_its_size() -> None:
    # The reserve keeps whole slices (only whole jobs seen so far). W leaves at 40 and its
    # slice stays warm; H (a half) arrives at 50, finds no half slice and claims the whole
    # one, shrunk to 500 m: it starts at once.
    jobs = [(0, 0.0, 10.0, 0), (1, 50.0, 10.0, 0)]
    cfg = OnlineConfig(bucket_s=1.0, horizon=1, slice_start_s=30.0, reserve=1.0, prewarm_budget=1.0)
    res = simulate(_pool(1), _wl([WHOLE_REQ, HALF_REQ], jobs), "flexlab+forecast", config=cfg)
    assert res.wait.tolist() == pytest.approx([30.0, 0.0])
    assert res.prewarm_claims == 2
    assert res.completed_work_gpu_s == pytest.approx(10.0 + 5.0)
