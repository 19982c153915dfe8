"""Device providers: discovery, telemetry and isolation for NVIDIA, Ascend, Cambricon, mock.

One module per vendor behind one protocol (:class:`DeviceProvider`); vendor SDKs and tools
are touched lazily, once per process, and each provider can be switched off (``enabled``,
fed from the dask.config keys ``flexlab.providers.<name>.enabled``).

>>> sorted(PROVIDERS)
['ascend', 'cambricon', 'nvidia']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flexlab.core.errors import UnknownName
from flexlab.providers.ascend import AscendProvider
from flexlab.providers.base import (
    DeviceInstance,
    DeviceProvider,
    DiscoveredDevice,
    ErrorCode,
    PartitionMode,
    ProcessUsage,
    ProviderReport,
    ReadingError,
    ReportStatus,
    SliceBinding,
    SliceUsage,
    TelemetryReport,
    TelemetrySample,
    model_key_for,
    slice_usage,
)
from flexlab.providers.binding import SliceEnvFactory, binding_for_command
from flexlab.providers.cambricon import CambriconProvider
from flexlab.providers.detect import default_providers, detect_all, enabled_map, render_reports
from flexlab.providers.memcap import apply_memory_cap
from flexlab.providers.mock import MockProvider, MockTelemetryBoard, load_pool_spec, parse_pool_spec
from flexlab.providers.nvidia import NvidiaProvider

#: Factories of the hardware providers by name (the mock needs a pool spec: MockProvider).
PROVIDERS: dict[str, Callable[..., DeviceProvider]] = {
    "nvidia": NvidiaProvider,
    "ascend": AscendProvider,
    "cambricon": CambriconProvider,
}


def get_provider(name: str, **kwargs: Any) -> DeviceProvider:
    """A hardware provider by name, built with ``kwargs`` (``enabled=False``...)."""
    try:
        factory = PROVIDERS[name]
    except KeyError:
        raise UnknownName("provider", name, PROVIDERS) from None
    return factory(**kwargs)


__all__ = [
    "PROVIDERS",
    "AscendProvider",
    "CambriconProvider",
    "DeviceInstance",
    "DeviceProvider",
    "DiscoveredDevice",
    "ErrorCode",
    "MockProvider",
    "MockTelemetryBoard",
    "NvidiaProvider",
    "PartitionMode",
    "ProcessUsage",
    "ProviderReport",
    "ReadingError",
    "ReportStatus",
    "SliceBinding",
    "SliceEnvFactory",
    "SliceUsage",
    "TelemetryReport",
    "TelemetrySample",
    "apply_memory_cap",
    "binding_for_command",
    "default_providers",
    "detect_all",
    "enabled_map",
    "get_provider",
    "load_pool_spec",
    "model_key_for",
    "parse_pool_spec",
    "render_reports",
    "slice_usage",
]
