"""1,000 lease requests at once from 50 owners, through the Python API and the Jupyter REST API.

    python benchmarks/load_bench.py [--requests 1000] [--owners 50] [--json F] [--processes]

It starts a real pool as its own processes (``flexlab up --no-agent`` on 127.0.0.1, and a
``flexlab agent`` process serving the demo's mock pool: 3 hosts, 6 devices; slice workers as
threads of the agent unless ``--processes``, so the scheduler's process runs only the
scheduler) and,
for the REST phase, a real Jupyter server with the flexlab server extension, whose test
identity provider logs each of the owners in by its own token. Then, one phase at a time:

* ``python``: every owner has its own Dask client; all requests go at once through
  ``flexlab.lease(spec, owner=..., wait=False)`` from one thread each.
* ``rest``: all requests go at once as ``POST /flexlab/api/leases``, each with its owner's
  token, over ``--connections`` (100) HTTP connections; the server answers them with its
  ``api_threads`` Dask calls at a time. Response time counts from when the request was
  issued, so it includes the wait for a free connection.
* ``give-up``: all requests go at once through ``flexlab.lease(spec, timeout=3)``, which waits
  for the lease to be active and gives it back when it is not within 3 s; afterwards
  only the leases of the calls that returned may be left.

After each phase: every request answered (a lease that is active, or pending with its reason),
``audit()`` of the pool's invariants clean (run on the scheduler), the number of live leases
what the phase made; then every owner releases its leases, and no lease is left.

Reported: response time p50 / p95 / p99 / max per phase, and the scheduler's event-loop tick
duration (distributed's ``tick-duration`` metric: a tick is due every 20 ms; what goes beyond
is time the loop was blocked) p50 / p99 / max during each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SPECS = ("gpu:0.25", "any:0.1", "npu:0.5", "gpu:0.5,4GiB", "any:0.2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    ys = sorted(xs)

    def q(p: float) -> float:
        return ys[min(len(ys) - 1, int(p * len(ys)))]

    return {
        "n": len(ys),
        "p50_ms": round(1000 * q(0.50), 1),
        "p95_ms": round(1000 * q(0.95), 1),
        "p99_ms": round(1000 * q(0.99), 1),
        "max_ms": round(1000 * ys[-1], 1),
        "mean_ms": round(1000 * statistics.fmean(ys), 1),
    }


@contextmanager
def process(cmd: list[str], log: Path, ready: Callable[[], bool], timeout: float = 90.0) -> Iterator[int]:
    """A child process in its own session, stopped (and its children) by its id at the end."""
    with log.open("w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if p.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {p.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd)} not ready after {timeout:.0f} s; see {log}")
            time.sleep(0.3)
        yield p.pid
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


# --------------------------------------------------------------- on the scheduler
def _record_ticks(dask_scheduler: Any) -> None:
    """Keep every ``tick-duration`` the scheduler digests in ``dask_scheduler._flexlab_ticks``."""
    if hasattr(dask_scheduler, "_flexlab_ticks"):
        return
    ticks: list[float] = []
    dask_scheduler._flexlab_ticks = ticks
    digest = dask_scheduler.digest_metric

    def record(name: str, value: float) -> None:
        if name == "tick-duration":
            ticks.append(value)
        digest(name, value)

    dask_scheduler.digest_metric = record


def _take_ticks(dask_scheduler: Any) -> list[float]:
    ticks: list[float] = dask_scheduler._flexlab_ticks
    out = list(ticks)
    ticks.clear()
    return out


def _audit(dask_scheduler: Any) -> dict[str, Any]:
    from flexlab.core.pool.audit import audit

    pool = dask_scheduler.plugins["flexlab"].pool
    live = [x for x in pool.leases.values() if x.state not in ("released", "expired")]
    return {
        "broken": audit(pool),
        "live": len(live),
        "by_state": {s: sum(1 for x in live if x.state == s) for s in ("pending", "active", "recovering")},
        "errors": list(dask_scheduler.plugins["flexlab"].errors),
    }


# --------------------------------------------------------------------- phases
def answered(lease: dict[str, Any]) -> bool:
    """A request is answered with a lease that is active, or that waits and says why."""
    return lease.get("state") == "active" or (lease.get("state") == "pending" and bool(lease.get("reason")))


def python_phase(address: str, owners: list[str], n: int, *, give_up: float | None) -> dict[str, Any]:
    from distributed import Client

    import flexlab

    clients = {o: Client(address, set_as_default=False) for o in owners}
    barrier = threading.Barrier(n)
    times: list[float] = []
    results: list[tuple[str, dict[str, Any] | None, str]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        owner = owners[i % len(owners)]
        spec = SPECS[i % len(SPECS)]
        barrier.wait()
        t0 = time.perf_counter()
        info: dict[str, Any] | None = None
        error = ""
        try:
            if give_up is None:
                lease = flexlab.lease(spec, owner=owner, client=clients[owner], wait=False, ttl="1h")
            else:
                lease = flexlab.lease(spec, owner=owner, client=clients[owner], timeout=give_up, ttl="1h")
            info = lease.refresh()
        except TimeoutError as exc:
            error = f"TimeoutError: {exc}"
        except Exception as exc:  # counted and reported, never hidden
            error = f"{type(exc).__name__}: {exc}"
        dt = time.perf_counter() - t0
        with lock:
            times.append(dt)
            results.append((owner, info, error))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as ex:
        list(ex.map(one, range(n)))
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": round(wall, 2), "response": quantiles(times)}
    if give_up is None:
        out["answered"] = sum(1 for _, info, _ in results if info is not None and answered(info))
    else:
        out["returned_active"] = sum(1 for _, info, _ in results if info is not None)
        out["timed_out"] = sum(1 for _, _, e in results if e.startswith("TimeoutError"))
    out["other_errors"] = sorted({e for _, _, e in results if e and not e.startswith("TimeoutError")})[:5]
    out["_kept"] = [(o, info["lease_id"]) for o, info, _ in results if info is not None]
    for c in clients.values():
        c.close()
    return out


async def rest_phase(base: str, owners: list[str], n: int, connections: int) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    AsyncHTTPClient.configure(None, max_clients=connections)
    http = AsyncHTTPClient()
    times: list[float] = []

    async def one(i: int) -> tuple[int, dict[str, Any]]:
        owner = owners[i % len(owners)]
        req = HTTPRequest(
            f"{base}/flexlab/api/leases",
            method="POST",
            headers={"Authorization": f"token tok-{owner}", "Content-Type": "application/json"},
            body=json.dumps({"request": SPECS[i % len(SPECS)], "ttl": "1h"}),
            request_timeout=600,
            connect_timeout=600,  # tornado counts the wait for a free connection here
        )
        t0 = time.perf_counter()
        try:
            resp = await http.fetch(req, raise_error=False)
        except Exception as exc:  # a refused or reset connection is an unanswered request
            return 0, {"error": f"{type(exc).__name__}: {exc}"}
        times.append(time.perf_counter() - t0)
        return resp.code, json.loads(resp.body or b"{}")

    t0 = time.perf_counter()
    replies = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    ok = [body for code, body in replies if code == 201 and answered(body)]
    codes: dict[str, int] = {}
    for code, _ in replies:
        codes[str(code)] = codes.get(str(code), 0) + 1
    kept = [(str(body["owner"]), str(body["lease_id"])) for code, body in replies if code == 201]
    http.close()
    return {
        "wall_s": round(wall, 2),
        "response": quantiles(times),
        "answered": len(ok),
        "http_status": codes,
        "_kept": kept,
    }


async def rest_release(base: str, kept: list[tuple[str, str]]) -> int:
    """Each owner releases its leases through the REST API; how many were released."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    http = AsyncHTTPClient()
    replies = await asyncio.gather(
        *(
            http.fetch(
                HTTPRequest(
                    f"{base}/flexlab/api/leases/{lease_id}",
                    method="DELETE",
                    headers={"Authorization": f"token tok-{owner}"},
                    request_timeout=600,
                    connect_timeout=600,
                ),
                raise_error=False,
            )
            for owner, lease_id in kept
        )
    )
    return sum(1 for r in replies if r.code == 200)


IDENTITY = '''
"""Log each load-test owner in by its own token (``Authorization: token tok-<owner>``)."""
from jupyter_server.auth.identity import IdentityProvider, User


class LoadUsers(IdentityProvider):
    def get_user(self, handler):
        header = handler.request.headers.get("Authorization", "")
        token = header.removeprefix("token ").strip()
        if not token.startswith("tok-"):
            return None
        handler._token_authenticated = True
        return User(username=token[4:])
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--owners", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--processes", action="store_true", help="slice workers as processes (default threads)")
    ap.add_argument(
        "--give-up-after", type=float, default=3.0, help="the give-up phase's lease timeout (seconds)"
    )
    ap.add_argument(
        "--connections",
        type=int,
        default=100,
        help="HTTP connections the REST phase's requests share (a browser opens at most 6 per "
        "server; the Jupyter server's listen backlog is 128, so 1,000 new connections at once "
        "are reset by the kernel, not answered by flexlab)",
    )
    ap.add_argument("--phases", default="python,rest,give-up", help="which phases, comma-separated")
    args = ap.parse_args()
    from distributed import Client

    owners = [f"u{i:02d}" for i in range(args.owners)]
    phases = [p for p in args.phases.split(",") if p]
    bad = sorted(set(phases) - {"python", "rest", "give-up"})
    if bad:
        ap.error(f"unknown phase(s) {bad}; allowed: python, rest, give-up")
    report: dict[str, Any] = {
        "requests": args.requests,
        "owners": args.owners,
        "workers": "processes" if args.processes else "threads",
        "phases": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="flexlab-load-"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "flexlab.cli"]
    up = [*cli, "up", "--no-agent", "--port", str(port), "--state-file", str(tmp / "state.db")]
    up += ["--dashboard", f"127.0.0.1:{free_port()}"]
    agent = [*cli, "agent", address, "--provider", "mock", "--register-timeout", "60"]
    if not args.processes:
        agent.append("--threads")
    up_log, agent_log = tmp / "up.log", tmp / "agent.log"
    with (
        process(up, up_log, lambda: "flexlab scheduler at" in up_log.read_text()),
        process(agent, agent_log, lambda: agent_log.read_text().count("registered with") >= 3),
        Client(address, set_as_default=False) as admin,
    ):
        admin.run_on_scheduler(_record_ticks)

        def settle(name: str, phase: dict[str, Any]) -> None:
            if "after" not in phase:  # the REST phase audits before it releases
                phase["after"] = admin.run_on_scheduler(_audit)
                phase["ticks"] = quantiles(admin.run_on_scheduler(_take_ticks))
            phase.pop("_kept")
            report["phases"][name] = phase
            print(f"{name}: {json.dumps(phase)}", flush=True)

        def release_python(kept: list[tuple[str, str]]) -> None:
            import flexlab

            with Client(address, set_as_default=False) as c:
                for owner, lease_id in kept:
                    flexlab.Lease.attach(lease_id, owner=owner, client=c).release()

        for name in phases:
            admin.run_on_scheduler(_take_ticks)
            if name == "python":
                phase = python_phase(address, owners, args.requests, give_up=None)
            elif name == "give-up":
                phase = python_phase(address, owners, args.requests, give_up=args.give_up_after)
            else:
                phase = run_rest(tmp, address, owners, args.requests, args.connections)
            kept = list(phase["_kept"])
            settle(name, phase)
            if name == "rest":
                continue  # released through the REST API inside run_rest
            release_python(kept)
            left = admin.run_on_scheduler(_audit)
            report["phases"][name]["after_release"] = left
            print(f"{name}: after release {json.dumps(left)}", flush=True)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    ok = all(
        not p["after"]["broken"]
        and not p["after"]["errors"]
        and p.get("after_release", {}).get("live", 0) == 0
        and (p.get("answered", args.requests) == args.requests)
        for p in report["phases"].values()
    )
    return 0 if ok else 1


def run_rest(tmp: Path, address: str, owners: list[str], n: int, connections: int) -> dict[str, Any]:
    """Start a Jupyter server with the flexlab extension, fire the requests, release them."""
    (tmp / "loadusers.py").write_text(textwrap.dedent(IDENTITY))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={tmp}",
        "--ServerApp.identity_provider_class=loadusers.LoadUsers",
        "--ServerApp.jpserver_extensions={'flexlab_jupyter': True}",
        f"--FlexlabJupyter.scheduler_address={address}",
    ]
    log = tmp / "jupyter.log"
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{tmp}{os.pathsep}{env_path}" if env_path else str(tmp)

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        from distributed import Client

        with process(cmd, log, ready), Client(address, set_as_default=False) as admin:
            admin.run_on_scheduler(_take_ticks)  # from here on: the requests' ticks only
            phase = asyncio.run(rest_phase(base, owners, n, connections))
            phase["after"] = admin.run_on_scheduler(_audit)
            phase["ticks"] = quantiles(admin.run_on_scheduler(_take_ticks))
            phase["released"] = asyncio.run(rest_release(base, phase["_kept"]))
            phase["after_release"] = admin.run_on_scheduler(_audit)
            return phase
    finally:
        os.environ["PYTHONPATH"] = env_path


if __name__ == "__main__":
    sys.exit(main())
