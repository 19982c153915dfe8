"""Fixtures of the front's tests: a TLS pool, a real JupyterHub (from PyPI) that runs
``flexlab front`` as its managed service ``flexlab``, and Hub tokens of two users.

The Hub runs in a process of its own on 127.0.0.1 with an in-memory routing table instead
of configurable-http-proxy (``routes_in_memory.py``): the tests call the Hub's API and the
front's service port directly. pytest-jupyter's fixtures serve the front-mode server tests
of this folder only (as in tests/jupyter).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyterhub")
pytest.importorskip("jupyter_server")

from flexlab_dask import FlexCluster
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_fetch, jp_serverapp, ...)

from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """(status, JSON answer) of one request; errors come back as their status."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"token {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


@dataclass
class Hub:
    """A JupyterHub process, its admin token, and the front it runs."""

    folder: Path
    scheduler: str
    tls: Path
    hub_port: int = field(default_factory=free_port)
    front_port: int = field(default_factory=free_port)
    admin: str = field(default_factory=lambda: secrets.token_hex(24))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def front(self) -> str:
        """The front's base URL (its API is under ``flexlab/api/`` there)."""
        return f"http://127.0.0.1:{self.front_port}/services/flexlab/"

    def config(self) -> str:
        front_argv = [str(BIN / "flexlab"), "front", "--scheduler", self.scheduler, "--tls", str(self.tls)]
        services = [
            {"name": "tests", "api_token": self.admin},
            {"name": "flexlab", "url": f"http://127.0.0.1:{self.front_port}", "command": front_argv},
        ]
        roles = [
            {"name": "tests", "services": ["tests"], "scopes": ["admin:users", "tokens", "list:users"]},
            {"name": "user", "scopes": ["self", "access:services!service=flexlab"]},
        ]
        lines = [
            "c = get_config()  # noqa: F821",
            "c.JupyterHub.ip = '127.0.0.1'",
            f"c.JupyterHub.port = {free_port()}",
            "c.JupyterHub.hub_ip = '127.0.0.1'",
            f"c.JupyterHub.hub_port = {self.hub_port}",
            "c.JupyterHub.proxy_class = 'tests.security.front.routes_in_memory.InMemoryRoutes'",
            f"c.JupyterHub.db_url = {'sqlite:///' + str(self.folder / 'hub.sqlite')!r}",
            f"c.JupyterHub.cookie_secret_file = {str(self.folder / 'cookie_secret')!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            "c.Authenticator.allowed_users = {'ana', 'bob', 'fuzz'}",
            f"c.JupyterHub.services = {services!r}",
            f"c.JupyterHub.load_roles = {roles!r}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 90.0) -> None:
        config = self.folder / "jupyterhub_config.py"
        config.write_text(self.config())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXLAB_", "JUPYTERHUB_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.log = (self.folder / "hub.log").open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(config)],
            cwd=self.folder,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its managed service (the front) joins this group
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if call(self.front + "flexlab/api/info")[0] == 401:  # the front is up, behind the Hub
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Hub or its front did not start in {timeout} s:\n{self.logs()}")
            time.sleep(0.3)

    def logs(self) -> str:
        return (self.folder / "hub.log").read_text(errors="replace")

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"note": "flexlab front tests"}
        if scopes is not None:
            body["scopes"] = scopes
        status, out = call(f"{self.api}/users/{user}/tokens", "POST", self.admin, body)
        assert status == 201, (status, out)
        return str(out["token"])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the Hub stops its managed services first
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of its group is left (the front)
        self.log.close()


@pytest.fixture(scope="package")
def tls_pool(pool_tls: Path) -> Iterator[FlexCluster]:
    """``FlexCluster(tls=...)`` with one T4 host, for the front."""
    reset_mock_devices()
    hosts = [HostSpec("gpu-host", 8_000, 32 * 1024, (DeviceSpec("t4", 0),))]
    with FlexCluster(hosts=hosts, tls=str(pool_tls), cpu_workers=0, loop_interval=0.2) as cluster:
        yield cluster
        assert cluster.flex_plugin.errors == []


@pytest.fixture(scope="package")
def hub(tmp_path_factory: pytest.TempPathFactory, tls_pool: FlexCluster, pool_tls: Path) -> Iterator[Hub]:
    """JupyterHub with ``flexlab front`` as its service ``flexlab``, users ana, bob and fuzz."""
    h = Hub(tmp_path_factory.mktemp("hub"), str(tls_pool.scheduler_address), pool_tls)
    try:
        h.start()
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="package")
def tokens(hub: Hub) -> dict[str, str]:
    """A Hub token of each user (all of its owner's scopes)."""
    return {user: hub.token(user) for user in ("ana", "bob")}
