"""The private-lease latency benchmark on the smallest scale: one round of each kind, with
worker processes (``benchmarks/private_lease_bench.py``; figures in
``benchmarks/private_lease.md``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_one_round_of_each_kind(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "private_lease_bench.py"),
            "--rounds",
            "1",
            "--json",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["plugin_errors"] == []
    assert sorted(report["kinds"]) == ["private", "shared"]
    for kind, parts in report["kinds"].items():
        total, active, first = parts["total_s"], parts["active_s"], parts["first_task_s"]
        assert total["n"] == active["n"] == first["n"] == 1, kind
        assert 0 < active["p50_s"] <= total["p50_s"], kind
        assert 0 < first["p50_s"] <= total["p50_s"], kind
    assert "private  total_s" in run.stdout
