"""Open a Dask ``Client`` that, when it cannot connect, is closed there and then.

A ``distributed.Client`` whose constructor raises (refused TLS handshake, nobody listening,
a time-out) still started an IO-loop thread. It is closed only by ``Client.__del__``, when
the garbage collector reaches it, at whatever allocation that happens. In distributed
2026.8 that close takes ``LoopRunner._lock``, one lock for every loop runner of the
process, and so does the start of the next client. When the collector runs inside that
start (it does: starting the loop thread allocates), the thread waits on a lock it
already holds and the process hangs for good. Seen as a refused client followed by a
good one: the good one never came back.

Every client flexlab makes goes through :func:`open_client`, which closes a client that
failed to connect before re-raising, so nothing is left for the collector to close.
"""

from __future__ import annotations

import contextlib
from typing import Any

from distributed import Client


def open_client(address: Any, **kwargs: Any) -> Client:
    """``Client(address, **kwargs)``; one that fails to connect is closed before the error
    propagates (see the module's docstring)."""
    client = Client.__new__(Client)
    try:
        client.__init__(address, **kwargs)  # type: ignore[misc]
    except BaseException:
        with contextlib.suppress(Exception):
            client.close(timeout=5)
        # A client that gave up while connecting has already closed its comms and calls
        # itself closed, so close() returns at once and leaves its loop running: stop it.
        runner = getattr(client, "_loop_runner", None)
        if runner is not None:
            with contextlib.suppress(Exception):
                runner.stop()
        raise
    return client
