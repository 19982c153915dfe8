"""A pool spread over Linux network namespaces: a scheduler and host agents on their own
"machines", joined by veth links to one bridge, talking real TCP to each other.

Layout (``P`` is a prefix unique to the run, e.g. ``fx1a2b3c``)::

    root namespace (pytest, the clients)      P-net (the bridge br0)        P-sched, P-h1, P-h2 ...
      Pr0 10.A.B.1 ── veth ──▶ Pr1 ─────────────┤ br0 ├──── Pb<i> ◀── veth ── Pn<i> 10.A.B.<i+2>

Every name (namespaces, links) starts with ``P``; the harness deletes all of them and stops
every process that lives in its namespaces (``ip netns pids``) when it closes: on a fixture
finalizer, at exit, and for what is left in its own namespaces only. It never touches a
namespace, link or process it did not make.

``Lab(tmp, tls=DIR)`` runs the pool over TLS (``--tls DIR`` to every part, ``tls://``
addresses); the default is plain TCP.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Labs not closed yet (the atexit hook closes them).
_OPEN: list[Lab] = []


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        probe = f"fxprobe{secrets.token_hex(3)}"
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"ip netns does not work here: {exc}"
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-249.x that no route of the root namespace uses."""
    routes = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
    used = [ipaddress.ip_network(w, strict=False) for w in routes.split() if "/" in w and w[0].isdigit()]
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.x /24 for the multihost lab")


@dataclass
class Node:
    """One machine: a namespace, its veth link to the bridge and its address."""

    name: str
    netns: str
    address: str
    bridge_link: str  # its veth end in the bridge namespace (down = cable cut)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Lab:
    """The namespaces, links and processes of one multi-host pool."""

    def __init__(
        self,
        tmp: Path,
        *,
        tls: Path | None = None,
        env: dict[str, str] | None = None,
        port: int = 8786,
    ) -> None:
        self.tmp = tmp
        self.tls = tls
        self.prefix = f"fx{secrets.token_hex(3)}"
        self.net = _free_subnet()
        self._hosts = iter(self.net.hosts())
        self.client_address = str(next(self._hosts))
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.nodes: dict[str, Node] = {}
        self.bridge_ns = f"{self.prefix}-net"
        self._links: list[str] = []  # links made in the root namespace
        self._netns: list[str] = []
        self._closed = False
        self._root_link = f"{self.prefix}r0"
        _OPEN.append(self)
        _exit_on_sigterm()
        try:
            self._make_bridge()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ network
    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._netns.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _make_bridge(self) -> None:
        self._add_netns(self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        # The root namespace (this process, the clients) joins the bridge too.
        peer = f"{self.prefix}r1"
        _ip("link", "add", self._root_link, "type", "veth", "peer", "name", peer)
        self._links.append(self._root_link)
        _ip("link", "set", peer, "netns", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "set", peer, "master", "br0", "up")
        _ip("addr", "add", f"{self.client_address}/{self.net.prefixlen}", "dev", self._root_link)
        _ip("link", "set", self._root_link, "up")

    def add_node(self, name: str) -> Node:
        """A new machine on the bridge."""
        i = len(self.nodes)
        netns = f"{self.prefix}-{name}"
        inner, outer = f"{self.prefix}n{i}", f"{self.prefix}b{i}"
        address = str(next(self._hosts))
        self._add_netns(netns)
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        self._links.append(inner)
        _ip("link", "set", inner, "netns", netns)
        _ip("link", "set", outer, "netns", self.bridge_ns)
        self._links.remove(inner)  # both ends live in our namespaces now
        _ip("-n", self.bridge_ns, "link", "set", outer, "master", "br0", "up")
        _ip("-n", netns, "addr", "add", f"{address}/{self.net.prefixlen}", "dev", inner)
        _ip("-n", netns, "link", "set", inner, "up")
        node = Node(name, netns, address, outer)
        self.nodes[name] = node
        return node

    def cut(self, name: str) -> None:
        """Pull the node's cable: its bridge port goes down, packets are dropped silently."""
        _ip("-n", self.bridge_ns, "link", "set", self.nodes[name].bridge_link, "down")

    def restore(self, name: str) -> None:
        _ip("-n", self.bridge_ns, "link", "set", self.nodes[name].bridge_link, "up")

    # ------------------------------------------------------------------ processes
    @property
    def protocol(self) -> str:
        return "tls" if self.tls is not None else "tcp"

    @property
    def scheduler_address(self) -> str:
        return f"{self.protocol}://{self.nodes['sched'].address}:{self.port}"

    def _security_args(self) -> list[str]:
        if self.tls is not None:
            return ["--tls", str(self.tls)]
        return ["--insecure"] if _cli_has("--insecure") else []

    def security(self) -> Any:
        """The clients' Dask ``Security`` (None over plain TCP)."""
        if self.tls is None:
            return None
        from flexlab.tls import pool_security

        return pool_security(str(self.tls), client="client")

    def run(self, node: str, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the node's namespace (``ip netns exec`` execs it: the pid
        is the command's own)."""
        n = self.nodes[node]
        out = (self.tmp / f"{log}.log").open("ab")
        out.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        p = subprocess.Popen(
            ["ip", "netns", "exec", n.netns, *argv],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        n.procs.append(p)
        return p

    def start_scheduler(self, state_file: Path) -> subprocess.Popen[bytes]:
        """``flexlab up --no-agent`` on the ``sched`` node, leases kept in ``state_file``."""
        if "sched" not in self.nodes:
            self.add_node("sched")
        argv = [
            sys.executable,
            "-m",
            "flexlab.cli",
            "up",
            "--no-agent",
            "--host",
            self.nodes["sched"].address,
            "--port",
            str(self.port),
            "--state-file",
            str(state_file),
            *self._security_args(),
        ]
        self.scheduler = self.run("sched", argv, "scheduler")
        return self.scheduler

    def start_agent(self, node: str, spec: Path, host_name: str) -> subprocess.Popen[bytes]:
        """``flexlab agent`` for ``host_name`` of the mock ``spec``; its slice workers listen
        on the node's address."""
        if node not in self.nodes:
            self.add_node(node)
        argv = [
            sys.executable,
            "-m",
            "flexlab.cli",
            "agent",
            self.scheduler_address,
            "--provider",
            "mock",
            "--spec",
            str(spec),
            "--host-name",
            host_name,
            "--listen",
            self.nodes[node].address,
            "--register-timeout",
            "120",
            *self._security_args(),
        ]
        return self.run(node, argv, f"agent-{node}")

    def pids(self, node: str | None = None) -> list[int]:
        """Processes alive in the lab's namespaces (or one node's)."""
        names = [self.nodes[node].netns] if node else list(self._netns)
        out: list[int] = []
        for ns in names:
            r = _ip("netns", "pids", ns, check=False)
            out += [int(x) for x in r.stdout.split()]
        return [p for p in out if _alive(p)]

    def stop_processes(self, timeout: float = 20.0) -> list[int]:
        """SIGTERM every process in the lab (agents first, so they stop their workers and
        leave), wait, and return the pids still alive after ``timeout``."""
        agents = [p for n in self.nodes.values() if n.name != "sched" for p in n.procs]
        scheduler = [p for n in self.nodes.values() if n.name == "sched" for p in n.procs]
        for group in (agents, scheduler):
            for p in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline and any(p.poll() is None for p in group):
                time.sleep(0.1)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and self.pids():
            time.sleep(0.2)
        return self.pids()

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-tail:]}" for f in sorted(self.tmp.glob("*.log"))
        )

    # ------------------------------------------------------------------ cleanup
    def close(self) -> None:
        """Kill what runs in the lab's namespaces, delete its links and namespaces.
        Idempotent; touches only names with this lab's prefix."""
        if self._closed:
            return
        self._closed = True
        for n in self.nodes.values():
            for p in n.procs:
                if p.poll() is None:
                    p.kill()
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for n in self.nodes.values():
            for p in n.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        for link in self._links:
            _ip("link", "del", link, check=False)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("link", "del", self._root_link, check=False)
        for ns in reversed(self._netns):
            _ip("netns", "del", ns, check=False)
        self._sweep()
        if self in _OPEN:
            _OPEN.remove(self)

    def _sweep(self) -> None:
        """Whatever still carries this lab's prefix (a step that failed half-way): its
        processes killed, then the namespace or link deleted. Only this lab's prefix."""
        for ns in _ip("netns", "list").stdout.split():
            if ns.startswith(self.prefix):
                for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                _ip("netns", "del", ns, check=False)
        for name in self.leftovers():
            _ip("link", "del", name, check=False)

    def leftovers(self) -> list[str]:
        """Namespaces and links with this lab's prefix that still exist."""
        names = _ip("netns", "list").stdout.split() + _ip("-o", "link").stdout.split()
        return sorted({x.split("@")[0].rstrip(":") for x in names if x.startswith(self.prefix)})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


_HELP: dict[str, str] = {}


def _cli_has(option: str) -> bool:
    """Whether ``flexlab up`` knows ``option`` (the pool's own flags, read from its help)."""
    if "up" not in _HELP:
        _HELP["up"] = subprocess.run(
            [sys.executable, "-m", "flexlab.cli", "up", "--help"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    return option in _HELP["up"]


def _exit_on_sigterm() -> None:
    """A SIGTERM to the test process (a CI job cancelled) exits through SystemExit, so the
    fixtures' finalizers and the atexit hook still clean up (the default handler would not)."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@atexit.register
def _close_all() -> None:
    for lab in list(_OPEN):
        lab.close()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, lab: Lab | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except (OSError, TimeoutError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}\n{lab.logs() if lab else ''}"
            )
        time.sleep(0.2)
