"""Telemetry of a slice on real hardware, read in the slice worker's own process.

The provider is built once per process (hardware is touched lazily, once); each reading
attributes the device's use to this slice by the worker's process id. A reading that
fails is logged by the provider and reported here as an idle slice, never raised.
"""

from __future__ import annotations

import os
from typing import Any

from flexlab.providers import get_provider
from flexlab.providers.base import DeviceProvider, slice_usage

_PROVIDERS: dict[str, DeviceProvider] = {}


def provider(name: str) -> DeviceProvider:
    if name not in _PROVIDERS:
        _PROVIDERS[name] = get_provider(name)
    return _PROVIDERS[name]


def sample_slice(provider_name: str, slice_spec: dict[str, Any], env: dict[str, str]) -> tuple[float, int]:
    """(utilisation of the slice 0..1, device memory in use MiB) for this process."""
    report = provider(provider_name).sample()
    usage = slice_usage(report.samples, [os.getpid()])
    share = max(int(slice_spec.get("compute_milli", 1000)), 1) / 1000
    util = (usage.utilization_pct or 0.0) / 100.0 / share
    return min(1.0, util), int(usage.memory_mib or 0)
