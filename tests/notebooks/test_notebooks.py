"""The demo notebooks: committed without outputs, and each one runs from top to bottom.

Each notebook connects to ``$FLEXLAB_SCHEDULER`` when it is set, else starts its own embedded
mock pool; these tests run them the second way (``test_binder.py`` runs them the first way).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DEMOS = ["01-quickstart.ipynb", "02-task-mode.ipynb", "03-heterogeneous.ipynb", "04-placement.ipynb"]


def execute(path: Path, env: dict[str, str] | None = None, timeout: int = 600) -> nbformat.NotebookNode:
    """Run a notebook with nbclient in a fresh kernel; raise on the first failing cell."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text") or str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", [*DEMOS, "dashboard.ipynb"])
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any(c.cell_type == "markdown" for c in nb.cells), "explain each step in markdown"


def test_every_demo_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted([*DEMOS, "dashboard.ipynb"])


def _no_pool_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FLEXLAB_SCHEDULER"}


@pytest.mark.slow
def test_quickstart_leases_runs_and_releases() -> None:
    text = text_of(execute(NOTEBOOKS / "01-quickstart.ipynb", _no_pool_env()))
    assert "<Lease L1 gpu:25%,4GiB active on" in text
    assert "'share of device': 0.25" in text
    assert "MockOutOfMemory" in text
    assert "can never fit this pool" in text
    assert "released" in text


@pytest.mark.slow
def test_task_mode_uses_npu_and_gpu_slices() -> None:
    text = text_of(execute(NOTEBOOKS / "02-task-mode.ipynb", _no_pool_env()))
    assert "NPU requests ran on: {'ascend-910b3': 8}" in text
    gpu_line = next(line for line in text.splitlines() if line.startswith("GPU requests ran on"))
    assert "ascend" not in gpu_line
    assert "mlu" not in gpu_line
    assert "UNRESOLVABLE" in text


@pytest.mark.slow
def test_heterogeneous_times_follow_the_model() -> None:
    text = text_of(execute(NOTEBOOKS / "03-heterogeneous.ipynb", _no_pool_env()))
    rows = {line.split()[0]: line for line in text.splitlines() if "modelled" in line and "speed" in line}
    assert set(rows) == {"t4", "v100s-32gb", "mlu370-x8", "ascend-910b3", "a100-80gb"}
    assert "modelled 2.00 s" in rows["t4"]
    assert "modelled 0.42 s" in rows["a100-80gb"]


@pytest.mark.slow
def test_placement_runs_on_the_trace_or_explains_the_download(tmp_path: Path) -> None:
    env = _no_pool_env()
    from flexlab.sim.openb_cli import default_trace_dir

    if not (default_trace_dir() / "csv").is_dir():
        env["FLEXLAB_OPENB_DIR"] = str(tmp_path)  # absent: the notebook must say how to get it
        text = text_of(execute(NOTEBOOKS / "04-placement.ipynb", env))
        assert "git clone https://github.com/alibaba/clusterdata" in text
        return
    text = text_of(execute(NOTEBOOKS / "04-placement.ipynb", env, timeout=900))
    for policy in ("firstfit", "bestfit", "fgd", "flexlab"):
        assert f"{policy:9}" in text
    assert "4 replays" in text


@pytest.mark.slow
def test_placement_without_the_trace_says_how_to_download(tmp_path: Path) -> None:
    env = {**_no_pool_env(), "FLEXLAB_OPENB_DIR": str(tmp_path)}
    text = text_of(execute(NOTEBOOKS / "04-placement.ipynb", env))
    assert "The openb trace is not here" in text
    assert "clusterdata" in text


@pytest.mark.slow
def test_dashboard_notebook_runs_on_an_embedded_pool() -> None:
    nb = execute(NOTEBOOKS / "dashboard.ipynb", _no_pool_env())
    data = nb.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in data), data
