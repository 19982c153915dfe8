"""Units of the core: compute in milli-units, memory in MiB, host CPU in milli-cores.

Integers everywhere inside the core (floats lose slots: 0.1 x 10 != 1.0). Floats and
strings appear only at the edges and are converted here, with errors that say what was
wrong and what is allowed.

>>> parse_compute("25%")
250
>>> parse_compute(0.5)
500
>>> parse_memory("16GiB")
16384
>>> format_memory(1536)
'1.5 GiB'
"""

from __future__ import annotations

import math
import re

from flexlab.core.errors import InvalidRequest

#: One whole device in compute milli-units.
MILLI_PER_DEVICE = 1000

_MEMORY_UNITS: dict[str, float] = {
    "": 1.0,  # bare numbers are MiB
    "mib": 1.0,
    "mb": 1.0,
    "m": 1.0,
    "gib": 1024.0,
    "gb": 1024.0,
    "g": 1024.0,
    "tib": 1024.0 * 1024.0,
    "tb": 1024.0 * 1024.0,
    "t": 1024.0 * 1024.0,
    "kib": 1.0 / 1024.0,
    "kb": 1.0 / 1024.0,
    "k": 1.0 / 1024.0,
}
_MEMORY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_MEMORY_ALLOWED = "a size such as 16GiB, 512MiB, 8G or a number of MiB (>= 0)"
_COMPUTE_ALLOWED = "a fraction in (0, 1] such as 0.25, or a percentage such as 25%"
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|sec|m|min|h|hr|d)?\s*$")
_DURATION_S = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
}


def parse_compute(value: str | float | int, *, field: str = "compute") -> int:
    """A user's compute share ("0.25", "25%", 0.25) in milli-units, 1..1000."""
    if isinstance(value, bool):
        raise InvalidRequest(field, value, _COMPUTE_ALLOWED)
    if isinstance(value, str):
        text = value.strip()
        try:
            frac = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise InvalidRequest(field, value, _COMPUTE_ALLOWED) from None
    elif isinstance(value, (int, float)):
        frac = float(value)
    else:
        raise InvalidRequest(field, value, _COMPUTE_ALLOWED)
    if not (0.0 < frac <= 1.0) or math.isnan(frac):
        raise InvalidRequest(field, value, _COMPUTE_ALLOWED)
    milli = round(frac * MILLI_PER_DEVICE)
    if milli < 1:
        raise InvalidRequest(field, value, _COMPUTE_ALLOWED + " (at least 0.001)")
    return int(milli)


def parse_memory(value: str | float | int, *, field: str = "memory") -> int:
    """A size ("16GiB", "512M", 8192) in MiB, rounded up to a whole MiB."""
    if isinstance(value, bool):
        raise InvalidRequest(field, value, _MEMORY_ALLOWED)
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value):
            raise InvalidRequest(field, value, _MEMORY_ALLOWED)
        return int(-(-float(value) // 1))
    if not isinstance(value, str):
        raise InvalidRequest(field, value, _MEMORY_ALLOWED)
    m = _MEMORY_RE.match(value)
    if not m or m.group(2).lower() not in _MEMORY_UNITS:
        raise InvalidRequest(field, value, _MEMORY_ALLOWED)
    mib = float(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()]
    return int(-(-mib // 1))


def parse_cpu(value: str | float | int, *, field: str = "cpu") -> int:
    """Host CPU ("2", "500m", 1.5) in milli-cores."""
    allowed = "a number of cores such as 2 or 0.5, or milli-cores such as 500m (>= 0)"
    if isinstance(value, bool):
        raise InvalidRequest(field, value, allowed)
    try:
        if isinstance(value, str) and value.strip().endswith("m"):
            milli = float(value.strip()[:-1])
        else:
            milli = float(value) * 1000.0
    except (TypeError, ValueError):
        raise InvalidRequest(field, value, allowed) from None
    if milli < 0 or math.isnan(milli):
        raise InvalidRequest(field, value, allowed)
    return round(milli)


def parse_duration(value: str | float | int, *, field: str = "ttl") -> float:
    """A duration ("2h", "30m", "90s", 3600) in seconds, > 0."""
    allowed = "a positive duration such as 90s, 30m, 2h, 1d or a number of seconds"
    if isinstance(value, bool):
        raise InvalidRequest(field, value, allowed)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_S[m.group(2) or "s"]
    else:
        raise InvalidRequest(field, value, allowed)
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidRequest(field, value, allowed)
    return seconds


def lease_ttl(value: object, max_ttl: str | float | int | None = None) -> float:
    """A lease's TTL in seconds: a duration (:func:`parse_duration`), at most ``max_ttl``
    (a duration; None or 0: no limit). The one place this rule lives: the scheduler and
    the Jupyter front both check with it.

    >>> lease_ttl("2h", "7d")
    7200.0
    >>> lease_ttl("30d", "7d")
    Traceback (most recent call last):
    ...
    flexlab.core.errors.InvalidRequest: invalid ttl: '30d'; allowed: at most 7d
    """
    if not isinstance(value, (str, int, float)):
        raise InvalidRequest("ttl", value, "a duration such as '30m', '2h' or a number of seconds")
    seconds = parse_duration(value)
    if max_ttl and seconds > parse_duration(max_ttl, field="max-ttl"):
        raise InvalidRequest("ttl", value, f"at most {max_ttl}")
    return seconds


def format_memory(mib: int) -> str:
    """MiB as a short human string: 512 MiB, 1.5 GiB, 80 GiB."""
    if mib < 1024:
        return f"{mib} MiB"
    gib = mib / 1024
    return f"{gib:.0f} GiB" if gib == int(gib) else f"{gib:.1f} GiB"


def format_compute(milli: int) -> str:
    """Milli-units as a percentage of a device: 250 -> '25%'."""
    pct = milli / 10
    return f"{pct:.0f}%" if pct == int(pct) else f"{pct:.1f}%"
