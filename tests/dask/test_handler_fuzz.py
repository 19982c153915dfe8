"""The scheduler's flexlab API under bad input: Hypothesis calls every ``flexlab_*`` handler
(and the agents' telemetry stream) with wrong types, unknown ids, huge and negative numbers,
long and non-ASCII strings and unexpected keys. Each call gets a structured reply; a refused
call changes nothing in the pool; the plugin never raises and counts no error of its own."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from flexlab_dask import FlexScheduler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOSTS = [
    HostSpec("gpu-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("a100-80gb", 1, mode="profile"))),
    HostSpec("npu-h", 64_000, 256 * 1024, (DeviceSpec("ascend-910b3", 0),)),
]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.text(alphabet="gpu:0.5,%GiBcpuram=devices/ésü漢字\x00", max_size=40),
    st.sampled_from(["L1", "L2", "s1", "gpu-h", "npu-h", "ana", "gpu:0.5", "npu:25%,16GiB", "a100:1g.10gb"]),
    st.lists(st.text(max_size=10), max_size=5),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=4),
)


def snapshot(plugin: FlexScheduler) -> Any:
    pool = plugin.pool
    led = pool.ledger.pool
    return (
        led.dev_compute_free.tolist(),
        led.dev_mem_free.tolist(),
        sorted((k, x.state, x.expires_at, x.owner, x.priority) for k, x in pool.leases.items()),
        sorted(pool.slices),
        sorted(pool.ledger.hosts),
        {h: len(v) for h, v in pool.outbox.items()},
        len(pool.pending),
    )


@pytest.fixture(scope="module")
def plugin() -> FlexScheduler:
    p = FlexScheduler(state_file="", hi=False)
    for h in HOSTS:
        p.pool.register_host(h)
    p.pool.create_lease(parse_request("gpu:0.5"), owner="ana", ttl_s=3600)
    p.pool.create_lease(parse_request("npu:0.25"), owner="bob", ttl_s=3600)
    return p


def call(fn: Any, kwargs: dict[str, Any]) -> Any:
    out = fn(**kwargs)
    if inspect.isawaitable(out):
        out = asyncio.run(_bounded(out))
    return out


async def _bounded(aw: Any) -> Any:
    return await asyncio.wait_for(aw, 5)


def _params(fn: Any) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self",)]


HANDLERS = sorted(FlexScheduler(state_file="", hi=False).rpc_handlers())


@pytest.mark.parametrize("name", HANDLERS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_handler_answers_bad_input_with_a_structured_error_and_changes_nothing(
    plugin: FlexScheduler, name: str, data: st.DataObject
) -> None:
    fn = plugin.rpc_handlers()[name]
    names = _params(fn)
    kwargs = {n: data.draw(junk, label=n) for n in names if data.draw(st.booleans(), label=f"send {n}")}
    if data.draw(st.booleans(), label="an unexpected key"):
        kwargs[data.draw(st.sampled_from(["bogus", "op2", "ttl_s", "x" * 200]))] = data.draw(junk)
    if name == "flexlab_agent_poll":
        kwargs["timeout"] = 0.0  # never wait for commands in a unit test
    before = snapshot(plugin)
    out = call(fn, kwargs)
    assert isinstance(out, dict), out
    assert out.get("status") in ("OK", "error", "unregistered"), out
    if out["status"] == "error":
        assert out.get("error"), out
        assert out.get("message"), out
        assert snapshot(plugin) == before, f"{name}({kwargs!r}) was refused but changed the pool"
    # whatever was accepted is well-formed: owners are names, priorities integers
    for lease in plugin.pool.leases.values():
        assert isinstance(lease.owner, str), lease
        assert lease.owner
        assert isinstance(lease.priority, int), lease
        assert not isinstance(lease.priority, bool), lease
    assert plugin.errors == [], plugin.errors


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    worker=junk,
    slice_=junk,
    utilisation=junk,
    memory=junk,
)
def test_telemetry_with_bad_fields_is_ignored_without_an_error(
    plugin: FlexScheduler, worker: Any, slice_: Any, utilisation: Any, memory: Any
) -> None:
    before = snapshot(plugin)
    plugin.handle_telemetry(worker=worker, slice=slice_, utilisation=utilisation, memory_used_mib=memory)
    assert snapshot(plugin) == before
    assert plugin.errors == [], plugin.errors
