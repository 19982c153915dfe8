"""The live replay (``flexlab bench openb --live``): the lease requests, the host order, the
comparison, and the replay itself through a real Dask scheduler running the plugin."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from flexlab.commands import openb_live
from flexlab.core.errors import InvalidRequest
from flexlab.core.request import Selector, SliceRequest, parse_request
from flexlab.sim import openb_cli
from flexlab.sim.bench import host_rank, run_benchmark
from flexlab.sim.live_compare import agreement, lease_spec, plan, register_order, simulate, unallocated
from flexlab.sim.openb import load_host_specs, load_nodes, load_pods

GPU = frozenset({"gpu"})


@pytest.mark.parametrize(
    ("request_", "spec"),
    [
        (
            SliceRequest(compute_milli=460, host_cpu_milli=6000, host_memory_mib=12288),
            "gpu:0.46,cpu=6000m,ram=12288MiB",
        ),
        (
            SliceRequest(
                selector=Selector(kinds=GPU), compute_milli=1000, host_cpu_milli=3152, host_memory_mib=1
            ),
            "gpu:1,cpu=3152m,ram=1MiB",
        ),
        (
            SliceRequest(
                selector=Selector(kinds=GPU), devices=8, host_cpu_milli=120000, host_memory_mib=655360
            ),
            "gpu:devices=8,cpu=120000m,ram=655360MiB",
        ),
        (
            SliceRequest(selector=Selector(kinds=GPU, models=frozenset({"t4"})), compute_milli=50),
            "t4:0.05,cpu=0m,ram=0MiB",
        ),
        (SliceRequest(compute_milli=0, host_cpu_milli=4000, host_memory_mib=8192), "cpu:4000m,8192MiB"),
    ],
    ids=["share", "whole", "eight-gpus", "model", "cpu-only"],
)
def test_a_pods_lease_asks_exactly_what_the_simulator_places(request_: SliceRequest, spec: str) -> None:
    assert lease_spec(request_) == spec
    got = parse_request(spec)
    assert (got.compute_milli, got.devices, got.host_cpu_milli, got.host_memory_mib) == (
        request_.compute_milli,
        request_.devices,
        request_.host_cpu_milli,
        request_.host_memory_mib,
    )
    assert got.selector.models == request_.selector.models


def test_a_pod_allowed_on_several_models_is_one_the_grammar_refuses() -> None:
    req = SliceRequest(selector=Selector(kinds=GPU, models=frozenset({"p100", "t4"})), host_cpu_milli=12000)
    assert lease_spec(req) == "p100|t4:1,cpu=12000m,ram=0MiB"
    with pytest.raises(InvalidRequest, match="selector"):
        parse_request(lease_spec(req))


def test_every_pod_of_the_tiny_trace_round_trips(tiny_trace: Path) -> None:
    for req in load_pods(tiny_trace, "tiny").requests:
        if len(req.selector.models) > 1:
            continue
        got = parse_request(lease_spec(req))
        assert (got.compute_milli, got.devices, got.host_cpu_milli, got.host_memory_mib) == (
            req.compute_milli,
            req.devices,
            req.host_cpu_milli,
            req.host_memory_mib,
        )


@pytest.mark.parametrize("seed", [1, 42], ids=["seed-1", "seed-42"])
def test_hosts_register_in_the_order_the_simulator_breaks_ties_by(seed: int) -> None:
    rank = host_rank(50, seed)
    order = register_order(50, rank)
    assert sorted(order.tolist()) == list(range(50))
    assert rank[order].tolist() == list(range(50))  # registered by increasing rank
    assert register_order(5, None).tolist() == [0, 1, 2, 3, 4]


def test_agreement_counts_hosts_and_outcomes() -> None:
    sim = np.array([3, 1, -1, -1, 2])
    live = np.array([3, 2, -1, 4, 2])
    same_host, same_outcome, first = agreement(sim, live)
    assert same_host == pytest.approx(2 / 4)  # pods 0 and 4 of the four either side placed
    assert same_outcome == pytest.approx(3 / 5)  # and pod 2, placed by neither
    assert first == 1
    assert agreement(sim, sim) == (1.0, 1.0, None)


def test_host_specs_are_the_simulators_nodes(tiny_trace: Path) -> None:
    specs = load_host_specs(tiny_trace)
    pool = load_nodes(tiny_trace)
    assert [h.name for h in specs] == pool.host_names
    assert [h.cpu_milli for h in specs] == pool.host_cpu_total.tolist()
    assert [len(h.devices) for h in specs] == np.diff(pool.host_dev_start).tolist()
    assert {d.model for h in specs for d in h.devices} == set(pool.model_keys)
    assert {d.memory_mib for h in specs for d in h.devices} == {int(pool.dev_mem_total[0])}
    assert len(load_host_specs(tiny_trace, hosts=2)) == 2


@pytest.mark.parametrize("policy", ["bestfit", "flexlab"])
def test_the_simulators_side_is_the_benchmarks_replay(tiny_trace: Path, policy: str) -> None:
    bench = run_benchmark(tiny_trace, ["tiny"], [policy], [1, 2])
    work = plan(str(tiny_trace), "tiny", policy, [1, 2])
    for sp, run in zip(work.plans, bench.runs, strict=True):
        rec = simulate(work, sp)
        assert rec.decisions == run.decisions
        assert int(rec.placed.sum()) == run.placed
        assert unallocated(sp.arrived_milli(), rec.allocated_milli, work.capacity_milli, [100, 130]) == (
            pytest.approx(100.0 - run.alloc[100], nan_ok=True),
            pytest.approx(100.0 - run.alloc[130], nan_ok=True),
        )


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    openb_cli.add_arguments(parser)
    openb_live.add_arguments(parser)
    return parser.parse_args(argv)


def test_live_replay_of_the_tiny_trace(tiny_trace: Path, tmp_path: Path) -> None:
    """Through the CLI: the live pool decides exactly as the simulator on the pods its lease
    API takes (the mirror), and every refusal is counted with its reason."""
    out = tmp_path / "live.json"
    argv = ["--live", "--trace-dir", str(tiny_trace), "--workload", "tiny", "--seeds", "1"]
    assert (
        openb_live.main(_args([*argv, "--policies", "flexlab", "--loads", "100,130", "--json", str(out)]))
        == 0
    )
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert (doc["hosts"], doc["capacity_milli"], run["policy"], run["seed"]) == (6, 36000, "flexlab", 1)
    pods = load_pods(tiny_trace, "tiny")
    work = plan(str(tiny_trace), "tiny", "flexlab", [1])
    shapes = [pods.requests[j] for j in work.plans[0].order]
    cpu_only = sum(r.compute_milli == 0 for r in shapes)
    several_models = sum(len(r.selector.models) > 1 for r in shapes)
    assert run["pods"] == len(shapes)
    assert run["refusals"] == {
        "InvalidRequest: selector": several_models,
        "not sent: CPU-only (the lease API has no CPU-only lease)": cpu_only,
    }
    assert run["same_host_mirror"] == 1.0
    for point in run["points"]:
        assert point["live_unallocated"] == point["mirror_unallocated"]
        assert point["difference"] == pytest.approx(
            point["live_unallocated"] - point["sim_unallocated"], abs=1e-3
        )
    assert run["starts_acknowledged"] == run["placed_live"] > 0
    assert run["plugin_errors"] == []
    assert run["seconds"]["live"] > 0


@pytest.mark.slow
@pytest.mark.trace
def test_live_replay_agrees_with_the_simulator_on_openb(openb_trace: Path) -> None:
    """Seed 42 of ``default`` on the trace's first 60 nodes (318 GPUs, 588 pods to 130%).

    Observed (2026-12-06): unallocated 4.20% at 100% and 4.10% at 130% on both sides
    (difference 0.00); 74.7% of the pods placed on the same host by both, 100% against the
    mirror. The live pool sends no CPU-only pod (93 here): the pods after the first one
    diverge in host, not in the figure, hence the bound of 0.7."""
    from flexlab_dask.replay import run_live_benchmark

    result = run_live_benchmark(str(openb_trace), ["default"], ["flexlab"], [42], hosts=60)
    (run,) = result.runs
    assert run.pods == 588
    for load in (100, 130):
        assert abs(run.difference(load)) <= 0.1
    assert run.mirror is not None
    assert run.live == run.mirror
    assert run.same_host_mirror == 1.0
    assert run.same_host >= 0.7
    assert run.plugin_errors == ()
    assert run.starts == run.placed_live
