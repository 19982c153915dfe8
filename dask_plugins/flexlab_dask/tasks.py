"""Failing a task that waits for a worker it will never get, with an error naming why."""

from __future__ import annotations

from typing import Any


def fail_waiting_task(sched: Any, key: Any, exc: Exception, stimulus_id: str) -> bool:
    """Move task ``key`` of scheduler ``sched`` from ``no-worker`` to ``erred`` with ``exc``,
    so that its future raises ``exc`` at once. False (and nothing done) when the task is gone
    or not waiting for a worker."""
    from distributed.core import error_message

    ts = sched.tasks.get(key)
    if ts is None or ts.state != "no-worker":
        return False
    msg = error_message(exc)
    recs, client_msgs, worker_msgs = sched._transition(
        key,
        "erred",
        stimulus_id,
        cause=key,
        exception=msg["exception"],
        traceback=msg["traceback"],
        exception_text=msg["exception_text"],
        traceback_text=msg["traceback_text"],
    )
    sched._transitions(recs, client_msgs, worker_msgs, stimulus_id)
    sched.send_all(client_msgs, worker_msgs)
    return True
