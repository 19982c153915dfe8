"""Mock accelerators: real catalog models with a documented performance model (design section 6).

>>> from flexlab.mock import SliceContext, kernel, on_slice
>>> ctx = SliceContext(share_milli=500, memory_mib=16384, model_key="a100-40gb",
...                    device_id="d0", slice_id="s0")
>>> with on_slice(ctx):
...     kernel(work=0.012, demand=0.3, memory="2GiB").used
0.3

The model is in :mod:`flexlab.mock.model` and ``docs/mock-devices.md``. Importing this
package does not import Dask; :func:`current_slice` looks for a Dask worker lazily.
"""

from __future__ import annotations

from flexlab.mock.context import (
    PLUGIN_NAME,
    WORKER_ATTRIBUTE,
    NotOnMockSlice,
    current_slice,
    on_slice,
    slice_resource,
    worker_context,
)
from flexlab.mock.env import context_from_env, slice_env
from flexlab.mock.model import (
    DEFAULT_SPEEDS,
    FALLBACK_SPEED,
    REFERENCE_MODEL,
    WORKLOAD_CLASSES,
    DeviceReadout,
    MockDevice,
    MockOutOfMemory,
    SliceContext,
    SliceReadout,
    SpeedRow,
    SpeedTable,
    duration,
    mock_device,
    mock_devices,
    reset_mock_devices,
    used_share,
)
from flexlab.mock.workloads import (
    InferenceStats,
    KernelResult,
    TrainResult,
    inference_server,
    kernel,
    train,
)

__all__ = [
    "DEFAULT_SPEEDS",
    "FALLBACK_SPEED",
    "PLUGIN_NAME",
    "REFERENCE_MODEL",
    "WORKER_ATTRIBUTE",
    "WORKLOAD_CLASSES",
    "DeviceReadout",
    "InferenceStats",
    "KernelResult",
    "MockDevice",
    "MockOutOfMemory",
    "NotOnMockSlice",
    "SliceContext",
    "SliceReadout",
    "SpeedRow",
    "SpeedTable",
    "TrainResult",
    "context_from_env",
    "current_slice",
    "duration",
    "inference_server",
    "kernel",
    "mock_device",
    "mock_devices",
    "on_slice",
    "reset_mock_devices",
    "slice_env",
    "slice_resource",
    "train",
    "used_share",
    "worker_context",
]
