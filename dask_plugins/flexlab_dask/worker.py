"""Slice workers: one Dask worker per slice, pinned to it, reporting its telemetry.

A slice worker offers the slice's capacity as Dask resources (``flexlab-slice-<id>`` in
compute milli, against which a task's memory counts too, and ``flexlab-lease-<id>`` for a
lease's slice), so Dask itself keeps concurrent tasks inside the slice. Its process environment pins
it to the slice (the vendor's visibility and limit variables; for mock devices, the mock's
own ``FLEXLAB_MOCK_*`` variables). ``SliceWorkerPlugin`` reports utilisation and memory to
the scheduler once a second over the worker's batched stream.

The worker of a private lease joins its owner's scheduler instead (``flexlab_dask.private``):
it reports to its host agent instead, which relays to the pool (``--report-fd``: one JSON
line per message on a pipe the agent reads: ``ready`` with the worker's address once it
joined, then ``telemetry``).

Run one by hand (the host agent does this)::

    python -m flexlab_dask tcp://127.0.0.1:8786 --slice '{"slice_id": "s1", ...}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from distributed import Worker, WorkerPlugin

from flexlab.mock.model import SliceContext

logger = logging.getLogger("flexlab.worker")

PLUGIN_NAME = "flexlab-slice"
NAME_PREFIX = "flexlab-slice-"
#: Where a private lease's worker sends its messages (``ready``, ``telemetry``) for its agent.
Report = Callable[[dict[str, Any]], None]


class SliceWorkerPlugin(WorkerPlugin):
    """Knows the worker's slice and reports its telemetry to the scheduler."""

    name: ClassVar[str] = PLUGIN_NAME

    def __init__(
        self,
        slice_spec: dict[str, Any],
        *,
        provider: str = "mock",
        interval: float = 1.0,
        env: dict[str, str] | None = None,
        report: Report | None = None,
    ) -> None:
        self.slice = dict(slice_spec)
        #: None: telemetry goes to the scheduler; else to this (a private lease's agent).
        self.report = report
        self.slice_id = str(slice_spec["slice_id"])
        self.provider = provider
        self.interval = interval
        #: The variables that pin this slice (in-process workers cannot set os.environ per slice).
        self.env = dict(env or {})
        self.context: SliceContext | None = None
        if provider == "mock":
            self.context = SliceContext(
                share_milli=int(slice_spec["compute_milli"]),
                memory_mib=int(slice_spec["memory_mib"]),
                model_key=str(slice_spec["model"]),
                device_id=str(slice_spec["devices"][0]),
                slice_id=self.slice_id,
            )
        self._task: asyncio.Task[None] | None = None
        self.worker: Worker | None = None
        self.samples = 0

    async def setup(self, worker: Worker) -> None:
        self.worker = worker
        worker.handlers["flexlab_retag"] = self.retag
        if self.interval > 0:  # 0: no reporting (a scheduler without the flexlab plugin)
            self._task = asyncio.create_task(self._report_loop())

    async def retag(self, resources: dict[str, float], drop: list[str]) -> str:
        """The slice is handed to another lease (recycled): offer ``resources`` and no
        longer ``drop`` (set to 0, so that no task of the ended lease runs here), here and
        in the scheduler's view of this worker."""
        w = self.worker
        assert w is not None
        st = w.state
        for r in drop:
            st.available_resources[r] = st.available_resources.get(r, 0.0) - st.total_resources.get(r, 0.0)
            st.total_resources[r] = 0.0
        for r, amount in resources.items():
            q = float(amount)
            st.available_resources[r] = st.available_resources.get(r, 0.0) + q - st.total_resources.get(r, 0)
            st.total_resources[r] = q
        await w.scheduler.set_resources(resources=dict(st.total_resources), worker=w.contact_address)
        return "OK"

    async def teardown(self, worker: Worker) -> None:
        if self._task is not None:
            self._task.cancel()

    def sample(self) -> tuple[float, int]:
        """(utilisation of the slice 0..1, device memory in use MiB)."""
        if self.context is not None:
            readout = self.context.device().readout()
            for s in readout.slices:
                if s.slice_id == self.slice_id:
                    share = max(self.context.share, 1e-9)
                    return min(1.0, s.utilisation / share), s.memory_used_mib
            return 0.0, 0
        return self._sample_hardware()

    def _sample_hardware(self) -> tuple[float, int]:
        from flexlab_dask.telemetry import sample_slice

        return sample_slice(self.provider, self.slice, self.env)

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            w = self.worker
            to_stream = self.report is None
            if w is None or (to_stream and (w.batched_stream is None or w.batched_stream.comm is None)):
                continue
            try:
                util, mem = self.sample()
            except Exception:  # a bad reading is reported, never fatal to the worker
                logger.exception("flexlab: telemetry of slice %s failed", self.slice_id)
                continue
            self.samples += 1
            msg = {"slice": self.slice_id, "utilisation": util, "memory_used_mib": mem}
            if self.report is not None:
                self.report({"op": "telemetry", **msg})
            else:
                w.batched_stream.send({"op": "flexlab-telemetry", **msg})


def worker_kwargs(
    cmd: dict[str, Any],
    *,
    provider: str = "mock",
    interval: float = 1.0,
    env: dict[str, str] | None = None,
    report: Report | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``distributed.Worker`` for one StartSlice command (``report``:
    a private lease's worker sends its telemetry there)."""
    spec = {k: v for k, v in cmd.items() if k != "private"}  # never the credentials
    return {
        "nthreads": int(cmd.get("nthreads", 4)),
        "resources": {k: float(v) for k, v in cmd["resources"].items()},
        "name": f"{NAME_PREFIX}{cmd['slice_id']}",
        "plugins": (SliceWorkerPlugin(spec, provider=provider, interval=interval, env=env, report=report),),
        "dashboard": False,
        # Dask's HTTP routes of the worker (health, metrics: plain, unauthenticated HTTP) stay
        # on loopback even where the worker listens on the network for the scheduler.
        "dashboard_address": "127.0.0.1:0",
    }


async def _watch_agent(agent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the agent that started this worker is gone (its process died: this
    worker is re-parented). A slice worker never outlives its agent: the scheduler then sees
    the slice lost at once, and a restarted agent starts what the pool asks for afresh."""
    while os.getppid() == agent_pid:
        await asyncio.sleep(0.5)
    logger.warning("flexlab: the agent (pid %d) of this slice worker is gone; stopping", agent_pid)
    stop.set()


async def _run(
    scheduler: str,
    cmd: dict[str, Any],
    provider: str,
    host: str,
    interval: float,
    tls: str | None = None,
    agent_pid: int | None = None,
    report_fd: int | None = None,
) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith(("FLEXLAB_", "CUDA_", "ASCEND_", "MLU_"))}
    report = _fd_report(report_fd) if report_fd is not None else None
    if provider != "mock":
        from flexlab.providers.memcap import apply_memory_cap

        result = apply_memory_cap()
        logger.info("flexlab: slice %s memory cap: %s", cmd["slice_id"], result)
    kwargs = worker_kwargs(cmd, provider=provider, interval=interval, env=env, report=report)
    if tls:
        from flexlab.tls import pool_security

        kwargs["security"] = pool_security(tls, worker="worker")
    stop = asyncio.Event()
    logging.getLogger("distributed.worker").addFilter(_QuietStop(stop))
    # Watched from the start: an agent that dies while this worker connects is seen too.
    watch = asyncio.create_task(_watch_agent(agent_pid, stop)) if agent_pid else None
    try:
        async with Worker(scheduler, host=host, **kwargs) as w:
            if report is not None:
                report({"op": "ready", "worker": w.address})
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            closed = asyncio.create_task(w.finished())
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({closed, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if watch is not None:
            watch.cancel()


class _QuietStop(logging.Filter):
    """While the worker stops on purpose (its agent's SIGTERM), a heartbeat already in flight
    fails when the scheduler drops the closing worker's connection, and distributed logs that
    at ERROR with a traceback in the operator's terminal. Dropped then; never before."""

    def __init__(self, stopping: asyncio.Event) -> None:
        super().__init__()
        self.stopping = stopping

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            self.stopping.is_set()
            and record.getMessage().startswith("Failed to communicate with scheduler during heartbeat")
        )


def _fd_report(fd: int) -> Report:
    """Messages as JSON lines on the pipe ``fd`` (a private lease's agent reads it)."""
    stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def report(msg: dict[str, Any]) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):  # the agent is gone: _watch_agent stops us
            stream.write(json.dumps(msg) + "\n")

    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flexlab_dask", description=__doc__)
    parser.add_argument("scheduler", help="scheduler address, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("--slice", required=True, help="the StartSlice command as JSON")
    parser.add_argument("--provider", default="mock")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--interval", type=float, default=1.0, help="telemetry interval in seconds")
    parser.add_argument(
        "--tls", metavar="DIR", default=None, help="mutual TLS with the worker certificate in DIR"
    )
    parser.add_argument(
        "--agent-pid",
        type=int,
        default=None,
        help="stop when this process (the host agent that started the worker) is gone",
    )
    parser.add_argument(
        "--report-fd",
        type=int,
        default=None,
        help="a private lease's worker: write ready and telemetry as JSON lines to this pipe",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(
        _run(
            args.scheduler,
            json.loads(args.slice),
            args.provider,
            args.host,
            args.interval,
            args.tls,
            args.agent_pid,
            args.report_fd,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
