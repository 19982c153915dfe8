"""The workload helpers on a mock slice: timing, memory, utilisation, and finding the slice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from flexlab.core.errors import FlexlabError, InvalidRequest
from flexlab.mock import (
    KernelResult,
    MockDevice,
    MockOutOfMemory,
    NotOnMockSlice,
    SliceContext,
    SpeedTable,
    context_from_env,
    current_slice,
    inference_server,
    kernel,
    on_slice,
    slice_env,
    train,
)
from flexlab.mock.env import DEVICE_ID_VAR, DEVICE_VAR, MEMORY_VAR, SHARE_VAR

MakeCtx = Callable[..., SliceContext]

#: The loop itself is accurate to about a millisecond; the slack is for a loaded 2-core machine.
SLACK_S = 0.04


def assert_timed(r: KernelResult) -> None:
    assert r.modelled_s <= r.elapsed_s + 1e-6
    assert r.elapsed_s < r.modelled_s + SLACK_S


@pytest.mark.parametrize(
    ("ctx_kwargs", "work", "demand", "workload_class", "modelled", "used"),
    [
        ({"share_milli": 250}, 0.01, 0.5, "kernel", 0.04, 0.25),
        ({"share_milli": 1000}, 0.01, 0.25, "kernel", 0.04, 0.25),
        ({"model": "a100-40gb", "share_milli": 500}, 0.024, 1.0, "kernel", 0.02, 0.5),
        ({"model": "t4"}, 0.01, 1.0, "kernel", 0.02, 1.0),
        ({"model": "ascend-910b3", "share_milli": 500}, 0.01, 0.8, "kernel", 0.02, 0.5),
        (
            {"model": "t4", "speed": SpeedTable.of({("inference", "t4"): 0.25})},
            0.005,
            0.5,
            "inference",
            0.04,
            0.5,
        ),
        ({"share_milli": 500, "granted_milli": 100}, 0.004, 0.5, "kernel", 0.04, 0.1),
    ],
    ids=["share-below-demand", "share-above-demand", "a100", "t4", "910b-fallback", "override", "grant"],
)
def test_kernel_duration_follows_the_model(
    make_ctx: MakeCtx,
    ctx_kwargs: dict[str, object],
    work: float,
    demand: float,
    workload_class: str,
    modelled: float,
    used: float,
) -> None:
    ctx = make_ctx(**ctx_kwargs)
    with on_slice(ctx):
        r = kernel(work, demand, workload_class=workload_class)
    assert r.modelled_s == pytest.approx(modelled, rel=1e-9)
    assert r.used == pytest.approx(used)
    assert r.device_seconds == pytest.approx(work / r.speed)
    assert (r.slice_id, r.model_key, r.workload_class) == ("s0", ctx.model_key, workload_class)
    assert_timed(r)


def test_kernel_sleep_is_accurate(make_ctx: MakeCtx) -> None:
    with on_slice(make_ctx()):
        r = kernel(work=0.05, demand=1.0)
    assert r.modelled_s == pytest.approx(0.05)
    assert_timed(r)


# ---------------------------------------------------------------------------- memory
def test_oom_beyond_the_slice_names_sizes(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(model="t4", memory_mib=4096)
    ctx.device().allocate("s0", 3072, slice_memory_mib=4096)  # another task on the slice
    with on_slice(ctx), pytest.raises(MockOutOfMemory) as err:
        kernel(work=0.01, demand=0.5, memory="2GiB")
    assert "tried to allocate 2048 MiB; slice has 4096 MiB total, 3072 MiB in use" in str(err.value)
    assert ctx.device().memory_used() == 3072
    assert ctx.device().running_tasks() == 0  # it never started


@pytest.mark.parametrize(
    ("call", "memory_mib"),
    [
        (lambda: kernel(0.004, 0.5, memory="1.5GiB"), 1536),
        (lambda: inference_server(3, 0.002, 0.5, memory=3000), 3000),
        (lambda: train(2, 0.002, 0.5, memory="2G"), 2048),
    ],
    ids=["kernel", "inference", "train"],
)
def test_memory_is_held_while_running_and_freed_after(
    make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch, call: Callable[[], object], memory_mib: int
) -> None:
    ctx = make_ctx()
    seen: list[int] = []
    original = MockDevice.rate_factor

    def spy(self: MockDevice, token: int) -> float:
        seen.append(self.memory_used())
        return original(self, token)

    monkeypatch.setattr(MockDevice, "rate_factor", spy)
    with on_slice(ctx):
        call()
    assert seen
    assert set(seen) == {memory_mib}
    assert (ctx.device().memory_used(), ctx.device().utilisation()) == (0, 0.0)


def test_memory_and_utilisation_are_freed_after_an_exception(
    make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx()

    def lost(self: MockDevice, token: int) -> float:
        assert self.memory_used() == 1024
        assert self.utilisation() == 0.5
        raise RuntimeError("device lost")

    monkeypatch.setattr(MockDevice, "rate_factor", lost)
    with on_slice(ctx), pytest.raises(RuntimeError, match="device lost"):
        kernel(work=0.01, demand=0.5, memory=1024)
    dev = ctx.device()
    assert (dev.memory_used(), dev.utilisation(), dev.running_tasks()) == (0, 0.0, 0)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: kernel(0.01, 0.0), "demand"),
        (lambda: kernel(-1.0, 0.5), "work"),
        (lambda: kernel(0.01, 0.5, memory="lots"), "memory"),
        (lambda: kernel(0.01, 0.5, workload_class=""), "workload_class"),
        (lambda: inference_server(0, 0.01, 0.5), "requests"),
        (lambda: train(1.5, 0.01, 0.5), "steps"),  # type: ignore[arg-type]
    ],
    ids=["demand", "work", "memory", "class", "requests", "steps"],
)
def test_bad_arguments_are_named(make_ctx: MakeCtx, call: Callable[[], object], field: str) -> None:
    with on_slice(make_ctx()), pytest.raises(InvalidRequest) as err:
        call()
    assert err.value.field == field


# ---------------------------------------------------------------------------- utilisation
def _run_together(jobs: list[tuple[SliceContext, float, float]]) -> tuple[list[KernelResult], list[float]]:
    """Run kernels in threads started together; sample the device while all run."""
    results: list[KernelResult] = []
    barrier = threading.Barrier(len(jobs) + 1)

    def one(ctx: SliceContext, work: float, demand: float) -> None:
        barrier.wait()
        with on_slice(ctx):
            results.append(kernel(work, demand))

    threads = [threading.Thread(target=one, args=job) for job in jobs]
    for t in threads:
        t.start()
    barrier.wait()
    dev = jobs[0][0].device()
    deadline = time.monotonic() + 2.0
    while dev.running_tasks() < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.001)
    samples = [dev.utilisation()] if dev.running_tasks() == len(jobs) else []
    for t in threads:
        t.join()
    return results, samples


def test_utilisation_sums_concurrent_kernels_on_one_device(make_ctx: MakeCtx) -> None:
    a = make_ctx(share_milli=500, slice_id="s0")
    b = make_ctx(share_milli=500, slice_id="s1")
    results, samples = _run_together([(a, 0.06, 0.3), (b, 0.1, 0.8)])  # each 0.2 s
    assert samples == [pytest.approx(0.8)]  # 0.3 + min(0.5, 0.8)
    for r in results:
        assert r.modelled_s == pytest.approx(0.2)
        assert_timed(r)  # no contention: slices were within the device
    assert a.device().utilisation() == 0.0


def test_ungranted_tasks_over_a_slice_cap_utilisation_and_time_share(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(share_milli=1000)
    results, samples = _run_together([(ctx, 0.14, 0.7), (ctx, 0.14, 0.7)])  # 0.2 s each alone
    assert samples == [1.0]
    for r in results:
        assert r.modelled_s == pytest.approx(0.2)
        assert r.elapsed_s > 1.25 * r.modelled_s  # 1.4x when fully overlapped
        assert r.device_seconds == pytest.approx(0.14)  # the work done, not the time waited


# ---------------------------------------------------------------------------- inference, training
def test_inference_server_reports_latencies(make_ctx: MakeCtx) -> None:
    with on_slice(make_ctx(model="a100-40gb", share_milli=500)):
        s = inference_server(requests=5, work_per_request=0.0048, demand=0.3, memory="1GiB")
    assert (s.requests, len(s.latencies_s), s.used, s.memory_mib) == (5, 5, 0.3, 1024)
    expected = 0.0048 / (2.4 * 0.3)  # 6.7 ms each
    assert min(s.latencies_s) >= expected - 1e-6
    ordered = sorted(s.latencies_s)
    assert (s.p50_s, s.p95_s, s.p99_s, s.max_s) == (ordered[2], ordered[4], ordered[4], ordered[4])
    assert s.mean_s == pytest.approx(sum(ordered) / 5)
    assert s.throughput_rps == pytest.approx(5 / s.total_s)
    assert s.total_s >= sum(s.latencies_s)


def test_train_reports_step_times(make_ctx: MakeCtx) -> None:
    with on_slice(make_ctx(share_milli=500)):
        t = train(steps=3, work_per_step=0.004, demand=0.4, memory=512)
    assert (t.steps, len(t.step_times_s), t.used) == (3, 3, 0.4)
    assert all(0.01 - 1e-6 <= x < 0.01 + SLACK_S for x in t.step_times_s)
    assert t.mean_step_s == pytest.approx(sum(t.step_times_s) / 3)


# ---------------------------------------------------------------------------- finding the slice
def test_env_round_trip(make_ctx: MakeCtx) -> None:
    env = slice_env("s7", "Tesla T4", 300, 6144, "host-b/1")
    assert env == {
        "FLEXLAB_MOCK_DEVICE": "t4",
        "FLEXLAB_MOCK_DEVICE_ID": "host-b/1",
        "FLEXLAB_MOCK_SHARE": "300",
        "FLEXLAB_MOCK_MEMORY_MIB": "6144",
        "FLEXLAB_SLICE_ID": "s7",
    }
    assert context_from_env(env) == make_ctx(
        model="t4", share_milli=300, memory_mib=6144, device_id="host-b/1", slice_id="s7"
    )
    assert context_from_env({}) is None


def test_current_slice_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in slice_env("s7", "a100-40gb", 500, 2048, "host-b/1").items():
        monkeypatch.setenv(k, v)
    ctx = current_slice()
    assert (ctx.slice_id, ctx.share_milli, ctx.model_key, ctx.granted_milli) == ("s7", 500, "a100-40gb", None)
    r = kernel(work=0.0024, demand=1.0)
    assert (r.slice_id, r.share, r.modelled_s) == ("s7", 0.5, pytest.approx(0.002))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({DEVICE_ID_VAR: None, SHARE_VAR: None}, "FLEXLAB_MOCK_DEVICE_ID, FLEXLAB_MOCK_SHARE unset"),
        ({SHARE_VAR: "a quarter"}, "invalid FLEXLAB_MOCK_SHARE: 'a quarter'"),
        ({SHARE_VAR: "0"}, "invalid share_milli: 0"),
        ({MEMORY_VAR: "4GiB"}, "invalid FLEXLAB_MOCK_MEMORY_MIB"),
        ({DEVICE_VAR: "no-such-gpu"}, "unknown device model 'no-such-gpu'"),
    ],
    ids=["partial", "share-text", "share-zero", "memory-unit", "unknown-model"],
)
def test_bad_environment_is_named(changes: dict[str, str | None], message: str) -> None:
    env = slice_env("s0", "t4", 500, 1024, "d0")
    for name, value in changes.items():
        if value is None:
            del env[name]
        else:
            env[name] = value
    with pytest.raises(FlexlabError, match=message):
        context_from_env(env)


def test_current_slice_outside_a_slice_says_how_to_get_one() -> None:
    with pytest.raises(NotOnMockSlice) as err:
        current_slice()
    text = str(err.value)
    assert "not running on a flexlab mock slice" in text
    assert "FLEXLAB_MOCK_DEVICE" in text
    assert "on_slice" in text
    with pytest.raises(NotOnMockSlice):
        kernel(work=0.01, demand=0.5)


def test_on_slice_is_scoped(make_ctx: MakeCtx) -> None:
    ctx = make_ctx()
    with on_slice(ctx):
        assert current_slice() is ctx
    with pytest.raises(NotOnMockSlice):
        current_slice()


def test_a_slice_process_without_dask_never_imports_it() -> None:
    """A mock slice process found through its variables does not pay for importing distributed."""
    code = (
        "import sys; from flexlab.mock import kernel; r = kernel(0.002, 0.5); "
        "print(r.slice_id, 'distributed' in sys.modules)"
    )
    env = {**os.environ, **slice_env("s3", "t4", 500, 1024, "d9")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["s3", "False"]
