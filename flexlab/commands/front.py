"""``flexlab front``: the pool front for the user tier, as a JupyterHub service.

It holds the pool's client certificate and serves flexlab's REST API (the routes of
``/flexlab/api/``) to Hub users, each authenticated by their Hub token; run it as a system
account the Hub's users are not (``docs/security.md``). JupyterHub starts it::

    c.JupyterHub.services = [{
        "name": "flexlab",
        "url": "http://127.0.0.1:10101",
        "command": ["flexlab", "front", "--scheduler", "tls://10.0.0.5:8786", "--tls", "/etc/flexlab/tls"],
    }]

(a whole example: ``flexlab/ops/jupyterhub_config.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from flexlab.commands.logs import set_levels
from flexlab.core.errors import InvalidRequest


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "front",
        help="serve the pool's REST API to JupyterHub users (a Hub service holding the pool certificate)",
        description="The pool front for the user tier: a JupyterHub service that holds the pool's client "
        "certificate and serves flexlab's REST API (/flexlab/api/ under the service's prefix) to Hub "
        "users, authenticated by their Hub token; the owner of each lease is the Hub user. Start it "
        "from JupyterHub (c.JupyterHub.services, see flexlab/ops/jupyterhub_config.py), as an account "
        "the Hub's users are not. Users' servers use it with FlexlabJupyter.front_url.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_front)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the pool's Dask scheduler, e.g. tls://10.0.0.5:8786 (default: $FLEXLAB_SCHEDULER, else the "
        "dask config flexlab.scheduler-address)",
    )
    p.add_argument(
        "--tls",
        metavar="DIR",
        help="the pool's client certificate folder (flexlab certs; default: $FLEXLAB_TLS, else the dask "
        "config flexlab.tls); keep it readable by the front's account only",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="where to listen, http://HOST:PORT (default: $JUPYTERHUB_SERVICE_URL, which the Hub sets "
        "from the service's url)",
    )
    p.add_argument(
        "--name",
        default="flexlab",
        help="the service's name in c.JupyterHub.services (callers need the scope "
        "access:services!service=NAME; default flexlab)",
    )


def cmd_front(args: argparse.Namespace) -> int:
    from flexlab.client import scheduler_address
    from flexlab.tls import role_files, tls_dir

    address = args.scheduler or scheduler_address()
    if not address:
        raise InvalidRequest("--scheduler", None, "the pool's address, e.g. tls://10.0.0.5:8786")
    folder = tls_dir(args.tls)
    if folder:
        role_files(folder, "client")  # a missing file is named now
    elif address.startswith("tls://"):
        raise InvalidRequest("--tls", None, "the folder of the pool's client certificate for a tls:// pool")
    try:
        from flexlab_jupyter.service import run
    except ModuleNotFoundError as exc:
        raise InvalidRequest(
            "flexlab front",
            exc.name,
            "jupyter_server and jupyterhub: pip install 'flexlab[jupyter]' jupyterhub",
        ) from None
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    set_levels(logging.WARNING, ("distributed",))
    try:
        run(address, tls=folder, url=args.url, service_name=args.name)
    except ValueError as exc:
        raise InvalidRequest(
            "flexlab front", str(exc), "run it as a JupyterHub service, or pass --url"
        ) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flexlab front", description="The pool front for JupyterHub users.")
    add_arguments(parser)
    return cmd_front(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
