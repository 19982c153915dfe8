"""The demo's seeded mix of AI work on the mock pool (``flexlab demo``, the dashboard's load).

* small-model inference: demand 10-30% of a device, 0.15-0.4 reference device-seconds,
  2-6 GiB, asking for ``any:<demand>`` (any accelerator, a share just above its demand);
* training steps: demand 50-100%, 0.6-1.2 device-seconds, 12-24 GiB, ``any:<demand>``;
* CPU tasks (feature preparation): plain Dask tasks.

>>> [t.kind for t in workload(5)]
['inference', 'cpu', 'inference', 'inference', 'inference']
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoTask:
    kind: str  # "inference" | "training" | "cpu"
    work: float
    demand: float
    memory_mib: int

    @property
    def request(self) -> str:
        share = min(1.0, round(self.demand + 0.05, 2))
        return f"any:{share:g},{self.memory_mib}MiB"


def workload(n: int, seed: int = 7) -> list[DemoTask]:
    """A seeded mix: 60% inference, 20% training, 20% CPU."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            out.append(
                DemoTask("inference", rng.uniform(0.15, 0.4), rng.uniform(0.1, 0.3), rng.randint(2, 6) * 1024)
            )
        elif r < 0.8:
            out.append(
                DemoTask("training", rng.uniform(0.6, 1.2), rng.uniform(0.5, 1.0), rng.randint(12, 24) * 1024)
            )
        else:
            out.append(DemoTask("cpu", rng.uniform(0.05, 0.15), 0.0, 0))
    return out


def run_task(task: DemoTask) -> dict[str, Any]:
    """Body of one demo task on a worker (mock slice or CPU)."""
    if task.kind == "cpu":
        t0 = time.monotonic()
        time.sleep(task.work)
        return {"kind": "cpu", "model": "cpu", "elapsed": time.monotonic() - t0}
    from flexlab.mock.workloads import kernel

    res = kernel(task.work, task.demand, memory=task.memory_mib, workload_class=task.kind)
    return {
        "kind": task.kind,
        "model": res.model_key,
        "elapsed": res.elapsed_s,
        "slice": res.slice_id,
        "busy": res.device_seconds,
    }
