"""The live pool: slices carved from devices, tasks bound to slices, and leases.

``SlicePool`` is the runtime's state and decisions with no Dask in it: the scheduler plugin
translates Dask events into calls here and carries out the commands it returns
(``StartSlice`` / ``StopSlice`` / ``RetagSlice`` for the host agents, resource restrictions for tasks).

* A **slice** is a ledger allocation served by one worker. Shared slices take any owner's
  tasks; a lease's slice takes only its owner's. Its compute becomes the worker's Dask
  resource ``flexlab-slice-<id>`` (milli-units); a task holds its compute, or its memory's
  share of the slice if larger (``SliceInfo.task_milli``), so Dask keeps the tasks running
  together inside the slice's compute and memory with one resource.
* A **task** with a request is bound to the least loaded fitting shared slice; when none
  fits, a new shared slice is carved where placement says (``place()`` on the ledger); when
  nothing can be carved now it waits with its reason; when it can never fit it fails with
  ``explain()``'s counted reasons.
* A **lease** reserves a slice for one owner until released or expired; idle shared
  slices are reclaimed to make room for it.
* A **warm** slice is carved ahead of a forecast lease (``prewarm``): its worker starts
  with the lease resource of a lease id reserved for it, runs nobody's tasks, and is handed
  to the next lease asking for exactly its request (``create_lease``), which is then active
  at once instead of waiting for a worker to start. ``dissolve_warm`` gives it back.
* A lease is **preempted** (``preempt_lease``) for higher-priority work: its slice is
  stopped, Dask re-runs the tasks that were on it once the lease is placed again, and the
  lease waits (``pending``) with the reason; it is not lost.

The parts, one job each:

* ``facade``: ``SlicePool``, the one API; it composes the parts below and carries out
  what spans several of them (a host joining or leaving, a lost worker, a lease asked
  or given back).
* ``model``: the data (``SliceInfo``, ``LeaseInfo``, ``StartSlice`` / ``StopSlice``,
  ``Binding``, ``Event``) and the names of resources.
* ``slices``: the slice table: carve, stop and lose slices, carve a device's free capacity
  into shared slices again, the agents' outbox and the event log; a version number that
  changes with every slice (what the binder's cache of fitting slices is keyed on).
* ``binder``: tasks bound to shared slices or waiting, and speed learning.
* ``leases``: the lease book: ask, place (making room from idle slices), renew, expire,
  release, restore.
* ``warm``: pre-warming, handing a warm slice to a lease, dissolving it, and recycling:
  a lease's slice that ends while the Hi loop wants warm slices of its request is kept
  warm (its running worker is retagged for the next lease: ``RetagSlice``); and a lease
  that takes an idle shared slice's running worker instead of waiting for a new one.
* ``preempt``: preemption victims and taking a lease's slice away.
* ``whatif``: the one "what if": placement asked on a copy of the ledger's arrays with
  some allocations released; the live ledger never changes for a question.
"""

from __future__ import annotations

from flexlab.core.pool.facade import SlicePool
from flexlab.core.pool.model import (
    DEFAULT_SLICE_THREADS,
    LEASE_PREFIX,
    PREWARM_OWNER,
    RESOURCE_PREFIX,
    SHARED,
    Binding,
    BindStatus,
    Command,
    Event,
    LeaseInfo,
    LeaseState,
    RetagSlice,
    SliceInfo,
    SliceState,
    StartSlice,
    StopSlice,
)
from flexlab.core.pool.whatif import WhatIf

__all__ = [
    "DEFAULT_SLICE_THREADS",
    "LEASE_PREFIX",
    "PREWARM_OWNER",
    "RESOURCE_PREFIX",
    "SHARED",
    "BindStatus",
    "Binding",
    "Command",
    "Event",
    "LeaseInfo",
    "LeaseState",
    "RetagSlice",
    "SliceInfo",
    "SlicePool",
    "SliceState",
    "StartSlice",
    "StopSlice",
    "WhatIf",
]
