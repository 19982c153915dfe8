"""The trusted clients of a TLS pool: ``flexlab.connect``, ``FlexCluster(tls=...)`` and the
Jupyter server extension's pool manager connect with the client certificate; without it or
with another CA's they are refused. In-process pool, slice workers as threads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from distributed import Client
from flexlab_dask import FlexCluster

import flexlab
from flexlab.core.errors import InvalidRequest
from flexlab.dask_client import open_client
from flexlab.tls import TLS_ENV, pool_security


def test_every_address_of_the_pool_is_tls(tls_pool: FlexCluster) -> None:
    assert tls_pool.scheduler_address.startswith("tls://127.0.0.1:")
    workers = tls_pool.scheduler.workers
    with Client(tls_pool) as client:  # the cluster's own Security: the client certificate
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    assert workers
    assert all(addr.startswith("tls://") for addr in workers)


def test_the_trusted_client_runs_a_lease(
    tls_pool: FlexCluster, pool_tls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TLS_ENV, raising=False)
    with flexlab.connect(tls_pool.scheduler_address, tls=str(pool_tls)) as client:
        with flexlab.lease("t4:0.5", owner="ana", client=client) as lease:
            assert lease.submit(lambda x: x * 2, 21).result(timeout=30) == 42
        assert lease.state == "released"
    # $FLEXLAB_TLS is what kernels started by `flexlab lab --tls` get
    monkeypatch.setenv(TLS_ENV, str(pool_tls))
    with flexlab.connect(tls_pool.scheduler_address) as client:
        assert flexlab.PoolClient(client).state()["hosts"][0]["name"] == "gpu-host"


def test_a_plain_client_is_refused(tls_pool: FlexCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TLS_ENV, raising=False)
    with pytest.raises(TypeError, match="TLS expects a `ssl_context`"):
        open_client(tls_pool.scheduler_address, timeout="3s")
    port = tls_pool.scheduler_address.rsplit(":", 1)[1]
    with pytest.raises(OSError, match=r"Timed out|handshake|closed"):  # plain TCP to the TLS port
        open_client(f"tcp://127.0.0.1:{port}", timeout="3s")
    with pytest.raises(InvalidRequest, match=r"the pool's TLS folder .*uses TLS"):
        flexlab.connect(tls_pool.scheduler_address)


def test_a_client_with_another_cas_certificate_is_refused(tls_pool: FlexCluster, other_tls: Path) -> None:
    with pytest.raises(OSError, match=r"Timed out|certificate|handshake"):
        open_client(
            tls_pool.scheduler_address, timeout="3s", security=pool_security(str(other_tls), client="client")
        )


def test_the_jupyter_server_extension_connects_with_the_client_certificate(
    tls_pool: FlexCluster, pool_tls: Path, other_tls: Path
) -> None:
    pytest.importorskip("jupyter_server")
    from flexlab_jupyter.manager import PoolManager, PoolUnavailable

    manager = PoolManager(tls_pool.scheduler_address, tls=str(pool_tls), connect_timeout=5)
    try:
        manager.start()
        pool = asyncio.run(manager.pool(owner="ana"))
        assert [h["name"] for h in pool["hosts"]] == ["gpu-host"]
    finally:
        manager.close()
    for tls in (None, str(other_tls)):
        refused = PoolManager(tls_pool.scheduler_address, tls=tls, connect_timeout=3)
        try:
            with pytest.raises(PoolUnavailable, match="cannot reach the flexlab scheduler"):
                refused.start()
        finally:
            refused.close()


def test_the_dashboard_notebook_connects_with_the_folder_flexlab_dashboard_hands_it(
    tls_pool: FlexCluster, pool_tls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flexlab.dashboard.notebook import connect as dashboard_connect

    monkeypatch.setenv(TLS_ENV, str(pool_tls))  # what `flexlab dashboard --tls DIR` sets for Voila
    conn = dashboard_connect(tls_pool.scheduler_address)
    try:
        assert flexlab.PoolClient(conn.client).state()["hosts"][0]["name"] == "gpu-host"
    finally:
        conn.close()
