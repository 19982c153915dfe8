"""``flexlab lab``'s command line (the browser test starts it for real)."""

from __future__ import annotations

import argparse

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
