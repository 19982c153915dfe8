"""The Hi Scheduler loop in the live plugin: pre-warming ahead of a forecast burst, and
preemption of a lower-priority lease whose task is then re-run, not lost."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
import pytest
from distributed import Client
from flexlab_dask import FlexCluster, FlexScheduler

import flexlab
from flexlab.client import PoolClient
from flexlab.mock.model import reset_mock_devices

from .conftest import assert_no_plugin_errors

PERIOD_S = 2.0
BURST = "gpu:0.25"


@contextmanager
def pool(*, hi: bool, **settings: Any) -> Iterator[tuple[FlexCluster, Client]]:
    reset_mock_devices()
    cfg = {"flexlab.hi.interval": "0.2s", "flexlab.hi.bucket": "1s", "flexlab.hi.horizon": 3, **settings}
    with dask.config.set(cfg):
        plugin = FlexScheduler(state_file=":memory:", loop_interval=0.1, hi=hi)
    with FlexCluster(plugin=plugin, telemetry_interval=0.2) as cluster, Client(cluster) as client:
        yield cluster, client
        assert_no_plugin_errors(cluster)


def lease_latency(client: Client, owner: str) -> tuple[float, flexlab.Lease]:
    t0 = time.perf_counter()
    lease = flexlab.lease(BURST, ttl="5m", owner=owner, client=client, timeout=30)
    return time.perf_counter() - t0, lease


def periodic_then_burst(client: Client) -> tuple[list[float], dict[str, Any]]:
    """Four periods of two leases (held 0.5 s), then a burst of three; returns the burst's
    lease latencies and the pool state just before the burst."""
    start = time.monotonic()
    for period in range(4):
        held = [lease_latency(client, f"user{i}")[1] for i in range(2)]
        time.sleep(0.5)
        for lease in held:
            lease.release()
        time.sleep(max(0.0, start + (period + 1) * PERIOD_S - time.monotonic()))
    before = PoolClient(client).state()
    burst = [lease_latency(client, f"burst{i}") for i in range(3)]
    for _, lease in burst:
        assert lease.state == "active"
        lease.release()
    return [t for t, _ in burst], before


@pytest.mark.slow
def test_warm_slices_before_a_forecast_burst_cut_its_lease_latency() -> None:
    with pool(hi=True) as (cluster, client):
        with_forecast, before = periodic_then_burst(client)
        hi = before["hi"]
        warm = [w for w in hi["warm"] if w["request"] == BURST and w["state"] == "ready"]
        assert warm, hi  # pre-warmed slices of the burst's size, visible in the pool state
        assert any(m["action"] == "prewarm" and m["slices"] for m in hi["moves"]), hi["moves"]
        (cls,) = [c for c in hi["classes"] if c["request"] == BURST]
        assert cls["forecast"] > 0.5, cls
        assert cls["target"] >= 1, cls
        taken = [e for e in PoolClient(client).events() if "took the pre-warmed slice" in e["message"]]
        assert taken, "no lease took a warm slice"
        cluster.flex_plugin.pool.ledger.check_invariants()
    with pool(hi=False) as (cluster, client):
        without, before = periodic_then_burst(client)
        assert not before["hi"]["warm"]
        assert not before["hi"]["moves"]
    # The burst's leases are active sooner when slices were warm (median of three).
    assert statistics.median(with_forecast) < statistics.median(without), (with_forecast, without)


def slow_square(x: int) -> int:
    time.sleep(1.5)
    return x * x


def test_a_waiting_high_priority_lease_preempts_a_low_one_and_no_task_is_lost() -> None:
    with pool(hi=True, **{"flexlab.hi.preempt-grace": "0.5s"}) as (cluster, client):
        low = flexlab.lease("t4:1.0", ttl="5m", owner="low", priority=0, client=client, timeout=30)
        fut = low.submit(slow_square, 7)
        time.sleep(0.3)  # the task is running on the low lease's slice
        high = flexlab.lease("t4:0.5", ttl="5m", owner="high", priority=5, client=client, wait=False)
        high.wait(timeout=30)  # placed only once the low lease was preempted
        info = low.refresh()
        assert info["state"] == "pending", info
        assert info["preemptions"] == 1, info
        assert "preempted" in info["reason"]
        msgs = [e["message"] for e in PoolClient(client).events()]
        assert any("lease " + low.lease_id + " of low preempted" in m for m in msgs), msgs
        state = PoolClient(client).state()
        assert state["hi"]["preemptions"] == 1
        assert state["plugin"]["stats"]["preempted"] == 1
        # The high-priority owner finishes; the low lease gets a slice again and its task,
        # rescheduled by Dask when its worker stopped, runs to the end.
        assert high.submit(slow_square, 3).result(timeout=30) == 9
        high.release()
        low.wait(timeout=30)
        assert fut.result(timeout=60) == 49
        low.release()
        cluster.flex_plugin.pool.ledger.check_invariants()


def mock_kernel(i: int) -> int:
    from flexlab.mock import kernel

    kernel(work=0.05, demand=1.0)
    return i


def test_throughput_is_learned_from_the_durations_dask_measures() -> None:
    with pool(hi=False) as (cluster, client):
        with dask.annotate(flexlab="gpu:0.25"):
            futs = client.map(mock_kernel, range(16))
        assert client.gather(futs) == list(range(16))
        time.sleep(0.3)
        speed = PoolClient(client).state()["hi"]["speed"]
        learned = {row["model"]: row for row in speed if row["class"] == "mock_kernel"}
        assert learned, speed
        assert sum(row["samples"] for row in learned.values()) == 16
        assert all(row["rate"] > 0 for row in learned.values())
        assert cluster.flex_plugin.pool.class_work["mock_kernel"] > 0
