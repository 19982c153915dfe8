"""Fixtures of the security tests: a pool's TLS folder, one from another CA, and an
in-process TLS pool (slice workers as threads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flexlab_dask import FlexCluster

from flexlab.commands.certs import write_pool_certs
from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices


@pytest.fixture(scope="session")
def pool_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pool's CA and certificates (127.0.0.1 and localhost)."""
    folder = tmp_path_factory.mktemp("pool") / "tls"
    write_pool_certs(folder)
    return folder


@pytest.fixture(scope="session")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of every role from another CA, with the same names and SANs."""
    folder = tmp_path_factory.mktemp("other") / "tls"
    write_pool_certs(folder, name="another pool")
    return folder


@pytest.fixture(scope="module")
def tls_pool(pool_tls: Path) -> Iterator[FlexCluster]:
    """``FlexCluster(tls=...)`` with one T4 host: every connection mutual TLS."""
    reset_mock_devices()
    hosts = [HostSpec("gpu-host", 8_000, 32 * 1024, (DeviceSpec("t4", 0),))]
    with FlexCluster(hosts=hosts, tls=str(pool_tls), cpu_workers=0, loop_interval=0.2) as cluster:
        yield cluster
        assert cluster.flex_plugin.errors == []
