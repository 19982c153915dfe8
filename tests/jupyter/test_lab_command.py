"""``flexlab lab``'s command line (the browser test starts it for real)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flexlab.commands.lab import add_parser, lab_argv
from flexlab.core.errors import InvalidRequest


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flexlab")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lab", *argv])


def test_defaults_embedded_pool_on_localhost() -> None:
    args = parse()
    assert lab_argv(args) == ["--ServerApp.ip=127.0.0.1", "--ServerApp.port=8888"]
    assert args.func.__name__ == "cmd_lab"


def test_scheduler_port_browser_and_jupyter_options() -> None:
    args = parse(
        "--scheduler", "tcp://10.0.0.5:8786", "--port", "8890", "--no-browser", "--allow-root",
        "--", "--ServerApp.root_dir=notebooks",
    )  # fmt: skip
    assert lab_argv(args) == [
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=8890",
        "--no-browser",
        "--allow-root",
        "--FlexlabJupyter.scheduler_address=tcp://10.0.0.5:8786",
        "--ServerApp.root_dir=notebooks",
    ]


def test_bad_port() -> None:
    with pytest.raises(InvalidRequest) as info:
        lab_argv(parse("--port", "70000"))
    assert info.value.field == "--port"


@pytest.mark.slow
def test_a_first_lab_prints_no_warnings_and_stops_its_pool_cleanly(tmp_path: Path) -> None:
    """``flexlab lab`` on the embedded pool: the server's own lines and nothing else, from
    start to a stop by two signals at once (the second used to end the process while the
    first still closed the pool, whose workers then logged tracebacks at exit)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "lab.log"
    env = {k: v for k, v in os.environ.items() if k not in ("FLEXLAB_SCHEDULER", "FLEXLAB_TLS")}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    argv = [
        "lab",
        "--port",
        str(port),
        "--no-browser",
        "--allow-root",
        "--",
        f"--ServerApp.root_dir={tmp_path}",
    ]
    with log.open("w") as out:
        lab = subprocess.Popen(
            [sys.executable, "-m", "flexlab.cli", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while "started the embedded mock pool" not in log.read_text():
            assert lab.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        time.sleep(5.0)  # the pool's workers settle (the race needs them up)
        lab.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        lab.send_signal(signal.SIGTERM)
        lab.wait(60)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    text = log.read_text()
    noise = [
        line
        for line in text.splitlines()
        if any(w in line for w in ("Traceback", "Warning", "WARNING", "ERROR", "[W ", "[E "))
    ]
    assert noise == [], "\n".join(noise[:10])
