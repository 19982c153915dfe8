"""apply()/release(): the one place the simulator writes decisions into a pool."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexlab.core.placement import Code, Decision, Status, apply, make_profile, place, release
from flexlab.core.placement.testing import Req, Sel, tiny_pool

requests = st.one_of(
    st.builds(Req, compute_milli=st.integers(1, 1000), host_cpu_milli=st.integers(0, 6000)),
    st.builds(
        Req,
        selector=st.just(Sel(models=frozenset({"t4"}))),
        compute_milli=st.just(1000),
        devices=st.integers(1, 2),
        host_cpu_milli=st.integers(0, 3000),
    ),
    st.builds(
        Req,
        compute_milli=st.just(0),
        host_cpu_milli=st.integers(1, 20000),
        host_memory_mib=st.integers(0, 9000),
    ),
)


@settings(max_examples=40, deadline=None)
@given(
    reqs=st.lists(requests, min_size=1, max_size=30),
    policy=st.sampled_from(["firstfit", "bestfit", "spread"]),
)
def test_placed_decisions_never_overcommit_and_release_restores(reqs: list[Req], policy: str) -> None:
    pool = tiny_pool()
    original = pool.copy()
    profile = make_profile(policy)
    applied = []
    for req in reqs:
        d = place(req, pool, profile)
        if d.ok:
            apply(pool, d)
            applied.append(d)
        else:
            assert d.status.code in (Code.UNSCHEDULABLE, Code.UNRESOLVABLE)
        for arr in (pool.dev_compute_free, pool.dev_mem_free, pool.host_cpu_free, pool.host_mem_free):
            assert (arr >= 0).all()
        assert (pool.dev_compute_free <= 1000).all()
    for d in reversed(applied):
        release(pool, d)
    for name in ("host_cpu_free", "host_mem_free", "dev_compute_free", "dev_mem_free"):
        assert np.array_equal(getattr(pool, name), getattr(original, name)), name


def test_apply_refuses_failed_and_profile_decisions() -> None:
    pool = tiny_pool()
    with pytest.raises(ValueError, match="failed decision"):
        apply(pool, Decision(Status(Code.UNSCHEDULABLE)))
    mig = place(Req(profile="1g.10gb", compute_milli=0), pool, make_profile("firstfit"))
    assert mig.ok
    with pytest.raises(ValueError, match="Ledger"):
        apply(pool, mig)


def test_apply_subtracts_exactly_the_decision() -> None:
    pool = tiny_pool()
    d = place(
        Req(compute_milli=250, host_cpu_milli=1500, host_memory_mib=2048), pool, make_profile("firstfit")
    )
    apply(pool, d)
    assert (int(pool.dev_compute_free[0]), int(pool.dev_mem_free[0])) == (750, 15360 - 3840)
    assert (int(pool.host_cpu_free[0]), int(pool.host_mem_free[0])) == (14500, 65536 - 2048)
