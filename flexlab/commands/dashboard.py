"""``flexlab dashboard``: the live ops dashboard in Voila.

By default it starts an embedded mock pool (``FlexCluster``, slice workers as threads) with a
steady synthetic load, so the picture moves; ``--scheduler ADDRESS`` shows an existing pool
instead. The notebook (``notebooks/dashboard.ipynb``, or the same notebook written to a
temporary folder when flexlab is installed without its repository) finds the pool through
``$FLEXLAB_SCHEDULER``. Voila listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flexlab.commands.logs import set_levels
from flexlab.core.errors import InvalidRequest

#: The JupyterLab panel's lab extension: a lab-shell plugin, which fails to activate in Voila.
LAB_EXTENSION = "flexlab-jupyter"
SCHEDULER_ENV = "FLEXLAB_SCHEDULER"
DEFAULT_PORT = 8866
_REPO_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "dashboard.ipynb"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def choose_port(requested: int | None) -> int:
    """``requested``; 0: any free port; None: 8866 when free, else any free port."""
    if requested:
        return requested
    if requested is None:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", DEFAULT_PORT))
            except OSError:  # taken: any free port instead
                return free_port()
        return DEFAULT_PORT
    return free_port()


def notebook_path(tmp: Path) -> Path:
    """The repository's ``notebooks/dashboard.ipynb``, else the same notebook written to ``tmp``."""
    if _REPO_NOTEBOOK.is_file():
        return _REPO_NOTEBOOK
    import nbformat

    from flexlab.dashboard.notebook import dashboard_notebook

    path = tmp / "dashboard.ipynb"
    write: Any = nbformat.write  # nbformat is untyped
    write(dashboard_notebook(), str(path))
    return path


def _has_browser() -> bool:
    """Whether this machine can open a browser (a headless server cannot: Voila would only
    warn that it found none, so it is not asked; the address is printed either way)."""
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def voila_command(notebook: Path, port: int, *, open_browser: bool, preheat: bool = False) -> list[str]:
    """Voila on 127.0.0.1 without the lab panel's extension (a lab-shell plugin fails there)."""
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        f"--VoilaConfiguration.extension_denylist={LAB_EXTENSION}",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    if preheat:
        cmd.append("--preheat_kernel=True")
    return cmd


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until something listens on 127.0.0.1:``port`` (False: ``proc`` ended or time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _start_pool(scheduler_port: int, load: bool) -> tuple[Any, Any, Any]:
    from distributed import Client
    from flexlab_dask import FlexCluster

    from flexlab.dashboard.load import SyntheticLoad

    make_client: Any = Client  # distributed is untyped
    cluster = FlexCluster(scheduler_port=scheduler_port)
    client = make_client(cluster)
    # The load starts a few seconds late, when the first page has likely been drawn.
    gen = SyntheticLoad(client, delay_s=5.0).start() if load else None
    return cluster, client, gen


def _quiet(verbose: bool, level: int) -> None:
    if not verbose:
        set_levels(level, ("distributed",))


def cmd_dashboard(args: argparse.Namespace) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        raise InvalidRequest("--port", args.port, "0 (any free port) to 65535")
    _quiet(args.verbose, logging.ERROR)
    port = choose_port(args.port)
    embedded = not args.scheduler
    # Voila starts while the pool does: the notebook's client waits for the scheduler.
    scheduler_port = free_port() if embedded else 0
    address = args.scheduler or f"tcp://127.0.0.1:{scheduler_port}"
    from flexlab.tls import TLS_ENV, client_security, pool_address, role_files, tls_dir

    tls = tls_dir(args.tls) if not embedded else None
    if tls:  # the notebook's kernel connects with the client certificate too
        role_files(tls, "client")
        address = pool_address(address, tls=True)
    cluster = client = load = None
    with tempfile.TemporaryDirectory(prefix="flexlab-dashboard-") as tmp:
        nb = notebook_path(Path(tmp))
        env = {**os.environ, SCHEDULER_ENV: address, **({TLS_ENV: tls} if tls else {})}
        cmd = voila_command(
            nb, port, open_browser=not args.no_browser and _has_browser(), preheat=args.preheat
        )
        proc = subprocess.Popen(cmd, env=env)
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

        old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if embedded:
                # Voila first, alone: it starts faster without the pool competing for the CPUs,
                # and the notebook's kernel imports while the pool starts (its client waits).
                wait_listening(port, proc, timeout=30.0)
                cluster, client, load = _start_pool(scheduler_port, not args.no_load)
                what = "with a synthetic load" if load else "idle"
                print(f"flexlab dashboard: embedded mock pool at {address} ({what})")
            elif args.load:
                from distributed import Client

                from flexlab.dashboard.load import SyntheticLoad

                make_client: Any = Client  # distributed is untyped
                client = make_client(address, timeout="30s", security=client_security(tls))
                load = SyntheticLoad(client).start()
            print(f"flexlab dashboard: http://127.0.0.1:{port}/  (Ctrl-C stops it)", flush=True)
            while proc.poll() is None:
                time.sleep(0.2)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            _quiet(args.verbose, logging.CRITICAL)  # workers closing mid-task log their cancellations
            if load is not None:
                load.stop()
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
    return 0 if stopping or proc.returncode in (0, -signal.SIGTERM) else int(proc.returncode or 1)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboard",
        help="the live ops dashboard (Voila): pool map, utilisation, queue, leases, events",
        description="Serve the flexlab ops dashboard with Voila on 127.0.0.1. Without --scheduler it "
        "starts an embedded mock pool with a steady synthetic load.",
    )
    p.add_argument(
        "--scheduler", default=None, help="address of a running pool (default: an embedded mock pool)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port for Voila (default {DEFAULT_PORT}, or a free one; 0 = any)",
    )
    p.add_argument(
        "--tls",
        metavar="DIR",
        default=None,
        help="with --scheduler: connect with the client certificate in DIR (default: $FLEXLAB_TLS, "
        "else the dask config flexlab.tls)",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--no-load", action="store_true", help="embedded pool: no synthetic load")
    p.add_argument("--load", action="store_true", help="with --scheduler: also run the synthetic load on it")
    p.add_argument(
        "--preheat",
        action="store_true",
        help="run the notebook in a kernel before the first page asks for it",
    )
    p.add_argument("--verbose", action="store_true", help="show Dask's and flexlab's logs")
    p.set_defaults(func=cmd_dashboard)


def main(argv: list[str] | None = None) -> int:
    """``python -m flexlab.commands.dashboard``: the same command without the ``flexlab`` CLI."""
    parser = argparse.ArgumentParser(prog="flexlab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dashboard", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except InvalidRequest as exc:
        print(f"flexlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
