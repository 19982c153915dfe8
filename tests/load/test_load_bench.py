"""The load benchmark on a small scale: every request answered, invariants intact, and the
calls that gave up leave no lease behind (``benchmarks/load_bench.py``; figures at full
scale are in ``benchmarks/README.md``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_many_requests_at_once_are_all_answered_and_nothing_is_left_behind(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    bench = str(ROOT / "benchmarks" / "load_bench.py")
    args = ["--requests", "120", "--owners", "12", "--give-up-after", "0.5", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, bench, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    phases = report["phases"]
    assert set(phases) == {"python", "rest", "give-up"}
    for name in ("python", "rest"):
        p = phases[name]
        assert p["answered"] == 120, (name, p)
        assert p["after"]["live"] == 120, (name, p["after"])
        assert p["after"]["broken"] == [], (name, p["after"])
        assert p["after_release"]["live"] == 0, (name, p["after_release"])
        assert p["response"]["n"] == 120
        assert p["response"]["p99_ms"] >= p["response"]["p50_ms"] > 0
        assert p["ticks"]["n"] > 0
    assert phases["rest"]["http_status"] == {"201": 120}
    gave_up = phases["give-up"]
    assert gave_up["timed_out"] > 0, gave_up  # 120 leases on 6 devices: most cannot be active in 0.5 s
    assert gave_up["timed_out"] + gave_up["returned_active"] == 120, gave_up
    # Only the leases of the calls that returned were left, and their owners released them.
    assert gave_up["after"]["live"] == gave_up["returned_active"], gave_up["after"]
    assert gave_up["after_release"]["live"] == 0
    assert all(p["after"]["errors"] == [] for p in phases.values())
