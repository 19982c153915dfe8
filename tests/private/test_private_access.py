"""Who can reach a private lease's scheduler (only holders of its own credentials), what
``flexlab_lease_create`` accepts as ``private``, and a private lease on the in-process TLS
pool (slice workers as threads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from flexlab_dask import FlexCluster

import flexlab
from flexlab.client import _raise
from flexlab.core.errors import InvalidRequest, LeaseEnded
from flexlab.dask_client import open_client
from flexlab.private import PrivateScheduler, make_material, route_host
from flexlab.tls import pool_security
from tests.private.conftest import wait_until


@pytest.fixture(scope="module")
def private_scheduler() -> Any:
    with PrivateScheduler(host="127.0.0.1") as ps:
        yield ps


def test_only_its_own_credentials_reach_a_private_scheduler(
    private_scheduler: PrivateScheduler, pool_tls: Path, other_tls: Path
) -> None:
    ps = private_scheduler
    assert ps.address.startswith("tls://127.0.0.1:")
    assert ps.client().scheduler_info()["address"] == ps.address  # it has no workers of its own
    port = ps.address.rsplit(":", 1)[1]
    with pytest.raises(OSError, match=r"Timed out|handshake|closed"):  # plain TCP to its TLS port
        open_client(f"tcp://127.0.0.1:{port}", timeout="3s")
    # the pool's own client certificate (the trusted tier) and another CA's are refused
    for folder in (pool_tls, other_tls):
        with pytest.raises(OSError, match=r"Timed out|certificate|handshake"):
            open_client(ps.address, timeout="3s", security=pool_security(str(folder), client="client"))
    # a certificate of another private scheduler (another user's) too
    other = make_material("127.0.0.1")
    from distributed import Security

    with pytest.raises(OSError, match=r"Timed out|certificate|handshake"):
        open_client(
            ps.address,
            timeout="3s",
            security=Security(
                tls_ca_file=other["ca"], tls_client_cert=other["client"], tls_client_key=other["client-key"]
            ),
        )


def test_worker_credentials_are_the_rpc_contract(private_scheduler: PrivateScheduler) -> None:
    creds = private_scheduler.worker_credentials()
    assert sorted(creds) == ["ca", "cert", "key", "scheduler"]
    assert creds["scheduler"] == private_scheduler.address
    assert creds["ca"].startswith("-----BEGIN CERTIFICATE-----")
    assert creds["key"].startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    ("host", "expected"),
    [("tls://127.0.0.1:8786", "127.0.0.1"), ("tcp://localhost:1", "127.0.0.1"), (None, "127.0.0.1")],
    ids=["loopback", "localhost", "no-pool"],
)
def test_route_host_of_a_loopback_pool(host: str | None, expected: str) -> None:
    assert route_host(host) == expected


def _create(cluster: FlexCluster, private: object) -> dict[str, Any]:
    with Client(cluster) as client:
        return dict(
            client.sync(
                client.scheduler.flexlab_lease_create,
                request="t4:0.25",
                owner="ana",
                ttl="1m",
                private=private,
            )
        )


GOOD = make_material("127.0.0.1")


def _creds(**changes: Any) -> dict[str, Any]:
    base = {
        "scheduler": "tls://127.0.0.1:9",
        "ca": GOOD["ca"],
        "cert": GOOD["worker"],
        "key": GOOD["worker-key"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("private", "field", "allowed"),
    [
        ("tls://127.0.0.1:9", "private", "a dict"),
        (_creds(key=None), "private", "exactly the keys scheduler, ca, cert, key"),
        (_creds(extra="x"), "private", "exactly the keys"),
        (_creds(scheduler="tcp://127.0.0.1:9"), "private.scheduler", "tcp:// only where the pool itself"),
        (_creds(scheduler="tls://127.0.0.1"), "private.scheduler", "tls://HOST:PORT"),
        (_creds(scheduler="tls://127.0.0.1:99999"), "private.scheduler", "tls://HOST:PORT"),
        (_creds(ca="not a pem"), "private.ca", "the CA's PEM certificate"),
        (_creds(cert=GOOD["worker-key"]), "private.cert", "PEM certificate"),
        (_creds(key=GOOD["ca"]), "private.key", "the key of private.cert"),
        (_creds(key=GOOD["client-key"]), "private.key", "the private key of private.cert"),
        (_creds(ca=7), "private.ca", "a non-empty string"),
    ],
    ids=[
        "not-a-dict",
        "missing-key",
        "extra-key",
        "plain-tcp-on-tls-pool",
        "no-port",
        "bad-port",
        "ca-not-pem",
        "cert-is-a-key",
        "key-is-a-cert",
        "key-of-another-cert",
        "ca-not-a-string",
    ],
)
def test_bad_private_credentials_are_refused_and_change_nothing(
    tls_pool: FlexCluster, private: object, field: str, allowed: str
) -> None:
    before = len(tls_pool.pool.leases)
    resp = _create(tls_pool, private)
    assert resp["status"] == "error"
    assert resp["error"] == "InvalidRequest"
    assert resp["field"] == field
    assert allowed in resp["allowed"]
    assert "-----BEGIN" not in str(resp)  # a refused PEM is never echoed
    assert len(tls_pool.pool.leases) == before
    with pytest.raises(InvalidRequest):
        _raise(resp)


def test_private_lease_with_in_process_workers(tls_pool: FlexCluster) -> None:
    agent = tls_pool.agents[0]
    with Client(tls_pool) as client:
        with flexlab.lease("t4:0.25", owner="bob", client=client, private=True, timeout=60) as lease:
            assert lease.info["private"] is True
            assert lease.submit(lambda x: x + 1, 41).result(timeout=30) == 42
            run = agent.running[str(lease.info["slice_id"])]
            assert run.private is not None
            assert run.private.address is not None  # joined: its credentials' folder is gone
            assert not run.private.folder.exists()
        wait_until("the agent stops the worker", lambda: str(lease.info["slice_id"]) not in agent.running)
        with pytest.raises(LeaseEnded, match="released"):
            lease.submit(sum, [1]).result(timeout=10)
        # an ordinary lease of the same pool still joins the pool's scheduler
        with flexlab.lease("t4:0.25", owner="bob", client=client) as plain:
            assert plain.info["private"] is False
            assert "scheduler" not in plain.info
            assert plain.client is client
            assert plain.submit(lambda: 7).result(timeout=30) == 7


def test_a_worker_that_cannot_join_its_owners_scheduler_ends_the_lease(
    tls_pool: FlexCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tls_pool.agents[0]
    monkeypatch.setattr(agent, "private_start_timeout", 3.0)
    with PrivateScheduler(host="127.0.0.1") as ps:
        creds = ps.worker_credentials()
    # that scheduler is closed now: nothing listens at its address
    with Client(tls_pool) as client:
        resp = client.sync(
            client.scheduler.flexlab_lease_create, request="t4:0.25", owner="ana", ttl="1m", private=creds
        )
        lid = resp["lease"]["lease_id"]
        lease = tls_pool.pool.leases[lid]
        wait_until("the lease ends", lambda: lease.state == "released", timeout=30)
    assert lease.reason.startswith("its private worker could not start or join its owner's scheduler: ")
    assert lid not in agent.running
    assert lid not in tls_pool.flex_plugin.private.credentials


def test_stop_commands_say_whether_the_lease_ended(tls_pool: FlexCluster) -> None:
    """The agent fails a private lease's work at once only when the stop is for good."""
    private = tls_pool.flex_plugin.private
    with Client(tls_pool) as client:
        with flexlab.lease("t4:0.25", owner="ana", client=client) as live:
            stop = {"op": "stop", "slice_id": live.lease_id, "host": "gpu-host", "reason": "preempted"}
            assert private.command(stop)["lease_ended"] is False
        ended = private.command({**stop, "reason": "released by its owner"})
        assert ended["lease_ended"] is True
        assert ended["reason"] == "it released: released by its owner"
    unknown = private.command({**stop, "slice_id": "L999", "reason": "unknown to the scheduler"})
    assert unknown["lease_ended"] is True
    assert unknown["reason"] == "the pool does not know lease L999 (unknown to the scheduler)"


def test_two_private_leases_share_one_scheduler_and_keep_to_their_workers(tls_pool: FlexCluster) -> None:
    def worker_name() -> str:
        from distributed import get_worker

        return str(get_worker().name)

    with (
        Client(tls_pool) as client,
        flexlab.lease("t4:0.25", owner="ana", client=client, private=True, timeout=60) as a,
        flexlab.lease("t4:0.25", owner="ana", client=client, private=True, timeout=60) as b,
    ):
        assert a.private is b.private
        assert a.client is b.client
        for lease in (a, b):
            names = {f.result(timeout=30) for f in lease.map(lambda _: worker_name(), range(6), pure=False)}
            assert names == {f"flexlab-slice-{lease.info['slice_id']}"}
        # attached again in this process: the same private scheduler
        again = flexlab.Lease.attach(a.lease_id, owner="ana", client=client)
        assert again.private is a.private
        assert again.submit(worker_name).result(timeout=30) == f"flexlab-slice-{a.info['slice_id']}"
