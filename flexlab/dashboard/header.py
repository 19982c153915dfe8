"""The header: the pool in one line of figures an operator reads first."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from bokeh.models import ColumnDataSource
from bokeh.models.widgets import Div

from flexlab.dashboard.base import Component, Frame, PoolState, devices
from flexlab.dashboard.fragmentation import Fragmentation
from flexlab.dashboard.theme import MUTED, TEXT, Theme, vendor_label

_CARD = (
    '<div style="display:inline-block;vertical-align:top;min-width:118px;margin:0 8px 0 0;padding:6px 10px;'
    'border-radius:6px;background:#f5f7f8;border-left:4px solid {color}">'
    '<div style="font-size:11px;color:{muted}">{title}</div>'
    '<div style="font-size:20px;font-weight:600;color:{text}">{value}</div>'
    '<div style="font-size:11px;color:{muted}">{sub}</div></div>'
)


def policy_card(state: PoolState) -> tuple[str, str]:
    """The placement policy's name and what it learned, from the pool state's ``policy``
    section (a scheduler without one: the name its plugin reports)."""
    pol = state.policy
    name = state.policy_name
    if not pol.learns:
        return name, "fixed rule"
    if pol.prior_weight_left > 0:
        return name, f"learning: {pol.observations} requests seen"
    return name, f"learned from {pol.in_window} requests"


class Header(Component):
    """Key figures: devices, busy, memory, leased, waiting, stranded, policy, freshness."""

    def __init__(self, theme: Theme | None = None, *, width: int = 1400, title: str = "flexlab pool") -> None:
        self.theme = theme or Theme()
        self.title = title
        self.ticks = 0
        self.source = ColumnDataSource({"key": [], "value": []}, name="header_figures")
        # tags: keeps the figures in the document, so that the page (and tests) can read them
        self.div = Div(text="", width=width, name="header", tags=[self.source])
        self.root = self.div
        self.status = ""

    def update(
        self,
        state: PoolState,
        frames: Sequence[Frame],
        fragmentation: Fragmentation | None = None,
        update_ms: float | None = None,
    ) -> None:
        self.ticks += 1
        vendors = Counter(d.vendor for _, d in devices(state))
        n_dev = sum(vendors.values())
        hosts = len(state.hosts)
        last = frames[-1] if frames else None
        busy = 100 * float(last["total"][0]) if last else 0.0
        mem = 100 * float(last["total"][1]) / float(last["total"][2]) if last and last["total"][2] else 0.0
        leased = 100 * float(last["leased"]) if last else 0.0
        n_wait = len(state.waiting) + len(state.pending_leases)
        n_leases = sum(1 for le in state.leases if le.state == "active")
        errors = state.plugin.errors if state.plugin else 0
        agents = len(state.plugin.agents) if state.plugin else 0
        stranded = fragmentation.stranded / 1000 if fragmentation else 0.0
        idle = fragmentation.idle / 1000 if fragmentation else 0.0
        t = state.time
        policy, learned = policy_card(state)
        cards = [
            (
                "devices",
                f"{n_dev}",
                f"{hosts} hosts · " + ", ".join(f"{vendor_label(v)} {n}" for v, n in sorted(vendors.items())),
                "#455a64",
            ),
            ("busy now", f"{busy:.0f}%", "mean compute in use", "#bf360c"),
            ("memory in use", f"{mem:.0f}%", "of device memory", "#6d4c41"),
            ("leased", f"{leased:.0f}%", f"{n_leases} active leases", "#00897b"),
            ("waiting", f"{n_wait}", "tasks and leases", "#9e9d24" if n_wait else "#b0bec5"),
            (
                "stranded",
                f"{stranded:.2f}",
                f"of {idle:.2f} idle device-eq.",
                "#d32f2f" if stranded else "#b0bec5",
            ),
            ("placement policy", policy, learned, "#5e35b1"),
            (
                "plugin",
                f"{errors} errors",
                f"{agents} agents",
                "#d32f2f" if errors else "#b0bec5",
            ),
        ]
        html = "".join(
            _CARD.format(title=a, value=b, sub=c, color=col, muted=MUTED, text=TEXT) for a, b, c, col in cards
        )
        took = f" · update {update_ms:.0f} ms" if update_ms is not None else ""
        status = (
            f'<span style="color:#d32f2f">{self.status}</span>'
            if self.status
            else f'<span style="color:#2e7d32">● live</span> {time.strftime("%H:%M:%S", time.localtime(t))}'
        )
        self.source.data = {"key": ["busy", "memory", "leased", "waiting", "stranded", "tick"],
                            "value": [busy, mem, leased, n_wait, stranded, self.ticks]}  # fmt: skip
        self.div.text = (
            f'<div style="font-family:sans-serif"><div style="display:flex;align-items:baseline;gap:14px">'
            f'<span style="font-size:22px;font-weight:700;color:{TEXT}">{self.title}</span>'
            f'<span style="font-size:12px;color:{MUTED}">{status} · tick {self.ticks}{took}</span></div>'
            f'<div style="margin-top:6px">{html}</div></div>'
        )
