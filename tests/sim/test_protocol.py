"""The published protocol: inflation sizes and the recording grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexlab.sim.protocol import GRID, inflate, on_grid


@settings(max_examples=50, deadline=None)
@given(
    asks=st.lists(st.sampled_from([0, 110, 470, 810, 1000, 2000, 8000]), min_size=1, max_size=60),
    capacity=st.integers(1000, 40000),
    seed=st.integers(0, 2**31),
)
def test_inflation_reaches_but_never_passes_the_target(asks: list[int], capacity: int, seed: int) -> None:
    gpu = np.array(asks, dtype=np.int64)
    order = inflate(gpu, capacity, seed)
    target = 1.3 * capacity
    total = int(gpu[order].sum())
    assert total <= target
    if gpu.sum() <= target:
        # every pod once, shuffled, then samples until the next one would pass the target
        assert sorted(order[: len(asks)].tolist()) == list(range(len(asks)))
        if gpu.max() > 0 and len(order) > len(asks):
            assert total > target - gpu.max()
    else:
        # dropped random pods until the total fits: no pod twice, and no more dropped than needed
        assert len(set(order.tolist())) == len(order) < len(asks)
        assert total > target - gpu.max()


def test_inflation_is_seeded() -> None:
    gpu = np.array([100, 200, 300, 400, 1000], dtype=np.int64)
    a, b, c = inflate(gpu, 2000, 42), inflate(gpu, 2000, 42), inflate(gpu, 2000, 43)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_inflation_of_an_exact_example() -> None:
    # 10 pods of 100 milli on 1000 milli of capacity: 3 more make 1300, the 4th would pass it
    order = inflate(np.full(10, 100, dtype=np.int64), 1000, 7)
    assert len(order) == 13
    # 20 pods of 100 on 1000: drop 7 of them
    assert len(inflate(np.full(20, 100, dtype=np.int64), 1000, 7)) == 13


def test_grid_averages_the_events_whose_load_rounds_to_each_point() -> None:
    capacity = 1000
    arrived = np.array([4, 6, 9, 11, 14, 16, 26, 31], dtype=np.int64) * 10  # loads in %: 4 6 9 11 14 16 26 31
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    out = on_grid(arrived, values, capacity, grid=(0, 1, 4, 6, 10, 14, 15, 20, 25, 30))
    assert out[0] == pytest.approx(math.nan, nan_ok=True)  # nothing in -1..1
    assert math.isnan(out[1])
    assert out[2] == 1.0  # load 4
    assert out[3] == 2.0  # load 6
    assert out[4] == pytest.approx(3.5)  # none at 10: loads 9 and 11
    assert out[5] == 5.0
    assert out[6] == pytest.approx(5.5)  # none at 15: loads 14 and 16
    assert math.isnan(out[7])
    assert out[8] == 7.0  # none at 25: load 26
    assert out[9] == 8.0


def test_grid_rounds_half_to_even_like_the_reference() -> None:
    # 0.5% rounds to 0, 1.5% and 2.5% to 2 (Python's and pandas' round); none rounds to 1,
    # so 1 averages its neighbours 0 and 2: all three events
    out = on_grid(np.array([5, 15, 25]), np.array([10.0, 20.0, 30.0]), 1000, grid=(0, 1, 2))
    assert out.tolist() == [10.0, 20.0, 25.0]


def test_grid_is_the_published_one() -> None:
    assert GRID[0] == 0
    assert GRID[-1] == 130
    assert len(GRID) == 131
