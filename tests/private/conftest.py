"""Fixtures of the private-lease tests: the security tests' TLS folders and in-process TLS
pool, and a TLS pool whose slice workers are processes of their own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flexlab_dask import FlexCluster

from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices
from flexlab.private import close_default_private_scheduler
from tests.security.conftest import other_tls, pool_tls, tls_pool

__all__ = ["other_tls", "pool_tls", "process_pool", "tls_pool", "wait_until"]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` every 0.1 s; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


@pytest.fixture(autouse=True, scope="module")
def _close_private_scheduler() -> Iterator[None]:
    """``flexlab.lease(private=True)`` starts one per process: closed after each module,
    not at exit (when pytest has closed the streams its log lines go to)."""
    yield
    close_default_private_scheduler()


@pytest.fixture(scope="module")
def process_pool(pool_tls: Path) -> Iterator[FlexCluster]:
    """A TLS pool of one T4 host whose agent starts each slice worker as a process."""
    reset_mock_devices()
    hosts = [HostSpec("gpu-host", 8_000, 32 * 1024, (DeviceSpec("t4", 0),))]
    with FlexCluster(
        hosts=hosts,
        tls=str(pool_tls),
        cpu_workers=0,
        processes=True,
        loop_interval=0.2,
        telemetry_interval=0.5,
        wait_for_slices=120,
    ) as cluster:
        yield cluster
        assert cluster.flex_plugin.errors == []
