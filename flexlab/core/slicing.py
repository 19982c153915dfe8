"""Profile layouts: which combinations of MIG profiles / vNPU templates a device can hold.

A layout is the tuple of instances carved on one device, each ``(profile name, start)``
where ``start`` is the first memory slice of a MIG instance (``-1`` for models without
slot rules, such as Ascend vNPU templates). A layout is valid when compute units, AI CPUs
and memory add up within the model's capacity and, for MIG, every instance sits at an
allowed start on memory slices no other instance uses (NVIDIA's placement rules).
"""

from __future__ import annotations

from collections.abc import Iterable

from flexlab.core.catalog import DeviceModel, Profile

Instance = tuple[str, int]
Layout = tuple[Instance, ...]
NO_SLOT = -1


def _used(model: DeviceModel, layout: Iterable[Instance]) -> tuple[int, int, int, int]:
    units = aicpu = memory = mask = 0
    for name, start in layout:
        p = model.profile(name)
        units += p.units
        aicpu += p.aicpu
        memory += p.memory_mib
        if p.mem_slots and start >= 0:
            mask |= ((1 << p.mem_slots) - 1) << start
    return units, aicpu, memory, mask


def find_start(model: DeviceModel, layout: Layout, profile: Profile) -> int | None:
    """The start slot where ``profile`` fits next to ``layout``; ``NO_SLOT`` for slot-free
    models; None when it does not fit."""
    units, aicpu, memory, mask = _used(model, layout)
    if units + profile.units > model.profile_units:
        return None
    if model.aicpu and aicpu + profile.aicpu > model.aicpu:
        return None
    # MIG memory sizes are nominal (an "80gb" instance on an 80 GiB card); the slot rule
    # below is the real limit there, so only slot-free templates are checked by size.
    if (
        not profile.mem_slots
        and model.memory_mib is not None
        and memory + profile.memory_mib > model.memory_mib
    ):
        return None
    if not profile.mem_slots or not model.mem_slots:
        return NO_SLOT
    want = (1 << profile.mem_slots) - 1
    starts = [
        st for st in profile.starts if st + profile.mem_slots <= model.mem_slots and not (mask & (want << st))
    ]
    if len(starts) <= 1:
        return starts[0] if starts else None
    # Several places: take the one that leaves the most room for the rest of the menu, so
    # that 3g.40gb + 2g.20gb + 1g.10gb + 1g.10gb all fit on an A100 whatever the order.
    return max(starts, key=lambda st: (_room(model, mask | (want << st)), -st))


def _room(model: DeviceModel, mask: int) -> int:
    """How many (profile, start) placements remain open on a slot mask."""
    n = 0
    for p in model.profiles:
        w = (1 << p.mem_slots) - 1
        n += sum(1 for st in p.starts if st + p.mem_slots <= model.mem_slots and not (mask & (w << st)))
    return n


def is_valid(model: DeviceModel, layout: Layout) -> bool:
    """True if the whole layout could be built on an empty device, in any order."""
    built: Layout = ()
    # Slot-ruled instances carry their start; check each against the ones before it.
    for name, start in layout:
        if not model.has_profile(name):
            return False
        p = model.profile(name)
        if p.mem_slots and model.mem_slots:
            if start not in p.starts:
                return False
            units, _aicpu, _, mask = _used(model, built)
            want = ((1 << p.mem_slots) - 1) << start
            if mask & want or units + p.units > model.profile_units:
                return False
        elif find_start(model, built, p) is None:
            return False
        built = (*built, (name, start))
    return True


def free_profiles(model: DeviceModel, layout: Layout) -> frozenset[str]:
    """The profile names that can still be carved on a device holding ``layout``."""
    return frozenset(p.name for p in model.profiles if find_start(model, layout, p) is not None)
