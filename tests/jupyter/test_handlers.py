"""The REST API under /flexlab/api/ through a real Jupyter server (pytest-jupyter's jp_fetch)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from .conftest import Fetch, payload

pytestmark = pytest.mark.usefixtures("jp_serverapp")

ROUTES = [
    ("GET", ("info",)),
    ("GET", ("pool",)),
    ("GET", ("leases",)),
    ("POST", ("leases",)),
    ("GET", ("leases", "L1")),
    ("DELETE", ("leases", "L1")),
    ("POST", ("leases", "L1", "renew")),
    ("GET", ("explain",)),
    ("POST", ("explain",)),
    ("GET", ("events",)),
]


async def lease_for(api: Fetch, user: str, request: str = "npu:0.25", **body: Any) -> dict[str, Any]:
    resp = await api(user, "POST", "leases", body={"request": request, **body})
    assert resp.code == 201, resp.body
    return payload(resp)  # type: ignore[no-any-return]


async def until_active(api: Fetch, user: str, lease_id: str, timeout: float = 20.0) -> dict[str, Any]:
    for _ in range(int(timeout / 0.1)):
        lease = payload(await api(user, "GET", "leases", lease_id))
        if lease["state"] == "active":
            return lease  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"lease {lease_id} not active after {timeout} s: {lease}")


# ------------------------------------------------------------------ authentication
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {'/'.join(p)}" for m, p in ROUTES])
async def test_every_route_needs_a_login(api: Fetch, method: str, path: tuple[str, ...]) -> None:
    resp = await api(None, method, *path, body={"request": "npu:0.25", "ttl": "1h"}, request="npu:0.25")
    assert resp.code == 401
    assert resp.headers["WWW-Authenticate"].startswith("token")
    err = payload(resp)
    assert err["error"] == "Unauthorized"
    assert "token" in err["message"]
    assert set(err) == {"error", "message", "field", "allowed", "code"}


async def test_info_names_the_caller_and_the_pool(api: Fetch, pool_address: str) -> None:
    info = payload(await api("alice", "GET", "info"))
    assert info["user"] == "alice"
    assert info["scheduler"] == pool_address
    assert info["embedded"] is False
    assert (info["default_ttl"], info["max_ttl"]) == ("1h", "7d")


# ------------------------------------------------------------------ the pool
async def test_pool_by_host_and_device(api: Fetch) -> None:
    pool = payload(await api("alice", "GET", "pool"))
    assert pool["user"] == "alice"
    devices = {d["id"]: d for h in pool["hosts"] for d in h["devices"]}
    assert sorted(h["name"] for h in pool["hosts"]) == ["ascend-a", "mixed-c", "nvidia-b"]
    a100 = devices["nvidia-b/a100-80gb#1"]
    assert (a100["vendor"], a100["model"], a100["mode"]) == ("nvidia", "a100-80gb", "profile")
    assert "1g.10gb" in a100["profiles"]
    assert a100["memory_mib"] == 80 * 1024
    mlu = devices["mixed-c/mlu370-x8#1"]
    assert (mlu["vendor"], mlu["kind"], mlu["profiles"]) == ("cambricon", "mlu", [])
    ascend = devices["ascend-a/ascend-910b3#0"]
    assert ascend["granularity_milli"] == 100
    for d in devices.values():
        assert sum(s["compute_milli"] for s in d["slices"]) + d["free_compute_milli"] <= 1000
        for s in d["slices"]:
            assert 0.0 <= s["utilisation"] <= 1.0
            assert "worker" not in s  # internal fields stay behind


# ------------------------------------------------------------------ leases
async def test_lease_lifecycle(api: Fetch) -> None:
    resp = await api("alice", "POST", "leases", body={"request": "npu:0.25", "ttl": "30m", "priority": 5})
    assert resp.code == 201
    lease = payload(resp)
    lid = lease["lease_id"]
    assert resp.headers["Location"].endswith(f"/flexlab/api/leases/{lid}")
    assert (lease["owner"], lease["request"], lease["priority"], lease["ttl_s"]) == (
        "alice",
        "npu:0.25",
        5,
        1800,
    )
    assert f"flexlab.Lease.attach({lid!r}, owner='alice')" in lease["attach_code"]

    active = await until_active(api, "alice", lid)
    assert active["model"] == "ascend-910b3"
    assert active["compute_milli"] >= 250
    mine = payload(await api("alice", "GET", "leases"))["leases"]
    assert lid in [x["lease_id"] for x in mine]
    pool = payload(await api("alice", "GET", "pool"))
    owners = {s["slice_id"]: s["owner"] for h in pool["hosts"] for d in h["devices"] for s in d["slices"]}
    assert owners[active["slice_id"]] == "alice"

    renewed = payload(await api("alice", "POST", "leases", lid, "renew", body={"ttl": "2h"}))
    assert renewed["ttl_s"] == 7200
    assert renewed["ttl_left_s"] > 7000

    released = payload(await api("alice", "DELETE", "leases", lid))
    assert released["state"] == "released"
    assert lid not in [x["lease_id"] for x in payload(await api("alice", "GET", "leases"))["leases"]]
    ended = payload(await api("alice", "GET", "leases", ended="true"))["leases"]
    assert [x["state"] for x in ended if x["lease_id"] == lid] == ["released"]
    again = await api("alice", "DELETE", "leases", lid)
    assert (again.code, payload(again)["state"]) == (200, "released")  # idempotent
    late = await api("alice", "POST", "leases", lid, "renew", body={"ttl": "1h"})
    assert late.code == 409
    assert payload(late)["error"] == "LedgerConflict"


async def test_nobody_touches_another_users_lease(api: Fetch) -> None:
    lease = await lease_for(api, "alice", "gpu:0.2")
    lid = lease["lease_id"]
    for method, path, body in [
        ("GET", ("leases", lid), None),
        ("POST", ("leases", lid, "renew"), {"ttl": "1h"}),
        ("DELETE", ("leases", lid), None),
    ]:
        resp = await api("bob", method, *path, body=body)
        assert resp.code == 403, (method, path)
        err = payload(resp)
        assert err["error"] == "NotOwner"
        assert "'alice'" in err["message"]
        assert "'bob'" in err["message"]
    assert lid not in [x["lease_id"] for x in payload(await api("bob", "GET", "leases"))["leases"]]
    still = payload(await api("alice", "GET", "leases", lid))
    assert still["state"] in ("pending", "active")
    assert (await api("alice", "DELETE", "leases", lid)).code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
async def test_unknown_lease_is_404(api: Fetch, method: str) -> None:
    path = ("leases", "L999999") + (("renew",) if method == "POST" else ())
    resp = await api("alice", method, *path, body={"ttl": "1h"})
    assert resp.code == 404
    assert payload(resp)["error"] == "UnknownName"
    assert "L999999" in payload(resp)["message"]


async def test_a_request_that_can_never_fit_is_409(api: Fetch) -> None:
    resp = await api("alice", "POST", "leases", body={"request": "npu:0.25,100GiB"})
    assert resp.code == 409
    err = payload(resp)
    assert (err["error"], err["code"]) == ("Unschedulable", "UNRESOLVABLE")
    assert "DEVICE_TOO_SMALL" in err["message"]


BAD = [
    # method, path, body or query, the field the 400 must name
    ("POST", ("leases",), b"{not json", "body"),
    ("POST", ("leases",), b"[1, 2]", "body"),
    ("POST", ("leases",), {}, "request"),
    ("POST", ("leases",), {"request": 5}, "request"),
    ("POST", ("leases",), {"request": "tpu:1"}, "selector"),
    ("POST", ("leases",), {"request": "gpu:1.5"}, "compute"),
    ("POST", ("leases",), {"request": "gpu:0.5,-3GiB"}, "memory"),
    ("POST", ("leases",), {"request": "a100:9g.99gb"}, "profile"),
    ("POST", ("leases",), {"request": "npu:0.25", "ttl": "0s"}, "ttl"),
    ("POST", ("leases",), {"request": "npu:0.25", "ttl": "99d"}, "ttl"),
    ("POST", ("leases",), {"request": "npu:0.25", "ttl": True}, "ttl"),
    ("POST", ("leases",), {"request": "npu:0.25", "ttl": -5}, "ttl"),
    ("POST", ("leases",), {"request": "npu:0.25", "priority": 5000}, "priority"),
    ("POST", ("leases",), {"request": "npu:0.25", "priority": "high"}, "priority"),
    ("POST", ("leases",), {"request": "npu:0.25", "priority": 1.5}, "priority"),
    ("POST", ("leases",), {"request": "npu:0.25", "colour": "red"}, "colour"),
    ("POST", ("leases", "L1", "renew"), {}, "ttl"),
    ("POST", ("leases", "L1", "renew"), {"ttl": "forever"}, "ttl"),
    ("POST", ("leases", "L1", "renew"), {"ttl": "30d"}, "ttl"),
    ("POST", ("explain",), {}, "request"),
    ("POST", ("explain",), {"request": "npu:0.25", "lease": "yes"}, "lease"),
    ("GET", ("explain",), {}, "request"),
    ("GET", ("explain",), {"request": "gpu:2"}, "compute"),
    ("GET", ("explain",), {"request": "npu:0.25", "lease": "maybe"}, "lease"),
    ("GET", ("events",), {"since": "-1"}, "since"),
    ("GET", ("events",), {"since": "abc"}, "since"),
    ("GET", ("leases",), {"ended": "perhaps"}, "ended"),
    ("GET", ("pool",), {"verbose": "1"}, "verbose"),
    ("GET", ("events",), {"since": "0", "sicne": "1"}, "sicne"),
]


@pytest.mark.parametrize(
    ("method", "path", "data", "field"), BAD, ids=[f"{m} {'/'.join(p)} {f}" for m, p, _, f in BAD]
)
async def test_bad_input_is_400_naming_the_field(
    api: Fetch, method: str, path: tuple[str, ...], data: Any, field: str
) -> None:
    if method == "GET":
        resp = await api("alice", method, *path, **data)
    else:
        resp = await api("alice", method, *path, body=data)
    assert resp.code == 400, resp.body
    err = payload(resp)
    assert err["error"] == "InvalidRequest"
    assert err["field"] == field
    assert field in err["message"]
    assert err["allowed"]


# ------------------------------------------------------------------ explain and events
async def test_explain_where_it_would_land(api: Fetch) -> None:
    post = payload(await api("alice", "POST", "explain", body={"request": "a100:1g.10gb"}))
    get = payload(await api("alice", "GET", "explain", request="a100:1g.10gb"))
    for e in (post, get):
        assert (e["code"], e["fits"], e["lease"]) == ("SUCCESS", True, True)
        assert e["where"]["devices"] == ["nvidia-b/a100-80gb#1"]
        assert e["where"]["profile"] == "1g.10gb"
        assert e["summary"] == "would land on nvidia-b/a100-80gb#1 as 1g.10gb"


async def test_explain_counts_the_reasons_why_not(api: Fetch) -> None:
    e = payload(await api("alice", "POST", "explain", body={"request": "npu:0.25,100GiB"}))
    assert (e["code"], e["fits"], e["where"]) == ("UNRESOLVABLE", False, None)
    counted = {(r["model"], r["reason"]): (r["count"], r["resolvable"]) for r in e["reasons"]}
    assert counted[("ascend-910b3", "DEVICE_TOO_SMALL")] == (1, False)
    assert counted[("t4", "KIND_MISMATCH")] == (1, False)
    assert e["summary"].startswith("can never fit this pool: ")
    assert e["considered"] == 6
    assert e["feasible"] == 0


async def test_explain_as_a_task_sees_the_shared_slices(api: Fetch) -> None:
    """Every device is carved into shared slices: a task cannot get a new slice now, a lease
    can (it reclaims idle shared slices)."""
    as_task = payload(await api("alice", "POST", "explain", body={"request": "t4:0.5", "lease": False}))
    as_lease = payload(await api("alice", "POST", "explain", body={"request": "t4:0.5"}))
    assert (as_task["code"], as_task["lease"]) == ("UNSCHEDULABLE", False)
    assert {r["reason"] for r in as_task["reasons"] if r["model"] == "t4"} == {"INSUFFICIENT_COMPUTE"}
    assert all(r["resolvable"] for r in as_task["reasons"] if r["model"] == "t4")
    assert as_lease["code"] == "SUCCESS"
    assert as_lease["summary"] == "would land on mixed-c/t4#0 as 50% and 8 GiB"


def _carved(pool: dict[str, Any]) -> list[tuple[str, str, int, int, str | None, str | None]]:
    return sorted(
        (d["id"], s["slice_id"], s["compute_milli"], s["memory_mib"], s["profile"], s["owner"])
        for h in pool["hosts"]
        for d in h["devices"]
        for s in d["slices"]
    )


async def test_explain_changes_nothing(api: Fetch) -> None:
    """Explaining as a lease releases idle shared slices in a dry run and puts them back."""
    before = payload(await api("alice", "GET", "pool"))
    for spec in ("a100:1g.10gb", "npu:0.5", "any:1", "mlu:0.3,8GiB"):
        assert payload(await api("alice", "POST", "explain", body={"request": spec}))["fits"], spec
    after = payload(await api("alice", "GET", "pool"))
    assert _carved(after) == _carved(before)
    free = [
        (d["id"], d["free_compute_milli"], d["free_memory_mib"], d["free_profiles"]) for d in _devices(after)
    ]
    assert free == [
        (d["id"], d["free_compute_milli"], d["free_memory_mib"], d["free_profiles"]) for d in _devices(before)
    ]
    as_task = payload(await api("alice", "POST", "explain", body={"request": "t4:0.5", "lease": False}))
    assert as_task["code"] == "UNSCHEDULABLE"  # the shared slices are still there


def _devices(pool: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for h in pool["hosts"] for d in h["devices"]]


async def test_events_are_the_callers_and_the_pools(api: Fetch) -> None:
    before = payload(await api("alice", "GET", "events"))["last"]
    lease = await lease_for(api, "alice", "mlu:0.3")
    lid = lease["lease_id"]
    alice = payload(await api("alice", "GET", "events", since=before))
    assert alice["last"] > before
    assert all(e["seq"] > before for e in alice["events"])
    mine = [e for e in alice["events"] if e["lease_id"] == lid]
    assert mine
    assert {e["owner"] for e in mine} <= {"alice", None}
    assert any(e["kind"] == "lease" and "asked by alice" in e["message"] for e in mine)
    bob = payload(await api("bob", "GET", "events", since=before))
    assert all(e["owner"] in ("bob", None) for e in bob["events"])
    # Only what came after: the pool is live (a lease placed from the queue meanwhile
    # writes events), so "after" is all that can be asserted, not "nothing".
    later = payload(await api("alice", "GET", "events", since=alice["last"]))
    assert later["last"] >= alice["last"]
    assert all(e["seq"] > alice["last"] for e in later["events"])
    assert all(e["owner"] in ("alice", None) for e in later["events"])
    await api("alice", "DELETE", "leases", lid)


# ------------------------------------------------------------------ failures outside the domain
async def test_a_bug_is_a_logged_500_without_details(
    api: Fetch, jp_serverapp: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = jp_serverapp.web_app.settings["flexlab_manager"]

    async def broken(owner: str) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(manager, "pool", broken)
    with caplog.at_level(logging.ERROR):
        resp = await api("alice", "GET", "pool")
    assert resp.code == 500
    err = payload(resp)
    assert err["error"] == "InternalError"
    assert "secret" not in err["message"]
    assert any("secret internal detail" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
