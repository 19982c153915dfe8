"""flexlab: share scarce AI accelerators from Python, Dask and Jupyter.

Slice GPUs and NPUs into fractional units, pool them across machines and place work on
them. The pure core lives in :mod:`flexlab.core`; the Dask-facing API is re-exported here
lazily, so ``import flexlab.core`` never pulls in Dask::

    import flexlab
    with flexlab.request("npu:0.25"):
        futures = client.map(fn, items)
    with flexlab.lease("gpu:30%,8GiB", ttl="2h") as lease:
        lease.submit(fn).result()
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "request": "flexlab.client",
    "submit": "flexlab.client",
    "lease": "flexlab.client",
    "Lease": "flexlab.client",
    "PoolClient": "flexlab.client",
    "connect": "flexlab.client",
    "current_user": "flexlab.client",
    "parse_request": "flexlab.core.request",
    "SliceRequest": "flexlab.core.request",
    "InvalidRequest": "flexlab.core.errors",
    "Unschedulable": "flexlab.core.errors",
    "LeaseEnded": "flexlab.core.errors",
}

__all__ = [
    "InvalidRequest",
    "Lease",
    "LeaseEnded",
    "PoolClient",
    "SliceRequest",
    "Unschedulable",
    "__version__",
    "connect",
    "current_user",
    "lease",
    "load_ipython_extension",
    "parse_request",
    "request",
    "submit",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext flexlab``: registers the ``%flex`` magics (see :mod:`flexlab.notebook`)."""
    from flexlab.notebook import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flexlab' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
