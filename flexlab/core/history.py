"""Telemetry over time: one sampler in the scheduler, many readers (CLI, REST, dashboards).

Once a second the runtime calls :meth:`History.record` with the pool; it keeps compact
aggregates (per vendor, per model, the cluster total, waiting work, arrivals per request
class) in a bounded ring, so a dashboard at 1,000 devices reads a few hundred numbers per
tick, never the hardware.

>>> h = History(maxlen=3)
>>> h.arrived("gpu:0.25", 2)
>>> h.frames()
[]
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol


class _SliceLike(Protocol):
    devices: tuple[str, ...]
    compute_milli: int
    memory_mib: int
    utilisation: float
    memory_used_mib: int
    lease_id: str | None


@dataclass(frozen=True)
class Frame:
    """One sample of the pool, aggregated."""

    time: float
    #: key -> (busy share 0..1 of its devices' compute, memory in use MiB, memory total MiB)
    by_vendor: dict[str, tuple[float, int, int]]
    by_model: dict[str, tuple[float, int, int]]
    total: tuple[float, int, int]
    #: Share of compute held by leases / by shared slices / free.
    leased: float
    waiting: int
    #: Arrivals per request class since the previous frame.
    arrivals: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "by_vendor": {k: list(v) for k, v in self.by_vendor.items()},
            "by_model": {k: list(v) for k, v in self.by_model.items()},
            "total": list(self.total),
            "leased": self.leased,
            "waiting": self.waiting,
            "arrivals": dict(self.arrivals),
        }


class History:
    """A bounded ring of :class:`Frame` plus arrival counting between frames."""

    def __init__(self, maxlen: int = 3600) -> None:
        self._frames: deque[Frame] = deque(maxlen=maxlen)
        self._arrivals: Counter[str] = Counter()

    def arrived(self, request_class: str, n: int = 1) -> None:
        self._arrivals[request_class] += n

    def record(
        self,
        *,
        now: float,
        devices: dict[str, tuple[str, str, int]],
        slices: list[_SliceLike],
        waiting: int,
    ) -> Frame:
        """``devices``: id -> (vendor, model key, memory MiB)."""
        busy: dict[str, float] = {}
        mem_used: dict[str, int] = {}
        leased_milli = 0
        for s in slices:
            for did in s.devices:
                busy[did] = busy.get(did, 0.0) + s.utilisation * s.compute_milli / 1000
                mem_used[did] = mem_used.get(did, 0) + s.memory_used_mib
                if s.lease_id is not None:
                    leased_milli += s.compute_milli
        by_vendor: dict[str, list[float]] = {}
        by_model: dict[str, list[float]] = {}
        total = [0.0, 0.0, 0.0, 0.0]  # busy sum, mem used, mem total, devices
        for did, (vendor, model, mem_total) in devices.items():
            row = (min(1.0, busy.get(did, 0.0)), mem_used.get(did, 0), mem_total)
            for key, table in ((vendor, by_vendor), (model, by_model)):
                acc = table.setdefault(key, [0.0, 0.0, 0.0, 0.0])
                acc[0] += row[0]
                acc[1] += row[1]
                acc[2] += row[2]
                acc[3] += 1
            total[0] += row[0]
            total[1] += row[1]
            total[2] += row[2]
            total[3] += 1

        def fin(acc: list[float]) -> tuple[float, int, int]:
            return (acc[0] / acc[3] if acc[3] else 0.0, int(acc[1]), int(acc[2]))

        frame = Frame(
            time=now,
            by_vendor={k: fin(v) for k, v in by_vendor.items()},
            by_model={k: fin(v) for k, v in by_model.items()},
            total=fin(total),
            leased=leased_milli / (1000 * total[3]) if total[3] else 0.0,
            waiting=waiting,
            arrivals=dict(self._arrivals),
        )
        self._arrivals.clear()
        self._frames.append(frame)
        return frame

    def frames(self, since: float = 0.0) -> list[Frame]:
        return [f for f in self._frames if f.time > since]
