"""Load Alibaba's public openb trace (cluster-trace-gpu-v2023) into the core's arrays.

The trace is read from a directory given by the caller, never copied into the project:
either the repository's ``cluster-trace-gpu-v2023`` folder, its ``csv/`` folder, or any
folder holding ``openb_node_list_gpu_node.csv`` and ``openb_pod_list_<workload>.csv``.

GPU memory is not part of the trace, so devices get an untracked memory size and requests
ask for memory proportional to their compute (it never binds).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from flexlab.core.catalog import CATALOG, OPENB_MODELS
from flexlab.core.request import Selector, SliceRequest
from flexlab.core.snapshot import WHOLE, PoolArrays
from flexlab.core.topology import DeviceSpec, HostSpec

I64 = npt.NDArray[np.int64]

NODE_FILE = "openb_node_list_gpu_node.csv"
POD_PREFIX = "openb_pod_list_"
#: The 17 workloads of the published results (experiments/run_scripts of the reference).
PUBLISHED_WORKLOADS = (
    "default",
    "cpu050",
    "cpu100",
    "cpu200",
    "cpu250",
    "gpushare40",
    "gpushare60",
    "gpushare80",
    "gpushare100",
    "gpuspec10",
    "gpuspec20",
    "gpuspec25",
    "gpuspec33",
    "multigpu20",
    "multigpu30",
    "multigpu40",
    "multigpu50",
)
DOWNLOAD_HINT = (
    "download the public trace: git clone https://github.com/alibaba/clusterdata and pass "
    "--trace-dir clusterdata/cluster-trace-gpu-v2023 (the folder with csv/openb_node_list_gpu_node.csv)"
)
#: Device memory the trace does not model: large enough never to bind, and a multiple of
#: 1000 so that shares proportional to compute divide it exactly (no rounding left over).
UNTRACKED_MEMORY_MIB = 10**12


class TraceNotFound(FileNotFoundError):
    """The trace directory or one of its files is missing; the message says how to get it."""


def csv_dir(trace_dir: str | Path) -> Path:
    """The folder holding the CSV files, given the trace folder or the CSV folder itself."""
    base = Path(trace_dir).expanduser()
    for cand in (base, base / "csv"):
        if (cand / NODE_FILE).is_file():
            return cand
    raise TraceNotFound(f"no {NODE_FILE} under {base} (nor {base / 'csv'}); {DOWNLOAD_HINT}")


def available_workloads(trace_dir: str | Path) -> list[str]:
    """Workload names found in the trace folder (``default``, ``cpu050``, ...)."""
    return sorted(p.stem.removeprefix(POD_PREFIX) for p in csv_dir(trace_dir).glob(f"{POD_PREFIX}*.csv"))


def _node_rows(trace_dir: str | Path, hosts: int | None) -> list[dict[str, str]]:
    path = csv_dir(trace_dir) / NODE_FILE
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return rows if hosts is None else rows[:hosts]


def load_nodes(trace_dir: str | Path, *, hosts: int | None = None) -> PoolArrays:
    """The 1,213 GPU nodes as a pool: one host per node, one device per GPU (``hosts``:
    only the first that many nodes of the list, a smaller cluster)."""
    rows = _node_rows(trace_dir, hosts)
    keys: list[str] = []
    for r in rows:
        key = OPENB_MODELS[r["model"]]
        if key not in keys:
            keys.append(key)
    model_of = {k: i for i, k in enumerate(keys)}
    gpus = np.array([int(r["gpu"]) for r in rows], dtype=np.int64)
    cpu = np.array([int(r["cpu_milli"]) for r in rows], dtype=np.int64)
    mem = np.array([int(r["memory_mib"]) for r in rows], dtype=np.int64)
    dev_host = np.repeat(np.arange(len(rows)), gpus).astype(np.int32)
    host_model = np.array([model_of[OPENB_MODELS[r["model"]]] for r in rows], dtype=np.int32)
    n_dev = int(gpus.sum())
    dev_mem = np.full(n_dev, UNTRACKED_MEMORY_MIB, dtype=np.int64)
    return PoolArrays(
        host_names=[r["sn"] for r in rows],
        host_cpu_total=cpu,
        host_cpu_free=cpu.copy(),
        host_mem_total=mem,
        host_mem_free=mem.copy(),
        host_dev_start=np.concatenate(([0], np.cumsum(gpus))).astype(np.int64),
        dev_host=dev_host,
        dev_model=host_model[dev_host],
        dev_compute_free=np.full(n_dev, WHOLE, dtype=np.int64),
        dev_mem_total=dev_mem,
        dev_mem_free=dev_mem.copy(),
        dev_schedulable=np.ones(n_dev, dtype=np.bool_),
        model_keys=keys,
        model_kind=[CATALOG[k].kind for k in keys],
        model_vendor=[CATALOG[k].vendor for k in keys],
        model_granularity=[1 for _ in keys],
    )


def load_host_specs(trace_dir: str | Path, *, hosts: int | None = None) -> list[HostSpec]:
    """The nodes as the hosts a host agent would register (node-list order), with the
    devices ``load_nodes`` gives the simulator: the trace's model mapped to the catalog
    (``OPENB_MODELS``) and the same untracked device memory, so that both decide alike."""
    return [
        HostSpec(
            name=r["sn"],
            cpu_milli=int(r["cpu_milli"]),
            memory_mib=int(r["memory_mib"]),
            devices=tuple(
                DeviceSpec(model=OPENB_MODELS[r["model"]], index=i, memory_mib=UNTRACKED_MEMORY_MIB)
                for i in range(int(r["gpu"]))
            ),
        )
        for r in _node_rows(trace_dir, hosts)
    ]


@dataclass(frozen=True)
class PodTable:
    """A workload: one row per pod, as indices into its distinct request shapes."""

    workload: str
    names: list[str]
    #: Index into ``requests`` per pod.
    shape: I64
    requests: list[SliceRequest]
    #: GPU milli each pod asks for in all (``num_gpu * gpu_milli``), per pod.
    gpu_milli: I64

    def __len__(self) -> int:
        return len(self.names)


def _request(cpu: int, mem: int, num: int, milli: int, spec: str) -> SliceRequest:
    if num == 0:
        return SliceRequest(compute_milli=0, host_cpu_milli=cpu, host_memory_mib=mem, workload_class="cpu")
    models = frozenset(OPENB_MODELS[m] for m in spec.split("|") if m)
    return SliceRequest(
        selector=Selector(kinds=frozenset({"gpu"}), models=models),
        compute_milli=milli,
        devices=num,
        host_cpu_milli=cpu,
        host_memory_mib=mem,
        workload_class="gpu-share" if milli < WHOLE else "gpu-whole",
    )


def load_pods(trace_dir: str | Path, workload: str) -> PodTable:
    """``openb_pod_list_<workload>.csv`` as a ``PodTable`` (file order)."""
    path = csv_dir(trace_dir) / f"{POD_PREFIX}{workload}.csv"
    if not path.is_file():
        raise TraceNotFound(
            f"no workload {workload!r} in {path.parent} (have: {', '.join(available_workloads(trace_dir))})"
        )
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    index: dict[tuple[int, int, int, int, str], int] = {}
    requests: list[SliceRequest] = []
    shape = np.empty(len(rows), dtype=np.int64)
    gpu = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        num = int(r["num_gpu"])
        milli = int(r["gpu_milli"]) if num else 0
        key = (int(r["cpu_milli"]), int(r["memory_mib"]), num, milli, (r.get("gpu_spec") or "").strip())
        j = index.get(key)
        if j is None:
            j = index[key] = len(requests)
            requests.append(_request(*key))
        shape[i] = j
        gpu[i] = num * milli
    return PodTable(workload, [r["name"] for r in rows], shape, requests, gpu)
