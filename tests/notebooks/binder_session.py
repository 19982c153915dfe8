"""What a Binder user does, run by ``binder/start`` in ``test_binder.py`` (inside the fresh
environment that ``binder/postBuild`` set up): find the pool ``start`` launched, open
JupyterLab with the panel, render the Voila dashboard, run every notebook against the pool.

    binder/start python tests/notebooks/binder_session.py REPORT.json

Writes what it saw to REPORT.json; exits non-zero on the first failure.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["01-quickstart.ipynb", "02-task-mode.ipynb", "03-heterogeneous.ipynb", "04-placement.ipynb"]


def get(url: str, timeout: float = 120.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            get(url, timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def check_pool(report: dict[str, object]) -> None:
    from distributed import Client

    import flexlab

    address = os.environ["FLEXLAB_SCHEDULER"]
    t0 = time.monotonic()
    with Client(address, timeout="120s") as client:
        pool = flexlab.PoolClient(client)
        while True:
            state = pool.state()
            frames = pool.history()
            if state["hosts"] and any(f["arrivals"] for f in frames):
                break
            if time.monotonic() - t0 > 120:
                raise TimeoutError(f"no pool or no load after 120 s: {len(state['hosts'])} hosts")
            time.sleep(1)
        report["pool"] = {
            "address": address,
            "hosts": len(state["hosts"]),
            "devices": sum(len(h["devices"]) for h in state["hosts"]),
            "vendors": sorted({d["vendor"] for h in state["hosts"] for d in h["devices"]}),
            "arrivals_seen": sum(sum(f["arrivals"].values()) for f in frames),
            "preempt_grace_s": state["hi"]["preempt_grace_s"],
            "ready_after_s": round(time.monotonic() - t0, 1),
        }


def check_lab(report: dict[str, object]) -> None:
    token = secrets.token_hex(8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={ROOT}",
            "--LabApp.news_url=None",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{base}/api/status?token={token}", 120)
        _, html = get(f"{base}/lab?token={token}")
        _, pool = get(f"{base}/flexlab/api/pool?token={token}")
        t0 = time.monotonic()
        status, page = get(f"{base}/voila/render/notebooks/dashboard.ipynb?token={token}", timeout=300)
        report["lab"] = {
            "panel_extension_served": "flexlab-jupyter" in html,
            "panel_pool_devices": sum(len(h["devices"]) for h in json.loads(pool)["hosts"]),
            "voila_dashboard_status": status,
            "voila_dashboard_widget": "application/vnd.jupyter.widget-view+json" in page,
            "voila_dashboard_error": "Traceback" in page
            or 'jp-RenderedText" data-mime-type="application/vnd.jupyter.stderr' in page,
            "voila_render_s": round(time.monotonic() - t0, 1),
        }
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.wait(30)


def run_notebooks(report: dict[str, object]) -> None:
    import nbformat
    from nbclient import NotebookClient

    done = {}
    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        t0 = time.monotonic()
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        ).execute()
        text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
        done[name] = {
            "seconds": round(time.monotonic() - t0, 1),
            "on_pool": os.environ["FLEXLAB_SCHEDULER"] in text,
        }
    report["notebooks"] = done


def main() -> int:
    out = Path(sys.argv[1])
    report: dict[str, object] = {"python": sys.executable}
    try:
        check_pool(report)
        check_lab(report)
        run_notebooks(report)
        report["ok"] = True
    finally:
        out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
