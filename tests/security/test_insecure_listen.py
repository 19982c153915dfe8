"""``flexlab up --host 0.0.0.0`` without TLS refuses to start; with ``--insecure`` it starts and
warns once; with ``--tls`` it starts without a warning.

Binding 0.0.0.0 happens only inside a network namespace this test makes, with nothing but
``lo`` up in it, so nothing is exposed; the namespace is deleted at the end, even on failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ip") is None or os.geteuid() != 0,
        reason="needs root and iproute2 to make a network namespace (CI runs as root)",
    ),
]

REFUSAL = "flexlab: error: refusing to listen on 0.0.0.0 (the scheduler) without TLS"
WARNING = "flexlab: warning: the scheduler listens on 0.0.0.0 without TLS (--insecure)"


@pytest.fixture
def netns() -> Iterator[list[str]]:
    """The prefix that runs a command inside a fresh namespace with only loopback up."""
    name = f"flexlab-test-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert name not in listed


def up(netns: list[str], *extra: str) -> list[str]:
    return [*netns, sys.executable, "-m", "flexlab.cli", "up", "--host", "0.0.0.0", "--port", "0", *extra]


def env() -> dict[str, str]:
    out = {**os.environ, "DASK_FLEXLAB__STATE_FILE": ":memory:"}
    out.pop("FLEXLAB_TLS", None)
    out.pop("DASK_FLEXLAB__TLS", None)
    return out


def test_plain_tcp_beyond_loopback_is_refused(netns: list[str]) -> None:
    done = subprocess.run(
        up(netns, "--no-agent"), check=False, env=env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one clear message, no traceback
    assert lines[0].startswith(REFUSAL)
    assert "--tls DIR" in lines[0]
    assert "--insecure" in lines[0]
    # the agent's slice workers are held to the same rule
    agent = [*netns, sys.executable, "-m", "flexlab.cli", "agent", "tcp://127.0.0.1:9", "--listen", "0.0.0.0"]
    done = subprocess.run(agent, check=False, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("flexlab: error: refusing to listen on 0.0.0.0 (slice workers (--listen))")
    assert "Traceback" not in done.stderr


def start_and_stop(argv: list[str], log: Path) -> str:
    """Run ``flexlab up`` until it prints its address, stop it with SIGTERM; its output."""
    proc = subprocess.Popen(argv, env=env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "flexlab scheduler at" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return log.read_text()


def test_insecure_starts_and_warns_once(netns: list[str], tmp_path: Path) -> None:
    out = start_and_stop(up(netns, "--no-agent", "--insecure"), tmp_path / "up.log")
    assert out.count(WARNING) == 1, out
    assert "flexlab scheduler at tcp://" in out


def test_tls_starts_without_a_warning(netns: list[str], tmp_path: Path, pool_tls: Path) -> None:
    out = start_and_stop(up(netns, "--no-agent", "--tls", str(pool_tls)), tmp_path / "up.log")
    assert "flexlab scheduler at tls://" in out
    assert "without TLS" not in out
