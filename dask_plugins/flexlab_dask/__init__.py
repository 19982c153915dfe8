"""flexlab on Dask: the scheduler plugin, slice workers, host agents and ``FlexCluster``."""

from __future__ import annotations

from flexlab_dask import config as _config  # noqa: F401  (loads flexlab's dask.config defaults)
from flexlab_dask.agent import HostAgent
from flexlab_dask.cluster import FlexCluster, default_mock_pool
from flexlab_dask.scheduler import FlexScheduler
from flexlab_dask.worker import SliceWorkerPlugin

__all__ = ["FlexCluster", "FlexScheduler", "HostAgent", "SliceWorkerPlugin", "default_mock_pool"]
