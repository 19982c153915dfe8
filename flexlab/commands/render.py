"""Terminal rendering of the pool state (``flexlab status``, ``flexlab demo``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from flexlab.core.units import format_compute, format_memory


def _bar(fraction: float, width: int = 10) -> str:
    full = max(0, min(width, round(fraction * width)))
    return "█" * full + "·" * (width - full)


def shape_text(shape: dict[str, Any]) -> str:
    """A request shape of the policy state as a request string: ``any:0.75``,
    ``a100-80gb:1,devices=4``, ``cpu``."""
    n = int(shape.get("devices", 1))
    if n == 0:
        return "cpu"
    sel = "|".join(shape.get("models") or []) or "any"
    text = f"{sel}:{int(shape.get('compute_milli', 0)) / 1000:g}"
    return f"{text},devices={n}" if n > 1 else text


def policy_text(state: dict[str, Any]) -> str:
    """One line: which policy places, and what it learned of the requests.

    >>> policy_text({"policy": {"name": "binpack", "learns": False}})
    'policy binpack'
    """
    pol = state.get("policy") or {"name": (state.get("plugin") or {}).get("policy") or "?"}
    text = f"policy {pol.get('name') or '?'}"
    if not pol.get("learns"):
        return text
    left = float(pol.get("prior_weight_left", 0.0))
    seen = int(pol.get("observations", 0))
    if left > 0:
        text += f" · learning: {seen} requests seen, the prior counts as {left:.0f} more"
    else:
        text += f" · learned from the last {int(pol.get('in_window', 0))} requests"
    shapes = pol.get("shapes") or []
    if shapes:
        text += " · expects " + ", ".join(
            f"{100 * float(x.get('weight', 0.0)):.0f}% {shape_text(x)}" for x in shapes[:4]
        )
    return text


def print_pool(state: dict[str, Any], console: Console | None = None) -> None:
    """Hosts and devices with their slices; leases; waiting work."""
    con = console or Console()
    con.print(policy_text(state), highlight=False)
    table = Table(title="flexlab pool", show_lines=False)
    for col in ("host", "device", "mode", "slices (owner: share, util)", "free", "util"):
        table.add_column(col)
    for host in state["hosts"]:
        first = True
        for dev in host["devices"]:
            slices = []
            for s in dev["slices"]:
                who = s["owner"] or "shared"
                shape = s["profile"] or format_compute(s["compute_milli"])
                slices.append(f"{s['slice_id']} {who}: {shape} {s['utilisation'] * 100:.0f}%")
            free = f"{format_compute(dev['free_compute_milli'])}, {format_memory(dev['free_memory_mib'])}"
            table.add_row(
                host["name"] if first else "",
                f"{dev['vendor']} {dev['model']}#{dev['index']}",
                dev["mode"],
                "\n".join(slices) or "-",
                free,
                f"{_bar(dev['utilisation'])} {dev['utilisation'] * 100:.0f}%",
            )
            first = False
        if not host["devices"]:
            table.add_row(host["name"], "(no accelerators)", "", "", "", "")
    con.print(table)
    leases = state.get("leases") or []
    if leases:
        lt = Table(title="leases")
        for col in ("lease", "owner", "request", "state", "where", "TTL left"):
            lt.add_column(col)
        for le in leases:
            where = ", ".join(le["devices"]) if le["devices"] else le["reason"]
            lt.add_row(
                le["lease_id"], le["owner"], le["request"], le["state"], where, f"{le['ttl_left_s']:.0f} s"
            )
        con.print(lt)
    waiting = state.get("waiting") or []
    if waiting:
        con.print(
            f"[bold]{len(waiting)} tasks waiting[/bold], e.g. {waiting[0]['request']}: {waiting[0]['reason']}"
        )
