"""The published openb protocol: shuffle, inflate to 1.3x capacity, record on a load grid.

1. Shuffle the pod list with the seed.
2. Append pods sampled uniformly with replacement from the list until the next one would
   push the total GPU request above ``ratio`` x capacity; if the list already asks for
   more, drop random pods until it does not.
3. Place pods one at a time (nothing leaves; failures are skipped).
4. After each pod, record the arrived GPU request and the allocated GPU; the value at an
   arrived load of X% is the mean over the pods whose arrived load rounds to X (or, when
   none does, to X-1..X+1), as in the reference's analysis scripts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Arrived loads (% of GPU capacity) of the published grid.
GRID = tuple(range(0, 131))
#: The loads reported by default.
REPORT_LOADS = (80, 90, 95, 100, 105, 110, 115, 120, 125, 130)
INFLATION_RATIO = 1.3


def inflate(gpu_milli: I64, capacity_milli: int, seed: int, *, ratio: float = INFLATION_RATIO) -> I64:
    """The order of pods (indices into the pod list, repeats allowed) for one seed."""
    rng = np.random.default_rng(seed)
    n = int(gpu_milli.shape[0])
    order: list[int] = [int(i) for i in rng.permutation(n)]
    total = int(gpu_milli.sum())
    target = ratio * capacity_milli
    if total < target and int(gpu_milli.max(initial=0)) > 0:
        while True:
            idx = int(rng.integers(n))
            if total + int(gpu_milli[idx]) > target:
                break
            order.append(idx)
            total += int(gpu_milli[idx])
    else:
        while total > target and order:
            k = int(rng.integers(len(order)))
            total -= int(gpu_milli[order.pop(k)])
    return np.asarray(order, dtype=np.int64)


def on_grid(arrived_milli: I64, values: F64, capacity_milli: int, grid: tuple[int, ...] = GRID) -> F64:
    """Per grid load X, the mean of ``values`` over the events whose arrived load (in % of
    capacity, rounded half to even) is X; X-1..X+1 when none is; NaN when still none."""
    load = np.round(100.0 * arrived_milli / capacity_milli)
    out = np.full(len(grid), np.nan)
    for i, x in enumerate(grid):
        sel = load == x
        if not sel.any():
            sel = (load >= x - 1) & (load <= x + 1)
        if sel.any():
            out[i] = float(values[sel].mean())
    return out
