"""``flexlab lab``: JupyterLab with the Accelerators panel and a pool connected.

By default the server starts the embedded mock pool in its own process (the server extension
does it: ``flexlab_jupyter``); ``--scheduler ADDRESS`` connects it to a running pool
(``flexlab up``) instead. Kernels started from the lab find the same pool through
``$FLEXLAB_SCHEDULER``, so ``%load_ext flexlab`` and ``flexlab.Lease.attach`` just work::

    flexlab lab                                   # embedded mock pool, opens a browser
    flexlab lab --scheduler tcp://10.0.0.5:8786 --port 8890 --no-browser
    flexlab lab -- --ServerApp.root_dir=notebooks  # anything after -- goes to jupyter lab

``python -m flexlab.commands.lab`` does the same without the ``flexlab`` entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from flexlab.commands.logs import set_levels
from flexlab.core.errors import InvalidRequest

DEFAULT_PORT = 8888


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lab",
        help="start JupyterLab with the Accelerators panel and a pool connected",
        description="Start JupyterLab with the flexlab extension: the Accelerators panel, the REST API "
        "under /flexlab/api/ and %%flex in kernels. Without --scheduler the server runs the embedded "
        "mock pool itself.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_lab)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the pool's Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: $FLEXLAB_SCHEDULER, "
        "else the embedded mock pool)",
    )
    p.add_argument(
        "--tls",
        metavar="DIR",
        help="connect to the pool with the client certificate in DIR (flexlab certs); kernels started "
        "from the lab get it too (default: $FLEXLAB_TLS, else the dask config flexlab.tls)",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port of the server (default {DEFAULT_PORT})"
    )
    p.add_argument("--ip", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--allow-root", action="store_true", help="let the server run as root (containers, CI)")
    p.add_argument(
        "jupyter_args",
        nargs=argparse.REMAINDER,
        metavar="-- JUPYTER_OPTION",
        help="options for jupyter lab itself, after --",
    )


def lab_argv(args: argparse.Namespace) -> list[str]:
    """The ``jupyter lab`` command line of ``flexlab lab``'s arguments."""
    if not 0 < args.port < 65536:
        raise InvalidRequest("--port", args.port, "a TCP port, 1..65535")
    argv = [f"--ServerApp.ip={args.ip}", f"--ServerApp.port={args.port}"]
    if args.no_browser:
        argv.append("--no-browser")
    if args.allow_root:
        argv.append("--allow-root")
    if args.scheduler:
        argv.append(f"--FlexlabJupyter.scheduler_address={args.scheduler}")
    if getattr(args, "tls", None):
        argv.append(f"--FlexlabJupyter.tls_dir={args.tls}")
    extra = list(args.jupyter_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return argv + extra


def cmd_lab(args: argparse.Namespace) -> int:
    try:
        import flexlab_jupyter  # noqa: F401
        from jupyterlab.labapp import LabApp
    except ModuleNotFoundError as exc:
        raise InvalidRequest(
            "flexlab lab", exc.name, "JupyterLab and flexlab's extension: pip install 'flexlab[jupyter]'"
        ) from None
    argv = lab_argv(args)
    if args.scheduler:
        os.environ["FLEXLAB_SCHEDULER"] = args.scheduler  # kernels use the same pool
    if args.tls:
        from flexlab.client import scheduler_address
        from flexlab.tls import TLS_ENV, role_files

        if not (args.scheduler or scheduler_address()):
            raise InvalidRequest(
                "--tls", args.tls, "with --scheduler tls://HOST:PORT (the embedded mock pool uses no TLS)"
            )
        role_files(args.tls, "client")  # a missing file is named now, not as a 503 later
        os.environ[TLS_ENV] = args.tls  # and the same client certificate (docs/security.md)
    print(f"flexlab lab: jupyter lab {' '.join(argv)}", file=sys.stderr)
    # Voila's import turns on every DeprecationWarning raised in traitlets, and JupyterLab's
    # own start-up then trips several (a plain `jupyter lab` prints them too): library
    # matters, not the user's to act on (kernels are other processes; theirs still show).
    with contextlib.suppress(ImportError):
        import voila  # noqa: F401
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="traitlets")
    # The embedded pool's Dask runs in this process: its warnings and errors show, not its
    # INFO lines (among them tracebacks of connections closed while the pool stops).
    set_levels(logging.WARNING, ("distributed",))
    LabApp.launch_instance(argv=argv)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexlab lab", description="JupyterLab with flexlab and a pool.")
    add_arguments(parser)
    return cmd_lab(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
