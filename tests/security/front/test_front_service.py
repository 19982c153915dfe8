"""The pool front as a JupyterHub service: Hub tokens, owners and what the user tier sees.

One real JupyterHub (from PyPI) runs ``flexlab front`` against a TLS pool; ana and bob call
it with their own Hub tokens, as their single-user servers and kernels do.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.front.conftest import Hub, call

pytestmark = pytest.mark.slow


def api(hub: Hub, path: str) -> str:
    return hub.front + "flexlab/api/" + path


def make_lease(hub: Hub, token: str, request: str = "t4:0.25", **extra: Any) -> dict[str, Any]:
    status, lease = call(api(hub, "leases"), "POST", token, {"request": request, "ttl": "10m", **extra})
    assert status == 201, lease
    return dict(lease)


def test_the_front_refuses_a_missing_or_wrong_token(hub: Hub, tokens: dict[str, str]) -> None:
    for token in (None, "not-a-hub-token"):
        for method, path, body in (
            ("GET", "pool", None),
            ("GET", "leases", None),
            ("POST", "leases", {"request": "t4:0.25"}),
        ):
            status, out = call(api(hub, path), method, token, body)
            assert status == 401, (method, path, token, out)
            assert out["error"] == "Unauthorized"
            assert "token" in out["message"]


def test_a_token_without_the_service_scope_is_refused(hub: Hub) -> None:
    narrow = hub.token("ana", scopes=["users:activity!user"])
    status, out = call(api(hub, "pool"), "GET", narrow)
    assert status == 403
    assert "access:services!service=flexlab" in out["message"]


def test_a_services_token_names_no_owner(hub: Hub) -> None:
    status, out = call(api(hub, "leases"), "POST", hub.admin, {"request": "t4:0.25"})
    assert status == 403
    assert "service token does not name a user" in out["message"]


def test_the_owner_is_the_hub_user_never_what_the_client_writes(hub: Hub, tokens: dict[str, str]) -> None:
    status, info = call(api(hub, "info"), "GET", tokens["ana"])
    assert status == 200
    assert info["user"] == "ana"
    assert info["scheduler"].startswith("tls://")
    lease = make_lease(hub, tokens["ana"])
    try:
        assert lease["owner"] == "ana"
        status, out = call(api(hub, "leases"), "POST", tokens["bob"], {"request": "t4:0.25", "owner": "ana"})
        assert status == 400, out
        assert out["field"] == "owner"
    finally:
        call(api(hub, f"leases/{lease['lease_id']}"), "DELETE", tokens["ana"])


def test_another_owners_lease_is_403_to_read_renew_and_release(hub: Hub, tokens: dict[str, str]) -> None:
    lease = make_lease(hub, tokens["ana"])
    lid = lease["lease_id"]
    try:
        for method, path, body in (
            ("GET", f"leases/{lid}", None),
            ("POST", f"leases/{lid}/renew", {"ttl": "1h"}),
            ("DELETE", f"leases/{lid}", None),
        ):
            status, out = call(api(hub, path), method, tokens["bob"], body)
            assert status == 403, (method, path, out)
            assert out["error"] == "NotOwner"
            assert "not yours" in out["message"]
            assert "ana" not in out["message"]  # whose it is is ana's detail
        status, still = call(api(hub, f"leases/{lid}"), "GET", tokens["ana"])
        assert status == 200
        assert still["state"] in ("pending", "active")
        assert still["ttl_s"] == 600
        status, bobs = call(api(hub, "leases?ended=true"), "GET", tokens["bob"])
        assert status == 200
        assert lid not in {x["lease_id"] for x in bobs["leases"]}
    finally:
        call(api(hub, f"leases/{lid}"), "DELETE", tokens["ana"])


def slices(pool: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for h in pool["hosts"] for d in h["devices"] for s in d["slices"]]


def test_the_user_tier_sees_occupancy_not_other_owners_lease_details(
    hub: Hub, tokens: dict[str, str]
) -> None:
    import time

    lease = make_lease(hub, tokens["ana"], "t4:0.5")
    lid = lease["lease_id"]
    try:
        deadline = time.monotonic() + 60
        while call(api(hub, f"leases/{lid}"), "GET", tokens["ana"])[1]["state"] != "active":
            assert time.monotonic() < deadline, "ana's lease did not become active"
            time.sleep(0.2)
        _, anas = call(api(hub, "pool"), "GET", tokens["ana"])
        _, bobs = call(api(hub, "pool"), "GET", tokens["bob"])
        mine = [s for s in slices(anas) if s["lease_id"] == lid]
        assert len(mine) == 1
        assert mine[0]["owner"] == "ana"
        held = [s for s in slices(bobs) if s["lease_id"] is not None]
        assert len(held) == 1, bobs
        # the occupancy is the same: shape, memory, state; the ids and the owner are not there
        assert {k: held[0][k] for k in ("compute_milli", "memory_mib", "state")} == {
            k: mine[0][k] for k in ("compute_milli", "memory_mib", "state")
        }
        assert held[0]["lease_id"] == held[0]["slice_id"] == "(hidden)"
        assert held[0]["owner"] == "(another user)"
        assert lid not in str(bobs["hosts"])
        assert "'ana'" not in str(bobs["hosts"])
        _, devices_b = bobs, [d["free_compute_milli"] for h in bobs["hosts"] for d in h["devices"]]
        assert devices_b == [d["free_compute_milli"] for h in anas["hosts"] for d in h["devices"]]
        _, events = call(api(hub, "events"), "GET", tokens["bob"])
        assert all(e["owner"] in (None, "bob") and e["lease_id"] != lid for e in events["events"])
        assert lid not in str(events)
    finally:
        call(api(hub, f"leases/{lid}"), "DELETE", tokens["ana"])
