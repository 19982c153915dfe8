"""The runtime on the embedded mock pool: placement, leases, bad input, waiting work."""

from __future__ import annotations

import time
from typing import Any

import dask
import pytest
from distributed import Client
from flexlab_dask import FlexCluster

import flexlab
from flexlab.client import PoolClient, _call
from flexlab.core.errors import InvalidRequest, NotOwner, Unschedulable

from .conftest import slice_of, where

Flex = tuple[FlexCluster, Client]

PLACEMENT = [
    # request, what every task's slice must satisfy
    ("npu:0.25", lambda s: s["kind"] == "npu" and s["compute_milli"] >= 250),
    ("gpu:0.25", lambda s: s["kind"] == "gpu" and s["compute_milli"] >= 250),
    ("mlu:0.5,8GiB", lambda s: s["model"] == "mlu370-x8"),
    ("t4:0.5", lambda s: s["model"] == "t4"),
    ("v100s:0.3", lambda s: s["model"] == "v100s-32gb"),
    ("a100:1g.10gb", lambda s: s["model"] == "a100-80gb" and s["profile"] == "1g.10gb"),
    ("ascend910b3:vir05_1c_16g", lambda s: s["model"] == "ascend-910b3" and s["profile"] == "vir05_1c_16g"),
    ("any:0.9", lambda s: s["compute_milli"] >= 900),
]


@pytest.mark.parametrize(("spec", "fits"), PLACEMENT, ids=[p[0] for p in PLACEMENT])
def test_tasks_land_only_on_fitting_slices(flex: Flex, spec: str, fits: Any) -> None:
    _cluster, client = flex
    with flexlab.request(spec):
        futures = client.map(lambda i: where(), range(12), pure=False)
    names = client.gather(futures)
    state = PoolClient(client).state()
    slices = [slice_of(state, n) for n in names]
    bad = [s for s in slices if not fits(s)]
    assert not bad, f"{spec} ran on {bad}"
    assert all(s["lease_id"] is None for s in slices)


def test_delayed_and_submit_helper(flex: Flex) -> None:
    _, client = flex
    with flexlab.request("npu:0.5"):
        d = dask.delayed(where)()
    name = client.compute(d).result()
    assert slice_of(PoolClient(client).state(), name)["kind"] == "npu"
    fut = flexlab.submit(where, request="mlu:0.2", client=client, pure=False)
    assert slice_of(PoolClient(client).state(), fut.result())["model"] == "mlu370-x8"


def test_plain_tasks_still_work(flex: Flex) -> None:
    _, client = flex
    assert client.submit(sum, [1, 2, 3]).result() == 6
    assert sum(client.gather(client.map(lambda x: x * 2, range(50)))) == 2450


@pytest.mark.parametrize(
    "spec",
    [
        # 0.4 of the fraction-sliced MLU's one slice of 1000 milli: two at once, not three
        "mlu:0.4",
        # 10% of its compute but 20 of its 48 GiB: two at once fit its memory, three would
        # not (their memory counts against the slice's one resource)
        "mlu:0.1,20GiB",
    ],
)
def test_concurrency_stays_inside_the_slice(flex: Flex, spec: str) -> None:
    _, client = flex

    def hold() -> tuple[float, float]:
        t0 = time.time()
        time.sleep(0.3)
        return t0, time.time()

    with flexlab.request(spec):
        spans = client.gather(client.map(lambda i: hold(), range(6), pure=False))
    assert _peak(spans) == 2


def _peak(spans: list[tuple[float, float]]) -> int:
    """The most intervals that overlapped at once."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_unresolvable_fails_at_once_with_reasons(flex: Flex) -> None:
    _, client = flex
    t0 = time.monotonic()
    with flexlab.request("mlu:0.5,200GiB"):
        fut = client.submit(where, pure=False)
    with pytest.raises(Unschedulable) as info:
        fut.result(timeout=10)
    assert time.monotonic() - t0 < 5
    text = str(info.value)
    assert "UNRESOLVABLE" in text
    assert "mlu370-x8: 1 DEVICE_TOO_SMALL" in text
    assert "KIND_MISMATCH" in text


def test_waiting_task_shows_its_reason_and_runs_after_release(flex: Flex) -> None:
    _cluster, client = flex
    lease = flexlab.lease("mlu:0.6", owner="ana", client=client)
    try:
        with flexlab.request("mlu:0.5"):
            fut = client.submit(where, pure=False)
        deadline = time.monotonic() + 5
        waiting: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not waiting:
            waiting = PoolClient(client).state()["waiting"]
            time.sleep(0.05)
        assert waiting, "the task should wait with a visible reason"
        assert waiting[0]["request"] == "mlu:0.5"
        assert "INSUFFICIENT_COMPUTE" in waiting[0]["reason"]
        assert fut.status == "pending"
    finally:
        lease.release()
    assert fut.result(timeout=10).startswith("flexlab-slice-")


def test_results_on_a_reclaimed_slice_are_recomputed_on_another(flex: Flex) -> None:
    """A lease reclaims the idle shared slice whose worker holds a result: Dask recomputes
    that task, and it must be bound to a slice that exists (regression: it waited forever,
    restricted to the stopped slice)."""
    cluster, client = flex
    with flexlab.request("mlu:0.5"):
        fut = client.submit(where, pure=False)
    first = fut.result(timeout=10)
    old = first.removeprefix("flexlab-slice-")
    assert old in cluster.flex_plugin.pool.slices
    with flexlab.lease("mlu:0.3", owner="ana", client=client) as lease:
        assert lease.state == "active"
        assert old not in cluster.flex_plugin.pool.slices, "the lease should have reclaimed the slice"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            ws.name == first for ws in cluster.scheduler.workers.values()
        ):
            time.sleep(0.05)
        again = client.submit(lambda x: x, fut, pure=False).result(timeout=15)
        assert again.startswith("flexlab-slice-")
        assert again not in (first, f"flexlab-slice-{lease.lease_id}")
        assert slice_of(PoolClient(client).state(), again)["model"] == "mlu370-x8"
    assert cluster.flex_plugin._stats["rebound"] >= 1


def test_lease_runs_only_its_owners_tasks(flex: Flex) -> None:
    _cluster, client = flex
    with flexlab.lease("gpu:30%,8GiB", ttl="2h", owner="ana", client=client) as lease:
        assert lease.state == "active"
        assert lease.info["model"] in ("v100s-32gb", "t4")
        assert lease.info["compute_milli"] == 300
        names = client.gather(lease.map(lambda i: where(), range(8), pure=False))
        assert set(names) == {f"flexlab-slice-{lease.lease_id}"}
        # Nobody else's work lands there: flexlab tasks and plain tasks alike.
        with flexlab.request("gpu:0.1"):
            others = client.gather(client.map(lambda i: where(), range(30), pure=False))
        plain = client.gather(client.map(lambda i: where(), range(30), pure=False))
        assert f"flexlab-slice-{lease.lease_id}" not in set(others) | set(plain)
        # Someone else cannot use it.
        with dask.annotate(flexlab={"lease": lease.lease_id, "owner": "bob"}):
            stolen = client.submit(where, pure=False)
        with pytest.raises(Unschedulable, match="belongs to 'ana'"):
            stolen.result(timeout=10)
    assert lease.state == "released"
    assert lease.lease_id not in {
        le["lease_id"] for le in PoolClient(client).leases() if le["state"] == "active"
    }


def pool_snapshot(client: Client) -> Any:
    st = PoolClient(client).state()
    return (
        [(d["id"], d["free_compute_milli"], d["free_memory_mib"]) for h in st["hosts"] for d in h["devices"]],
        sorted((le["lease_id"], le["state"]) for le in st["leases"]),
    )


BAD = [
    (
        "unknown vendor",
        lambda c: flexlab.lease("intel:0.5", owner="ana", client=c),
        InvalidRequest,
        "selector",
    ),
    ("compute > 1", lambda c: flexlab.lease("gpu:1.5", owner="ana", client=c), InvalidRequest, "compute"),
    (
        "negative memory",
        lambda c: flexlab.lease("gpu:0.5,-4GiB", owner="ana", client=c),
        InvalidRequest,
        "memory",
    ),
    (
        "profile the model lacks",
        lambda c: flexlab.lease("v100s:1g.10gb", owner="ana", client=c),
        InvalidRequest,
        "profile",
    ),
    ("bad ttl", lambda c: flexlab.lease("gpu:0.5", ttl="soon", owner="ana", client=c), InvalidRequest, "ttl"),
    (
        "ttl over the maximum",
        lambda c: flexlab.lease("gpu:0.5", ttl="30d", owner="ana", client=c),
        InvalidRequest,
        "ttl",
    ),
    (
        "never fits",
        lambda c: flexlab.lease("npu:0.5,100GiB", owner="ana", client=c),
        Unschedulable,
        "DEVICE_TOO_SMALL",
    ),
    ("task with bad spec", lambda c: flexlab.request("gpu:2").__enter__(), InvalidRequest, "compute"),
]


@pytest.mark.parametrize(("what", "call", "error", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_and_changes_nothing(
    flex: Flex, what: str, call: Any, error: type, match: str
) -> None:
    _, client = flex
    before = pool_snapshot(client)
    with pytest.raises(error, match=match):
        call(client)
    assert pool_snapshot(client) == before


def test_release_by_someone_else_is_refused(flex: Flex) -> None:
    _, client = flex
    lease = flexlab.lease("npu:0.3", owner="ana", client=client)
    before = pool_snapshot(client)
    for handler, extra in (
        ("flexlab_lease_release", {}),
        ("flexlab_lease_renew", {"ttl": "1h"}),
        ("flexlab_lease_get", {}),
    ):
        with pytest.raises(NotOwner, match="belongs to 'ana'"):
            _call(client, handler, lease_id=lease.lease_id, owner="bob", **extra)
    assert pool_snapshot(client) == before
    lease.release()
    assert lease.release()["state"] == "released"  # idempotent for its owner


def test_renew_and_expiry(flex: Flex) -> None:
    _cluster, client = flex
    lease = flexlab.lease("t4:0.5", ttl=0.5, owner="ana", client=client)
    lease.renew("1h")
    assert lease.info["ttl_left_s"] > 3000
    short = flexlab.lease("mlu:0.2", ttl=0.3, owner="ana", client=client)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and short.refresh()["state"] != "expired":
        time.sleep(0.1)
    assert short.info["state"] == "expired"
    assert any("expired" in e["message"] for e in short.events())
    lease.release()


def test_pool_state_and_explain(flex: Flex) -> None:
    _, client = flex
    pc = PoolClient(client)
    st = pc.state()
    models = sorted(d["model"] for h in st["hosts"] for d in h["devices"])
    assert models == ["a100-80gb", "ascend-910b3", "ascend-910b3", "mlu370-x8", "t4", "v100s-32gb"]
    a100 = next(d for h in st["hosts"] for d in h["devices"] if d["model"] == "a100-80gb")
    assert sorted(s["profile"] for s in a100["slices"]) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    ex = pc.explain("npu:0.5,100GiB")
    assert ex["code"] == "UNRESOLVABLE"
    # one 910B3 is too small; the other is profile-sliced and takes vNPU templates only
    assert ex["reasons"]["ascend-910b3"] == {"DEVICE_TOO_SMALL": 1, "PROFILE_UNSUPPORTED": 1}
    with pytest.raises(InvalidRequest):
        pc.explain("tpu:1")


def test_telemetry_reaches_the_pool(flex: Flex) -> None:
    _, client = flex

    def busy() -> str:
        from flexlab.mock.workloads import kernel

        kernel(work=0.4, demand=1.0)
        return where()

    with flexlab.request("mlu:1"):
        fut = client.submit(busy, pure=False)
    seen = 0.0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not fut.done():
        st = PoolClient(client).state()
        mlu = next(d for h in st["hosts"] for d in h["devices"] if d["model"] == "mlu370-x8")
        seen = max(seen, mlu["utilisation"])
        time.sleep(0.05)
    fut.result()
    assert seen > 0.5
    frames = PoolClient(client).history()
    assert frames, "the plugin records a frame every loop tick"
    assert max(f["by_model"]["mlu370-x8"][0] for f in frames) > 0.5
    assert sum(f["arrivals"].get("mlu:1", 0) for f in frames) == 1
    assert set(frames[-1]["by_vendor"]) == {"huawei", "nvidia", "cambricon"}


def test_plugin_exceptions_are_caught_and_counted(flex: Flex, fail_on_plugin_exceptions: Any) -> None:
    """The guard the whole suite relies on: an exception inside a hook is counted and logged,
    and the suite-wide fixture sees the log record (then we clear it, on purpose)."""
    cluster, _ = flex
    plugin = cluster.flex_plugin
    plugin._guard("test-hook", lambda: 1 / 0)
    assert plugin.errors == ["test-hook: ZeroDivisionError: division by zero"]
    assert any("test-hook" in r.getMessage() for r in fail_on_plugin_exceptions.records)
    plugin.errors.clear()
    fail_on_plugin_exceptions.records.clear()
