"""The flexlab ops dashboard: Bokeh components over the scheduler plugin's telemetry.

Each component has a ``source``, a ``root`` and a pure ``update(state, frames)``;
:class:`Dashboard` fetches the pool state and history once per refresh and updates them
all. ``notebooks/dashboard.ipynb`` shows it live in Voila (``flexlab dashboard``).

Needs the ``dashboard`` extra (bokeh, jupyter_bokeh, voila).
"""

from __future__ import annotations

from flexlab.dashboard.app import Dashboard, PoolSource
from flexlab.dashboard.base import Component, FrameWindow
from flexlab.dashboard.events import EventLog
from flexlab.dashboard.fragmentation import FragmentationPanel, measure
from flexlab.dashboard.header import Header
from flexlab.dashboard.leases import LeasesPanel
from flexlab.dashboard.notebook import PoolConnection, connect, show
from flexlab.dashboard.poolmap import PoolMap
from flexlab.dashboard.queue import QueuePanel
from flexlab.dashboard.utilisation import UtilisationChart

__all__ = [
    "Component",
    "Dashboard",
    "EventLog",
    "FragmentationPanel",
    "FrameWindow",
    "Header",
    "LeasesPanel",
    "PoolConnection",
    "PoolMap",
    "PoolSource",
    "QueuePanel",
    "UtilisationChart",
    "connect",
    "measure",
    "show",
]
