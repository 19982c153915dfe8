"""The benchmark, its JSON, the table and the CLI, on a tiny synthetic trace."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from flexlab.core.placement import FragmentationModel, ShapeDistribution, make_profile
from flexlab.sim import openb_cli
from flexlab.sim.bench import run_benchmark
from flexlab.sim.openb import TraceNotFound, load_nodes, load_pods
from flexlab.sim.protocol import inflate
from flexlab.sim.published import load_published
from flexlab.sim.render import build_table
from flexlab.sim.replay import replay


def test_loads_the_trace_format(tiny_trace: Path) -> None:
    pool = load_nodes(tiny_trace)
    assert (pool.n_hosts, pool.n_devices) == (6, 36)
    assert pool.model_keys == ["openb-g2", "t4", "p100"]
    assert pool.host_cpu_total.tolist() == [96000, 96000, 104000, 16000, 96000, 96000]
    assert pool.host_dev_start.tolist() == [0, 8, 16, 18, 20, 28, 36]
    pods = load_pods(tiny_trace, "tiny")
    assert len(pods) == 42
    assert len(pods.requests) == 7  # distinct shapes
    assert pods.gpu_milli[:7].tolist() == [0, 810, 470, 460, 1000, 1000, 2000]
    spec = pods.requests[pods.shape[5]]
    assert spec.selector.models == frozenset({"p100", "t4"})
    assert (spec.compute_milli, spec.devices, spec.host_cpu_milli) == (1000, 1, 12000)
    cpu_only = pods.requests[pods.shape[0]]
    assert (cpu_only.compute_milli, cpu_only.host_cpu_milli, cpu_only.host_memory_mib) == (0, 4000, 8192)


def test_missing_trace_names_the_download(tmp_path: Path) -> None:
    with pytest.raises(TraceNotFound, match=r"github\.com/alibaba/clusterdata"):
        load_nodes(tmp_path)


def test_benchmark_runs_every_policy_and_seed(tiny_trace: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = run_benchmark(
        tiny_trace,
        ["tiny"],
        ["firstfit", "bestfit", "fgd", "flexlab"],
        [1, 2],
        progress=lambda done, total, label: seen.append((done, total)),
    )
    assert len(result.runs) == 8
    gpu = load_pods(tiny_trace, "tiny").gpu_milli
    for run in result.runs:
        assert run.decisions == len(inflate(gpu, 36000, run.seed))
        assert 0 < run.placed <= run.decisions
        alloc = np.array(run.alloc)
        assert len(alloc) == 131
        finite = alloc[~np.isnan(alloc)]
        assert finite.size > 60
        assert (np.diff(finite) >= -1e-9).all()  # nothing leaves: allocation only grows
        assert finite.max() <= 100.0
    assert seen[-1][0] == seen[-1][1] == sum(r.decisions for r in result.runs)
    mean, sd = result.unallocated("tiny", "flexlab", 100)
    per_seed = [100 - r.alloc[100] for r in result.runs if r.policy == "flexlab"]
    assert mean == pytest.approx(np.mean(per_seed))
    assert sd == pytest.approx(np.std(per_seed, ddof=1))
    assert result.decisions_per_s("tiny", "fgd") > 0


def test_replay_records_every_request(tiny_trace: Path) -> None:
    pool = load_nodes(tiny_trace)
    pods = load_pods(tiny_trace, "tiny")
    order = inflate(pods.gpu_milli, 36000, 5)
    dist = ShapeDistribution.from_requests([pods.requests[j] for j in pods.shape])
    rec = replay(pool, pods.requests, pods.shape[order], make_profile("firstfit"), frag_distribution=dist)
    assert rec.decisions == len(order)
    assert rec.arrived_milli[-1] == pods.gpu_milli[order].sum()
    assert (rec.allocated_milli <= rec.arrived_milli).all()
    assert (np.diff(rec.allocated_milli) >= 0).all()
    assert rec.allocated_milli[-1] == 36000 - pool.dev_compute_free.sum()  # the pool holds what was placed
    assert (rec.frag_milli >= 0).all()
    assert rec.frag_milli[-1] == pytest.approx(FragmentationModel(dist).cluster_of(pool))


def test_json_has_the_summary_and_every_run(tiny_trace: Path) -> None:
    result = run_benchmark(tiny_trace, ["tiny"], ["firstfit", "flexlab"], [3], loads=(50, 100, 130))
    doc = json.loads(result.to_json())
    assert doc["policies"] == ["firstfit", "flexlab"]
    assert len(doc["summary"]) == 2 * 3
    assert {r["load"] for r in doc["summary"]} == {50, 100, 130}
    assert len(doc["runs"]) == 2
    for row in doc["summary"]:
        ours = result.unallocated("tiny", row["policy"], row["load"])[0]
        if math.isnan(ours):
            assert row["unallocated_mean"] is None
        else:
            assert row["unallocated_mean"] == pytest.approx(ours, abs=1e-4)
    assert row["published_unallocated"] is None  # no published figures for this workload


def write_published(folder: Path) -> None:
    folder.mkdir()
    loads = ",".join(str(i) for i in range(131))
    alloc = [f"workload,sc_policy,tune,seed,total_gpus,{loads}"]
    frag = [f"workload,sc_policy,tune,seed,{loads}"]
    for seed, at100 in ((42, 95.0), (43, 96.0)):
        values = ",".join(str(at100 if i == 100 else float(i)) for i in range(131))
        alloc.append(f"openb_pod_list_tiny,06-FGD,1.3,{seed},36,{values}")
        frag.append(f"openb_pod_list_tiny,06-FGD,1.3,{seed}," + ",".join("2.5" for _ in range(131)))
    (folder / "analysis_allo_discrete.csv").write_text("\n".join(alloc) + "\n")
    (folder / "analysis_frag_discrete.csv").write_text("\n".join(frag) + "\n")


def test_published_figures_sit_beside_ours(tiny_trace: Path) -> None:
    write_published(tiny_trace / "published")
    series = load_published(tiny_trace / "published")[("tiny", "FGD")]
    assert series.seeds == (42, 43)
    assert series.unallocated(100) == pytest.approx((4.5, math.sqrt(0.5)))
    assert series.fragmentation(100) == 2.5
    result = run_benchmark(tiny_trace, ["tiny"], ["fgd"], [1], loads=(100,))
    assert result.published_unallocated("tiny", "FGD", 100)[0] == pytest.approx(4.5)
    assert result.summary()[0]["published_unallocated"] == pytest.approx(4.5)
    console = Console(record=True, width=160)
    console.print(build_table(result))
    text = console.export_text()
    assert "published" in text
    assert "4.50" in text
    assert f"{result.unallocated('tiny', 'fgd', 100)[0]:.2f}" in text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    openb_cli.add_arguments(p)
    return p


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("42-51", list(range(42, 52))), ("42,43", [42, 43]), ("42-44,50", [42, 43, 44, 50]), ("7", [7])],
    ids=["range", "list", "mixed", "one"],
)
def test_seed_syntax(text: str, seeds: list[int]) -> None:
    assert openb_cli.parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--seeds", "x", "not a seed list; allowed"),
        ("--seeds", "51-42", "not a seed list; allowed"),
        ("--policies", "fgd,worstfit", "unknown policy worstfit; allowed: firstfit"),
        ("--loads", "100,140", "0..130"),
    ],
    ids=["seeds-word", "seeds-backwards", "policy-unknown", "load-out-of-range"],
)
def test_bad_options_say_what_is_allowed(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args([option, value])
    err = capsys.readouterr().err
    assert option in err
    assert message in err


def test_cli_prints_one_table_and_writes_json(
    tiny_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = parser().parse_args(
        [
            "--trace-dir",
            str(tiny_trace),
            "--workload",
            "tiny",
            "--policies",
            "fgd,flexlab",
            "--seeds",
            "1-2",
            "--json",
            str(out),
        ]
    )
    assert openb_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("openb: unallocated GPU %") == 1
    assert "flexlab" in printed
    doc = json.loads(out.read_text())
    assert doc["protocol"]["seeds"] == [1, 2]
    assert {(r["policy"], r["seed"]) for r in doc["runs"]} == {
        ("fgd", 1),
        ("fgd", 2),
        ("flexlab", 1),
        ("flexlab", 2),
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trace-dir", "{missing}"], "github.com/alibaba/clusterdata"),
        (["--trace-dir", "{trace}", "--workload", "nope"], "unknown workload 'nope'; allowed: all, tiny"),
        (["--trace-dir", "{trace}", "--workload", "all"], "lacks workloads default"),
    ],
    ids=["no-trace", "unknown-workload", "all-needs-the-published-ones"],
)
def test_cli_input_errors(
    argv: list[str], message: str, tiny_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(missing=tmp_path / "missing", trace=tiny_trace) for a in argv]
    assert openb_cli.main(parser().parse_args(argv)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err
