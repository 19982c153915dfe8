"""The synthetic load keeps an embedded pool moving, and stops cleanly."""

from __future__ import annotations

import time

import pytest


@pytest.mark.slow
def test_load_submits_tasks_and_takes_and_returns_leases() -> None:
    from distributed import Client
    from flexlab_dask import FlexCluster

    import flexlab
    from flexlab.dashboard.load import SyntheticLoad

    users = {"alice": ("npu:vir10_3c_32g",), "dave": ("gpu:1",)}
    with FlexCluster() as cluster, Client(cluster) as client:
        load = SyntheticLoad(client, rate=5.0, users=users, hold_s=(2.0, 3.0), pause_s=(0.5, 1.0), seed=1)
        with load:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (load.submitted < 10 or load.leases_taken < 3):
                time.sleep(0.2)
            pool = flexlab.PoolClient(client)
            arrivals = {k for f in pool.history() for k in f["arrivals"]}
        assert load.submitted >= 10, load.summary()
        assert load.leases_taken >= 3, load.summary()
        assert any(k.startswith("lease ") for k in arrivals), arrivals
        assert any(not k.startswith("lease ") for k in arrivals), arrivals
        time.sleep(0.5)
        left = [le for le in pool.leases() if le["state"] in ("active", "pending")]
        assert left == [], left  # every lease given back when the load stopped
        assert load.errors == [], load.errors
