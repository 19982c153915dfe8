"""A private lease survives a SIGKILLed pool scheduler (issue 15's rule: a scheduler killed
loses no lease and no work). Its worker runs on, joined to its owner's scheduler; the
restarted pool scheduler gets the lease back from its state file and the worker's agent
reports the worker again, so the lease is active on the same worker and work goes on."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flexlab
from flexlab.client import PoolClient
from flexlab.dask_client import open_client
from flexlab.private import close_default_private_scheduler
from tests.dask.test_processes import Procs, pool_ready, wait_for

pytestmark = pytest.mark.slow

SPEC = """
version: 1
hosts:
  - name: gpu-host
    cpu: 8
    memory: 32GiB
    devices:
      - model: t4
"""


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    p.start_scheduler()
    p.start_agent("a", SPEC)
    try:
        yield p
    finally:
        p.stop()
        close_default_private_scheduler()


def slow_square(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i * i


def test_a_private_lease_and_its_running_task_survive_a_scheduler_sigkill(procs: Procs) -> None:
    client = wait_for(lambda: open_client(procs.address, timeout="2s"), 60, "the scheduler", procs)
    wait_for(lambda: pool_ready(client, hosts=1, slices=1), 90, "the agent to register", procs)
    lease = flexlab.lease("t4:0.5", ttl="1h", owner="ana", client=client, private=True, timeout=90)
    assert lease.submit(slow_square, 3, 0.0).result(timeout=60) == 9
    worker = lease.refresh()["worker"]
    running = lease.submit(slow_square, 4, 8.0)  # runs on the private worker through the restart

    assert procs.scheduler is not None
    procs.scheduler.send_signal(signal.SIGKILL)
    procs.scheduler.wait(20)
    client.close()
    procs.start_scheduler()
    client = wait_for(lambda: open_client(procs.address, timeout="2s"), 60, "the restarted scheduler", procs)
    back = wait_for(
        lambda: [x for x in PoolClient(client).leases(owner="ana") if x["state"] == "active"],
        60,
        "the private lease to be active again",
        procs,
    )
    assert [x["lease_id"] for x in back] == [lease.lease_id]
    assert back[0]["private"] is True
    assert back[0]["worker"] == worker  # the same worker: nothing was started again
    assert running.result(timeout=60) == 16
    assert lease.submit(slow_square, 5, 0.0).result(timeout=60) == 25
    errors = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["flexlab"].errors)
    assert errors == []
    again = flexlab.Lease.attach(lease.lease_id, owner="ana", client=client)
    assert again.release()["state"] == "released"
    client.close()
