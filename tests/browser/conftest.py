"""Browser tests: Debian's Chromium through pytest-playwright, and servers on 127.0.0.1.

Shared by the JupyterLab tests (``test_lab*.py``) and the Voila tests (``test_voila*.py``);
keep what is here generic:

* ``browser_type_launch_args``: pytest-playwright launches ``/usr/bin/chromium`` (never
  ``playwright install``; ``apt-get install -y chromium`` provides it), headless, with the
  flags that keep it off the network;
* ``server_process``: a factory that starts a server command on a free 127.0.0.1 port, waits
  until a URL answers, and stops it by its pid at the end of the test (or module);
* ``artifacts``: ``test-artifacts/`` at the repository root (git-ignored), for screenshots.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("FLEXLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root (git-ignored)."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def free_port() -> int:
    """A TCP port nobody listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server started by a test: its port, its log, and how to stop it (by pid)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env if env is not None else dict(os.environ),
            cwd=cwd,
            start_new_session=True,  # its children (kernels) stop with it
        )
        self.pid = self.proc.pid

    def wait_until(self, path: str, *, headers: dict[str, str] | None = None, timeout: float = 90.0) -> None:
        """Wait until ``GET path`` answers 200 (the process must not exit meanwhile)."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(self.url + path, headers=headers or {})
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:3]} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(request, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.url}{path} did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its process group (it and its kernels), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        # kernels left in its process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


StartServer = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """``start(argv_with_{port}, path=..., env=...)``: a server on a free port, stopped after the module.

    ``{port}`` in ``argv`` is replaced by the port; ``path`` is the URL that must answer 200.
    """
    started: list[ServerProcess] = []
    logs = tmp_path_factory.mktemp("servers")

    def start(
        argv: Sequence[str],
        *,
        path: str = "/",
        headers: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 90.0,
    ) -> ServerProcess:
        port = free_port()
        args = [a.replace("{port}", str(port)) for a in argv]
        srv = ServerProcess(args, port=port, log=logs / f"server-{len(started)}-{port}.log", env=env, cwd=cwd)
        started.append(srv)
        srv.wait_until(path, headers=headers, timeout=timeout)
        return srv

    yield start
    for srv in started:
        srv.stop()
