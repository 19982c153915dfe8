"""``flexlab demo``: the embedded mock pool running a mixed workload, sliced vs whole devices.

The workload (fixed, documented, seeded) mixes what shares a real accelerator pool:

* small-model inference: demand 10-30% of a device, 0.15-0.4 reference device-seconds,
  2-6 GiB, asking for ``any:<demand>`` (any accelerator, a share just above its demand);
* training steps: demand 50-100%, 0.6-1.2 device-seconds, 12-24 GiB, ``any:<demand>``;
* CPU tasks (feature preparation): plain Dask tasks on the CPU-only host.

Both runs get the same stream of tasks for the same wall-clock window and count what
completes. Sliced: flexlab places each task on a slice of the mock pool. Whole devices: the
same mock devices, one vanilla Dask worker per device with ``resources={"ACCEL": 1}`` (plus
the card's memory, so that no task is sent to a card too small for it), so each task holds
a whole card, as without flexlab. The mock performance model (design
section 6, ``docs/mock-devices.md``) is the same in both: a task runs for
``work / (speed * min(share, demand))``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flexlab.commands.logs import set_levels
from flexlab.core.errors import InvalidRequest
from flexlab.mock.mix import DemoTask, run_task, workload


@dataclass
class RunResult:
    name: str
    window_s: float
    completed: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)  # model -> sum of elapsed task time x share

    @property
    def per_minute(self) -> float:
        return self.completed * 60.0 / self.window_s


def _drive(
    client: Any,
    tasks: list[DemoTask],
    submit: Callable[[DemoTask], Any],
    name: str,
    window_s: float,
    progress: Progress | None,
) -> RunResult:
    from distributed import wait

    result = RunResult(name, window_s)
    futures = [submit(t) for t in tasks]
    pending = set(futures)
    bar = progress.add_task(name, total=window_s) if progress else None
    start = time.monotonic()
    while pending:
        left = window_s - (time.monotonic() - start)
        if left <= 0:
            break
        try:
            done, pending = wait(pending, timeout=min(0.5, left), return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        if time.monotonic() - start > window_s:
            break
        for fut in done:
            if fut.status != "finished":
                continue
            out = fut.result()
            result.completed += 1
            result.by_model[out["model"]] = result.by_model.get(out["model"], 0) + 1
            result.by_kind[out["kind"]] = result.by_kind.get(out["kind"], 0) + 1
            result.busy[out["model"]] = result.busy.get(out["model"], 0.0) + out.get("busy", 0.0)
        if progress is not None and bar is not None:
            progress.update(
                bar,
                completed=min(time.monotonic() - start, window_s),
                description=f"{name}: {result.completed} done",
            )
    if progress is not None and bar is not None:
        progress.update(bar, completed=window_s, description=f"{name}: {result.completed} done")
    client.cancel(futures)
    return result


def run_sliced(
    tasks: list[DemoTask], window_s: float, progress: Progress | None = None
) -> tuple[RunResult, Any]:
    from distributed import Client
    from flexlab_dask import FlexCluster

    import flexlab

    with FlexCluster(cpu_workers=1, threads_per_worker=4) as cluster, Client(cluster) as client:

        def submit(t: DemoTask) -> Any:
            if t.kind == "cpu":
                return client.submit(run_task, t, pure=False)
            with flexlab.request(t.request):
                return client.submit(run_task, t, pure=False)

        res = _drive(client, tasks, submit, "sliced (flexlab)", window_s, progress)
        state = flexlab.PoolClient(client).state()
    return res, state


def run_whole(tasks: list[DemoTask], window_s: float, progress: Progress | None = None) -> RunResult:
    from distributed import Client, LocalCluster
    from flexlab_dask.cluster import default_mock_pool
    from flexlab_dask.worker import worker_kwargs

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=4,
            processes=False,
            host="127.0.0.1",
            protocol="tcp://",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        workers = []
        for host in default_mock_pool():
            for dev in host.devices:
                m = dev.catalog
                cmd = {
                    "slice_id": f"whole-{host.name}-{dev.model}-{dev.index}",
                    "devices": [host.device_id(dev)],
                    "model": m.key,
                    "compute_milli": 1000,
                    "memory_mib": dev.total_memory_mib,
                    "nthreads": 1,
                    "resources": {"ACCEL": 1.0, "ACCEL_MEM": float(dev.total_memory_mib)},
                }
                kw = worker_kwargs(cmd, interval=0)  # no flexlab plugin here to report to
                workers.append(client.sync(_start_worker, cluster.scheduler_address, kw))

        def submit(t: DemoTask) -> Any:
            if t.kind == "cpu":
                return client.submit(run_task, t, pure=False)
            # Whole cards, but memory-aware, so no task lands on a card too small for it.
            return client.submit(run_task, t, resources={"ACCEL": 1, "ACCEL_MEM": t.memory_mib}, pure=False)

        res = _drive(client, tasks, submit, "whole devices (vanilla Dask)", window_s, progress)
        for w in workers:
            client.sync(w.close)
    return res


async def _start_worker(address: str, kwargs: dict[str, Any]) -> Any:
    from distributed import Worker

    return await Worker(address, host="127.0.0.1", **kwargs)


def cmd_demo(args: argparse.Namespace) -> int:
    import logging

    from flexlab.mock.model import reset_mock_devices

    if args.tasks < 1 or args.window <= 0:
        raise InvalidRequest("--tasks/--window", (args.tasks, args.window), "tasks >= 1 and a window > 0 s")
    # Workers shutting down mid-task log cancellations; the summary is what matters here.
    set_levels(logging.CRITICAL if not args.verbose else logging.INFO, ("distributed", "flexlab"))
    con = Console()
    con.print(
        "[bold]flexlab demo[/bold]: a heterogeneous mock pool (2x Ascend 910B3, V100S, A100-80GB in MIG "
        "slices, T4, Cambricon MLU370-X8, one CPU-only host) runs a mixed AI workload twice:\n"
        "  1. sliced: flexlab places each task on a fraction of a device (Dask scheduler plugin)\n"
        "  2. whole devices: vanilla Dask, every task holds a whole card (resources={'ACCEL': 1})\n"
        f"Each run gets the same {args.tasks} tasks (60% inference at 10-30% of a device, 20% training at "
        f"50-100%, 20% CPU) for {args.window:g} s. Mock devices follow a documented performance model.\n"
    )
    tasks = workload(args.tasks, seed=args.seed)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=con
    ) as progress:
        reset_mock_devices()
        sliced, state = run_sliced(tasks, args.window, progress)
        reset_mock_devices()
        whole = run_whole(tasks, args.window, progress)
    _summary(con, sliced, whole, state)
    return 0


def _summary(con: Console, sliced: RunResult, whole: RunResult, state: dict[str, Any]) -> None:
    table = Table(title=f"Tasks completed in {sliced.window_s:g} s, per device model")
    table.add_column("device model")
    table.add_column("sliced (flexlab)", justify="right")
    table.add_column("busy share", justify="right")
    table.add_column("whole devices", justify="right")
    table.add_column("busy share", justify="right")
    from flexlab_dask.cluster import default_mock_pool

    count: dict[str, int] = {}
    for h in default_mock_pool():
        for d in h.devices:
            count[d.model] = count.get(d.model, 0) + 1

    def busy(r: RunResult, m: str) -> str:
        if m == "cpu":
            return "-"
        return f"{100 * r.busy.get(m, 0.0) / (r.window_s * count.get(m, 1)):.0f}%"

    models = sorted(set(sliced.by_model) | set(whole.by_model))
    for m in models:
        table.add_row(
            m, str(sliced.by_model.get(m, 0)), busy(sliced, m), str(whole.by_model.get(m, 0)), busy(whole, m)
        )
    table.add_row(
        "[bold]total[/bold]", f"[bold]{sliced.completed}[/bold]", "", f"[bold]{whole.completed}[/bold]", ""
    )
    table.add_row("tasks per minute", f"{sliced.per_minute:.0f}", "", f"{whole.per_minute:.0f}", "")
    con.print(table)
    ratio = sliced.completed / whole.completed if whole.completed else float("inf")
    acc_s = sliced.completed - sliced.by_kind.get("cpu", 0)
    acc_w = whole.completed - whole.by_kind.get("cpu", 0)
    acc_ratio = acc_s / acc_w if acc_w else float("inf")
    for r in (sliced, whole):
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.by_kind.items()))
        con.print(f"{r.name}: {kinds}.")
    con.print(
        f"[bold]Accelerator tasks: slicing completed {acc_ratio:.2f}x those of whole-device allocation "
        f"({acc_s} vs {acc_w}); all tasks, CPU included: {ratio:.2f}x ({sliced.completed} vs "
        f"{whole.completed}).[/bold]"
    )
    con.print(
        "Why: a small model's inference uses a fifth of a card; holding the whole card idles the rest.\n"
        "Next: `flexlab up` starts a pool you can connect to; `flexlab status` shows it."
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="run a mixed AI workload on the embedded mock pool, sliced vs whole devices"
    )
    p.add_argument("--tasks", type=int, default=600, help="tasks offered to each run (default 600)")
    p.add_argument("--window", type=float, default=25.0, help="seconds each run is given (default 25)")
    p.add_argument("--seed", type=int, default=7, help="seed of the workload mix")
    p.add_argument("--verbose", action="store_true", help="show Dask's and flexlab's logs")
    p.set_defaults(func=cmd_demo)
