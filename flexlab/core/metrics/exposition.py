"""The text exposition format (version 0.0.4) of metric families, written directly.

``prometheus_client`` builds an object per sample and formats each on every scrape; a pool of
1,000 devices has some 7,000 series, which took it about 150 ms on a loaded two-core machine.
Here a label set shared by several families (a device's, in each of its seven families) is
formatted once per scrape, and a line is one f-string.

>>> from flexlab.core.metrics.model import Family
>>> f = Family("flexlab_hosts", "gauge", "Hosts registered in the pool")
>>> f.add((), 3.0)
>>> print(render_text([f]), end="")
# HELP flexlab_hosts Hosts registered in the pool
# TYPE flexlab_hosts gauge
flexlab_hosts 3.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from flexlab.core.metrics.model import Family, HistogramValue


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(x: float) -> str:
    """A sample value as Prometheus reads it (``+Inf``, ``NaN``, else Python's repr)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


def render_text(families: Iterable[Family]) -> str:
    out: list[str] = []
    cache: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    for f in families:
        name = f.name
        out.append(f"# HELP {name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")
        out.append(f"# TYPE {name} {f.kind}")
        names = f.labels
        for lab, value in f.samples:
            key = (names, lab)
            inner = cache.get(key)
            if inner is None:
                inner = cache[key] = ",".join(
                    f'{n}="{escape_label(v)}"' for n, v in zip(names, lab, strict=True)
                )
            if isinstance(value, HistogramValue):
                sep = "," if inner else ""
                for le, count in value.buckets:
                    out.append(f'{name}_bucket{{{inner}{sep}le="{number(le)}"}} {number(count)}')
                labels = f"{{{inner}}}" if inner else ""
                out.append(f"{name}_sum{labels} {number(value.sum)}")
                out.append(f"{name}_count{labels} {number(value.count)}")
            elif inner:
                out.append(f"{name}{{{inner}}} {number(value)}")
            else:
                out.append(f"{name} {number(value)}")
    out.append("")
    return "\n".join(out)
