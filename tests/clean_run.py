"""A command's clean run: started, stopped by signal, and nothing in its output that reads as a
problem (issue 14: a first run prints what it means to and nothing else)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: Words that mark a problem in a command's output (Python's warnings end in "Warning";
#: Jupyter logs warnings and errors as "[W ..." and "[E ...").
NOISE = ("Traceback", "Warning", "WARNING", "ERROR", "[W ", "[E ")


def noise(text: str, extra: Sequence[str] = ()) -> list[str]:
    """The lines of ``text`` that carry one of :data:`NOISE` or ``extra``."""
    words = (*NOISE, *extra)
    return [line for line in text.splitlines() if any(w in line for w in words)]


def assert_clean(text: str, extra: Sequence[str] = ()) -> None:
    lines = noise(text, extra)
    assert lines == [], "\n".join(lines[:10])


def serve_then_stop(
    argv: Sequence[str],
    log: Path,
    ready: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    settle_s: float = 5.0,
    stops: int = 1,
) -> str:
    """Run ``python -m flexlab.cli ARGV`` until its output holds every line of ``ready``, let
    it work ``settle_s``, send SIGTERM ``stops`` times, and return all it printed."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flexlab.cli", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
    try:
        deadline = time.monotonic() + 120
        while not all(word in log.read_text() for word in ready):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        time.sleep(settle_s)
        for _ in range(stops):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text()
