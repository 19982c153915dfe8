"""A tiny synthetic trace in the openb format, and the real one when it is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

NODES = """sn,cpu_milli,memory_mib,gpu,model
node-0,96000,393216,8,G2
node-1,96000,393216,8,G2
node-2,104000,524288,2,T4
node-3,16000,122880,2,P100
node-4,96000,393216,8,G2
node-5,96000,393216,8,G2
"""
# 36 GPUs. Pods: CPU-only, shares, whole, two-GPU, and model-constrained ones.
PODS_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,"
    "qos,pod_phase,creation_time,deletion_time,scheduled_time"
)
POD_SHAPES = [
    (4000, 8192, 0, 0, ""),
    (3152, 16384, 1, 810, ""),
    (3152, 16384, 1, 470, ""),
    (6000, 12288, 1, 460, "T4"),
    (11300, 32768, 1, 1000, ""),
    (12000, 32768, 1, 1000, "P100|T4"),
    (24000, 65536, 2, 1000, ""),
]


def write_trace(folder: Path, n_pods: int = 42, workload: str = "tiny") -> Path:
    csv_dir = folder / "csv"
    csv_dir.mkdir(parents=True)
    (csv_dir / "openb_node_list_gpu_node.csv").write_text(NODES)
    rows = [PODS_HEADER]
    for i in range(n_pods):
        cpu, mem, num, milli, spec = POD_SHAPES[i % len(POD_SHAPES)]
        rows.append(f"pod-{i:04d},{cpu},{mem},{num},{milli},{spec},LS,Running,{i},{i + 100},{i}")
    (csv_dir / f"openb_pod_list_{workload}.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def tiny_trace(tmp_path: Path) -> Path:
    return write_trace(tmp_path / "trace")


def real_trace_dir() -> Path | None:
    env = os.environ.get("FLEXLAB_OPENB_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "traces" / "openb"
    return path if (path / "csv" / "openb_node_list_gpu_node.csv").is_file() else None


@pytest.fixture
def openb_trace() -> Path:
    path = real_trace_dir()
    if path is None:
        pytest.skip(
            "the public openb trace is absent: set FLEXLAB_OPENB_DIR or put it at ../shared/traces/openb "
            "(git clone https://github.com/alibaba/clusterdata, folder cluster-trace-gpu-v2023)"
        )
    return path
