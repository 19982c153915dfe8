"""``flexlab dashboard``: how it starts Voila (without starting it; the browser tests do)."""

from __future__ import annotations

import socket
from pathlib import Path

import nbformat
import pytest

from flexlab.commands import dashboard as cmd

from ..clean_run import assert_clean, serve_then_stop


def test_voila_listens_on_localhost_without_the_lab_panel(tmp_path: Path) -> None:
    argv = cmd.voila_command(tmp_path / "d.ipynb", 8123, open_browser=False)
    assert argv[1:4] == ["-m", "voila", str(tmp_path / "d.ipynb")]
    assert "--Voila.ip=127.0.0.1" in argv
    assert "--port=8123" in argv
    assert f"--VoilaConfiguration.extension_denylist={cmd.LAB_EXTENSION}" in argv
    assert cmd.LAB_EXTENSION == "flexlab-jupyter"
    assert "--no-browser" in argv
    assert "--no-browser" not in cmd.voila_command(tmp_path / "d.ipynb", 8123, open_browser=True)
    assert "--preheat_kernel=True" in cmd.voila_command(
        tmp_path / "d.ipynb", 1, open_browser=True, preheat=True
    )


def test_port_choice() -> None:
    assert cmd.choose_port(9999) == 9999
    assert cmd.choose_port(0) > 0
    with socket.socket() as s:  # the default port taken: any free one instead
        try:
            s.bind(("127.0.0.1", cmd.DEFAULT_PORT))
        except OSError:
            pytest.skip("the default port is in use here already")
        s.listen()
        assert cmd.choose_port(None) != cmd.DEFAULT_PORT


def test_notebook_comes_from_the_repository_or_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cmd.notebook_path(tmp_path).name == "dashboard.ipynb"
    assert cmd.notebook_path(tmp_path).parent.name == "notebooks"
    monkeypatch.setattr(cmd, "_REPO_NOTEBOOK", tmp_path / "absent.ipynb")  # installed without the repo
    path = cmd.notebook_path(tmp_path)
    assert path.parent == tmp_path
    assert "Dashboard(flexlab.PoolClient(pool.client)" in nbformat.read(path, as_version=4).cells[0].source


def test_bad_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.main(["--port", "70000", "--no-browser"]) == 2
    assert "--port" in capsys.readouterr().err


@pytest.mark.slow
def test_a_first_dashboard_prints_what_it_means_to_and_stops_cleanly(tmp_path: Path) -> None:
    """``flexlab dashboard`` on the embedded pool with its load, on a machine with no
    browser: where it serves, nothing else, from start to a stop by signal (issue 14)."""
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("FLEXLAB_SCHEDULER", "FLEXLAB_TLS", "BROWSER")}
    env["DISPLAY"] = ""
    ready = [f"http://127.0.0.1:{port}/", "flexlab dashboard: http"]
    # settle: the synthetic load runs on the pool for a while
    text = serve_then_stop(
        ["dashboard", "--port", str(port)], tmp_path / "dashboard.log", ready, env=env, cwd=tmp_path
    )
    assert_clean(text)
