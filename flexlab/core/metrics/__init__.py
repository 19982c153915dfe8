"""The pool's metrics for Prometheus, computed without Prometheus (see ``docs/metrics.md``).

* ``model``: a metric family as plain data, and a histogram counter;
* ``recorder``: counts of what happened (placements, lease requests, lease waits, events);
* ``pool``: :func:`collect`, every family; the pool's state (devices, slices, owners, leases,
  waiting work) is computed there;
* ``activity``: the recorder's counters, the Hi loop's families and the runtime's own;
* ``stranded``: idle and stranded compute per vendor and model;
* ``exposition``: the text format Prometheus scrapes.
"""

from __future__ import annotations

from flexlab.core.metrics.activity import request_class
from flexlab.core.metrics.model import Family, HistogramCounter, HistogramValue
from flexlab.core.metrics.pool import MetricLimits, RuntimeFacts, WaitReasons, collect
from flexlab.core.metrics.recorder import LEASE_WAIT_BUCKETS, LeaseOutcome, MetricsRecorder

__all__ = [
    "LEASE_WAIT_BUCKETS",
    "Family",
    "HistogramCounter",
    "HistogramValue",
    "LeaseOutcome",
    "MetricLimits",
    "MetricsRecorder",
    "RuntimeFacts",
    "WaitReasons",
    "collect",
    "request_class",
]
