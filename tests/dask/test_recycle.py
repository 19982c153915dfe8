"""Recycling live: the slice of a lease that ends is kept, worker and all, for the next lease
of its request (the Hi loop wants a warm slice of it); work still queued for the ended
lease fails with ``LeaseEnded`` instead of running on the worker that now serves another."""

from __future__ import annotations

import time
from typing import Any

import dask
import pytest
from distributed import Client, get_worker, wait
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.client import PoolClient
from flexlab.core.errors import LeaseEnded
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices

from .conftest import assert_no_plugin_errors

ONE_T4 = [HostSpec("t4-host", 16_000, 64 * 1024, (DeviceSpec("t4", 0),))]


async def _on_loop(fn: Any) -> Any:
    return fn()


def _sleep(s: float) -> str:
    time.sleep(s)
    return "done"


def _where(x: object) -> str:
    return str(get_worker().address)


@pytest.mark.slow
def test_a_recycled_slice_serves_the_next_lease_and_the_ended_lease_work_fails() -> None:
    reset_mock_devices()
    with dask.config.set({"flexlab.hi.interval": "0.2s"}):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=False)
    with (
        FlexCluster(ONE_T4, plugin=plugin, cpu_workers=0, telemetry_interval=0.2) as cluster,
        Client(cluster) as client,
    ):
        pool = plugin.pool
        a = flexlab.lease("gpu:0.5", owner="ana", client=client, timeout=20)
        sid = pool.leases[a.lease_id].slice_id
        assert sid is not None
        worker = pool.slices[sid].worker
        text = pool.leases[a.lease_id].request.describe()
        # What the Hi loop's pre-warming targets would say: one warm slice of this request.
        client.sync(_on_loop, lambda: pool.want_warm({text: 1}))
        # Work of lease a that waits for a plain task (on the shared slice): queued, not
        # on a's worker yet, which therefore runs and holds nothing.
        blocker = client.submit(_sleep, 3.0, pure=False)
        queued = a.submit(_where, blocker, pure=False)
        time.sleep(0.3)
        a.release()

        b = flexlab.lease("gpu:0.5", owner="bea", client=client, timeout=20)
        assert b.state == "active"
        # b took a's slice: the same slice, the same worker, no worker started for it
        assert pool.leases[b.lease_id].slice_id == sid
        assert pool.slices[sid].worker == worker
        assert pool.slices[sid].lease_id == b.lease_id
        assert b.submit(_where, 1, pure=False).result(timeout=10) == worker
        events = [e["message"] for e in PoolClient(client).events()]
        assert any(f"slice {sid} of lease {a.lease_id} kept warm" in m for m in events), events
        assert not any(f"carved {sid}" in m and "pre-warmed" in m for m in events)

        # The ended lease's queued work can run nowhere now: it fails with the cause.
        wait([queued], timeout=15)
        with pytest.raises(LeaseEnded, match=f"lease {a.lease_id} ended"):
            queued.result()
        b.release()
        pool.ledger.check_invariants()
        assert_no_plugin_errors(cluster)
