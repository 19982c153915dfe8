"""GPU smoke test, run by hand on a machine with an NVIDIA GPU.

    python benchmarks/gpu_smoke.py                 # discovery, two concurrent slices, memory cap
    python benchmarks/gpu_smoke.py --seconds 20 --size 8192
    python benchmarks/gpu_smoke.py --dask tcp://127.0.0.1:8786   # also through the host agent

What it shows, with flexlab's NVIDIA provider and nothing else:

1. Discovery: the GPUs NVML reports, their catalog entries and MIG instances.
2. Two slice workers at once: two processes, each started with the environment its slice
   gets from ``NvidiaProvider.isolation_env`` (two MIG instances when the GPU is in MIG mode
   with two or more, else two halves of one GPU, MPS-limited when an MPS daemon runs),
   each capping PyTorch with ``apply_memory_cap`` and running fp16 matrix products. The
   parent samples NVML meanwhile and prints each slice's utilisation and memory, attributed
   by PID (``slice_usage``).
3. The memory cap: a worker whose slice has ``--cap-mib`` tries to allocate twice that and
   must get PyTorch's out-of-memory error, after an allocation within the cap succeeded.
4. With ``--dask SCHEDULER``: two ``gpu:0.5`` leases whose slice workers flexlab's host
   agent starts with ``isolation_env`` (see :func:`run_through_agent`, the one place to
   adapt while the runtime's API settles), each running matrix products, with NVML's
   per-slice use attributed by the workers' PIDs.

Exit status: 0 when every check passed, 1 when one failed, 2 when there is no usable GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexlab.core.catalog import CATALOG
from flexlab.providers.base import DiscoveredDevice, SliceBinding, merge_env, slice_usage
from flexlab.providers.detect import render_reports
from flexlab.providers.memcap import apply_memory_cap
from flexlab.providers.nvidia import NvidiaProvider

HERE = Path(__file__).resolve()


# -- worker side (a subprocess with its slice's environment) ---------------------------------


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def worker_matmul(seconds: float, size: int) -> int:
    """Cap memory, then run fp16 matrix products for ``seconds``; report TFLOP/s."""
    cap = apply_memory_cap()
    import torch

    _emit(event="cap", applied=list(cap.applied), skipped=list(cap.skipped), pid=os.getpid())
    dev = torch.device("cuda", 0)
    a = torch.randn(size, size, device=dev, dtype=torch.float16)
    b = torch.randn(size, size, device=dev, dtype=torch.float16)
    torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            c = a @ b
        torch.cuda.synchronize()
        done += 10
    elapsed = time.perf_counter() - start
    tflops = 2.0 * size**3 * done / elapsed / 1e12
    _emit(event="done", matmuls=done, seconds=round(elapsed, 2), tflops=round(tflops, 1),
          peak_mib=torch.cuda.max_memory_allocated() // 2**20, checksum=float(c[0, 0]))  # fmt: skip
    return 0


def worker_overalloc(cap_mib: int) -> int:
    """Allocate half the cap (must work), then twice the cap (must raise OutOfMemoryError)."""
    cap = apply_memory_cap(limit_mib=cap_mib)
    import torch

    _emit(event="cap", applied=list(cap.applied), skipped=list(cap.skipped), pid=os.getpid())
    within = torch.empty(cap_mib // 2 * 2**20, dtype=torch.uint8, device="cuda")
    _emit(event="within-cap", mib=within.numel() // 2**20)
    try:
        beyond = torch.empty(cap_mib * 2 * 2**20, dtype=torch.uint8, device="cuda")
    except torch.cuda.OutOfMemoryError as exc:
        _emit(event="refused", mib=cap_mib * 2, error=str(exc).splitlines()[0])
        return 0
    _emit(event="not-refused", mib=beyond.numel() // 2**20)
    return 1


# -- parent side -------------------------------------------------------------------------------


def pick_bindings(dev: DiscoveredDevice) -> list[SliceBinding]:
    """Two slices of one GPU: two MIG instances when there are, else two halves."""
    if len(dev.instances) >= 2:
        model = CATALOG.get(dev.model_key or "")
        bindings = []
        for inst in dev.instances[:2]:
            known = model is not None and model.has_profile(inst.profile)
            milli = model.profile_milli(model.profile(inst.profile)) if model is not None and known else 500
            bindings.append(
                SliceBinding(dev, milli, inst.memory_mib or 0, profile=inst.profile, instance=inst.uuid)
            )
        return bindings
    half = dev.memory_mib // 2 - 512  # leave room for two CUDA contexts
    return [SliceBinding(dev, 500, half), SliceBinding(dev, 500, half)]


def spawn(mode: str, env: dict[str, str], extra: Sequence[str]) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HERE), "--worker", mode, *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def events(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=600)
    found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 and err.strip():
        found.append({"event": "stderr", "text": err.strip().splitlines()[-1]})
    return found


def concurrent_matmul(prov: NvidiaProvider, bindings: list[SliceBinding], seconds: float, size: int) -> bool:
    procs = []
    for b in bindings:
        env = merge_env(os.environ, prov.isolation_env(b))
        shown = {k: v for k, v in env.items() if k.startswith(("CUDA_", "FLEXLAB_"))}
        print(f"  slice env: {shown}")
        procs.append(spawn("matmul", env, ["--seconds", str(seconds), "--size", str(size)]))
    print(f"  {'t(s)':>5}  {'slice':>5}  {'util%':>6}  {'MiB':>7}   device util% / MiB")
    t0 = time.time()
    while any(p.poll() is None for p in procs):
        time.sleep(1.0)
        report = prov.sample()
        device = next(
            (s for s in report.samples if s.instance is None and s.device == bindings[0].device.uuid), None
        )
        for i, p in enumerate(procs):
            use = slice_usage(report.samples, [p.pid])
            dev_txt = f"{device.utilization_pct} / {device.memory_used_mib}" if device else "n/a"
            util, mem = f"{use.utilization_pct}", f"{use.memory_mib}"
            print(f"  {time.time() - t0:5.1f}  {i:>5}  {util:>6}  {mem:>7}   {dev_txt}")
        for err in report.all_errors():
            print(f"    telemetry: {err.render()}")
    ok = True
    for i, p in enumerate(procs):
        evs = events(p)
        done = [e for e in evs if e["event"] == "done"]
        print(f"  slice {i}: {evs}")
        ok &= p.returncode == 0 and bool(done)
    return ok


def memory_cap_check(prov: NvidiaProvider, binding: SliceBinding, cap_mib: int) -> bool:
    capped = SliceBinding(binding.device, binding.compute_milli, cap_mib, binding.profile, binding.instance)
    proc = spawn("overalloc", merge_env(os.environ, prov.isolation_env(capped)), ["--cap-mib", str(cap_mib)])
    evs = events(proc)
    print(f"  {evs}")
    return proc.returncode == 0 and any(e["event"] == "refused" for e in evs)


def run_through_agent(address: str, prov: NvidiaProvider, gpu: DiscoveredDevice, size: int) -> bool:
    """Two ``gpu:0.5`` leases served by slice workers that flexlab's host agent starts.

    The one place to adapt while the runtime's API settles: it uses
    ``flexlab_dask.agent.HostAgent(scheduler, host, provider=..., env_for=...)``, this
    package's :class:`~flexlab.providers.binding.SliceEnvFactory` for the workers'
    environments, and ``flexlab.lease``. The scheduler must run already
    (``flexlab up --no-agent``).
    """
    try:
        from distributed import Client
        from flexlab_dask.agent import HostAgent

        import flexlab
        from flexlab.core.topology import FRACTION, DeviceSpec, HostSpec
        from flexlab.providers.binding import SliceEnvFactory
    except ImportError as exc:
        print(f"  skipped: the Dask runtime is not importable ({exc})")
        return True
    spec = DeviceSpec(gpu.model_key or "", gpu.index, gpu.uuid, FRACTION, gpu.memory_mib)
    host = HostSpec("gpu-smoke", (os.cpu_count() or 1) * 1000, 16 * 1024, (spec,))
    factory = SliceEnvFactory(prov, [gpu])
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    agent = HostAgent(address, host, provider="nvidia", processes=True, env_for=factory.env_for)
    asyncio.run_coroutine_threadsafe(agent.start(), loop).result(30)

    def matmul(n: int, seconds: float) -> dict[str, Any]:
        from flexlab.providers.memcap import apply_memory_cap

        cap = apply_memory_cap()
        import torch

        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        end, done = time.time() + seconds, 0
        while time.time() < end:
            (a @ a).sum().item()
            done += 1
        return {"pid": os.getpid(), "matmuls": done, "cap": list(cap.applied)}

    try:
        with Client(address) as client:  # type: ignore[no-untyped-call]
            leases = [flexlab.lease("gpu:0.5", ttl="15m", client=client) for _ in range(2)]
            futures = [lease.submit(matmul, size, 5.0) for lease in leases]
            time.sleep(3.0)
            report = prov.sample()
            for sid, pid in agent.worker_pids().items():
                use = slice_usage(report.samples, [pid])
                print(f"  slice {sid} (pid {pid}): util {use.utilization_pct}%  memory {use.memory_mib} MiB")
            print(f"  results: {client.gather(futures)}")
            for lease in leases:
                lease.release()
    finally:
        asyncio.run_coroutine_threadsafe(agent.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--cap-mib", type=int, default=2048)
    ap.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to slice")
    ap.add_argument("--dask", metavar="SCHEDULER", help="also run through the host agent at this scheduler")
    ap.add_argument("--worker", choices=["matmul", "overalloc"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "matmul":
        return worker_matmul(args.seconds, args.size)
    if args.worker == "overalloc":
        return worker_overalloc(args.cap_mib)

    prov = NvidiaProvider()
    report = prov.detect()
    print("1. discovery")
    print("\n".join("  " + line for line in render_reports([report])))
    gpus = [d for d in report.devices if d.index == args.gpu]
    if not gpus:
        print(f"no usable NVIDIA GPU with index {args.gpu}: {report.detail or report.status.value}")
        return 2
    bindings = pick_bindings(gpus[0])
    print(f"  MPS: {prov.mps_status().evidence}")
    print("2. two slice workers, concurrent fp16 matmul")
    ok_matmul = concurrent_matmul(prov, bindings, args.seconds, args.size)
    print("3. memory cap")
    ok_cap = memory_cap_check(prov, bindings[0], args.cap_mib)
    ok_dask = True
    if args.dask:
        print("4. through the Dask host agent")
        ok_dask = run_through_agent(args.dask, prov, gpus[0], args.size)
    verdict = {"concurrent-matmul": ok_matmul, "memory-cap": ok_cap, "dask-agent": ok_dask}
    print(f"result: {verdict}")
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
