"""Colours shared by every component, so one owner or one model has one colour on the page.

Vendors get a hue family (NVIDIA greens, Huawei reds and oranges, Cambricon indigo and
purple, anything else browns); each model takes the next shade of its vendor's family the
first time it is seen. Owners take the next colour of a categorical palette, shared slices
are blue-grey. Assignments are kept for the life of the :class:`Theme`, so colours never
jump between updates.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

SHARED = "#78909c"
FREE = "#f5f7f8"
FRAME = "#455a64"
TEXT = "#263238"
MUTED = "#78909c"
TOTAL = "#263238"

VENDOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "nvidia": ("#1b7f3b", "#66bb6a", "#2e9d8f", "#9ccc65", "#0b5d2a", "#43a047"),
    "huawei": ("#c62828", "#ef6c00", "#e57373", "#ad1457", "#ffa726", "#8e0000"),
    "cambricon": ("#3949ab", "#7e57c2", "#7986cb", "#512da8", "#9fa8da", "#1a237e"),
}
OTHER_FAMILY = ("#6d4c41", "#a1887f", "#8d6e63", "#4e342e")
VENDOR_LABELS = {"nvidia": "NVIDIA", "huawei": "Huawei Ascend", "cambricon": "Cambricon"}

OWNER_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#9467bd",
    "#17becf",
    "#e377c2",
    "#bcbd22",
    "#8c564b",
    "#7f7f7f",
    "#2ca02c",
    "#d62728",
)

#: Request classes (queue and arrivals).
CLASS_PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")

#: Event kinds grouped into what an operator asks about, and the colour of each group.
EVENT_CATEGORIES: dict[str, str] = {
    "carve": "placement",
    "bind": "placement",
    "place": "placement",
    "reslice": "re-slice",
    "recarve": "re-slice",
    "merge": "re-slice",
    "split": "re-slice",
    "reclaim": "re-slice",
    "preempt": "preemption",
    "evict": "preemption",
    "lost": "failure",
    "fail": "failure",
    "error": "failure",
    "lease": "lease",
    "expire": "lease",
    "wait": "waiting",
    "host": "host",
}
CATEGORY_COLORS: dict[str, str] = {
    "placement": "#1f77b4",
    "re-slice": "#7e57c2",
    "preemption": "#ef6c00",
    "failure": "#d32f2f",
    "lease": "#00897b",
    "waiting": "#9e9d24",
    "host": "#607d8b",
    "other": "#90a4ae",
}

_RAMP = ((0.0, (236, 239, 241)), (0.5, (255, 183, 77)), (1.0, (191, 54, 12)))


def event_category(kind: str) -> str:
    """``carve`` -> ``placement``; unknown kinds -> ``other``."""
    return EVENT_CATEGORIES.get(kind, "other")


def _ramp(u: float) -> str:
    for (x0, c0), (x1, c1) in itertools.pairwise(_RAMP):
        if u <= x1:
            f = (u - x0) / (x1 - x0)
            r, g, b = (round(a + (b_ - a) * f) for a, b_ in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#bf360c"


HEAT = tuple(_ramp(i / 100) for i in range(101))


def utilisation_color(u: float) -> str:
    """Idle light grey, half busy amber, full dark orange-red (``u`` in 0..1, by percent)."""
    return HEAT[round(100 * min(1.0, max(0.0, float(u))))]


class Theme:
    """Stable colour assignments for vendors, models and owners."""

    def __init__(self) -> None:
        self._models: dict[str, str] = {}
        self._per_vendor: dict[str, int] = {}
        self._owners: dict[str, str] = {}
        self._classes: dict[str, str] = {}

    def vendor_color(self, vendor: str) -> str:
        return VENDOR_FAMILIES.get(vendor, OTHER_FAMILY)[0]

    def model_color(self, vendor: str, model: str) -> str:
        color = self._models.get(model)
        if color is None:
            family = VENDOR_FAMILIES.get(vendor, OTHER_FAMILY)
            n = self._per_vendor.get(vendor, 0)
            self._per_vendor[vendor] = n + 1
            color = self._models[model] = family[n % len(family)]
        return color

    def learn_models(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Assign model colours in a stable order (vendor, then model key)."""
        for vendor, model in sorted(set(pairs)):
            self.model_color(vendor, model)

    def owner_color(self, owner: str | None) -> str:
        """Blue-grey for shared slices (no owner), else the owner's own colour."""
        if not owner:
            return SHARED
        color = self._owners.get(owner)
        if color is None:
            color = self._owners[owner] = OWNER_PALETTE[len(self._owners) % len(OWNER_PALETTE)]
        return color

    def class_color(self, request_class: str) -> str:
        """A colour per request class (``other`` is grey)."""
        if request_class == "other":
            return "#9e9e9e"
        color = self._classes.get(request_class)
        if color is None:
            n = len(self._classes) % (len(CLASS_PALETTE) - 1)
            color = self._classes[request_class] = CLASS_PALETTE[n]
        return color

    @property
    def owners(self) -> dict[str, str]:
        return dict(self._owners)


def vendor_label(vendor: str) -> str:
    return VENDOR_LABELS.get(vendor, vendor)
