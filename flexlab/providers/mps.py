"""NVIDIA MPS: is a control daemon serving this machine, and the client limits of a slice.

With an MPS daemon, fractional slices of one GPU run their kernels concurrently, each
client capped by ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` (share of SMs, 1..100) and
``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` (device memory). Without one, slices time-share the
GPU and only the in-process cap (:mod:`flexlab.providers.memcap`) limits memory.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flexlab.providers.base import SliceBinding

DEFAULT_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"
_MPS_CONTROL = "nvidia-cuda-mps-control"


@dataclass(frozen=True)
class MpsStatus:
    """Whether an MPS control daemon serves this machine, and how we know."""

    running: bool
    pipe_directory: str
    evidence: str


def detect_mps(env: Mapping[str, str] | None = None, proc_root: str = "/proc") -> MpsStatus:
    """Look for an MPS daemon: its ``control`` pipe, or an ``nvidia-cuda-mps-control`` process."""
    source = os.environ if env is None else env
    pipe_dir = source.get("CUDA_MPS_PIPE_DIRECTORY", DEFAULT_MPS_PIPE_DIRECTORY)
    control = Path(pipe_dir) / "control"
    try:
        if stat.S_ISFIFO(control.stat().st_mode):
            return MpsStatus(True, pipe_dir, f"control pipe {control}")
    except OSError:
        pass  # no pipe there: fall through to the process scan
    try:
        entries = list(Path(proc_root).iterdir())
    except OSError as exc:
        return MpsStatus(False, pipe_dir, f"cannot scan {proc_root}: {exc}")
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue  # process ended while scanning
        if comm == _MPS_CONTROL:
            return MpsStatus(True, pipe_dir, f"{_MPS_CONTROL} running as pid {entry.name}")
    return MpsStatus(False, pipe_dir, f"no control pipe in {pipe_dir} and no {_MPS_CONTROL} process")


def mps_env(binding: SliceBinding, mps: MpsStatus) -> dict[str, str]:
    """MPS client limits for a fractional slice: thread percentage (1..100) and memory."""
    pct = max(1, min(100, math.ceil(binding.compute_milli / 10)))
    return {
        "CUDA_MPS_PIPE_DIRECTORY": mps.pipe_directory,
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(pct),
        # Device 0: the only device the worker sees once CUDA_VISIBLE_DEVICES is set.
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": f"0={binding.memory_mib}M",
    }
