"""Workloads to run inside a task on a mock slice: a kernel, an inference server, training.

Each helper finds its slice with :func:`flexlab.mock.current_slice`, holds its memory on the
slice (``MockOutOfMemory`` beyond it), registers what it uses of the device while it
computes, and sleeps for the modelled time (see :mod:`flexlab.mock.model`) in steps of
``STEP_S``, so that telemetry sees it and contention slows it.

>>> from flexlab.mock import SliceContext, on_slice
>>> ctx = SliceContext(share_milli=250, memory_mib=8192, model_key="v100s-32gb",
...                    device_id="d0", slice_id="s0")
>>> with on_slice(ctx):
...     r = kernel(work=0.005, demand=0.5, memory="1GiB")
>>> r.used, round(r.modelled_s, 3)
(0.25, 0.02)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flexlab.core.errors import InvalidRequest
from flexlab.core.units import parse_memory
from flexlab.mock.context import current_slice
from flexlab.mock.model import MockDevice, SliceContext, duration, used_share

#: Longest sleep between two looks at contention; the last step sleeps exactly what is left.
STEP_S = 0.01


@dataclass(frozen=True)
class KernelResult:
    """What one kernel did, and where."""

    slice_id: str
    device_id: str
    model_key: str
    workload_class: str
    work: float
    demand: float
    #: The task's share of the device (its grant, or the whole slice).
    share: float
    #: ``min(share, demand)``: what it used of the device while it ran.
    used: float
    speed: float
    memory_mib: int
    #: ``work / (speed * used)``: its duration alone on the slice.
    modelled_s: float
    #: Measured wall time; longer than ``modelled_s`` only under contention or load.
    elapsed_s: float

    @property
    def device_seconds(self) -> float:
        """Device time it consumed (``used * modelled_s`` = ``work / speed``), for busy-time sums.

        Unlike ``used * elapsed_s`` it does not count time lost to contention twice.
        """
        return self.used * self.modelled_s


@dataclass(frozen=True)
class InferenceStats:
    """Latencies of a run of back-to-back requests (nearest-rank percentiles)."""

    slice_id: str
    device_id: str
    model_key: str
    requests: int
    share: float
    used: float
    memory_mib: int
    latencies_s: tuple[float, ...]
    mean_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float
    total_s: float
    throughput_rps: float


@dataclass(frozen=True)
class TrainResult:
    """Per-step times of a training loop."""

    slice_id: str
    device_id: str
    model_key: str
    steps: int
    share: float
    used: float
    memory_mib: int
    step_times_s: tuple[float, ...]
    mean_step_s: float
    total_s: float


def kernel(work: float, demand: float, memory: str | int = 0, workload_class: str = "kernel") -> KernelResult:
    """Run one kernel of ``work`` reference device-seconds that can use ``demand`` of a device.

    ``memory`` ("2GiB", or MiB) is held while it runs and freed after, also on error.
    """
    ctx, mib = _prepare(work, demand, memory, workload_class)
    device = ctx.device()
    with device.holding(ctx.slice_id, mib, slice_memory_mib=ctx.memory_mib):
        return _compute(ctx, device, work, demand, workload_class, mib)


def inference_server(
    requests: int,
    work_per_request: float,
    demand: float,
    memory: str | int = 0,
    workload_class: str = "inference",
) -> InferenceStats:
    """Serve ``requests`` back to back; the model's ``memory`` is resident throughout."""
    _check_count("requests", requests)
    ctx, mib = _prepare(work_per_request, demand, memory, workload_class)
    device = ctx.device()
    start = time.monotonic()
    with device.holding(ctx.slice_id, mib, slice_memory_mib=ctx.memory_mib):
        lat = tuple(
            _compute(ctx, device, work_per_request, demand, workload_class, 0).elapsed_s
            for _ in range(requests)
        )
    total = time.monotonic() - start
    ordered = sorted(lat)
    share = ctx.task_share
    return InferenceStats(
        slice_id=ctx.slice_id,
        device_id=ctx.device_id,
        model_key=ctx.model_key,
        requests=requests,
        share=share,
        used=used_share(share, demand),
        memory_mib=mib,
        latencies_s=lat,
        mean_s=sum(lat) / len(lat),
        p50_s=_percentile(ordered, 50),
        p95_s=_percentile(ordered, 95),
        p99_s=_percentile(ordered, 99),
        max_s=ordered[-1],
        total_s=total,
        throughput_rps=requests / total if total > 0 else math.inf,
    )


def train(
    steps: int,
    work_per_step: float,
    demand: float,
    memory: str | int = 0,
    workload_class: str = "training",
) -> TrainResult:
    """Run ``steps`` training steps; weights, optimiser state and activations (``memory``) stay resident."""
    _check_count("steps", steps)
    ctx, mib = _prepare(work_per_step, demand, memory, workload_class)
    device = ctx.device()
    start = time.monotonic()
    with device.holding(ctx.slice_id, mib, slice_memory_mib=ctx.memory_mib):
        times = tuple(
            _compute(ctx, device, work_per_step, demand, workload_class, 0).elapsed_s for _ in range(steps)
        )
    share = ctx.task_share
    return TrainResult(
        slice_id=ctx.slice_id,
        device_id=ctx.device_id,
        model_key=ctx.model_key,
        steps=steps,
        share=share,
        used=used_share(share, demand),
        memory_mib=mib,
        step_times_s=times,
        mean_step_s=sum(times) / len(times),
        total_s=time.monotonic() - start,
    )


def _prepare(work: float, demand: float, memory: str | int, workload_class: str) -> tuple[SliceContext, int]:
    """Validate the arguments (before touching the device) and find the slice."""
    if not (isinstance(workload_class, str) and workload_class):
        raise InvalidRequest("workload_class", workload_class, "a non-empty name such as 'inference'")
    mib = parse_memory(memory, field="memory")
    ctx = current_slice()
    duration(work, demand, ctx.task_share, 1.0)  # raises InvalidRequest on bad work / demand
    return ctx, mib


def _compute(
    ctx: SliceContext, device: MockDevice, work: float, demand: float, workload_class: str, mib: int
) -> KernelResult:
    share = ctx.task_share
    used = used_share(share, demand)
    speed = ctx.speed.factor(ctx.model_key, workload_class)
    rate = speed * used  # reference device-seconds of work done per second
    start = last = time.monotonic()
    with device.running(ctx.slice_id, used, slice_share_milli=ctx.share_milli) as token:
        remaining = work
        while remaining > 0:
            now_rate = rate * device.rate_factor(token)
            time.sleep(min(STEP_S, remaining / now_rate))
            now = time.monotonic()
            remaining -= (now - last) * now_rate  # measured, so oversleeping never accumulates
            last = now
    return KernelResult(
        slice_id=ctx.slice_id,
        device_id=ctx.device_id,
        model_key=ctx.model_key,
        workload_class=workload_class,
        work=work,
        demand=demand,
        share=share,
        used=used,
        speed=speed,
        memory_mib=mib,
        modelled_s=duration(work, demand, share, speed),
        elapsed_s=last - start,
    )


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(name, value, "an integer >= 1")


def _percentile(ordered: list[float], pct: float) -> float:
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
