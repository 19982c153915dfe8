"""The request form's device menu, computed once from the pool's hosts and sent with the
state (so the notebook widget and the JupyterLab panel offer the same choices under the same
names), and the vendors' names as people read them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from flexlab.core.poolstate.model import DeviceState, HostState

MenuGroup = Literal["any", "kind", "vendor", "model"]

#: How people read the catalog's vendor keys (the menu's labels, ``flexlab status --watch``).
VENDOR_NAMES: dict[str, str] = {
    "nvidia": "NVIDIA",
    "huawei": "Huawei",
    "cambricon": "Cambricon",
    "mock": "Mock",
}


def vendor_name(vendor: str) -> str:
    """``"huawei"`` -> ``"Huawei"``; an unknown vendor as it is."""
    return VENDOR_NAMES.get(vendor, vendor)


@dataclass(frozen=True)
class MenuChoice:
    """One entry of the request form's device selector."""

    value: str  # the selector word of the request string ("any", "npu", "huawei", "a100-80gb")
    label: str  # what the menu shows ("Huawei (4)")
    group: MenuGroup  # "any", "kind", "vendor" or "model"
    devices: tuple[str, ...]  # the ids of the pool's devices it selects
    share: bool  # whether fraction-sliced devices are among them (a share can be asked)
    share_step_milli: int  # the share step in milli-units: the coarsest granularity of those devices
    profiles: tuple[str, ...]  # the profile menu of its profile-sliced devices (empty: none)
    max_memory_mib: int  # the largest device memory among them, MiB


def device_menu(hosts: Iterable[HostState]) -> tuple[MenuChoice, ...]:
    """Any accelerator, then each kind, vendor and model present in the pool, each with the
    devices it selects and how they can be sliced."""
    devices = [d for h in hosts for d in h.devices]
    out = [_choice("any", f"Any accelerator ({len(devices)})", "any", devices)]
    groups: tuple[tuple[MenuGroup, Callable[[DeviceState], str]], ...] = (
        ("kind", lambda d: d.kind),
        ("vendor", lambda d: d.vendor),
        ("model", lambda d: d.model),
    )
    for group, key in groups:
        by: dict[str, list[DeviceState]] = {}
        for d in devices:
            by.setdefault(key(d), []).append(d)
        for value, ds in sorted(by.items()):
            shown = {"kind": f"Any {value.upper()}", "vendor": vendor_name(value), "model": ds[0].name}[group]
            out.append(_choice(value, f"{shown} ({len(ds)})", group, ds))
    return tuple(out)


def _choice(value: str, label: str, group: MenuGroup, ds: list[DeviceState]) -> MenuChoice:
    fractions = [d for d in ds if d.mode != "profile"]
    profiles: list[str] = []
    for d in ds:
        if d.mode == "profile":
            profiles.extend(p for p in d.profiles if p not in profiles)
    return MenuChoice(
        value=value,
        label=label,
        group=group,
        devices=tuple(d.id for d in ds),
        share=bool(fractions),
        share_step_milli=max([10, *(d.granularity_milli or 10 for d in fractions)]),
        profiles=tuple(profiles),
        max_memory_mib=max([0, *(d.memory_mib for d in ds)]),
    )
