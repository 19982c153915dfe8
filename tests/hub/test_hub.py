"""A real JupyterHub with two system users, ana and bob, and a TLS pool neither can read.

Each user logs in through the Hub's login page in Chromium; their single-user servers and
kernels run as their own system accounts (checked in /proc), and the pool's certificates are
out of their reach. Screenshots of each user's Accelerators panel go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .deployment import Deployment, uid_pids
from .kernels import Kernel

pytestmark = pytest.mark.slow

PANEL = "#flexlab-accelerators"


def proc_uid(pid: int) -> int:
    """The real uid of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("\nUid:\t", 1)[1].split("\t", 1)[0])


@pytest.fixture(scope="module")
def kernels(hub: Deployment) -> Iterator[dict[str, Kernel]]:
    """A kernel on each user's server, used with that user's own Hub token."""
    started: dict[str, Kernel] = {}
    for user in hub.users:
        hub.start_server(user)
        started[user] = Kernel(f"{hub.url}/user/{user}", hub.token(user))
    yield started
    for kernel in started.values():
        kernel.close()


def test_servers_and_kernels_run_as_their_system_users(hub: Deployment, kernels: dict[str, Kernel]) -> None:
    for user in hub.users:
        uid = hub.uid(user)
        assert uid not in (0, os.getuid())
        server = hub.api("GET", f"/users/{user}")["servers"][""]
        assert server["ready"]
        # the single-user server: a process of the user's uid, started by the Hub's spawner
        pids = uid_pids(uid)
        cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in pids}
        servers = [pid for pid, argv in cmdlines.items() if b"jupyterhub.singleuser" in argv]
        assert len(servers) == 1, cmdlines
        # the kernel: what the code itself sees, and what /proc says of it
        info = kernels[user].pid_info()
        assert info["uid"] == uid
        assert info["home"] == f"/home/{user}"
        assert proc_uid(info["pid"]) == uid
        assert info["pid"] in pids
        # nothing of the deployment runs as the other user
        other = next(u for u in hub.users if u != user)
        assert not set(uid_pids(hub.uid(other))) & set(pids)


def test_pool_credentials_are_out_of_the_users_reach(hub: Deployment, kernels: dict[str, Kernel]) -> None:
    folder = hub.tls.stat()
    assert folder.st_uid == 0
    assert stat.S_IMODE(folder.st_mode) == 0o700
    assert {p.name for p in hub.tls.iterdir()} >= {"ca.pem", "client.pem", "client-key.pem", "ca-key.pem"}
    for user in hub.users:
        reply = (
            kernels[user]
            .run(
                "import os\n"
                f"tls = {str(hub.tls)!r}\n"
                "for path in (tls, tls + '/client-key.pem', tls + '/ca-key.pem'):\n"
                "    try:\n"
                "        os.listdir(path) if path == tls else open(path).read()\n"
                "        print('READ', path)\n"
                "    except PermissionError as exc:\n"
                "        print('REFUSED', exc.errno)\n"
            )
            .ok()
        )
        assert reply.stdout.split("\n")[:3] == ["REFUSED 13"] * 3, reply.stdout


def login(page: Page, hub: Deployment, user: str) -> None:
    """Log in through the Hub's login page; JupyterLab opens on the user's server."""
    page.set_viewport_size({"width": 1440, "height": 1200})
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    page.click("#login_submit")
    page.wait_for_url(f"{hub.url}/user/{user}/lab**", timeout=120_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=90_000)


@pytest.mark.parametrize("user", ["ana", "bob"])
def test_login_through_the_hub_and_open_the_panel(
    page: Page, hub: Deployment, kernels: dict[str, Kernel], user: str, artifacts: Path
) -> None:
    # a wrong password is refused by the Hub
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", "not-" + hub.passwords[user])
    page.click("#login_submit")
    expect(page.locator(".login_error, .alert-danger").first).to_be_visible()
    login(page, hub, user)
    # the Hub's cookies name this user: the API under /user/<user>/ answers (with the XSRF
    # header JupyterLab sends), the other user's server does not let them in
    fetch = """async (url) => {
        const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
        const r = await fetch(url, {headers: {'X-XSRFToken': xsrf}, redirect: 'manual'});
        return [r.status, r.status == 200 ? await r.json() : null];
    }"""
    status, info = page.evaluate(fetch, f"/user/{user}/flexlab/api/info")
    assert (status, info["user"]) == (200, user), info
    other = next(u for u in hub.users if u != user)
    status, _ = page.evaluate(fetch, f"/user/{other}/flexlab/api/info")
    assert status in (0, 302, 401, 403), status  # 0: an opaque redirect to the Hub's login
    page.locator(f".jp-SideBar.jp-mod-left [data-id='{PANEL[1:]}']").click()
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    expect(panel.locator(".flexlab-Device").first).to_be_visible(timeout=30_000)
    expect(panel.locator(".flexlab-Header-status")).to_contain_text(f"you are {user}")
    page.mouse.move(0, 0)
    panel.screenshot(path=str(artifacts / f"hub-{user}-panel.png"))
