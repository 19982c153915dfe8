"""``Dashboard``: the components together, fed by one fetch per refresh.

>>> dash = Dashboard(PoolClient(client))      # doctest: +SKIP
>>> dash.refresh()                            # one state + one history call, every update()
>>> show(dash); dash.start(interval=1.0)      # in a notebook or Voila: live, once a second

Every refresh reads the pool state and the history frames newer than the last one seen (the
scheduler's one sampler), keeps a ``window_s`` window of frames and hands both to each
component's pure ``update()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from bokeh.layouts import column, row
from bokeh.models import LayoutDOM

from flexlab.dashboard.base import Frame, FrameWindow, PoolState
from flexlab.dashboard.events import EventLog
from flexlab.dashboard.fragmentation import FragmentationPanel
from flexlab.dashboard.header import Header
from flexlab.dashboard.leases import LeasesPanel
from flexlab.dashboard.poolmap import PoolMap
from flexlab.dashboard.queue import QueuePanel
from flexlab.dashboard.theme import Theme
from flexlab.dashboard.utilisation import UtilisationChart

logger = logging.getLogger("flexlab.dashboard")


class PoolSource(Protocol):
    """What the dashboard reads: ``flexlab.PoolClient``, a synthetic pool or a recording."""

    def pool_state(self) -> PoolState: ...

    def history(self, since: float = 0.0) -> list[dict[str, Any]]: ...


class Dashboard:
    """The ops dashboard: header, pool map, utilisation, fragmentation, queue, leases, events."""

    def __init__(
        self, pool: PoolSource | None = None, *, window_s: float = 600.0, title: str = "flexlab pool"
    ) -> None:
        self.pool = pool
        self.theme = Theme()
        self.window = FrameWindow(window_s)
        self.header = Header(self.theme, title=title)
        self.pool_map = PoolMap(self.theme, width=820)
        self.utilisation = UtilisationChart(self.theme, width=560, window=int(window_s))
        self.fragmentation = FragmentationPanel(self.theme, width=560)
        self.queue = QueuePanel(self.theme, width=820)
        self.leases = LeasesPanel(self.theme, width=560)
        self.events = EventLog(width=1400)
        #: Milliseconds each component's last ``update()`` took.
        self.timings: dict[str, float] = {}
        self.refreshes = 0
        self._task: asyncio.Task[None] | None = None
        self.root: LayoutDOM = column(
            self.header.root,
            row(self.pool_map.root, column(self.utilisation.root, self.fragmentation.root)),
            row(self.queue.root, self.leases.root),
            self.events.root,
            name="flexlab_dashboard",
            styles={"font-family": "sans-serif"},
        )

    @property
    def components(self) -> dict[str, Any]:
        return {
            "pool_map": self.pool_map,
            "utilisation": self.utilisation,
            "fragmentation": self.fragmentation,
            "queue": self.queue,
            "leases": self.leases,
            "events": self.events,
            "header": self.header,
        }

    def fetch(self) -> tuple[PoolState, list[dict[str, Any]]]:
        """One state call and one history call (frames newer than the last seen)."""
        if self.pool is None:
            raise RuntimeError("Dashboard has no pool to read: pass Dashboard(PoolClient(client))")
        state = self.pool.pool_state()
        since = self.window.last_time or state.time - self.window.seconds
        return state, self.pool.history(since=since)

    def apply(self, state: PoolState, new_frames: Sequence[Frame]) -> None:
        """Add ``new_frames`` to the window and update every component."""
        self.window.add(new_frames)
        frames = self.window.frames()
        t_all = time.perf_counter()
        for name, comp in self.components.items():
            t0 = time.perf_counter()
            if name == "header":
                comp.update(
                    state,
                    frames,
                    fragmentation=self.fragmentation.last,
                    update_ms=sum(self.timings.get(k, 0.0) for k in self.components if k != "header"),
                )
            else:
                comp.update(state, frames)
            self.timings[name] = 1000 * (time.perf_counter() - t0)
        self.timings["total"] = 1000 * (time.perf_counter() - t_all)
        self.refreshes += 1

    def refresh(self) -> None:
        """Fetch once, update every component."""
        self.apply(*self.fetch())

    async def run(self, interval: float = 1.0) -> None:
        """Refresh every ``interval`` seconds: fetch in a thread, update on this loop (where
        the Bokeh document lives). A failed fetch shows in the header and is retried."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                state, frames = await loop.run_in_executor(None, self.fetch)
            except (OSError, TimeoutError, RuntimeError) as exc:
                logger.warning("flexlab dashboard: cannot read the pool: %s", exc)
                self.header.status = f"cannot read the pool: {type(exc).__name__}: {exc}"
                self.header.div.text = f'<b style="color:#d32f2f">{self.header.status}</b>'
            else:
                self.header.status = ""
                self.apply(state, frames)
            # A steady rate: the time a refresh took counts towards the interval.
            await asyncio.sleep(max(0.05, interval - (loop.time() - started)))

    def start(self, interval: float = 1.0) -> asyncio.Task[None]:
        """Run :meth:`run` on the current event loop (the kernel's in a notebook)."""
        self.stop()
        self._task = asyncio.get_event_loop().create_task(self.run(interval))
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
