"""The command line, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flexlab.cli import main
from flexlab.core.placement.live import LivePolicy

from .clean_run import assert_clean

ROOT = Path(__file__).resolve().parents[1]


def test_catalog_json_lists_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--json", "--kind", "npu"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert {m["key"] for m in models} >= {"ascend-910b3", "ascend-310p3"}
    assert all(m["kind"] == "npu" and m["sources"] for m in models)


def test_request_shows_what_it_asks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "npu:25%,16GiB,cpu=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["kinds"], out["compute_milli"], out["memory_mib"], out["host_cpu_milli"]) == (
        ["npu"],
        250,
        16384,
        2000,
    )


def test_bad_request_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "tpu:0.5"]) == 2
    err = capsys.readouterr().err
    assert "invalid selector: 'tpu'" in err
    assert "allowed" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_up_then_status(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DASK_FLEXLAB__STATE_FILE": str(tmp_path / "leases.sqlite")}
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        # slice workers as processes, as an operator runs it (their start-up is part of the output)
        [sys.executable, "-m", "flexlab.cli", "up", "--port", str(port), "--provider", "mock"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        out = ""
        for _ in range(120):
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "flexlab.cli",
                    "status",
                    "--scheduler",
                    f"tcp://127.0.0.1:{port}",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
            if r.returncode == 0:
                state = json.loads(r.stdout)
                slices = [s for h in state["hosts"] for d in h["devices"] for s in d["slices"]]
                if len(state["hosts"]) == 3 and slices and all(s["state"] == "ready" for s in slices):
                    out = r.stdout
                    break
            time.sleep(0.5)
        assert out, (tmp_path / "up.log").read_text()
        from flexlab_dask.config import DEFAULTS

        policy = json.loads(out)["policy"]
        assert policy["name"] == DEFAULTS["flexlab"]["policy"]
        assert policy["description"]
        table = subprocess.run(
            [sys.executable, "-m", "flexlab.cli", "status", "--scheduler", f"tcp://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "COLUMNS": "160"},
            check=True,
        ).stdout
        words = (
            "ascend-a",
            "nvidia-b",
            "mixed-c",
            "a100-80gb",
            "3g.40gb",
            "mlu370-x8",
            f"policy {policy['name']}",
        )
        for word in words:
            assert word in table
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(30)
    text = (tmp_path / "up.log").read_text()
    assert "flexlab scheduler at tcp://127.0.0.1:" in text
    assert text.count("registered with") == 3
    # a clean run, start to stop: what flexlab means to say, no Dask chatter (issue 14)
    assert_clean(text, extra=(" INFO ",))


@pytest.mark.parametrize(
    ("policy", "line"),
    [
        ({"name": "binpack", "learns": False}, "policy binpack\n"),
        (
            LivePolicy("flexlab").state(),
            "policy flexlab · learning: 0 requests seen, the prior counts as 200 more · "
            "expects 55% any:1, 20% any:0.75, 15% any:0.5, 10% any:0.25\n",
        ),
    ],
    ids=["fixed", "cold-start"],
)
def test_status_names_the_policy_first(policy: dict[str, Any], line: str) -> None:
    from rich.console import Console

    from flexlab.commands.render import print_pool
    from flexlab.core.poolstate import PoolState

    con = Console(record=True, width=200)
    print_pool(PoolState.from_json({"time": 0.0, "hosts": [], "policy": policy}), con)
    assert con.export_text().startswith(line)


def test_status_without_a_scheduler_says_so() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flexlab.cli",
            "status",
            "--scheduler",
            f"tcp://127.0.0.1:{free_port()}",
            "--timeout",
            "1s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "cannot reach a scheduler" in r.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "flexlab.cli", "demo", "--window", "4", "--tasks", "150"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Tasks completed in 4 s, per device model" in r.stdout
    assert "x those of whole-device allocation" in r.stdout
    for model in ("ascend-910b3", "a100-80gb", "v100s-32gb"):
        assert model in r.stdout
    # a clean first run: nothing but what the demo means to say (issue 14)
    assert_clean(r.stdout + r.stderr)
