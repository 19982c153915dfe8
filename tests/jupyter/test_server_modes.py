"""How the server extension finds its pool and its lease owners: embedded pool, configured
scheduler, unreachable scheduler, single-user servers with a shared token."""

from __future__ import annotations

import os
from typing import Any

import pytest

from .conftest import payload

MODES: dict[str, dict[str, Any]] = {
    # the stock token login (anonymous users) and no scheduler: embedded pool, one owner
    "embedded-single-user": {"FlexlabJupyter": {}},
    "unreachable": {"FlexlabJupyter": {"scheduler_address": "tcp://127.0.0.1:9", "connect_timeout": 1.0}},
    "no-pool": {"FlexlabJupyter": {"embedded": False}},
    "owner-from-config": {"FlexlabJupyter": {"anonymous_owner": "lab-owner"}},
}


@pytest.fixture
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def jp_server_config(mode: str, pool_address: str) -> dict[str, Any]:
    config: dict[str, Any] = {"ServerApp": {"jpserver_extensions": {"flexlab_jupyter": True}}}
    config.update(MODES[mode])
    if mode == "owner-from-config":
        config["FlexlabJupyter"]["scheduler_address"] = pool_address
    return config


@pytest.mark.parametrize("mode", ["embedded-single-user"], indirect=True)
async def test_embedded_pool_and_single_user_owner(
    jp_fetch: Any, jp_serverapp: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEXLAB_USER", "solo")
    info = payload(await jp_fetch("flexlab", "api", "info"))
    assert info["embedded"] is True
    assert info["user"] == "solo"
    assert info["scheduler"].startswith("tcp://127.0.0.1:")
    # kernels started by this server find the same pool
    assert os.environ["FLEXLAB_SCHEDULER"] == info["scheduler"]
    resp = await jp_fetch(
        "flexlab", "api", "leases", method="POST", body='{"request": "t4:0.5", "ttl": "10m"}'
    )
    lease = payload(resp)
    assert (resp.code, lease["owner"]) == (201, "solo")
    assert "owner='solo'" in lease["attach_code"]
    # a second request with the same token (another anonymous user) sees the same owner
    mine = payload(await jp_fetch("flexlab", "api", "leases"))["leases"]
    assert [x["lease_id"] for x in mine] == [lease["lease_id"]]
    # stopping the server stops its pool and forgets the address
    cluster = jp_serverapp.web_app.settings["flexlab_manager"]._cluster
    await jp_serverapp.cleanup_extensions()
    assert cluster.status.name == "closed"
    assert "FLEXLAB_SCHEDULER" not in os.environ


@pytest.mark.parametrize("mode", ["owner-from-config"], indirect=True)
async def test_single_user_owner_from_config(jp_fetch: Any, mode: str) -> None:
    info = payload(await jp_fetch("flexlab", "api", "info"))
    assert (info["user"], info["embedded"]) == ("lab-owner", False)


@pytest.mark.parametrize("mode", ["unreachable", "no-pool"], indirect=True)
async def test_no_pool_is_503(jp_fetch: Any, mode: str) -> None:
    resp = await jp_fetch("flexlab", "api", "pool", raise_error=False)
    assert resp.code == 503
    err = payload(resp)
    assert err["error"] == "PoolUnavailable"
    expected = "tcp://127.0.0.1:9" if mode == "unreachable" else "embedded pool is off"
    assert expected in err["message"]
