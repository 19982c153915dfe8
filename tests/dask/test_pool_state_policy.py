"""The pool state says which policy places and what it learned, and which policy placed each
slice and lease (``flexlab_dask.state``), and the REST models carry both."""

from __future__ import annotations

import pytest
from flexlab_dask.state import lease_dict, pool_state
from flexlab_jupyter import models

from flexlab.core.placement.live import LivePolicy, fixed_state
from flexlab.core.pool import SlicePool
from flexlab.core.poolstate import PoolState, SliceState, from_json
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

HOST = HostSpec("t4-h", 32_000, 128 * 1024, (DeviceSpec("t4", 0), DeviceSpec("t4", 1)))


def small_pool(live: LivePolicy) -> SlicePool:
    ticks = iter(range(100, 10**6))
    p = SlicePool(live_policy=live, clock=lambda: float(next(ticks)), carve_on_register=False)
    p.register_host(HOST)
    return p


def test_a_fixed_rule_policy_reports_what_it_placed_and_learns_nothing() -> None:
    p = small_pool(LivePolicy("binpack"))
    lease = p.create_lease(parse_request("gpu:0.5"), owner="ann", ttl_s=60)
    state = pool_state(p)
    assert state["policy"]["name"] == "binpack"
    assert state["policy"]["learns"] is False
    assert state["policy"]["observations"] == 1
    assert state["policy"]["shapes"] == []
    slices = [s for h in state["hosts"] for d in h["devices"] for s in d["slices"]]
    assert [s["policy"] for s in slices] == ["binpack"]
    assert lease_dict(p, lease)["policy"] == "binpack"
    pool = models.make_pool(PoolState.from_json(state), "ann")
    assert (pool["policy"]["name"], pool["policy"]["learns"], pool["policy"]["shapes"]) == (
        "binpack",
        False,
        [],
    )


def test_fixed_state_describes_a_pool_without_a_live_policy() -> None:
    assert fixed_state("bestfit")["name"] == "bestfit"
    assert fixed_state("bestfit")["learns"] is False


def test_the_live_policy_and_the_policy_of_each_slice_are_shown() -> None:
    p = small_pool(LivePolicy("flexlab", rebuild_every=1))
    req = parse_request("gpu:0.25")
    lease = p.create_lease(req, owner="ann", ttl_s=60)  # the pool observes it
    assert lease.slice_id is not None
    state = pool_state(p)
    assert state["policy"]["name"] == "flexlab"
    assert (state["policy"]["observations"], state["policy"]["prior_weight_left"]) == (1, 199.0)
    [s] = [s for h in state["hosts"] for d in h["devices"] for s in d["slices"]]
    assert s["policy"] == "flexlab"
    assert lease_dict(p, lease)["policy"] == "flexlab"
    pool = models.make_pool(PoolState.from_json(state), "ann")
    assert pool["policy"]["name"] == "flexlab"
    assert pool["policy"]["learns"] is True
    shares = {x["compute_milli"]: x["weight"] for x in pool["policy"]["shapes"]}
    # the prior counts as 199 requests, the one gpu:0.25 seen adds to its quarter
    expected = {1000: 0.55 * 0.995, 750: 0.2 * 0.995, 500: 0.15 * 0.995, 250: 0.1 * 0.995 + 0.005}
    assert shares == pytest.approx(expected, abs=1e-4)
    assert models.make_slice(from_json(SliceState, s))["policy"] == "flexlab"
    assert models.make_lease(lease_dict(p, lease))["policy"] == "flexlab"


def test_an_old_scheduler_without_a_policy_section_still_names_its_policy() -> None:
    pool = models.make_pool(
        PoolState.from_json({"time": 1.0, "hosts": [], "plugin": {"policy": "bestfit"}}), "ann"
    )
    assert pool["policy"]["name"] == "bestfit"
    assert pool["policy"]["observations"] == 0


def test_the_live_policy_is_read_from_dask_config() -> None:
    import dask.config
    from flexlab_dask import config

    from flexlab.core.errors import InvalidRequest

    settings = {
        "flexlab.policy": "fgd",
        "flexlab.policy-window": 50,
        "flexlab.policy-prior-weight": 10,
        "flexlab.policy-rebuild-every": 5,
    }
    with dask.config.set(settings):
        live = config.live_policy()
        assert (live.name, live.window, live.prior_weight, live.rebuild_every) == ("fgd", 50, 10.0, 5)
        assert config.live_policy("spread").name == "spread"
    with (
        dask.config.set({"flexlab.policy": "worstfit"}),
        pytest.raises(InvalidRequest, match="invalid policy"),
    ):
        config.live_policy()


def test_the_pool_state_of_a_live_pool_reads_back_unchanged() -> None:
    """What the plugin sends is what every reader gets: wire JSON -> PoolState -> the same JSON."""
    p = small_pool(LivePolicy("binpack"))
    held = p.create_lease(parse_request("t4:0.5"), owner="ann", ttl_s=60)
    p.create_lease(parse_request("t4:1"), owner="bob", ttl_s=60)
    p.create_lease(parse_request("t4:1"), owner="cy", ttl_s=60)  # no room: waits
    wire = pool_state(p)
    state = PoolState.from_json(wire)
    assert state.to_json() == {k: v for k, v in wire.items() if k != "status"}
    # ann and bob have their slices (pending until their workers are up), cy waits for room
    assert [(le.owner, le.slice_id is not None) for le in state.leases] == [
        ("ann", True),
        ("bob", True),
        ("cy", False),
    ]
    assert "UNSCHEDULABLE" in state.leases[2].reason
    [ann] = [s for _, s in state.slices() if s.owner == "ann"]
    assert (ann.lease_id, ann.compute_milli) == (held.lease_id, 500)
    assert [c.value for c in state.menu] == ["any", "gpu", "nvidia", "t4"]
    assert state.menu[0].devices == ("t4-h/t4#0", "t4-h/t4#1")
