"""The Binder demo, the way repo2docker builds and starts it (no Docker here).

repo2docker installs ``binder/requirements.txt`` into a fresh environment, runs
``binder/postBuild`` from the repository root, and at launch runs ``binder/start`` with the
server command as its arguments. This test does the same in a fresh virtual environment; the
"server command" is ``binder_session.py``, which finds the pool ``start`` launched, opens
JupyterLab with the panel, renders the Voila dashboard and runs every notebook against the
pool. Meanwhile the test samples the memory (RSS) of everything ``start`` launched: the
Binder pod's limit is 2 GB.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return time.monotonic() - t0


def _label(p: Any) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    for key in ("flexlab up", "flexlab.dashboard.load", "jupyterlab", "ipykernel", "binder_session"):
        if key in cmd:
            return key
    return p.name()


def _sample(pid: int) -> dict[str, int]:
    """RSS per kind of process in the tree of ``pid`` (start and everything it launched)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out: dict[str, int] = {}
    for p in procs:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        key = _label(p)
        out[key] = out.get(key, 0) + rss
    return out


def _still_running(pids: dict[str, int], timeout: float) -> dict[str, int]:
    """Those of ``pids`` that have not exited within ``timeout`` seconds (a zombie has; a
    pid taken since by a process that is not flexlab's is not ours)."""
    deadline = time.monotonic() + timeout
    while True:
        left = {}
        for name, pid in pids.items():
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE and "flexlab" in " ".join(p.cmdline()):
                    left[name] = pid
            except psutil.Error:
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.mark.slow
def test_binder_postbuild_and_start(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    logs = tmp_path / "logs"
    jupyter = tmp_path / "jupyter"
    env = {k: v for k, v in os.environ.items() if k not in ("FLEXLAB_SCHEDULER", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        FLEXLAB_PORT=str(_free_port()),
        FLEXLAB_LOG_DIR=str(logs),
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    timings = {"venv": _run([sys.executable, "-m", "venv", str(venv)], env, 120)}
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    timings["requirements"] = _run([*pip, "-r", "binder/requirements.txt"], env, 900)
    timings["postBuild"] = _run(["binder/postBuild"], env, 900)

    report = tmp_path / "session.json"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["binder/start", str(venv / "bin" / "python"), "tests/notebooks/binder_session.py", str(report)],
        cwd=ROOT, env=env, stdout=(tmp_path / "start.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    peak: dict[str, int] = {}
    launched_peak = 0
    try:
        while proc.poll() is None and time.monotonic() - t0 < 1200:
            now = _sample(proc.pid)
            if sum(now.values()) > sum(peak.values()):
                peak = now
            launched_peak = max(
                launched_peak, now.get("flexlab up", 0) + now.get("flexlab.dashboard.load", 0)
            )
            time.sleep(0.5)
        steady = _sample(proc.pid) if proc.poll() is None else {}
    finally:
        # start's background jobs (pool, load) share its process group: stop the group we started.
        launched = {}
        for name in ("load.pid", "pool.pid"):
            pidfile = logs / name
            if pidfile.exists():
                launched[name] = pid = int(pidfile.read_text())
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        # Both must stop on SIGTERM (the load once hung in its own signal handler and stayed
        # behind): whatever still runs is killed here, and the test fails below.
        left_behind = _still_running(launched, 30)
        for pid in left_behind.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    timings["session"] = time.monotonic() - t0
    seen = json.loads(report.read_text()) if report.exists() else {}
    memory = {
        "peak_total_mib": round(sum(peak.values()) / 2**20),
        "peak_by_process_mib": {k: round(v / 2**20) for k, v in sorted(peak.items())},
        "pool_and_load_peak_mib": round(launched_peak / 2**20),
        "steady_mib": {k: round(v / 2**20) for k, v in steady.items()},
    }
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "binder-report.json").write_text(
        json.dumps(
            {"timings_s": {k: round(v, 1) for k, v in timings.items()}, "memory": memory, "session": seen},
            indent=1,
        )
    )
    log = (tmp_path / "start.log").read_text(errors="replace")[-3000:]
    assert sorted(launched) == ["load.pid", "pool.pid"], launched
    assert not left_behind, f"still running 30 s after SIGTERM: {left_behind}"
    assert proc.returncode == 0, f"session failed: {seen}\n{log}"
    assert seen.get("ok"), f"session failed: {seen}\n{log}"
    assert seen["pool"]["devices"] == 6
    assert seen["pool"]["vendors"] == ["cambricon", "huawei", "nvidia"]
    assert seen["pool"]["arrivals_seen"] > 0  # the synthetic load runs
    assert seen["pool"]["preempt_grace_s"] == 5.0  # a visitor's lease waits little for the load's
    lab = seen["lab"]
    assert lab["panel_extension_served"]
    assert lab["panel_pool_devices"] == 6
    assert lab["voila_dashboard_status"] == 200
    assert lab["voila_dashboard_widget"]
    assert not lab["voila_dashboard_error"]
    for name in ("01-quickstart.ipynb", "02-task-mode.ipynb", "03-heterogeneous.ipynb"):
        assert seen["notebooks"][name]["on_pool"], name  # they used the pool start launched
    assert "04-placement.ipynb" in seen["notebooks"]
    assert sum(peak.values()) < 2 * GIB, memory
