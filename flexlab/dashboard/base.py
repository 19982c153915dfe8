"""The component contract and the helpers the components share.

Every component follows distributed's dashboard pattern: a ``source`` (its main
``ColumnDataSource``), a ``root`` (the Bokeh layout to show) and ``update(state, frames)``,
which reads only its arguments, never the network or the hardware:

* ``state``: the typed pool state (:class:`flexlab.core.poolstate.PoolState`, what
  ``PoolClient.pool_state()`` returns: hosts -> devices -> slices, leases, recent events,
  waiting tasks);
* ``frames``: the recent telemetry frames of ``PoolClient.history()``, oldest first
  (``flexlab/core/history.py``: busy share and memory by vendor, by model and in total,
  leased share, waiting count, arrivals per request class, once a second).
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, LayoutDOM

from flexlab.core.poolstate import DeviceState, HostState, PoolState

Frame = Mapping[str, Any]


__all__ = ["Component", "Frame", "FrameWindow", "PoolState", "TimeTable", "devices", "replace_data"]


class Component(abc.ABC):
    """A dashboard part: ``source``, ``root`` and a pure ``update(state, frames)``."""

    source: ColumnDataSource
    root: LayoutDOM

    @abc.abstractmethod
    def update(self, state: PoolState, frames: Sequence[Frame]) -> None:
        """Show ``state`` and ``frames``."""


def devices(state: PoolState) -> Iterable[tuple[HostState, DeviceState]]:
    """(host, device) pairs of a pool state, in the state's order."""
    return state.devices()


class FrameWindow:
    """The last ``seconds`` of frames, deduplicated by time (what the dashboard passes on)."""

    def __init__(self, seconds: float = 600.0) -> None:
        self.seconds = seconds
        self._frames: deque[Frame] = deque()

    @property
    def last_time(self) -> float:
        return float(self._frames[-1]["time"]) if self._frames else 0.0

    def add(self, frames: Iterable[Frame]) -> None:
        last = self.last_time
        for f in sorted(frames, key=lambda f: float(f["time"])):
            if float(f["time"]) > last:
                self._frames.append(f)
                last = float(f["time"])
        while self._frames and float(self._frames[0]["time"]) < last - self.seconds:
            self._frames.popleft()

    def frames(self) -> list[Frame]:
        return list(self._frames)


class TimeTable:
    """Keeps a time-indexed ``ColumnDataSource`` current: new rows are streamed (with
    rollover), and the whole table is replaced only when its columns change."""

    def __init__(self, source: ColumnDataSource, rollover: int) -> None:
        self.source = source
        self.rollover = rollover
        self._columns: tuple[str, ...] = ()
        self._last = -np.inf

    def set(self, times: Sequence[float], columns: Mapping[str, Sequence[float]]) -> None:
        """``times`` in seconds, ascending; ``columns`` of the same length."""
        names = ("time", *sorted(columns))
        t = np.asarray(times, dtype=float)
        data = {"time": t * 1000.0, **{k: np.asarray(v, dtype=float) for k, v in columns.items()}}
        if names != self._columns or t.size == 0 or t[0] * 1000.0 > self._last:
            # New series, or a gap larger than the window: start over.
            self.source.data = {k: data[k][-self.rollover :] for k in names}
            self._columns = names
        else:
            new = t * 1000.0 > self._last
            if new.any():
                self.source.stream({k: data[k][new] for k in names}, rollover=self.rollover)
        if t.size:
            self._last = float(t[-1] * 1000.0)


def same_columns(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two column dicts hold the same values (lists or numpy arrays)."""
    if a.keys() != b.keys():
        return False
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            if not np.array_equal(np.asarray(va), np.asarray(vb)):
                return False
        elif list(va) != list(vb):
            return False
    return True


def replace_data(source: ColumnDataSource, data: Mapping[str, Any]) -> bool:
    """Set ``source.data`` unless it already holds ``data`` (nothing is sent to the page
    then). Returns whether it changed."""
    if same_columns(source.data, data):
        return False
    source.data = dict(data)
    return True
