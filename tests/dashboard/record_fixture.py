"""Record the dashboard's test fixture from a real embedded pool (``FlexCluster``).

Run from the repository root when the wire format changes::

    .venv/bin/python -m tests.dashboard.record_fixture

The scenario is fixed so that every panel has something to show: alice leases a vNPU
template and runs work on it, bob leases half of the V100S, dave asks for the whole V100S
(his lease waits, and so do two tasks asking for it), and the demo workload keeps the rest
busy. The pool state and the history frames are written to ``data/pool_telemetry.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

OUT = Path(__file__).parent / "data" / "pool_telemetry.json"


def _busy(seconds: float) -> str:
    from flexlab.mock.workloads import kernel

    kernel(work=seconds * 0.25, demand=1.0, memory="2GiB")
    return "done"


def record(path: Path = OUT, seconds: float = 8.0) -> dict[str, object]:
    from distributed import Client
    from flexlab_dask import FlexCluster

    import flexlab
    from flexlab.mock.mix import run_task, workload

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with FlexCluster(cpu_workers=1, threads_per_worker=2) as cluster, Client(cluster) as client:
        pool = flexlab.PoolClient(client)
        alice = flexlab.lease("npu:vir05_1c_16g", owner="alice", ttl="10m", client=client)
        bob = flexlab.lease("v100s-32gb:0.5", owner="bob", ttl="10m", client=client)
        dave = flexlab.lease("v100s-32gb:1", owner="dave", ttl="10m", client=client, wait=False)
        futures = [alice.submit(_busy, seconds, pure=False)]
        with flexlab.request("v100s-32gb:1"):
            futures += [
                client.submit(run_task, t, pure=False) for t in workload(2, seed=1) if t.kind != "cpu"
            ]
        for t in workload(40, seed=3):
            if t.kind == "cpu":
                futures.append(client.submit(run_task, t, pure=False))
                continue
            with flexlab.request(t.request):
                futures.append(client.submit(run_task, t, pure=False))
            time.sleep(0.1)
        time.sleep(max(0.0, seconds - 4.0))
        state = pool.state()
        frames = pool.history()
        client.cancel(futures)
        for le in (alice, bob, dave):
            le.release()
    doc = {
        "recorded": "tests/dashboard/record_fixture.py from a FlexCluster (default mock pool)",
        "state": state,
        "frames": frames,
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    return doc


if __name__ == "__main__":
    d = record()
    st = d["state"]
    assert isinstance(st, dict)
    print(
        f"wrote {OUT}: {sum(len(h['devices']) for h in st['hosts'])} devices, {len(st['leases'])} leases, "
        f"{len(st['waiting'])} waiting tasks, {len(st['events'])} events, {len(d['frames'])} frames"  # type: ignore[arg-type]
    )
