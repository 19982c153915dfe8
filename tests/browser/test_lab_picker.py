"""``flexlab.widgets.LeasePicker`` in a Voila page (Chromium): pick an A100 MIG profile, see the
explain preview, lease it, see it listed, release it. The kernel runs its own embedded pool."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from .conftest import ServerProcess, StartServer

pytestmark = pytest.mark.slow

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "picker",
            "metadata": {},
            "outputs": [],
            "source": "from flexlab.widgets import LeasePicker\n\npicker = LeasePicker()\npicker",
        }
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}
#: Not ours: Voila's template links fonts from a CDN (toolchain P10), version notes of Voila's core.
NOISE = ("ERR_NAME_NOT_RESOLVED", "Unsatisfied version", "No satisfying version")


@pytest.fixture(scope="module")
def voila(server_process: StartServer, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    folder = tmp_path_factory.mktemp("picker")
    (folder / "picker.ipynb").write_text(json.dumps(NOTEBOOK))
    env = {k: v for k, v in os.environ.items() if k != "FLEXLAB_SCHEDULER"}
    env["FLEXLAB_USER"] = "vera"
    return server_process(
        [
            sys.executable,
            "-m",
            "voila",
            "--no-browser",
            "--port={port}",
            "--Voila.ip=127.0.0.1",
            "picker.ipynb",
        ],
        path="/voila/labextensions/@jupyter-widgets/jupyterlab-manager/package.json",
        env=env,
        cwd=folder,
    )


def test_lease_picker_in_voila(page: Page, voila: ServerProcess, artifacts: Path) -> None:
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not any(n in msg.text for n in NOISE):
            errors.append(msg.text)

    page.on("console", on_console)
    page.set_viewport_size({"width": 900, "height": 900})
    page.goto(voila.url + "/", timeout=120_000)
    device = page.locator(".widget-dropdown", has_text="Device").locator("select")
    expect(device).to_be_visible(timeout=120_000)
    device.select_option(label="NVIDIA A100 80GB (1)")  # ipywidgets: values are indices
    profile = page.locator(".widget-dropdown", has_text="Profile").locator("select")
    expect(profile).to_be_visible()
    profile.select_option(label="1g.10gb")
    expect(page.locator(".widget-html", has_text="Request:")).to_contain_text("a100-80gb:1g.10gb")
    preview = page.locator(".widget-html", has_text="would land on")
    expect(preview).to_contain_text("would land on nvidia-b/a100-80gb#1 as 1g.10gb", timeout=20_000)

    page.get_by_role("button", name="Request lease").click()
    row = page.locator(".widget-hbox", has_text="a100-80gb:1g.10gb").filter(has=page.get_by_role("button"))
    expect(row).to_have_count(1, timeout=30_000)
    expect(row).to_contain_text("nvidia-b/a100-80gb#1")
    expect(row).to_contain_text(" active · ", timeout=20_000)  # refreshed by the picker itself
    page.screenshot(path=str(artifacts / "voila-lease-picker.png"), full_page=True)

    row.get_by_role("button", name="Release").click()
    expect(page.locator(".widget-html", has_text="No leases of vera")).to_be_visible(timeout=30_000)
    assert errors == [], errors
