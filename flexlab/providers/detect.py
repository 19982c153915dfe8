"""Run every provider and say, per vendor, what was found or why not.

This is what ``flexlab agent --detect-only`` prints: one :class:`ProviderReport` per
provider (a missing or failing vendor tool is a report, never an exception, and the other
providers keep working) and :func:`render_reports` to turn them into text lines.

>>> from flexlab.providers.nvidia import NvidiaProvider
>>> render_reports(detect_all([NvidiaProvider(enabled=False)]))[0]
'nvidia: disabled - nvidia provider switched off in config'
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flexlab.core.units import format_memory
from flexlab.providers.ascend import AscendProvider
from flexlab.providers.base import DeviceProvider, DiscoveredDevice, ProviderReport, ReportStatus
from flexlab.providers.cambricon import CambriconProvider
from flexlab.providers.mock import MockProvider, PoolSpec, load_pool_spec
from flexlab.providers.nvidia import NvidiaProvider

log = logging.getLogger(__name__)

#: Provider names, as in the dask.config keys ``flexlab.providers.<name>.enabled``.
PROVIDER_NAMES = ("nvidia", "ascend", "cambricon", "mock")


def enabled_map(providers_config: Mapping[str, Any] | None) -> dict[str, bool]:
    """``{name: enabled}`` from the ``flexlab.providers`` config section (default: on).

    >>> enabled_map({"ascend": {"enabled": False}})["ascend"]
    False
    """
    section = providers_config or {}
    found: dict[str, bool] = {}
    for name in PROVIDER_NAMES:
        entry = section.get(name, {})
        value = entry.get("enabled", True) if isinstance(entry, Mapping) else True
        found[name] = bool(value)
    return found


def default_providers(
    *, enabled: Mapping[str, bool] | None = None, mock_spec: PoolSpec | str | Path | None = None
) -> list[DeviceProvider]:
    """The real providers, plus one mock provider per host of ``mock_spec`` if given."""
    on = dict(enabled or {})
    providers: list[DeviceProvider] = [
        NvidiaProvider(enabled=on.get("nvidia", True)),
        AscendProvider(enabled=on.get("ascend", True)),
        CambriconProvider(enabled=on.get("cambricon", True)),
    ]
    if mock_spec is not None:
        spec = mock_spec if isinstance(mock_spec, PoolSpec) else load_pool_spec(mock_spec)
        providers += [MockProvider(h, enabled=on.get("mock", True)) for h in spec.hosts]
    return providers


def detect_all(providers: Iterable[DeviceProvider] | None = None) -> list[ProviderReport]:
    """Every provider's report; one that raises becomes an INTERNAL_ERROR report (logged)."""
    reports: list[ProviderReport] = []
    for provider in default_providers() if providers is None else providers:
        try:
            reports.append(provider.detect())
        except Exception as exc:  # a provider bug must not hide the other vendors
            log.exception("%s provider raised during detection", provider.name)
            reports.append(ProviderReport(provider.name, ReportStatus.INTERNAL_ERROR, detail=repr(exc)))
    return reports


def _device_line(dev: DiscoveredDevice) -> str:
    model = dev.model_key or "not in catalog"
    parts = [f"  [{dev.index}] {dev.product_name} -> {model}", format_memory(dev.memory_mib), dev.uuid]
    if dev.health and dev.health != "OK":
        parts.append(f"health {dev.health}")
    if dev.instances:
        parts.append(f"{dev.partition_mode.value}: " + ", ".join(i.profile for i in dev.instances))
    return "  ".join(parts)


def render_reports(reports: Iterable[ProviderReport], *, stderr_lines: int = 3) -> list[str]:
    """Text lines for a person: a line per provider, a line per device, warnings, a total."""
    lines: list[str] = []
    total = found_by = 0
    count = 0
    for r in reports:
        count += 1
        version = f" ({r.version})" if r.version else ""
        if r.ok:
            found_by += 1
            total += len(r.devices)
            noun = "device" if len(r.devices) == 1 else "devices"
            lines.append(f"{r.provider}: {len(r.devices)} {noun}{version}")
            lines += [_device_line(d) for d in r.devices]
        else:
            lines.append(f"{r.provider}: {r.status.value} - {r.detail or 'no detail'}{version}")
            if r.command and r.status is not ReportStatus.TOOL_MISSING:
                lines.append(f"  command: {' '.join(r.command)} (exit {r.returncode})")
            said = [s for s in r.stderr.strip().splitlines() if s.strip()]
            lines += [f"  stderr: {s}" for s in said[-stderr_lines:]]
        lines += [f"  warning: {w.render()}" for w in r.warnings]
    lines.append(f"{total} device{'s' if total != 1 else ''} from {found_by} of {count} providers")
    return lines
