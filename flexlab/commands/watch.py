"""``flexlab status --watch``: the pool, live, in a terminal.

One screen, redrawn in place every ``--interval`` seconds (curses): a header with the pool's
totals, then one line per device (utilisation bar, free share, each slice with its owner and
utilisation), the leases, and the waiting work with why it waits. It fits whatever the
terminal holds (80x24 and up): when there are more devices than lines, the busiest are shown
and the rest counted. ``q`` or Ctrl-C quits.

:func:`screen_lines` is the whole picture as plain text lines, so it is tested without a
terminal; :func:`watch` only draws them.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from flexlab.core.errors import FlexlabError
from flexlab.core.poolstate import DeviceState, HostState, LeaseView, PoolState, vendor_name
from flexlab.core.units import format_compute


def _bar(fraction: float, width: int) -> str:
    full = max(0, min(width, round(fraction * width)))
    return "█" * full + "·" * (width - full)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _ttl(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def header_lines(state: PoolState, address: str) -> list[str]:
    devices = [d for _, d in state.devices()]
    util = sum(d.utilisation for d in devices) / len(devices) if devices else 0.0
    active = sum(1 for le in state.leases if le.state == "active")
    pending = len(state.pending_leases)
    by_vendor = Counter(d.vendor for d in devices)
    errors = state.plugin.errors if state.plugin else 0
    agents = state.plugin.agents if state.plugin else {}
    when = time.strftime("%H:%M:%S", time.localtime(state.time))
    heard = f" · {len(agents)} agents, last heard ≤ {max(agents.values()):.0f} s ago" if agents else ""
    return [
        f"flexlab pool at {address} · policy {state.policy_name} · {when}{heard}"
        + (f" · {errors} PLUGIN ERRORS" if errors else ""),
        f"{len(state.hosts)} hosts · {len(devices)} devices · util {util:.0%} · "
        f"leases {active} active, {pending} pending · {len(state.waiting)} tasks waiting · "
        + ", ".join(f"{n} {vendor_name(v)}" for v, n in sorted(by_vendor.items())),
    ]


def device_line(host: HostState, dev: DeviceState, width: int) -> str:
    """``host  model#i  ██████···· 62%  free 30%  L2 alice 25% 80% | s3 shared 50% 40%``."""
    slices = " | ".join(
        f"{s.lease_id or s.slice_id} {s.owner or ('warm' if s.warm_for else 'shared')} "
        f"{s.profile or format_compute(s.compute_milli)} {s.utilisation:.0%}"
        + ("" if s.state == "ready" else f" ({s.state})")
        for s in sorted(dev.slices, key=lambda s: (s.owner is None, s.slice_id))
    )
    mark = "" if dev.schedulable else " DRAINED"
    text = (
        f"{host.name[:10]:<10} {dev.model[:13]:<13}#{dev.index:<2} {_bar(dev.utilisation, 10)} "
        f"{dev.utilisation:>4.0%}  free {format_compute(dev.free_compute_milli):>5}{mark}  {slices}"
    )
    return _cut(text, width)


def lease_line(le: LeaseView, width: int) -> str:
    where = ", ".join(le.devices) if le.devices else le.reason
    text = (
        f"{le.lease_id:<10} {le.owner[:12]:<12} {le.request[:18]:<18} {le.state:<10} "
        f"{_ttl(le.ttl_left_s):>6}  {le.utilisation:>4.0%}  {le.shape:>12}  {where}"
    )
    return _cut(text, width)


def waiting_lines(state: PoolState, width: int) -> list[str]:
    """Waiting tasks grouped by request and reason, then pending leases with their reason."""
    groups = Counter((w.request or "(plain task)", w.reason) for w in state.waiting)
    out = [
        _cut(f"{n:>4} × {req:<18} {reason}", width)
        for (req, reason), n in sorted(groups.items(), key=lambda kv: -kv[1])
    ]
    out += [
        _cut(f"lease {le.lease_id} {le.owner} {le.request}: {le.reason or 'waits for room'}", width)
        for le in state.pending_leases
    ]
    return out


def _fit(lines: list[str], room: int, what: str) -> list[str]:
    """``lines``, or as many as ``room`` holds with the last saying how many were left out."""
    if len(lines) <= room:
        return lines
    if room <= 0:
        return []
    return [*lines[: room - 1], f"… {len(lines) - room + 1} more {what}"]


LEASE_COLUMNS = f"{'owner':<12} {'request':<18} {'state':<10} {'TTL':>6}  {'util':>4}  {'shape':>12}  where"
SECTIONS = ("DEVICES", "LEASES", "WAITING")


def screen_lines(
    state: PoolState, width: int, height: int, *, address: str = "", interval: float = 1.0
) -> list[str]:
    """The whole screen as at most ``height`` lines of at most ``width`` characters."""
    width = max(20, width)
    head = [_cut(x, width) for x in header_lines(state, address)]
    foot = [_cut(f"q quit · redrawn every {interval:g} s", width)]
    devs = list(state.devices())
    bare = [
        _cut(
            f"{h.name[:10]:<10} (no accelerators)  "
            f"CPU free {h.free_cpu_milli / 1000:g} of {h.cpu_milli / 1000:g}",
            width,
        )
        for h in state.hosts
        if not h.devices
    ]
    leases = [lease_line(le, width) for le in state.leases]
    waiting = waiting_lines(state, width)
    room = height - len(head) - len(foot) - 3  # the three section titles
    # Leases and waiting work get up to a third of the room each, devices the rest; room the
    # devices do not need goes back to the leases, then to the waiting work.
    lease_room = min(len(leases), max(1, room // 3))
    wait_room = min(len(waiting), max(1, room // 3))
    dev_room = max(1, room - lease_room - wait_room - len(bare))
    spare = max(0, dev_room - len(devs))
    grow = min(spare, len(leases) - lease_room)
    lease_room += grow
    wait_room += min(spare - grow, len(waiting) - wait_room)
    if len(devs) > dev_room:  # the busiest devices, in the pool's order, and the rest counted
        busiest = sorted(devs, key=lambda hd: (-hd[1].utilisation, -len(hd[1].slices)))[
            : max(0, dev_room - 1)
        ]
        keep = {hd[1].id for hd in busiest}
        dev_lines = [device_line(h, d, width) for h, d in devs if d.id in keep]
        dev_lines.append(f"… {len(devs) - len(keep)} more devices (the busiest are shown)")
    else:
        dev_lines = [device_line(h, d, width) for h, d in devs]
    lines = [
        *head,
        _cut(f"DEVICES ({len(devs)})", width),
        *dev_lines,
        *bare,
        _cut(f"{f'LEASES ({len(leases)})':<10} {LEASE_COLUMNS}", width),
        *_fit(leases, lease_room, "leases"),
        _cut(f"WAITING ({len(state.waiting)} tasks, {len(state.pending_leases)} leases)", width),
        *_fit(waiting, wait_room, "waiting"),
    ]
    return [*lines[: height - len(foot)], *foot]


def watch(fetch: Callable[[], PoolState], *, address: str, interval: float = 1.0) -> int:
    """Redraw the pool every ``interval`` seconds until ``q`` or Ctrl-C. A failed read is
    shown on the screen and retried."""
    import curses

    def run(scr: Any) -> None:
        curses.curs_set(0)
        scr.timeout(max(50, int(interval * 1000)))
        state: PoolState | None = None
        error = ""
        while True:
            try:
                state = fetch()
                error = ""
            except (OSError, TimeoutError, ValueError, FlexlabError) as exc:
                error = f"cannot read the pool at {address}: {type(exc).__name__}: {exc}"
            height, width = scr.getmaxyx()
            lines = (
                screen_lines(state, width - 1, height, address=address, interval=interval)
                if state is not None
                else [f"flexlab pool at {address}", "", "q quit"]
            )
            if error:
                lines.insert(min(2, len(lines)), error)
                lines = lines[:height]
            scr.erase()
            for y, text in enumerate(lines):
                attr = curses.A_BOLD if y == 0 or text.startswith(SECTIONS) else 0
                try:
                    scr.addnstr(y, 0, text, width - 1, attr)
                except curses.error:  # the terminal shrank under us
                    break
            scr.refresh()
            key = scr.getch()
            if key in (ord("q"), ord("Q"), 27):
                return

    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(run)
    return 0
