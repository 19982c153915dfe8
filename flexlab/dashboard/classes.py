"""Request classes: the exact request text the pool counts, and a coarser group to plot.

The plugin counts arrivals per request text (``gpu:0.5``, ``any:0.28,4096MiB``; leases as
``lease npu:vir05_1c_16g``). A pool sees many distinct texts, so charts group them by what
they ask for: the selector and a share bucket (``any ≤25%``, ``gpu ≤50%``,
``npu vir05_1c_16g``, ``v100s-32gb whole``, ``gpu 4 devices``, ``cpu``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from flexlab.core.errors import InvalidRequest
from flexlab.core.request import SliceRequest, parse_request

LEASE_PREFIX = "lease "


@lru_cache(maxsize=4096)
def parsed(spec: str) -> SliceRequest | None:
    """The parsed request (``lease gpu:0.5``: the lease's request), or None when the text is
    not a request (kept out of shapes)."""
    try:
        return parse_request(spec.removeprefix(LEASE_PREFIX))
    except InvalidRequest:
        return None


@lru_cache(maxsize=4096)
def request_group(spec: str) -> str:
    """``any:0.28,4096MiB`` -> ``any ≤50%``, ``lease gpu:1`` -> ``lease gpu whole``; text that
    does not parse stays as it is."""
    req = parsed(spec)
    if req is None:
        return spec
    if spec.startswith(LEASE_PREFIX):
        return LEASE_PREFIX + request_group(spec.removeprefix(LEASE_PREFIX))
    if req.is_cpu_only:
        return "cpu"
    sel = req.selector.describe()
    if req.profile:
        return f"{sel} {req.profile}"
    if req.devices > 1:
        return f"{sel} {req.devices} devices"
    c = req.compute_milli
    bucket = "≤25%" if c <= 250 else "≤50%" if c <= 500 else "<100%" if c < 1000 else "whole"
    return f"{sel} {bucket}"


def top_groups(counts: Mapping[str, float], n: int = 6) -> list[str]:
    """The ``n`` largest groups by count (ties by name); the rest become ``other``."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = [k for k, _ in ranked[:n]]
    return [*keep, "other"] if len(ranked) > n else keep


def grouped(counts: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Counts per request text -> counts per group."""
    out: dict[str, float] = {}
    for spec, n in counts:
        g = request_group(spec)
        out[g] = out.get(g, 0.0) + n
    return out
