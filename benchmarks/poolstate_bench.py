"""Pool state benchmark: what the typed model (``flexlab/core/poolstate/``) costs.

On a live ``SlicePool`` of ``--devices`` devices (hosts of eight, five catalog models, a
lease on a part of them): the plugin's ``build_pool_state`` and ``to_json`` (in the
scheduler's event loop on every ``flexlab_pool_state`` call) and a reader's ``from_json``
(``flexlab status``, the dashboard's fetch, the REST pool). Medians of CPU time
(``time.process_time``), so that other work on the machine does not count.

    python benchmarks/poolstate_bench.py [--devices 1000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

from flexlab_dask.state import build_pool_state

from flexlab.core.errors import FlexlabError
from flexlab.core.pool import SlicePool
from flexlab.core.poolstate import PoolState
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

MODELS = ("a100-80gb", "v100s-32gb", "t4", "ascend-910b3", "mlu370-x8")
REQUESTS = ("gpu:0.25", "npu:0.5", "t4:0.5", "mlu:0.3")


def pool_of(devices: int) -> SlicePool:
    p = SlicePool()
    for h in range(devices // 8):
        specs = tuple(DeviceSpec(MODELS[(h + i // 2) % len(MODELS)], i) for i in range(8))
        p.register_host(HostSpec(f"node-{h:04d}", 64000, 262144, specs))
    for i in range(devices * 3 // 10):
        with contextlib.suppress(FlexlabError):  # a full pool: what is placed is enough to measure
            p.create_lease(parse_request(REQUESTS[i % 4]), owner=f"user{i % 7}", ttl_s=3600)
    return p


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(1000 * (time.process_time() - t0))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    p = pool_of(args.devices)
    state = build_pool_state(p)
    wire = state.to_json()
    text = json.dumps(wire)
    print(
        f"{sum(1 for _ in state.devices())} devices, {len(p.slices)} slices, {len(state.leases)} leases; "
        f"wire JSON {len(text) / 1e6:.2f} MB"
    )
    print(f"  build_pool_state  {cpu_ms(lambda: build_pool_state(p), args.repeat):6.1f} ms")
    print(f"  to_json           {cpu_ms(state.to_json, args.repeat):6.1f} ms")
    print(f"  json.dumps        {cpu_ms(lambda: json.dumps(wire), args.repeat):6.1f} ms")
    print(f"  from_json         {cpu_ms(lambda: PoolState.from_json(wire), args.repeat):6.1f} ms")


if __name__ == "__main__":
    main()
