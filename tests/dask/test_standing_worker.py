"""A lease takes an idle device's running shared worker live: the agent retags it for the
lease (no worker started), plain tasks stay off it from then on, and once the lease ends
the device serves plain tasks again."""

from __future__ import annotations

import time
from typing import Any

import dask
import pytest
from distributed import Client, get_worker
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.client import PoolClient
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices

from .conftest import assert_no_plugin_errors

ONE_T4 = [HostSpec("t4-host", 16_000, 64 * 1024, (DeviceSpec("t4", 0),))]


def _where(x: object) -> str:
    return str(get_worker().address)


def _until(cond: Any, timeout: float = 15.0) -> None:
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_whole_device_lease_takes_the_running_shared_worker_and_plain_tasks_keep_off() -> None:
    reset_mock_devices()
    with dask.config.set({"flexlab.hi.interval": "0.2s"}):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=False)
    with (
        FlexCluster(ONE_T4, plugin=plugin, cpu_workers=0, telemetry_interval=0.2) as cluster,
        Client(cluster) as client,
    ):
        pool = plugin.pool
        # The device's free capacity is one shared slice whose worker runs plain tasks.
        plain_before = client.submit(_where, 0, pure=False).result(timeout=20)
        [shared] = [s for s in pool.slices.values() if s.lease_id is None]
        assert shared.state == "ready"
        assert shared.worker == plain_before
        # Its result forgotten, the worker holds nothing: it may go to a lease.
        _until(lambda: not plugin.scheduler.workers[plain_before].has_what)
        n_workers = len(client.scheduler_info()["workers"])

        lease = flexlab.lease("gpu:1", owner="ana", client=client, timeout=20)
        assert lease.state == "active"
        got = pool.slices[pool.leases[lease.lease_id].slice_id or ""]
        # the same slice and the same running worker: nothing was stopped or started
        assert got.slice_id == shared.slice_id
        assert got.worker == plain_before
        assert got.lease_id == lease.lease_id
        assert got.owner == "ana"
        assert len(client.scheduler_info()["workers"]) == n_workers
        assert lease.submit(_where, 1, pure=False).result(timeout=10) == plain_before
        events = [e["message"] for e in PoolClient(client).events()]
        assert any(f"took the idle shared slice {shared.slice_id}" in m for m in events), events
        assert not any("carved" in m and lease.lease_id in m for m in events), events

        # A plain task may not run on the lease's worker: with no other worker it waits...
        plain = client.submit(_where, 2, pure=False)
        time.sleep(1.0)
        assert plain.status == "pending"
        assert plugin.plain_waiting() == 1
        # ... until the lease ends and the device is shared again (a new worker).
        lease.release()
        assert plain.result(timeout=30) != plain_before
        _until(lambda: any(s.lease_id is None and s.state == "ready" for s in pool.slices.values()))
        pool.ledger.check_invariants()
        assert_no_plugin_errors(cluster)


@pytest.mark.slow
def test_a_fractional_lease_carves_its_slice_when_the_shared_worker_is_larger_than_allowed() -> None:
    """hi.warm-oversize is 1 by default: a 0.5 lease does not take a whole idle device."""
    reset_mock_devices()
    plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=False)
    with (
        FlexCluster(ONE_T4, plugin=plugin, cpu_workers=0, telemetry_interval=0.2) as cluster,
        Client(cluster) as client,
    ):
        pool = plugin.pool
        plain_before = client.submit(_where, 0, pure=False).result(timeout=20)
        lease = flexlab.lease("gpu:0.5", owner="ana", client=client, timeout=20)
        s = pool.slices[pool.leases[lease.lease_id].slice_id or ""]
        assert s.compute_milli == 500
        assert s.worker != plain_before
        # the other half is shared again, and plain tasks run there
        assert client.submit(_where, 1, pure=False).result(timeout=30) != s.worker
        lease.release()
        pool.ledger.check_invariants()
        assert_no_plugin_errors(cluster)
