"""A real JupyterHub with two system users, ana and bob, and a TLS pool neither can read
(issue 13, "Done when"; the deployment: ``deployment.py``, how to run it: docs/jupyterhub.md).

Their single-user servers and kernels run as their own system accounts (checked in /proc) and
cannot read the pool's certificates; the flexlab front, a Hub service, holds them. In
Chromium, ana logs in through the Hub, asks for a slice in the Accelerators panel, inserts its
code and runs a task on her private lease; bob logs in and sees the pool's occupancy but not
her leases, his REST calls on them get 403, and from his kernel the pool's scheduler and her
private schedulers refuse him. Screenshots of each user's panel (and ana's notebook) and what
bob's connection tries got go to ``test-artifacts/``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

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
    hub.start_servers(*hub.users)
    for user in hub.users:
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


def open_panel(page: Page, hub: Deployment, user: str) -> Locator:
    page.locator(f".jp-SideBar.jp-mod-left [data-id='{PANEL[1:]}']").click()
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    expect(panel.locator(".flexlab-Device")).to_have_count(6, timeout=30_000)  # the TLS pool's mock devices
    expect(panel.locator(".flexlab-Header-status")).to_contain_text(f"you are {user}")
    return panel


def fetch_as_page(page: Page, url: str) -> tuple[int, Any]:
    """``GET url`` from the page, with the browser's Hub cookies and the XSRF header JupyterLab sends."""
    status, body = page.evaluate(
        """async (url) => {
            const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
            const r = await fetch(url, {headers: {'X-XSRFToken': xsrf}, redirect: 'manual'});
            return [r.status, r.status == 200 ? await r.json() : null];
        }""",
        url,
    )
    return int(status), body


def run_cell(page: Page, cell: Locator) -> Locator:
    """Run ``cell`` in place; its output area."""
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    expect(cell.locator(".jp-InputPrompt")).not_to_have_text("[ ]:", timeout=10_000)
    return cell.locator(".jp-OutputArea-output")


#: What the ana test leaves for bob's: her lease and her private scheduler's address.
ANA: dict[str, str] = {}


def test_ana_runs_a_task_on_her_private_lease(
    page: Page, hub: Deployment, kernels: dict[str, Kernel], artifacts: Path
) -> None:
    # a wrong password is refused by the Hub
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", "ana")
    page.fill("#password_input", "not-" + hub.passwords["ana"])
    page.click("#login_submit")
    expect(page.locator(".login_error, .alert-danger").first).to_be_visible()
    login(page, hub, "ana")
    # the Hub's cookies name ana: her server's API answers, bob's server does not let her in
    status, info = fetch_as_page(page, "/user/ana/flexlab/api/info")
    assert (status, info["user"], info["scheduler"]) == (200, "ana", hub.scheduler), info
    status, _ = fetch_as_page(page, "/user/bob/flexlab/api/info")
    assert status in (0, 302, 401, 403), status  # 0: an opaque redirect to the Hub's login

    # the panel shows the TLS pool (through the front); ana asks for an NPU share
    panel = open_panel(page, hub, "ana")
    expect(panel.locator(".flexlab-Empty")).to_contain_text("No leases")
    form = panel.locator(".flexlab-Form")
    form.locator("select.flexlab-Form-device").select_option("npu")
    form.locator(".flexlab-Segment[data-mode='share']").click()
    page.eval_on_selector(
        f"{PANEL} .flexlab-Form-slider",
        "el => { el.value = '300'; el.dispatchEvent(new Event('input', {bubbles: true})); }",
    )
    expect(form.locator(".flexlab-Form-request")).to_have_text("npu:30%")
    form.locator(".flexlab-Form-submit").click()
    lease = panel.locator(".flexlab-Lease")
    expect(lease).to_have_count(1)
    expect(lease).to_have_attribute("data-state", "active", timeout=60_000)
    lease_id = lease.get_attribute("data-lease")
    assert lease_id
    assert re.fullmatch(r"L\d+", lease_id)
    expect(panel.locator(f".flexlab-Slice[data-owner='ana'][data-slice='{lease_id}']")).to_have_count(1)

    # insert its code into a notebook and run it: the lease becomes private to this kernel
    # (its slice worker joins a scheduler inside it) and the task runs on the lease's slice
    lease.locator("button", has_text="Insert code").click()
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cell = notebook.locator(".jp-CodeCell", has_text=f"flexlab.Lease.attach('{lease_id}'")
    expect(cell).to_have_count(1, timeout=30_000)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)
    output = run_cell(page, cell)
    expect(output.last).to_contain_text(f"'slice': '{lease_id}'", timeout=120_000)
    expect(output).to_have_count(1)  # its result, and nothing on stderr
    expect(output).to_contain_text("'model': 'ascend-910b3'")
    expect(output).to_contain_text("'share': '30%'")
    # where it ran: the lease's own scheduler, in ana's kernel, not the pool's
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below
    page.keyboard.press("Enter")
    page.keyboard.type("print('private', lease.client.scheduler.address)")
    probe = notebook.locator(".jp-CodeCell", has_text="print('private'")
    output = run_cell(page, probe)
    expect(output).to_contain_text("private tls://127.0.0.1:", timeout=30_000)
    private = output.inner_text().split("private ", 1)[1].split()[0]
    assert private != hub.scheduler
    expect(lease).to_have_attribute("data-state", "active", timeout=30_000)
    page.mouse.move(0, 0)
    page.screenshot(path=str(artifacts / "hub-ana-notebook.png"))
    panel.screenshot(path=str(artifacts / "hub-ana-panel.png"))
    ANA.update(lease=lease_id, private=private)


@pytest.fixture(scope="module")
def ana_leases(hub: Deployment, kernels: dict[str, Kernel]) -> dict[str, str]:
    """ana's private leases, by id: the one she made in the panel (when that test ran), and one
    made in her kernel with ``flexlab.lease`` (through the front); each maps to the address of
    the private scheduler in her kernel that its slice worker joined."""
    reply = (
        kernels["ana"]
        .run(
            "import flexlab\n"
            "from flexlab.notebook import where\n"
            "mine = flexlab.lease('t4:0.5')\n"
            "print(mine.submit(where).result())\n"
            "print('LEASE', mine.lease_id, mine.client.scheduler.address)\n"
            "def probe(path):\n"
            "    import os\n"
            "    try:\n"
            "        open(path).read()\n"
            "        return os.getuid(), 'readable'\n"
            "    except PermissionError:\n"
            "        return os.getuid(), 'refused'\n"
            f"print('PROBE', *mine.submit(probe, {str(hub.tls / 'client-key.pem')!r}).result())\n",
            timeout=120,
        )
        .ok()
    )
    assert "'model': 't4'" in reply.stdout, reply
    # her task ran as her own account (flexlab up --private-user '{owner}'), not as the
    # agent's (root): it cannot read the pool's client key
    uid, key = reply.stdout.split("PROBE ", 1)[1].split()[:2]
    assert (int(uid), key) == (hub.uid("ana"), "refused"), reply
    lease_id, address = reply.stdout.split("LEASE ", 1)[1].split()[:2]
    assert address.startswith("tls://127.0.0.1:")
    assert address != hub.scheduler
    leases = {lease_id: address}
    if ANA:
        leases[ANA["lease"]] = ANA["private"]
    return leases


def test_bob_sees_the_occupancy_but_not_anas_leases(
    page: Page, hub: Deployment, ana_leases: dict[str, str], artifacts: Path
) -> None:
    login(page, hub, "bob")
    panel = open_panel(page, hub, "bob")
    expect(panel.locator(".flexlab-Empty")).to_contain_text("No leases")
    expect(panel.locator(".flexlab-Lease")).to_have_count(0)
    # ana's slices take their room on the devices, without her name or her leases' ids
    others = panel.locator(".flexlab-Slice.flexlab-mod-other")
    expect(others).to_have_count(len(ana_leases), timeout=30_000)
    t4 = panel.locator("[data-device='mixed-c/t4#0'] .flexlab-Slice.flexlab-mod-other")
    expect(t4).to_have_count(1)
    text = panel.inner_text()
    assert "ana" not in text
    assert not [lease for lease in ana_leases if re.search(rf"\b{lease}\b", text)], text
    assert "ana" not in (others.first.get_attribute("data-owner") or "")
    page.mouse.move(0, 0)
    panel.screenshot(path=str(artifacts / "hub-bob-panel.png"))
    status, pool = fetch_as_page(page, "/user/bob/flexlab/api/pool")
    assert status == 200
    taken = [s for h in pool["hosts"] for d in h["devices"] for s in d["slices"] if s["owner"]]
    assert len(taken) == len(ana_leases), taken
    assert all(s["owner"] != "ana" and s["lease_id"] not in ana_leases for s in taken), taken


def call(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_bobs_rest_calls_on_anas_leases_get_403(hub: Deployment, ana_leases: dict[str, str]) -> None:
    bob = hub.token("bob")
    # through bob's own server (front mode) and straight to the front service
    apis = (f"{hub.url}/user/bob/flexlab/api", f"{hub.url}/services/flexlab/flexlab/api")
    for api, lease_id in itertools.product(apis, ana_leases):
        for method, path, body in (
            ("GET", "", None),
            ("POST", "/renew", {"ttl": "2h"}),
            ("DELETE", "", None),
        ):
            status, error = call(method, f"{api}/leases/{lease_id}{path}", bob, body)
            assert (status, error["error"]) == (403, "NotOwner"), (method, path, status, error)
            assert "ana" not in error["message"]
        status, mine = call("GET", f"{api}/leases", bob)
        assert (status, mine) == (200, {"leases": []}), mine
    # ana's leases are untouched
    ana = hub.token("ana")
    for lease_id in ana_leases:
        status, lease = call("GET", f"{hub.url}/user/ana/flexlab/api/leases/{lease_id}", ana)
        assert (status, lease["owner"], lease["state"]) == (200, "ana", "active"), lease


#: Run in bob's kernel: for each address, check that its port is open, try a bare TLS
#: handshake without a certificate, then a Dask client with no certificate and with one of a
#: CA of bob's own, each in a process of bob's with a time limit; print one JSON line per try
#: (its outcome, the exception's type). A try that neither connects nor is refused in time
#: fails the test: a refusal must be prompt (``open_client`` closes a refused client at once).
BOB_CONNECTS = """
import json, socket, ssl, subprocess, sys, tempfile
from pathlib import Path
from flexlab.commands.certs import write_pool_certs

mine = Path(tempfile.mkdtemp()) / "tls"
write_pool_certs(mine)  # a CA of bob's own, certificates for every role
TRY = '''
import sys
from distributed.security import Security
from flexlab.dask_client import open_client
address, mine = sys.argv[1], sys.argv[2]
kwargs = {{}}
if mine:
    kwargs["security"] = Security(tls_ca_file=mine + "/ca.pem", tls_client_cert=mine + "/client.pem",
                                  tls_client_key=mine + "/client-key.pem", require_encryption=True)
try:
    with open_client(address, timeout="5s", set_as_default=False, **kwargs) as c:
        print("CONNECTED to " + str(c.scheduler_info()["address"]))
except Exception as exc:
    print("refused " + type(exc).__name__ + ": " + str(exc)[:200])
'''
def bare_tls(host, port):
    # a TLS handshake with no client certificate (and no check of the server's): the server
    # must refuse it (with TLS 1.3 the refusal comes as an alert at the first read)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
            tls.sendall(b"hello")
            data = tls.recv(1)
            return "CONNECTED" if data else "refused EOF: the server closed the connection"
    except (ssl.SSLError, OSError) as exc:
        return "refused " + type(exc).__name__ + ": " + str(exc)[:200]

for name, address in {targets!r}.items():
    host, port = address.rsplit("/", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        pass  # the port is open: what follows is refused by TLS, not by a closed port
    outcome = bare_tls(host, int(port))
    print(json.dumps({{"target": name, "how": "TLS, no certificate", "outcome": outcome}}), flush=True)
    for how, folder in (("no certificate", ""), ("bob's own CA", str(mine))):
        try:
            done = subprocess.run([sys.executable, "-c", TRY, address, folder], capture_output=True,
                                  text=True, timeout=30)
            outcome = (done.stdout.strip().splitlines() or ["no answer: " + done.stderr[-300:]])[-1]
        except subprocess.TimeoutExpired:
            outcome = "HUNG: no answer in 30 s, neither connected nor refused"
        print(json.dumps({{"target": name, "how": how, "outcome": outcome}}), flush=True)
"""


def test_bobs_kernel_reaches_neither_the_pool_nor_anas_schedulers(
    hub: Deployment, kernels: dict[str, Kernel], ana_leases: dict[str, str], artifacts: Path
) -> None:
    bob = kernels["bob"]
    # no pool credential and no pool address in his kernel's environment
    env = json.loads(bob.run("import os, json; print(json.dumps(dict(os.environ)))").ok().stdout)
    assert "FLEXLAB_TLS" not in env
    assert "FLEXLAB_SCHEDULER" not in env
    assert env["FLEXLAB_FRONT"].endswith("/services/flexlab/")
    # the certificates: refused by the file system (test_pool_credentials_are_out_of_the_users_reach)
    reply = bob.run(f"open({str(hub.tls / 'client-key.pem')!r}).read()")
    assert reply.error.startswith("PermissionError"), reply
    # the pool's scheduler and ana's private scheduler: the port is open, the connection refused
    targets = {"pool": hub.scheduler, **{f"ana's {lease}": address for lease, address in ana_leases.items()}}
    reply = bob.run(BOB_CONNECTS.format(targets=targets), timeout=60 + 75 * len(targets)).ok()
    outcomes = [json.loads(line) for line in reply.stdout.splitlines() if line.startswith("{")]
    (artifacts / "hub-bob-connections.json").write_text(json.dumps(outcomes, indent=1))
    assert len(outcomes) == 3 * len(targets), reply
    for attempt in outcomes:
        assert attempt["outcome"].startswith("refused "), attempt
        assert attempt["outcome"].split()[1].rstrip(":") in REFUSALS, attempt


#: How distributed reports a refused connection: no TLS configuration for a tls:// address,
#: a handshake the other end refused, or no completed handshake before the timeout.
REFUSALS = {
    "TypeError",
    "OSError",
    "TimeoutError",
    "SSLError",
    "CommClosedError",
    "FatalCommClosedError",
    "SSLEOFError",
    "ConnectionResetError",
    "EOF",
}
