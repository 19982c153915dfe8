"""``flexlab lab``'s command line (the browser test starts it for real)."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import pytest

from flexlab.commands.lab import add_parser, lab_argv
from flexlab.core.errors import InvalidRequest

from ..clean_run import assert_clean, serve_then_stop


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
    # settle: the pool's workers are up (the race needs them); two stops at once
    text = serve_then_stop(argv, tmp_path / "lab.log", ["started the embedded mock pool"], env=env, stops=2)
    assert "received signal 15, stopping" in text
    assert_clean(text)
