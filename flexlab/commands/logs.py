"""Quieting Dask's logs for commands whose output is a table or a progress bar."""

from __future__ import annotations

import logging
import os

#: The ``--log-level`` choices of the long-running commands.
LEVELS = ("debug", "info", "warning", "error")


def set_levels(level: int, prefixes: tuple[str, ...]) -> None:
    """Set ``level`` on every logger under ``prefixes`` (e.g. ``"distributed"``).

    distributed gives some of its loggers levels of their own (``distributed.worker.
    state_machine`` among them), so the parent's level alone does not quiet them: every
    logger that exists under a prefix is set, the prefixes' own loggers too.
    """
    import distributed  # noqa: F401  (creates its loggers)

    names = [n for n in logging.root.manager.loggerDict if n.startswith(prefixes)]
    for name in (*prefixes, *names):
        logging.getLogger(name).setLevel(level)


def dask_log_level(name: str) -> None:
    """distributed's loggers at ``name`` (one of :data:`LEVELS`) in this process and in the
    processes it starts (slice workers read ``DASK_LOGGING__DISTRIBUTED`` when they start).

    ``flexlab up`` and ``flexlab agent`` print what they mean to (where the pool is, which
    hosts joined) and Dask's warnings and errors, not its start-up and connection INFO lines;
    ``--log-level info`` brings those back."""
    os.environ["DASK_LOGGING__DISTRIBUTED"] = name
    set_levels(getattr(logging, name.upper()), ("distributed",))
