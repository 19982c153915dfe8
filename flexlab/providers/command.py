"""Running a vendor's command-line tool: one function, no shell, always a timeout.

Parsers never call this; providers do, and tests replace it with a function that returns
recorded output (a :data:`Runner`), so every command line can be checked without hardware.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flexlab.providers.base import ErrorCode

log = logging.getLogger(__name__)

#: Seconds a vendor tool may take before it is killed.
DEFAULT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ToolResult:
    """What a command printed, or why it could not run (``error``)."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    #: None when the command ran and exited 0.
    error: ErrorCode | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """One line for logs and reports: the command and how it ended."""
        cmd = " ".join(self.argv)
        if self.error is ErrorCode.TOOL_MISSING:
            return f"{self.argv[0]} not found on PATH"
        if self.error is ErrorCode.TIMEOUT:
            return f"{cmd} timed out"
        if self.error is not None:
            said = (self.stderr or self.stdout).strip().splitlines()
            tail = said[-1] if said else "no output"
            return f"{cmd} exited {self.returncode}: {tail}"
        return f"{cmd} ok"


#: The signature of :func:`run_tool`; tests pass their own.
Runner = Callable[[Sequence[str], float], ToolResult]


def run_tool(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> ToolResult:
    """Run ``argv`` (no shell) with a timeout and capture its output as text."""
    args = tuple(argv)
    if shutil.which(args[0]) is None:
        return ToolResult(args, None, "", "", ErrorCode.TOOL_MISSING)
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, errors="replace"
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        log.warning("%s timed out after %.1f s", " ".join(args), timeout)
        return ToolResult(args, None, out, err, ErrorCode.TIMEOUT)
    except OSError as exc:
        log.warning("could not run %s: %s", " ".join(args), exc)
        return ToolResult(args, None, "", str(exc), ErrorCode.TOOL_FAILED)
    error = None if done.returncode == 0 else ErrorCode.TOOL_FAILED
    result = ToolResult(args, done.returncode, done.stdout, done.stderr, error)
    if error is not None:
        log.warning("%s", result.describe())
    return result
