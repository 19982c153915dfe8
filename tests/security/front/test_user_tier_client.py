"""Impersonation attempts of a user-tier client (``flexlab.front``, what a kernel of a
front-mode server uses) against another owner's lease, through a real Hub and front."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import flexlab
from flexlab.core.errors import InvalidRequest, NotOwner
from flexlab.dask_client import open_client
from flexlab.front import FrontClient, FrontLease, FrontPoolClient, FrontRejected, check_owner
from flexlab.notebook import FlexMagicsCore
from tests.security.front.conftest import Hub

pytestmark = pytest.mark.slow


@pytest.fixture
def fronts(hub: Hub, tokens: dict[str, str]) -> dict[str, FrontClient]:
    return {user: FrontClient(hub.front, token) for user, token in tokens.items()}


@pytest.fixture
def anas_lease(fronts: dict[str, FrontClient]) -> Iterator[dict[str, Any]]:
    """A lease of ana's (made through the REST API, as the panel does)."""
    lease = fronts["ana"].create_lease("t4:0.25", ttl="10m")
    yield lease
    fronts["ana"].release_lease(lease["lease_id"])


def bobs_leases(fronts: dict[str, FrontClient]) -> list[str]:
    return [x["lease_id"] for x in fronts["bob"].leases(ended=True)]


def test_bob_cannot_attach_release_or_renew_anas_lease(
    fronts: dict[str, FrontClient], anas_lease: dict[str, Any]
) -> None:
    lid = anas_lease["lease_id"]
    with pytest.raises(NotOwner, match="not your lease"):
        FrontLease.attach(lid, front=fronts["bob"])
    forged = FrontLease(fronts["bob"], dict(anas_lease, owner="bob"))  # a handle bob made up
    with pytest.raises(NotOwner, match="not your lease"):
        forged.release()
    with pytest.raises(NotOwner, match="not your lease"):
        forged.renew("7d")
    with pytest.raises(NotOwner, match="not your lease"):
        forged.refresh()
    # and no task of his reaches its worker: the front will not even say whether it is active
    with pytest.raises(NotOwner, match="not your lease"):
        forged.submit(sum, [1, 2])
    lease = fronts["ana"].get_lease(lid)
    assert lease["state"] in ("pending", "active")
    assert lease["ttl_s"] == 600
    assert lease["owner"] == "ana"


def test_bob_cannot_claim_another_owner(fronts: dict[str, FrontClient]) -> None:
    before = bobs_leases(fronts)
    with pytest.raises(NotOwner, match="authenticated this kernel's token as 'bob'"):
        flexlab.front.lease("t4:0.25", owner="ana", front=fronts["bob"])
    with pytest.raises(NotOwner, match="cannot act as another owner"):
        check_owner(fronts["bob"], "ana")
    with pytest.raises(NotOwner):
        FrontPoolClient(front=fronts["bob"]).leases(owner="ana")
    with pytest.raises(InvalidRequest, match="owner"):  # the API has no owner field at all
        fronts["bob"].call("POST", "leases", {"request": "t4:0.25", "owner": "ana"})
    assert bobs_leases(fronts) == before
    assert "ana" not in {x["owner"] for x in fronts["ana"].leases(ended=True)} - {"ana"}


def test_the_front_says_when_it_does_not_accept_the_token(hub: Hub) -> None:
    with pytest.raises(FrontRejected, match="did not accept this kernel's token"):
        FrontClient(hub.front, "not-a-hub-token").pool()
    with pytest.raises(FrontRejected):
        FrontClient(hub.front, "").info()


def test_a_kernel_without_pool_credentials_goes_through_the_front(
    hub: Hub, tokens: dict[str, str], anas_lease: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """$FLEXLAB_FRONT and a Hub token, no $FLEXLAB_TLS: flexlab's own API and %flex use the front."""
    for name in ("FLEXLAB_TLS", "DASK_FLEXLAB__TLS", "FLEXLAB_SCHEDULER", "FLEXLAB_FRONT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEXLAB_FRONT", hub.front)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens["bob"])
    monkeypatch.setenv("FLEXLAB_USER", "ana")  # what a client writes is not who it is
    pc = flexlab.PoolClient()
    assert isinstance(pc, FrontPoolClient)
    assert pc.state()["user"] == "bob"
    assert [h.name for h in pc.pool_state().hosts] == ["gpu-host"]
    lid = anas_lease["lease_id"]
    with pytest.raises(NotOwner, match="not your lease"):
        flexlab.Lease.attach(lid)
    with pytest.raises(NotOwner, match="cannot act as another owner"):
        flexlab.Lease.attach(lid, owner="ana")
    with pytest.raises(NotOwner, match="cannot act as another owner"):
        flexlab.lease("t4:0.25", owner="ana")
    magics = FlexMagicsCore({})
    status = magics.run("status")
    assert status.owner == "bob"
    assert lid not in repr(status)
    with pytest.raises(NotOwner, match="not your lease"):
        magics.run(f"release {lid}")
    with pytest.raises(NotOwner, match="not your lease"):
        magics.run(f"renew {lid} --ttl 7d")
    assert "would land on" in magics.run("explain t4:0.25") or "t4:0.25:" in magics.run("explain t4:0.25")
    assert FrontClient(hub.front, tokens["ana"]).get_lease(lid)["state"] in ("pending", "active")


def test_a_private_lease_through_the_front_runs_only_its_owners_work(fronts: dict[str, FrontClient]) -> None:
    """ana's kernel: a private lease through the front, a task on it through her own
    scheduler; bob reaches neither the lease (403) nor that scheduler (TLS of its own)."""
    pytest.importorskip("flexlab.private")

    from flexlab.notebook import where

    with flexlab.front.lease("t4:0.25", ttl="10m", front=fronts["ana"], timeout=90) as lease:
        assert lease.owner == "ana"
        assert lease.state == "active"
        done = lease.submit(where).result(timeout=60)
        assert done["slice"] == lease.info["slice_id"]
        assert done["device"] == lease.info["devices"][0]
        address = lease.private.address
        assert address.startswith("tls://")
        with pytest.raises(NotOwner, match="not your lease"):
            FrontLease.attach(lease.lease_id, front=fronts["bob"])
        with pytest.raises((OSError, TimeoutError)):
            open_client(address.replace("tls://", "tcp://"), timeout=3)  # no certificate of its CA
    assert fronts["ana"].get_lease(lease.lease_id)["state"] == "released"
    lease.private.close()  # this process's private scheduler (a later lease starts another)


def test_flex_magics_make_and_release_a_private_lease_through_the_front(
    hub: Hub, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flexlab.private")
    from flexlab.notebook import where

    for name in (
        "FLEXLAB_TLS",
        "DASK_FLEXLAB__TLS",
        "FLEXLAB_SCHEDULER",
        "FLEXLAB_FRONT_TOKEN",
        "FLEXLAB_PRIVATE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEXLAB_FRONT", hub.front)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens["ana"])
    ns: dict[str, Any] = {}
    magics = FlexMagicsCore(ns)
    lease = magics.run("lease t4:0.25 --ttl 10m")
    try:
        assert isinstance(lease, FrontLease)
        assert ns["lease"] is lease
        assert lease.owner == "ana"
        assert lease.state == "active"
        assert lease.submit(where).result(timeout=60)["slice"] == lease.info["slice_id"]
        assert lease.lease_id in repr(magics.run("status"))
        assert magics.run("release") == f"released {lease.lease_id}"
        assert FrontClient(hub.front, tokens["ana"]).get_lease(lease.lease_id)["state"] == "released"
    finally:
        if lease.state != "released":
            lease.release()
        lease.private.close()


def test_a_kernel_gives_back_its_leases_when_it_exits(fronts: dict[str, FrontClient]) -> None:
    pytest.importorskip("flexlab.private")
    lease = flexlab.front.lease("t4:0.25", ttl="10m", front=fronts["ana"], wait=False)
    try:
        flexlab.front.release_at_exit()  # what the kernel's interpreter runs at exit
        assert fronts["ana"].get_lease(lease.lease_id)["state"] == "released"
    finally:
        lease.private.close()


def test_the_lease_picker_works_through_the_front(
    hub: Hub, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ipywidgets")
    from flexlab.widgets import LeasePicker

    for name in ("FLEXLAB_TLS", "DASK_FLEXLAB__TLS", "FLEXLAB_SCHEDULER", "FLEXLAB_FRONT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEXLAB_FRONT", hub.front)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens["bob"])
    monkeypatch.setenv("FLEXLAB_USER", "not-bob")  # the login name is not who the front says
    picker = LeasePicker(refresh_interval=None)
    assert picker.owner == "bob"
    assert isinstance(picker.pool, FrontPoolClient)
    assert "t4" in {c.value for c in picker._choices}
