"""The MIG layout planner: table of real layouts, and a property against the core's rules."""

from __future__ import annotations

from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexlab.core.catalog import CATALOG
from flexlab.core.slicing import Layout, find_start, is_valid
from flexlab.providers.base import DeviceInstance, DiscoveredDevice, PartitionMode
from flexlab.providers.mig import MigRefusal, existing_layout, plan_mig_layout

A100 = CATALOG["a100-80gb"]


@pytest.mark.parametrize(
    ("model", "wanted", "existing", "placed", "refusal"),
    [
        ("a100-80gb", ["7g.80gb"], (), [("7g.80gb", 0)], None),
        (
            "a100-80gb",
            ["3g.40gb", "4g.40gb"],
            (),
            [("4g.40gb", 0), ("3g.40gb", 4)],
            None,
        ),
        ("a100-80gb", ["4g.40gb", "3g.40gb"], (), [("4g.40gb", 0), ("3g.40gb", 4)], None),
        (
            "a100-80gb",
            ["1g.10gb", "4g.40gb", "2g.20gb"],
            (),
            [("4g.40gb", 0), ("2g.20gb", 4), ("1g.10gb", 6)],
            None,
        ),
        ("a100-80gb", ["1g.10gb"] * 7, (), [("1g.10gb", s) for s in range(7)], None),
        ("a100-80gb", ["1g.10gb"] * 8, (), [], MigRefusal.OVER_COMPUTE),
        ("a100-80gb", ["1g.20gb"] * 4, (), [("1g.20gb", s) for s in (0, 2, 4, 6)], None),
        (
            "a100-80gb",
            ["2g.20gb"] * 3 + ["1g.10gb"],
            (),
            [("2g.20gb", 0), ("2g.20gb", 2), ("2g.20gb", 4), ("1g.10gb", 6)],
            None,
        ),
        ("a100-80gb", ["3g.40gb", "3g.40gb", "1g.10gb"], (), [], MigRefusal.NO_ARRANGEMENT),
        ("a100-80gb", ["4g.40gb"], (("1g.10gb", 0),), [], MigRefusal.NO_ARRANGEMENT),
        ("a100-80gb", ["4g.40gb", "2g.20gb"], (("1g.10gb", 6),), [("4g.40gb", 0), ("2g.20gb", 4)], None),
        ("a100-80gb", ["3g.40gb"], (("1g.10gb", 1), ("1g.10gb", 5)), [], MigRefusal.NO_ARRANGEMENT),
        (
            "a100-40gb",
            ["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"],
            (),
            # First fit (3g at slice 0) strands the last 1g at slice 7, which no 1g may use.
            [("3g.20gb", 4), ("2g.10gb", 0), ("1g.5gb", 2), ("1g.5gb", 3)],
            None,
        ),
        (
            "h100-80gb",
            ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"],
            (),
            [("3g.40gb", 4), ("2g.20gb", 0), ("1g.10gb", 2), ("1g.10gb", 3)],
            None,
        ),
        (
            "h100-80gb",
            ["3g.40gb", "2g.20gb", "1g.10gb"],
            (),
            [("3g.40gb", 0), ("2g.20gb", 4), ("1g.10gb", 6)],
            None,
        ),
        ("a100-80gb", ["9g.1gb"], (), [], MigRefusal.UNKNOWN_PROFILE),
        ("a100-80gb", ["1g.10gb"], (("4g.40gb", 4),), [], MigRefusal.INVALID_EXISTING),
        ("a100-80gb", ["1g.10gb"], (("1g.10gb", -1),), [], MigRefusal.INVALID_EXISTING),
        ("t4", ["1g.5gb"], (), [], MigRefusal.NOT_MIG_CAPABLE),
        ("ascend-910b3", ["vir05_1c_16g"], (), [], MigRefusal.NOT_MIG_CAPABLE),
    ],
    ids=[
        "whole",
        "order-free",
        "4g-then-3g",
        "mixed-needs-order",
        "seven-1g",
        "eight-1g",
        "four-1g.20gb",
        "three-2g-one-1g",
        "3g-3g-1g",
        "1g-at-0-blocks-4g",
        "around-1g-at-6",
        "fragmented",
        "a100-40-needs-backtracking",
        "h100-needs-backtracking",
        "h100-3-2-1",
        "unknown-profile",
        "existing-bad-start",
        "existing-unknown-start",
        "t4",
        "ascend",
    ],
)
def test_plan_mig_layout(
    model: str, wanted: list[str], existing: Layout, placed: list[tuple[str, int]], refusal: MigRefusal | None
) -> None:
    plan = plan_mig_layout(CATALOG[model], wanted, existing)
    assert plan.refusal is refusal, plan.detail
    if refusal is None:
        assert [(p.profile, p.start) for p in plan.placements] == placed
        assert is_valid(CATALOG[model], existing + tuple(placed))
    else:
        assert plan.placements == ()
        assert plan.detail


def test_refusal_says_which_limit() -> None:
    assert plan_mig_layout(A100, ["2g.20gb"] * 4).detail == "needs 8 compute slices, a100-80gb has 7"
    detail = plan_mig_layout(A100, ["4g.40gb"], (("1g.10gb", 0),)).detail
    assert detail == "no placement of 4g.40gb on a100-80gb (1 of 8 memory slices in use)"


def test_existing_layout_of_a_discovered_gpu() -> None:
    dev = DiscoveredDevice(
        "nvidia",
        "gpu",
        "NVIDIA A100-SXM4-80GB",
        "a100-80gb",
        0,
        "GPU-1",
        81920,
        PartitionMode.MIG,
        (DeviceInstance("3g.40gb", "MIG-a", 2, 40192, 0), DeviceInstance("1g.10gb", "MIG-b", 9, 9856, 6)),
    )
    assert existing_layout(dev) == (("3g.40gb", 0), ("1g.10gb", 6))
    plan = plan_mig_layout(A100, ["2g.20gb"], existing_layout(dev))
    assert [(p.profile, p.start) for p in plan.placements] == [("2g.20gb", 4)]


def _greedy_fits(wanted: list[str], existing: Layout) -> bool:
    """The core's first-fit in some order: a sound (not complete) test that a layout exists."""
    for order in set(permutations(wanted)):
        layout = existing
        for name in order:
            start = find_start(A100, layout, A100.profile(name))
            if start is None:
                break
            layout = (*layout, (name, start))
        else:
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(
    wanted=st.lists(st.sampled_from([p.name for p in A100.profiles]), min_size=1, max_size=5),
    first=st.sampled_from([(), (("1g.10gb", 0),), (("1g.10gb", 3),), (("2g.20gb", 2),), (("3g.40gb", 4),)]),
)
def test_plans_are_valid_and_refusals_are_real(wanted: list[str], first: Layout) -> None:
    plan = plan_mig_layout(A100, wanted, first)
    if plan.ok:
        layout = first + tuple((p.profile, p.start) for p in plan.placements)
        assert is_valid(A100, layout)
        assert sorted(p.profile for p in plan.placements) == sorted(wanted)
    else:
        assert plan.refusal in (MigRefusal.OVER_COMPUTE, MigRefusal.NO_ARRANGEMENT)
        assert not _greedy_fits(wanted, first)
