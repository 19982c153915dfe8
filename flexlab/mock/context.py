"""Where am I running? :func:`current_slice` finds the mock slice of the calling code.

It looks, in order, at:

1. a slice set explicitly with :func:`on_slice` (tests, notebooks, threads you start);
2. the Dask worker running the task (``distributed.get_worker()``, imported lazily): the
   worker plugin named ``"flexlab-slice"`` (its ``.context``), or a ``flexlab_slice``
   attribute on the worker; the task's own share is the value, in milli, of the resource
   ``flexlab-slice-<slice id>`` in its resource restrictions (the whole slice without one);
3. the mock's environment variables (:mod:`flexlab.mock.env`);

and raises :class:`NotOnMockSlice` otherwise.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from flexlab.core.errors import FlexlabError
from flexlab.mock.env import ALL_VARS, context_from_env
from flexlab.mock.model import SliceContext

#: Name of the WorkerPlugin that carries a slice worker's :class:`SliceContext` as ``.context``.
PLUGIN_NAME = "flexlab-slice"
#: Worker attribute accepted instead of the plugin: ``dask_worker.flexlab_slice = ctx``.
WORKER_ATTRIBUTE = "flexlab_slice"

_explicit: ContextVar[SliceContext | None] = ContextVar("flexlab_mock_slice", default=None)


class NotOnMockSlice(FlexlabError, RuntimeError):
    """The calling code is not running on a flexlab mock slice."""


def slice_resource(slice_id: str) -> str:
    """The Dask resource a slice worker offers, in milli: ``flexlab-slice-<id>``."""
    return f"flexlab-slice-{slice_id}"


@contextmanager
def on_slice(ctx: SliceContext) -> Iterator[SliceContext]:
    """Run the block as if on ``ctx`` (this thread or task only).

    >>> from flexlab.mock import SliceContext, kernel
    >>> ctx = SliceContext(share_milli=500, memory_mib=4096, model_key="t4", device_id="d0", slice_id="s0")
    >>> with on_slice(ctx):
    ...     kernel(work=0.01, demand=0.5).slice_id
    's0'
    """
    token = _explicit.set(ctx)
    try:
        yield ctx
    finally:
        _explicit.reset(token)


def current_slice() -> SliceContext:
    """The mock slice this code runs on, with the task's granted share when known."""
    ctx = _explicit.get()
    if ctx is not None:
        return ctx
    ctx = _from_dask()
    if ctx is not None:
        return ctx
    ctx = context_from_env()
    if ctx is not None:
        return ctx
    raise NotOnMockSlice(
        "not running on a flexlab mock slice: no 'flexlab-slice' plugin on a Dask worker, "
        f"and {ALL_VARS[0]} is unset. Run the code as a task on a mock slice "
        "(flexlab.request / flexlab.lease on a FlexCluster or `flexlab demo` cluster with mock "
        "devices), or for a local try wrap it in "
        "`with flexlab.mock.on_slice(SliceContext(...)):`, or set the variables from "
        "flexlab.mock.env.slice_env(...)."
    )


def _from_dask() -> SliceContext | None:
    if "distributed" not in sys.modules:  # no Dask worker without distributed; don't import it
        return None
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not inside a Dask task
        return None
    ctx = worker_context(worker)
    if ctx is None:
        return None
    return ctx.for_task(_granted_milli(worker, ctx))


def worker_context(worker: Any) -> SliceContext | None:
    """The slice a Dask worker serves: its ``flexlab-slice`` plugin or ``flexlab_slice`` attribute."""
    plugin = getattr(worker, "plugins", {}).get(PLUGIN_NAME)
    if plugin is not None:
        found, where = getattr(plugin, "context", None), f"worker plugin {PLUGIN_NAME!r} .context"
    else:
        found, where = getattr(worker, WORKER_ATTRIBUTE, None), f"worker attribute {WORKER_ATTRIBUTE!r}"
    if found is None or isinstance(found, SliceContext):
        return found
    raise TypeError(f"{where} is a {type(found).__name__}; expected flexlab.mock.SliceContext")


def _granted_milli(worker: Any, ctx: SliceContext) -> int | None:
    # The thread-local that distributed.worker sets around each task (key, start_time).
    thread_state = importlib.import_module("distributed.worker").thread_state
    key = getattr(thread_state, "key", None)
    ts = worker.state.tasks.get(key) if key is not None else None
    if ts is None:
        return None
    value = (ts.resource_restrictions or {}).get(slice_resource(ctx.slice_id))  # None without resources
    return None if value is None else round(value)
