"""JupyterLab in Chromium: the Accelerators panel end to end, on `flexlab lab`'s embedded pool.

Open the panel, see the mock pool, ask for an NPU slice through the form (with its explain
preview), see it in "My leases", insert its code into a notebook and run it (the task runs
on that slice), release it and see it gone. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from .conftest import ServerProcess, StartServer

pytestmark = pytest.mark.slow

OWNER = "ana"
TOKEN = secrets.token_hex(16)
PANEL = "#flexlab-accelerators"


@pytest.fixture(scope="module")
def lab(server_process: StartServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``flexlab lab`` (embedded mock pool) on a free port, with a clean settings folder."""
    home = tmp_path_factory.mktemp("lab")
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no news or update toast over the screenshots (toolchain P7), for this server only
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    (home / "notebooks").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FLEXLAB_SCHEDULER"}
    env.update(
        FLEXLAB_USER=OWNER,
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    return server_process(
        [
            sys.executable,
            "-m",
            "flexlab.commands.lab",
            "--port={port}",
            "--no-browser",
            "--allow-root",
            "--",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={home / 'notebooks'}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        path="/flexlab/api/info",
        headers={"Authorization": f"token {TOKEN}"},
        env=env,
    )


class Neighbours:
    """Other users of the pool, and a Dask client on it."""

    def __init__(self, client: Any, leases: dict[str, str]) -> None:
        self.client = client
        self.leases = leases


@pytest.fixture(scope="module")
def neighbours(lab: ServerProcess) -> Iterator[Neighbours]:
    """Other users on the same pool, straight through Dask: bob's and chen's leases, work on
    bob's slice and on a shared MLU slice (so that owners and utilisation show)."""
    import urllib.request

    from distributed import Client

    import flexlab
    from flexlab.mock.workloads import kernel

    req = urllib.request.Request(f"{lab.url}/flexlab/api/info", headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        address = json.load(resp)["scheduler"]
    with Client(address, set_as_default=False) as client:
        bob = flexlab.lease("a100:1g.10gb", owner="bob", ttl="2h", client=client)
        chen = flexlab.lease("t4:0.5", owner="chen", ttl="30m", client=client)
        busy = [bob.submit(kernel, work=40.0, demand=0.9, memory="6GiB", pure=False)]
        with flexlab.request("mlu:0.5"):
            busy.append(client.submit(kernel, work=60.0, demand=0.5, memory="20GiB", pure=False))
        yield Neighbours(client, {"bob": bob.lease_id, "chen": chen.lease_id})
        client.cancel(busy)


@pytest.fixture
def lab_page(page: Page, lab: ServerProcess, neighbours: Neighbours) -> Iterator[Page]:
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and "flexlab" in msg.text.lower():
            errors.append(msg.text)

    page.on("console", on_console)
    page.set_viewport_size({"width": 1440, "height": 1380})
    page.goto(f"{lab.url}/lab?token={TOKEN}")
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=60_000)
    yield page
    assert errors == [], f"console errors from the extension: {errors}"


def set_range(page: Page, selector: str, value: int) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }",
        value,
    )


def test_accelerators_panel_end_to_end(
    lab_page: Page, lab: ServerProcess, neighbours: Neighbours, artifacts: Path
) -> None:
    page = lab_page
    panel = page.locator(PANEL)

    # open the panel: the mock pool by host and device
    page.locator(f".jp-SideBar.jp-mod-left [data-id='{PANEL[1:]}']").click()
    expect(panel).to_be_visible()
    expect(panel.locator(".flexlab-Host")).to_have_count(3, timeout=30_000)
    expect(panel.locator(".flexlab-Device")).to_have_count(6)
    expect(panel.locator(".flexlab-Header-status")).to_contain_text(
        "3 hosts · 6 devices · embedded mock pool"
    )
    expect(panel.locator(".flexlab-Header-status")).to_contain_text(f"you are {OWNER}")
    a100 = panel.locator("[data-device='nvidia-b/a100-80gb#1']")
    expect(a100.locator(".flexlab-Vendor")).to_have_text("NVIDIA")
    expect(a100.locator(".flexlab-Tag")).to_have_text("MIG")
    expect(panel.locator(".flexlab-Empty")).to_contain_text("No leases")
    # other users' slices show with their owner, and never under "My leases"
    bob = a100.locator(".flexlab-Slice[data-owner='bob']")
    expect(bob).to_have_class(re.compile("flexlab-mod-other"))
    expect(bob.locator(".flexlab-Slice-label")).to_have_text(f"1g.10gb · {neighbours.leases['bob']}")
    expect(bob.locator(".flexlab-Slice-owner")).to_contain_text("bob · ")
    expect(panel.locator(".flexlab-Slice[data-owner='chen']")).to_have_count(1)

    # the form's device menu is the one the server computed (the notebook picker shows it too)
    form = panel.locator(".flexlab-Form")
    req = urllib.request.Request(f"{lab.url}/flexlab/api/pool", headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        menu = json.load(resp)["menu"]
    assert [c["label"] for c in menu][:3] == ["Any accelerator (6)", "Any GPU (3)", "Any MLU (1)"]
    options = form.locator("select.flexlab-Form-device option")
    expect(options).to_have_count(len(menu))
    assert options.evaluate_all("os => os.map(o => [o.value, o.textContent])") == [
        [c["value"], c["label"]] for c in menu
    ]
    groups = form.locator("select.flexlab-Form-device optgroup")
    assert groups.evaluate_all("gs => gs.map(g => g.label)") == ["Kinds", "Vendors", "Models"]

    # the form: an NPU share with memory, and its explain preview before committing
    form.locator("select.flexlab-Form-device").select_option("npu")
    form.locator(".flexlab-Segment[data-mode='share']").click()
    set_range(page, f"{PANEL} .flexlab-Form-slider", 300)
    form.locator("input.flexlab-Form-memory").fill("16")
    expect(form.locator(".flexlab-Form-request")).to_have_text("npu:30%,16GiB")
    preview = form.locator(".flexlab-Explain")
    expect(preview).to_have_attribute("data-code", "SUCCESS")
    expect(preview).to_contain_text("Would land on ascend-a/ascend-910b3#0 as 30% and 16 GiB")
    # a request that can never fit says why, counted, and cannot be sent
    form.locator("input.flexlab-Form-memory").fill("100")
    expect(preview).to_have_attribute("data-code", "UNRESOLVABLE")
    expect(preview.locator(".flexlab-Explain-reasons li").first).to_contain_text("kind mismatch")
    expect(form.locator(".flexlab-Form-submit")).to_be_disabled()
    form.locator("input.flexlab-Form-memory").fill("16")
    expect(preview).to_have_attribute("data-code", "SUCCESS")

    form.locator(".flexlab-Form-submit").click()
    lease = panel.locator(".flexlab-Lease")
    expect(lease).to_have_count(1)
    expect(lease).to_have_attribute("data-state", "active", timeout=30_000)
    lease_id = lease.get_attribute("data-lease")
    assert lease_id
    assert re.fullmatch(r"L\d+", lease_id)
    expect(lease.locator(".flexlab-Lease-request")).to_have_text("npu:30%,16GiB")
    expect(lease.locator(".flexlab-Lease-where")).to_contain_text("ascend-a/ascend-910b3#0 · 30% · 16 GiB")
    expect(lease.locator(".flexlab-Lease-ttl")).to_contain_text(re.compile(r"(59|1 h 00|0 h 59)"))
    mine = panel.locator(f".flexlab-Slice[data-owner='{OWNER}']")
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-slice", lease_id)
    # work on it from another process: its utilisation shows in the panel
    from flexlab.client import Lease
    from flexlab.mock.workloads import kernel

    work = Lease.attach(lease_id, owner=OWNER, client=neighbours.client).submit(
        kernel, work=4.0, demand=0.3, memory="4GiB", pure=False
    )
    expect(lease.locator(".flexlab-Lease-util")).not_to_contain_text("util 0%", timeout=20_000)
    expect(mine.locator(".flexlab-Slice-owner")).not_to_contain_text(f"{OWNER} · 0%")
    page.mouse.move(0, 0)
    panel.screenshot(path=str(artifacts / "lab-accelerators-panel.png"))
    work.result(timeout=60)

    # insert its code into a (new) notebook and run it: the task runs on the lease's slice
    lease.locator("button", has_text="Insert code").click()
    attach = f"flexlab.Lease.attach('{lease_id}', owner='{OWNER}')"
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell", has_text=attach)
    expect(cell).to_have_count(1, timeout=30_000)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)  # the kernel is up
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")  # run it in place
    expect(cell.locator(".jp-InputPrompt")).not_to_have_text("[ ]:", timeout=10_000)
    output = cell.locator(".jp-OutputArea-output")
    expect(output).to_contain_text(f"'slice': '{lease_id}'", timeout=60_000)
    expect(output).to_contain_text("'model': 'ascend-910b3'")
    expect(output).to_contain_text("'share': '30%'")
    page.mouse.move(0, 0)
    page.screenshot(path=str(artifacts / "lab-notebook.png"))

    # release it: gone from "My leases" and from the pool
    lease.locator("button", has_text="Release").click()
    expect(panel.locator(".flexlab-Lease")).to_have_count(0, timeout=30_000)
    expect(panel.locator(".flexlab-Empty")).to_contain_text("No leases")
    expect(panel.locator(f".flexlab-Slice[data-owner='{OWNER}']")).to_have_count(0)
