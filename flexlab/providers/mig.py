"""MIG layout planning: where a set of MIG profiles can go on one GPU, or why not.

NVIDIA places each MIG GPU instance on a contiguous run of memory slices starting at one
of a few allowed slices (``nvidia-smi mig -lgipp``; the catalog's ``Profile.starts`` and
``mem_slots``). A greedy first-fit can refuse layouts that exist (1g.10gb at slice 0 blocks
a later 4g.40gb), so the planner searches every arrangement: at most seven instances on
eight slices, a few hundred states at worst.

>>> from flexlab.core.catalog import CATALOG
>>> plan = plan_mig_layout(CATALOG["a100-80gb"], ["1g.10gb", "4g.40gb", "2g.20gb"])
>>> [(p.profile, p.start) for p in plan.placements]
[('4g.40gb', 0), ('2g.20gb', 4), ('1g.10gb', 6)]
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from flexlab.core.catalog import DeviceModel, Profile
from flexlab.core.slicing import Layout, is_valid
from flexlab.providers.base import DiscoveredDevice


class MigRefusal(str, enum.Enum):
    """Why a wanted layout cannot be built."""

    NOT_MIG_CAPABLE = "not-mig-capable"
    UNKNOWN_PROFILE = "unknown-profile"
    INVALID_EXISTING = "invalid-existing"
    OVER_COMPUTE = "over-compute"
    NO_ARRANGEMENT = "no-arrangement"


@dataclass(frozen=True)
class MigPlacement:
    """One GPU instance to create: its profile and first memory slice."""

    profile: str
    start: int
    mem_slots: int


@dataclass(frozen=True)
class MigPlan:
    """The placements for the wanted profiles (in creation order), or a refusal."""

    model_key: str
    placements: tuple[MigPlacement, ...] = ()
    refusal: MigRefusal | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.refusal is None


def existing_layout(device: DiscoveredDevice) -> Layout:
    """The layout a discovered device already holds, as ``(profile, start)`` pairs."""
    return tuple((inst.profile, inst.start) for inst in device.instances)


def _mask(start: int, slots: int) -> int:
    return ((1 << slots) - 1) << start


def _search(
    model: DeviceModel, todo: Sequence[Profile], mask: int, units: int, acc: list[MigPlacement]
) -> bool:
    if not todo:
        return True
    head, rest = todo[0], todo[1:]
    if units + head.units > model.profile_units:
        return False
    for start in head.starts:
        want = _mask(start, head.mem_slots)
        if start + head.mem_slots > model.mem_slots or mask & want:
            continue
        acc.append(MigPlacement(head.name, start, head.mem_slots))
        if _search(model, rest, mask | want, units + head.units, acc):
            return True
        acc.pop()
    return False


def plan_mig_layout(model: DeviceModel, wanted: Sequence[str], existing: Layout = ()) -> MigPlan:
    """Place ``wanted`` MIG profiles next to the ``existing`` instances, or refuse.

    Larger instances are placed first; the search backtracks over every allowed start, so
    a refusal means no arrangement exists (its ``detail`` says which limit was hit).
    """
    if not model.mem_slots or not any(p.mem_slots for p in model.profiles):
        return MigPlan(
            model.key, refusal=MigRefusal.NOT_MIG_CAPABLE, detail=f"{model.key} has no MIG profile menu"
        )
    menu = {p.name: p for p in model.profiles}
    unknown = [w for w in wanted if w not in menu]
    if unknown:
        return MigPlan(
            model.key,
            refusal=MigRefusal.UNKNOWN_PROFILE,
            detail=f"{', '.join(unknown)} not in the {model.key} menu ({', '.join(menu)})",
        )
    if not is_valid(model, existing):
        return MigPlan(
            model.key,
            refusal=MigRefusal.INVALID_EXISTING,
            detail=f"existing instances {list(existing)} are not a valid {model.key} layout",
        )
    mask = 0
    units = 0
    for name, start in existing:
        prof = menu[name]
        units += prof.units
        if start >= 0:
            mask |= _mask(start, prof.mem_slots)
    todo = sorted((menu[w] for w in wanted), key=lambda p: (-p.mem_slots, -p.units, p.name))
    need = units + sum(p.units for p in todo)
    if need > model.profile_units:
        return MigPlan(
            model.key,
            refusal=MigRefusal.OVER_COMPUTE,
            detail=f"needs {need} compute slices, {model.key} has {model.profile_units}",
        )
    acc: list[MigPlacement] = []
    if not _search(model, todo, mask, units, acc):
        used = f"{bin(mask).count('1')} of {model.mem_slots} memory slices in use"
        return MigPlan(
            model.key,
            refusal=MigRefusal.NO_ARRANGEMENT,
            detail=f"no placement of {', '.join(wanted)} on {model.key} ({used})",
        )
    return MigPlan(model.key, placements=tuple(acc))
