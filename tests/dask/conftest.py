from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client
from flexlab_dask import FlexCluster

from flexlab.mock.model import reset_mock_devices


def assert_no_plugin_errors(cluster: FlexCluster) -> None:
    errors = cluster.flex_plugin.errors
    assert errors == [], f"flexlab plugin errors: {errors}"


@pytest.fixture
def flex() -> Iterator[tuple[FlexCluster, Client]]:
    """An embedded mock pool (in-process slice workers) and a client."""
    reset_mock_devices()
    with FlexCluster(loop_interval=0.2, telemetry_interval=0.2) as cluster, Client(cluster) as client:
        yield cluster, client
        assert_no_plugin_errors(cluster)


def slice_of(state: dict[str, Any], worker_name: str) -> dict[str, Any]:
    sid = worker_name.removeprefix("flexlab-slice-")
    for host in state["hosts"]:
        for dev in host["devices"]:
            for s in dev["slices"]:
                if s["slice_id"] == sid:
                    return {
                        **s,
                        "model": dev["model"],
                        "kind": dev["kind"],
                        "vendor": dev["vendor"],
                        "device": dev["id"],
                    }
    raise AssertionError(f"{worker_name} serves no slice in the pool")


def where() -> str:
    """Task body: the name of the worker it ran on."""
    from distributed import get_worker

    return str(get_worker().name)
