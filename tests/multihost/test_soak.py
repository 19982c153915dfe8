"""The soak's short version in CI (issue 15): ``benchmarks/soak.py`` for two minutes, with
faults, on the multi-host lab. The 30-minute run and its report are in ``benchmarks/``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import netns_available

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_loses_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    out = tmp_path / "soak.json"
    argv = [sys.executable, "benchmarks/soak.py", "--minutes", "2", "--every", "25-35"]
    proc = subprocess.run(
        [*argv, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    print(json.dumps({k: report[k] for k in ("tasks", "leases", "faults_by_kind", "scheduler_memory")}))
    assert proc.returncode == 0, (report, proc.stderr[-3000:])
    assert report["ok"] is True
    assert report["tasks"]["completed"] > 0
    assert report["lost"] == []
    assert sum(report["faults_by_kind"].values()) >= 2
    assert report["invariant_checks"] > 0
    assert report["invariants_broken"] == []
    assert report["processes_left"] == []
    assert report["namespaces_left"] == []
    assert report["scheduler_memory"]["flat"] is None  # two minutes judge nothing about memory
    # the heap beside the resident memory, and the churn's rate by minute
    assert all(x["py_blocks"] > 0 and x["gc_objects"] > 0 for x in report["scheduler_structures"])
    assert report["scheduler_structures"]
    assert sum(report["leases"]["granted_per_minute"]) == report["leases"]["granted"]
    assert report["retention"] == {
        "lease.keep-ended": "5m",
        "events-cleanup-delay": "5m",
        "low-level-log-length": 100,
        "history-length": "5m",
    }
