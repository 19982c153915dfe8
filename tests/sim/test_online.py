"""The online replay drives the shipped pool and Hi loop on a virtual clock."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from flexlab.core.pool import Command, StartSlice, StopSlice
from flexlab.core.request import Selector, SliceRequest
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.sim import online_cli
from flexlab.sim.online import MODES, OnlineConfig, Workload, load_openb_workload, simulate
from flexlab.sim.online_batch import BATCH_TRUE_RATES, batch_experiment, batch_tasks, makespan_lower_bound
from flexlab.sim.online_binder import run_batch_binder
from flexlab.sim.online_metrics import wait_stats
from flexlab.sim.online_pool import (
    FALLBACK_POLICY,
    POLICY,
    SimAgent,
    WarmSettings,
    lease_request,
    openb_hosts,
)

GPU = Selector(kinds=frozenset({"gpu"}))
T4 = Selector(kinds=frozenset({"gpu"}), models=frozenset({"t4"}))
WHOLE_REQ = SliceRequest(selector=GPU, compute_milli=1000)
HALF_REQ = SliceRequest(selector=GPU, compute_milli=500)
HOSTS: dict[int, list[HostSpec]] = {}


def _hosts(n_dev: int) -> list[HostSpec]:
    # One list object per size: the replay keeps a registered pool per host list.
    if n_dev not in HOSTS:
        HOSTS[n_dev] = [HostSpec("h", 64000, 262144, tuple(DeviceSpec("t4", i) for i in range(n_dev)))]
    return HOSTS[n_dev]


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


def _cfg(*, shared: bool = False, **warm: float) -> OnlineConfig:
    """Start-up 5 s; ``shared``: devices carved into shared slices (standing workers), as
    live; off by default here, so that the hand-computed waits below are the start-up's."""
    return OnlineConfig(
        slice_start_s=5.0,
        shared_workers=shared,
        warm=WarmSettings(interval_s=1.0, bucket_s=1.0, **warm),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs_through_the_pool(mode: str) -> None:
    jobs = [(k % 2, 2.0 * k, 7.0, k % 2) for k in range(12)]
    res = simulate(_hosts(4), _wl([HALF_REQ, WHOLE_REQ], jobs), mode, config=_cfg(reserve=0.5))
    assert res.completed == 12
    assert res.policy in (POLICY[mode], FALLBACK_POLICY)
    assert res.completed_work_gpu_s == pytest.approx(6 * 7 * 0.5 + 6 * 7 * 1.0)
    # every lease's slice was started by the simulated agent (warm slices too)
    assert res.slices_started == 12 - res.warm_claims + res.warm_carved
    assert not np.isnan(res.wait).any()
    if mode == "whole":
        assert float(res.wait.max()) == 0.0  # a standing worker per device: no start-up
    if mode in ("whole", "fgd", "flexlab"):
        assert res.warm_carved == 0
    else:
        assert res.warm_carved > 0


@pytest.mark.parametrize("mode", [m for m in MODES if m != "whole"])
def test_with_shared_workers_every_mode_runs_and_leases_take_running_workers(mode: str) -> None:
    jobs = [(k % 2, 6.0 + 2.0 * k, 7.0, k % 2) for k in range(12)]
    res = simulate(_hosts(4), _wl([HALF_REQ, WHOLE_REQ], jobs), mode, config=_cfg(shared=True, reserve=0.5))
    assert res.completed == 12
    assert res.completed_work_gpu_s == pytest.approx(6 * 7 * 0.5 + 6 * 7 * 1.0)
    assert not np.isnan(res.wait).any()
    if mode in ("fgd", "flexlab"):  # (the warm modes' reserve takes the idle devices first)
        assert res.standing_taken > 0
        # the first whole pod (t = 8, the shared workers up since 5) waits only for the retag
        assert res.wait[1] == 1.0


def test_a_whole_device_lease_takes_the_idle_devices_worker_a_half_one_does_not() -> None:
    # One device, its shared worker up at 5. A whole pod at 10 takes it (1 s retag); a half
    # pod at 30, after the whole one left (at 21: the device's shared worker is starting
    # again until 26), fits no running slice within the oversize (1.25): its own start-up.
    jobs = [(1, 10.0, 10.0, 0), (0, 30.0, 10.0, 0)]
    res = simulate(_hosts(1), _wl([HALF_REQ, WHOLE_REQ], jobs), "flexlab", config=_cfg(shared=True))
    assert res.wait.tolist() == [1.0, 5.0]
    assert res.standing_taken == 1
    # allowed to hold twice its size, the half pod takes the idle device's worker whole
    big = simulate(
        _hosts(1), _wl([HALF_REQ, WHOLE_REQ], jobs), "flexlab", config=_cfg(shared=True, oversize=2.0)
    )
    assert big.wait.tolist() == [1.0, 1.0]
    assert big.standing_taken == 2
    # without shared slices (the earlier replay) both wait a start-up
    none = simulate(_hosts(1), _wl([HALF_REQ, WHOLE_REQ], jobs), "flexlab", config=_cfg())
    assert none.wait.tolist() == [5.0, 5.0]


def test_a_lease_waits_the_slice_start_up_when_nothing_is_warm() -> None:
    jobs = [(0, 0.0, 10.0, 0), (0, 3.0, 10.0, 0)]
    res = simulate(_hosts(1), _wl([HALF_REQ], jobs), "flexlab", config=_cfg())
    assert res.wait.tolist() == [5.0, 5.0]


def test_whole_devices_queue_for_a_departure() -> None:
    jobs = [(1, 0.0, 10.0, 0), (0, 1.0, 10.0, 0)]
    res = simulate(_hosts(1), _wl([HALF_REQ, WHOLE_REQ], jobs), "whole", config=_cfg())
    # the half is rounded up to the whole device: it waits for the first pod to leave
    assert res.wait.tolist() == [0.0, 9.0]
    assert res.makespan_s == 20.0


def test_a_ready_warm_slice_gives_wait_zero() -> None:
    # A arrives at 0 and waits its start-up. The reserve (the whole pool, in A's mix) has
    # the Hi loop carve a warm half beside A at t = 0; it is ready at 5. B, at 20, takes it.
    jobs = [(0, 0.0, 10.0, 0), (0, 20.0, 10.0, 0)]
    res = simulate(_hosts(1), _wl([HALF_REQ], jobs), "flexlab+reserve", config=_cfg(reserve=1.0))
    assert res.wait.tolist() == [5.0, 0.0]
    assert (res.warm_claims, res.warm_claims_ready) == (1, 1)
    plain = simulate(_hosts(1), _wl([HALF_REQ], jobs), "flexlab", config=_cfg(reserve=1.0))
    assert plain.wait.tolist() == [5.0, 5.0]


def test_a_warm_slice_still_starting_saves_what_it_has_started() -> None:
    # The reserve carves the warm half at t = 0 (ready at 5); B arrives at 3 and takes it.
    jobs = [(0, 0.0, 10.0, 0), (0, 3.0, 10.0, 0)]
    res = simulate(_hosts(1), _wl([HALF_REQ], jobs), "flexlab+reserve", config=_cfg(reserve=1.0))
    assert res.wait.tolist() == [5.0, 2.0]
    assert (res.warm_claims, res.warm_claims_ready) == (1, 0)


def test_preemption_happens_after_the_grace() -> None:
    # One device: a low pod runs from 0; a high one arrives at 1 and waits its 3 s grace;
    # the Hi loop (every second) preempts the low lease at 4. The low pod resumes when the
    # high one leaves (at 9) with the 97 s it had left.
    jobs = [(0, 0.0, 100.0, 0), (0, 1.0, 5.0, 1)]
    cfg = OnlineConfig(grace_s=3.0, warm=WarmSettings(interval_s=1.0))
    res = simulate(_hosts(1), _wl([WHOLE_REQ], jobs), "whole", config=cfg)
    assert res.wait.tolist() == [0.0, 3.0]
    assert res.preemptions == 1
    assert res.makespan_s == pytest.approx(9.0 + 96.0)
    assert res.completed_work_gpu_s == pytest.approx(105.0)
    assert res.wait_stats(1) == {"n": 1, "mean": 3.0, "p50": 3.0, "p95": 3.0, "p99": 3.0}
    no_grace = simulate(_hosts(1), _wl([WHOLE_REQ], jobs), "whole", config=OnlineConfig())
    assert no_grace.wait.tolist() == [0.0, 99.0]
    assert no_grace.preemptions == 0


def test_metrics_on_a_hand_computed_case() -> None:
    # One device, two halves: A at 0 (active 5..15), B at 8 (active 13..23). Samples every
    # 2 s while pods arrive (t = 0..8): running compute 0, 0, 0, 0.5, 0.5 of the pool.
    jobs = [(0, 0.0, 10.0, 0), (0, 8.0, 10.0, 0)]
    res = simulate(_hosts(1), _wl([HALF_REQ], jobs), "flexlab", config=_cfg())
    s = res.summary()
    assert s["wait_all"] == {"n": 2, "mean": 5.0, "p50": 5.0, "p95": 5.0, "p99": 5.0}
    assert res.util.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5]
    assert s["utilisation_mean"] == pytest.approx(0.2)
    assert s["completed_work_gpu_s"] == pytest.approx(10.0)
    assert s["makespan_s"] == 23.0
    assert s["slices_started"] == 2


def test_wait_stats_skip_pods_that_never_waited() -> None:
    got = wait_stats(np.array([0.0, 10.0, 20.0, np.nan]))
    assert got["n"] == 3
    assert got["mean"] == 10.0
    assert got["p50"] == 10.0
    assert got["p95"] == pytest.approx(19.0)
    assert wait_stats(np.array([np.nan]))["n"] == 0


def test_forecast_keeps_warm_slices_that_a_steady_stream_takes() -> None:
    # Half-device pods, one and two a second in turn, each running 3 s, on 8 devices: room
    # for the pods and for the warm slices of the lead time (5 s start-up + a 1 s pass).
    jobs = [(0, k + dt, 3.0, 0) for k in range(40) for dt in ((0.0, 0.5) if k % 2 else (0.0,))]
    wl = _wl([HALF_REQ], jobs)
    plain = simulate(_hosts(8), wl, "flexlab", config=_cfg())
    warm = simulate(_hosts(8), wl, "flexlab+forecast", config=_cfg(reserve=0.0, max_total=16))
    assert plain.warm_claims == 0
    assert float(np.nanmax(plain.wait)) == 5.0
    assert warm.warm_claims > 50
    assert warm.warm_claims_ready > 30
    assert warm.wait_stats()["mean"] < 1.0
    assert warm.completed == plain.completed == 60
    # 1, 2, 1, 2 a bucket: "as the last bucket" errs by 1 every time, Holt by less
    assert 0.0 < warm.forecast_mase < 1.0


class _Outbox:
    def __init__(self, outbox: dict[str, list[Command]]) -> None:
        self.outbox = outbox

    def take_commands(self, host: str) -> list[Command]:
        return self.outbox.pop(host, [])


def _start(sid: str, host: str) -> StartSlice:
    return StartSlice(sid, host, (f"{host}/t4#0",), "t4", 1000, 0, None, sid, "u", {}, 1)


def test_the_agent_answers_a_slice_started_again_on_another_host() -> None:
    # Lease L1 is preempted on h1 and placed again on h2 under the same slice id; the
    # agents see h2's commands first. Only the first start on h1 goes stale.
    agent = SimAgent(start_s=5.0)
    outbox: dict[str, list[Command]] = {
        "h2": [_start("L1", "h2")],
        "h1": [_start("L1", "h1"), StopSlice("L1", "h1", "preempted")],
    }
    (again, ready), (first, _) = agent.take(_Outbox(outbox), 10.0)  # type: ignore[arg-type]
    assert again == first == 15.0
    assert agent.stopped == {"L1"}
    assert agent.resolve(ready) == ("L1", "worker-1")
    assert agent.resolve(ready + 1) is None


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        simulate(_hosts(1), _wl([WHOLE_REQ], [(0, 0, 1, 0)]), "random")


@pytest.mark.parametrize(
    ("req", "kwargs", "text"),
    [
        (SliceRequest(selector=GPU, compute_milli=470, host_cpu_milli=3152, host_memory_mib=16384), {},
         "gpu:47%,cpu=3.152,ram=16384MiB"),
        (SliceRequest(selector=GPU, compute_milli=470, host_cpu_milli=3152), {"host_resources": False},
         "gpu:47%"),
        (SliceRequest(selector=GPU, compute_milli=470), {"whole": True}, "gpu:1"),
        (SliceRequest(selector=T4, compute_milli=460), {}, "t4:46%"),
        (SliceRequest(selector=GPU, devices=2), {}, "gpu:1,devices=2"),
    ],
    ids=["shape", "gpu-only", "whole", "one-model", "two-devices"],
)  # fmt: skip
def test_lease_request_text_names_the_whole_shape(
    req: SliceRequest, kwargs: dict[str, bool], text: str
) -> None:
    assert lease_request(req, **kwargs).describe() == text


def test_openb_hosts_and_workload(tiny_trace: Path) -> None:
    hosts = openb_hosts(tiny_trace)
    assert [len(h.devices) for h in hosts] == [8, 8, 2, 2, 8, 8]
    assert hosts[2].devices[0].model == "t4"
    wl = load_openb_workload(tiny_trace, "tiny", compress=10.0)
    assert len(wl) == 42
    assert wl.arrival[:3].tolist() == [0.0, 0.1, 0.2]
    assert set(wl.duration.tolist()) == {100.0}
    assert set(wl.priority.tolist()) == {1}


def test_repeat_low_copies_are_low_priority(tiny_trace: Path) -> None:
    wl = load_openb_workload(tiny_trace, "tiny", compress=10.0, repeat=2, repeat_low=True)
    assert len(wl) == 84
    assert int(wl.priority.sum()) == 42  # the trace's own pods keep their (high) qos


def test_cli_writes_json(tiny_trace: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    online_cli.add_arguments(parser)
    out = tmp_path / "online.json"
    argv = ["--trace-dir", str(tiny_trace), "--workload", "tiny", "--json", str(out), "--no-batch"]
    assert online_cli.main(parser.parse_args([*argv, "--compress", "1"])) == 0
    data = json.loads(out.read_text())
    assert [r["mode"] for r in data["online"]] == list(MODES)
    for r in data["online"]:
        skipped = r["skipped"]
        assert skipped["cpu-only"] == 6  # one pod in 7 asks for no GPU: a lease is a slice
        assert r["completed"] + sum(skipped.values()) == 42
    assert data["config"]["warm"]["reserve"] == 0.1


def test_cli_refuses_unknown_mode(tiny_trace: Path) -> None:
    parser = argparse.ArgumentParser()
    online_cli.add_arguments(parser)
    args = parser.parse_args(["--trace-dir", str(tiny_trace), "--workload", "tiny", "--modes", "nope"])
    assert online_cli.main(args) == 2


def test_binder_goes_by_the_prior_then_by_measured_speeds() -> None:
    speedups: dict[int, list[float]] = {1: [], 4: []}
    for seed in range(1, 6):
        tasks = batch_tasks(120, seed=seed)
        for waves, out in speedups.items():
            aware, blind = (
                run_batch_binder(tasks, BATCH_TRUE_RATES, aware=a, waves=waves, seed=seed)
                for a in (True, False)
            )
            assert aware > makespan_lower_bound(tasks, {"a100-80gb": 4, "t4": 12}, BATCH_TRUE_RATES)
            out.append(blind / aware)
    # A batch bound at once, before anything is measured, goes by the catalog's prior: it
    # beats blind binding on every sample.
    assert min(speedups[1]) > 1.1
    # In rounds the later ones go by measured speeds: better on average (one sample of the
    # five, seed 3, is 2% worse than blind: its first round's measurements mislead it).
    assert math.prod(speedups[4]) ** (1 / 5) > 1.2


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


def test_batch_experiment_default_figures() -> None:
    # The figures in benchmarks/online/README.md (seed 7, 400 tasks).
    res = batch_experiment()
    assert res.aware_s == pytest.approx(12596, rel=1e-3)
    assert res.blind_s == pytest.approx(17843, rel=1e-3)
    assert res.lower_bound_s == pytest.approx(11770, rel=1e-3)
    # The shipped binder binds at submission: a batch submitted at once is bound before any
    # duration is measured, by the catalog's prior (4.8x for the A100 over the T4 in both
    # classes; truly 8x for training, 1.5x for inference).
    assert res.binder_s[1] == pytest.approx((26807, 30483), rel=1e-3)
    assert res.binder_s[4] == pytest.approx((25465, 34812), rel=1e-3)
    assert res.binder_s[10] == pytest.approx((29318, 51274), rel=1e-3)
    assert res.aware_s < res.aware_push_s  # pull by comparative advantage beats batch order
    assert set(BATCH_TRUE_RATES) == {(c, m) for c in ("training", "inference") for m in ("a100-80gb", "t4")}
