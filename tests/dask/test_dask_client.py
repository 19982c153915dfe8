"""A client that cannot connect leaves nothing for the garbage collector to close.

distributed's ``Client`` keeps the IO-loop thread of a failed connection until the collector
reaches it, and closing it there can deadlock the next client's start (see
``flexlab.dask_client``). ``open_client`` closes it at once."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from distributed import Client

from flexlab.dask_client import open_client


def io_loops() -> int:
    return sum(t.name == "IO loop" and t.is_alive() for t in threading.enumerate())


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The collector off, so that only a client's own close can end its loop thread."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def loops_left_by(make: Callable[..., Any], address: str) -> int:
    before = io_loops()
    with pytest.raises((OSError, TypeError)):  # nobody listening; tls:// without a certificate
        make(address, timeout="1s", set_as_default=False)
    deadline = time.monotonic() + 5
    while io_loops() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    return io_loops() - before


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "tls://127.0.0.1:1"])
def test_a_refused_client_is_closed_at_once(no_collector: None, address: str) -> None:
    assert loops_left_by(open_client, address) == 0
    # distributed's own Client leaves its loop running for the collector: what open_client fixes
    assert loops_left_by(Client, address) == 1


def test_a_client_that_connects_is_returned_open() -> None:
    from distributed import LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        open_client(cluster.scheduler_address, timeout="10s", set_as_default=False) as client,
    ):
        assert client.status == "running"
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
