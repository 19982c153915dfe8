"""Suite-wide fixtures: plugin exceptions swallowed by the Dask scheduler fail the test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The browser tests run in their own pytest process (`make test` does both): Playwright's
# event loop and pytest-jupyter's cannot share one session (toolchain P18).
collect_ignore = [] if os.environ.get("FLEXLAB_BROWSER_TESTS") else ["browser"]


def openb_dir() -> Path | None:
    """The public openb trace: $FLEXLAB_OPENB_DIR or ../shared/traces/openb."""
    env = os.environ.get("FLEXLAB_OPENB_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "traces" / "openb"
    return path if (path / "csv").is_dir() else None


class _PluginErrors(logging.Handler):
    """Collects scheduler log records of exceptions raised in flexlab code, at any level:
    distributed logs a plugin's ``transition`` exception at INFO ("Plugin failed with
    exception"), other hooks' at ERROR."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("distributed.scheduler", "flexlab")):
            return
        text = record.getMessage()
        if record.exc_info:
            import traceback

            text += "".join(traceback.format_exception(*record.exc_info))
        elif record.levelno < logging.ERROR:
            return  # INFO lines without a traceback are not errors
        if "flexlab" in text:
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_plugin_exceptions() -> Iterator[_PluginErrors]:
    """The Dask scheduler logs and swallows exceptions raised by plugins: catch them here,
    whatever level they are logged at."""
    handler = _PluginErrors()
    loggers = [logging.getLogger("distributed.scheduler"), logging.getLogger("flexlab")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)
    if handler.records:
        msgs = "\n".join(f"{r.name}: {r.getMessage()}" for r in handler.records)
        pytest.fail(f"the flexlab plugin raised inside the scheduler:\n{msgs}")
