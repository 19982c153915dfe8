"""Quieting Dask's logs for commands whose output is a table or a progress bar."""

from __future__ import annotations

import logging


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
