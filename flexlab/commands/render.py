"""Terminal rendering of the pool state (``flexlab status``, ``flexlab demo``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from flexlab.core.poolstate import PolicyShape, PoolState
from flexlab.core.units import format_compute, format_memory


def _bar(fraction: float, width: int = 10) -> str:
    full = max(0, min(width, round(fraction * width)))
    return "█" * full + "·" * (width - full)


def shape_text(shape: PolicyShape) -> str:
    """A request shape of the policy state as a request string: ``any:0.75``,
    ``a100-80gb:1,devices=4``, ``cpu``."""
    n = shape.devices
    if n == 0:
        return "cpu"
    sel = "|".join(shape.models) or "any"
    text = f"{sel}:{shape.compute_milli / 1000:g}"
    return f"{text},devices={n}" if n > 1 else text


def policy_text(state: PoolState) -> str:
    """One line: which policy places, and what it learned of the requests.

    >>> policy_text(PoolState.from_json({"time": 0, "hosts": [], "policy": {"name": "binpack"}}))
    'policy binpack'
    """
    pol = state.policy
    text = f"policy {state.policy_name}"
    if not pol.learns:
        return text
    if pol.prior_weight_left > 0:
        text += (
            f" · learning: {pol.observations} requests seen, "
            f"the prior counts as {pol.prior_weight_left:.0f} more"
        )
    else:
        text += f" · learned from the last {pol.in_window} requests"
    if pol.shapes:
        text += " · expects " + ", ".join(f"{100 * x.weight:.0f}% {shape_text(x)}" for x in pol.shapes[:4])
    return text


def print_pool(state: PoolState, console: Console | None = None) -> None:
    """Hosts and devices with their slices; leases; waiting work."""
    con = console or Console()
    con.print(policy_text(state), highlight=False)
    table = Table(title="flexlab pool", show_lines=False)
    for col in ("host", "device", "mode", "slices (owner: share, util)", "free", "util"):
        table.add_column(col)
    for host in state.hosts:
        first = True
        for dev in host.devices:
            slices = []
            for s in dev.slices:
                who = s.owner or "shared"
                shape = s.profile or format_compute(s.compute_milli)
                slices.append(f"{s.slice_id} {who}: {shape} {s.utilisation * 100:.0f}%")
            free = f"{format_compute(dev.free_compute_milli)}, {format_memory(dev.free_memory_mib)}"
            table.add_row(
                host.name if first else "",
                f"{dev.vendor} {dev.model}#{dev.index}",
                dev.mode,
                "\n".join(slices) or "-",
                free,
                f"{_bar(dev.utilisation)} {dev.utilisation * 100:.0f}%",
            )
            first = False
        if not host.devices:
            table.add_row(host.name, "(no accelerators)", "", "", "", "")
    con.print(table)
    if state.leases:
        lt = Table(title="leases")
        for col in ("lease", "owner", "request", "state", "where", "TTL left"):
            lt.add_column(col)
        for le in state.leases:
            where = ", ".join(le.devices) if le.devices else le.reason
            lt.add_row(le.lease_id, le.owner, le.request, le.state, where, f"{le.ttl_left_s:.0f} s")
        con.print(lt)
    if state.waiting:
        first_wait = state.waiting[0]
        con.print(
            f"[bold]{len(state.waiting)} tasks waiting[/bold], e.g. {first_wait.request}: {first_wait.reason}"
        )
