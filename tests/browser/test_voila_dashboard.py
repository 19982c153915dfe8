"""The Voila ops dashboard in Chromium: started as the README says (``flexlab dashboard``),
live (Bokeh's document data changes between two reads), complete (pool map with several
vendors, utilisation, queue) and quick (a live picture within 15 s of the command).
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page

from .conftest import ServerProcess, StartServer, free_port

pytestmark = pytest.mark.slow

READY = "/voila/labextensions/@bokeh/jupyter_bokeh/package.json"  # answers without starting a kernel
LIVE_WITHIN_S = 15.0
#: The dashboard's Bokeh document has its pool map drawn.
LIVE_JS = """() => (window.Bokeh ? Bokeh.documents : []).some(d => {
    const m = d.get_model_by_name('poolmap_slices');
    return m !== null && m.data.left.length > 0;
})"""
#: What the page shows now, read from Bokeh's document.
READ_JS = """() => {
    const d = Bokeh.documents.find(d => d.get_model_by_name('poolmap_slices') !== null);
    const get = (n) => d.get_model_by_name(n);
    const u = get('utilisation').data, s = get('poolmap_slices').data, v = get('poolmap_devices').data;
    const h = get('header_figures').data;
    return {
        frames: u.time.length, last: u.time[u.time.length - 1], busy: Array.from(u['busy:total']).slice(-5),
        util: Array.from(s.util), slices: s.left.length, devices: v.device.length,
        vendors: Array.from(new Set(v.vendor)), tick: h.value[h.value.length - 1],
        queue: get('queue_waiting') !== null && get('queue_bars') !== null,
        events: get('events').data.message.length,
    };
}"""
#: Console noise that is not ours (toolchain P10: Voila's template links fonts from a CDN).
NOISE = ("ERR_NAME_NOT_RESOLVED", "jquery-ui", "Unsatisfied version", "No satisfying version")


def dashboard_argv() -> list[str]:
    """``flexlab dashboard``, or the same command through its module while the CLI lacks it."""
    exe = Path(sys.executable).parent / "flexlab"
    if exe.exists():
        r = subprocess.run([str(exe), "dashboard", "--help"], capture_output=True, timeout=60, check=False)
        if r.returncode == 0:
            return [str(exe), "dashboard"]
    return [sys.executable, "-m", "flexlab.commands.dashboard"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FLEXLAB_SCHEDULER"}


def _watch_console(page: Page) -> list[str]:
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not any(n in msg.text for n in NOISE):
            errors.append(msg.text)

    page.on("console", on_console)
    return errors


def test_live_picture_within_15_s_of_the_command(page: Page, artifacts: Path, tmp_path: Path) -> None:
    """Start ``flexlab dashboard`` and poll the page until the pool map is drawn.

    A wall-clock budget means nothing on a machine whose CPUs are already overcommitted by
    other work: the time is then recorded but not judged (xfail, with the load in the reason).
    """
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    port = free_port()
    argv = [*dashboard_argv(), "--no-browser", f"--port={port}"]
    t0 = time.monotonic()
    srv = ServerProcess(argv, port=port, log=tmp_path / "dashboard.log", env=_env())
    marks: dict[str, float] = {}
    try:
        # Poll a static file (a GET of the page itself would start a kernel), then open the page.
        srv.wait_until(READY, timeout=120)
        marks["voila"] = time.monotonic() - t0
        page.goto(srv.url + "/", timeout=120_000)
        marks["page"] = time.monotonic() - t0
        page.wait_for_function(LIVE_JS, timeout=120_000, polling=100)
        marks["live"] = time.monotonic() - t0
    finally:
        srv.stop()
    timing = {k: round(v, 2) for k, v in marks.items()}
    record = {
        **timing,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "cpus": cpus,
    }
    (artifacts / "dashboard-time-to-live.json").write_text(json.dumps(record))
    if marks["live"] >= LIVE_WITHIN_S and load_before > cpus:
        pytest.xfail(f"live after {marks['live']:.1f} s, but the load was {load_before:.1f} on {cpus} CPUs")
    assert marks["live"] < LIVE_WITHIN_S, f"live picture after {marks['live']:.1f} s ({record})"


@pytest.fixture(scope="module")
def dashboard(server_process: StartServer) -> ServerProcess:
    return server_process([*dashboard_argv(), "--no-browser", "--port={port}"], path=READY, env=_env())


def test_dashboard_is_live_and_complete(page: Page, dashboard: ServerProcess, artifacts: Path) -> None:
    errors = _watch_console(page)
    page.set_viewport_size({"width": 1460, "height": 1900})
    page.goto(dashboard.url + "/", timeout=120_000)
    page.wait_for_function(LIVE_JS, timeout=120_000, polling=250)
    # The pool map can be drawn before the pool's first telemetry frame has arrived.
    page.wait_for_function(f"() => ({READ_JS})().frames > 0", timeout=60_000, polling=250)
    first: dict[str, Any] = page.evaluate(READ_JS)
    page.wait_for_timeout(3000)  # a few seconds of the synthetic load, then two more refreshes at least
    page.wait_for_function(f"() => ({READ_JS})().tick >= {first['tick'] + 2}", timeout=60_000, polling=250)
    second: dict[str, Any] = page.evaluate(READ_JS)

    # live: new telemetry frames arrived and the header ticked, without reloading the page
    assert second["tick"] > first["tick"], (first, second)
    assert second["last"] > first["last"], (first, second)
    moved = [k for k in ("frames", "busy", "util") if second[k] != first[k]]
    assert moved, (first, second)
    # complete: the mock pool's six devices of three vendors, with their slices, and every panel
    assert second["devices"] == 6
    assert sorted(second["vendors"]) == ["Cambricon", "Huawei Ascend", "NVIDIA"]
    assert second["slices"] >= 6
    assert second["queue"]
    assert second["events"] > 0
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert errors == [], errors
    page.screenshot(path=str(artifacts / "voila-dashboard.png"), full_page=True, timeout=120_000)

    # the pool map's other colouring: by utilisation (a client-side switch, no round trip)
    page.get_by_role("button", name="colour by utilisation").click()
    fill = page.evaluate(
        """() => Bokeh.documents.map(d => d.get_model_by_name('poolmap_base')).find(r => r !== null)
                 .glyph.fill_color"""
    )
    assert fill["field"] == "util", fill
    # the utilisation chart's other views: busy by model (lines tagged per view)
    page.get_by_role("button", name="busy by model").click()
    title, views = page.evaluate(
        """() => {
            const f = Bokeh.documents.map(d => d.get_model_by_name('utilisation_figure')).find(f => f);
            const shown = f.renderers.filter(r => r.visible).map(r => r.tags[0]);
            return [f.title.text, Array.from(new Set(shown))];
        }"""
    )
    assert title.startswith("Busy share by device model"), title
    assert views == ["model"], views
    page.wait_for_timeout(500)
    top = {"x": 0, "y": 0, "width": 1460, "height": 900}
    page.screenshot(path=str(artifacts / "voila-dashboard-by-utilisation.png"), clip=top)


SCALE_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "scale",
            "metadata": {},
            "outputs": [],
            "source": "from flexlab.dashboard import Dashboard, show\n"
            "from flexlab.dashboard.synthetic import SyntheticPool\n"
            "dash = Dashboard(SyntheticPool(1000), title='synthetic pool: 1,000 devices')\n"
            "dash.refresh()\nshow(dash)\ntask = dash.start(interval=1.0)\n",
        }
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_one_thousand_devices_stay_live(
    page: Page, server_process: StartServer, artifacts: Path, tmp_path: Path
) -> None:
    nb = tmp_path / "scale.ipynb"
    nb.write_text(json.dumps(SCALE_NOTEBOOK))
    from flexlab.commands.dashboard import LAB_EXTENSION

    srv = server_process(
        [sys.executable, "-m", "voila", str(nb), "--no-browser", "--port={port}", "--Voila.ip=127.0.0.1",
         f"--VoilaConfiguration.extension_denylist={LAB_EXTENSION}"],
        path=READY, env=_env(),
    )  # fmt: skip
    errors = _watch_console(page)
    page.set_viewport_size({"width": 1460, "height": 1900})
    page.goto(srv.url + "/", timeout=120_000)
    page.wait_for_function(LIVE_JS, timeout=120_000, polling=250)
    first: dict[str, Any] = page.evaluate(READ_JS)
    # Refreshes the kernel made before the page connected arrive in a burst (several ticks in
    # a fraction of a second, the pool map's data not always among them): read a few seconds
    # apart, and time the ticks after the burst.
    page.wait_for_timeout(3000)
    settled: dict[str, Any] = page.evaluate(READ_JS)
    t0 = time.monotonic()
    page.wait_for_function(f"() => ({READ_JS})().tick >= {settled['tick'] + 3}", timeout=60_000, polling=250)
    second: dict[str, Any] = page.evaluate(READ_JS)
    seconds_per_tick = (time.monotonic() - t0) / max(1, second["tick"] - settled["tick"])
    (artifacts / "dashboard-1000-ticks.json").write_text(
        json.dumps({"seconds_per_tick": round(seconds_per_tick, 2)})
    )
    assert second["devices"] == 1000
    assert second["util"] != first["util"]
    assert errors == [], errors
    page.screenshot(path=str(artifacts / "voila-dashboard-1000.png"), full_page=True, timeout=120_000)
