"""A slice worker stopped on purpose does not print distributed's heartbeat error (a heartbeat
in flight while the scheduler drops the closing worker); before it stops, the error shows."""

from __future__ import annotations

import asyncio
import logging

from flexlab_dask.worker import _QuietStop


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, message, None, None)


def test_the_heartbeat_error_is_dropped_only_while_stopping() -> None:
    stopping = asyncio.Event()
    quiet = _QuietStop(stopping)
    heartbeat = record("Failed to communicate with scheduler during heartbeat.")
    other = record("Unexpected exception during heartbeat. Closing worker.")
    assert quiet.filter(heartbeat)
    assert quiet.filter(other)
    stopping.set()
    assert not quiet.filter(heartbeat)
    assert quiet.filter(other)
