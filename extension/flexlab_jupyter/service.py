"""The pool front as a JupyterHub service: flexlab's REST API for the user tier.

A process that holds the pool's client certificate and runs as a system account the Hub's
users are not. It serves the same routes and handlers as the server extension
(``/flexlab/api/``, ``openapi.yaml``) under the service's prefix (``/services/flexlab/``),
with one :class:`~flexlab_jupyter.manager.PoolManager`; a caller is whoever the Hub says
their token belongs to (:class:`HubTokenIdentity`), and that Hub user owns their leases.
Other owners' lease details are left out of what it shows (``PoolManager(user_tier=True)``).

JupyterHub starts it as a managed service (``flexlab front``, ``flexlab/ops/jupyterhub_config.py``)
and gives it ``$JUPYTERHUB_API_TOKEN``, ``$JUPYTERHUB_API_URL``, ``$JUPYTERHUB_SERVICE_URL``
and ``$JUPYTERHUB_SERVICE_PREFIX``. Nothing else of Jupyter runs in it: no kernels, no
contents, no terminals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import urllib.parse
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.utils import url_path_join
from tornado import web

from flexlab_jupyter.handlers import routes
from flexlab_jupyter.manager import PoolManager

logger = logging.getLogger("flexlab.front")

#: The service's name in ``c.JupyterHub.services`` (the token scope is ``access:services!service=NAME``).
SERVICE_NAME = "flexlab"


class HubTokenIdentity(IdentityProvider):
    """The Jupyter user of a request is the JupyterHub user whose token it carries
    (``Authorization: token ...``), asked of the Hub (``HubAuth.user_for_token``, cached)."""

    def __init__(self, hub_auth: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub_auth = hub_auth

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        m = self.hub_auth.auth_header_pat.match(handler.request.headers.get("Authorization", ""))
        if not m:
            return None
        model = await self.hub_auth.user_for_token(m.group(1), sync=False)
        if not model:
            return None
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, f"a {model.get('kind')} token does not name a user; leases are users'")
        needed = self.hub_auth.access_scopes
        if needed and not self.hub_auth.check_scopes(needed, model):
            raise web.HTTPError(
                403, f"this token lacks the scope {' or '.join(sorted(needed))} (docs/security.md)"
            )
        handler._token_authenticated = True  # type: ignore[attr-defined]  # token requests skip XSRF
        return User(username=str(model["name"]), name=str(model["name"]))


def hub_auth(service_name: str = SERVICE_NAME) -> Any:
    """A ``HubAuth`` from the managed service's environment, asking for ``access:services!service=NAME``."""
    from jupyterhub.services.auth import HubAuth

    auth = HubAuth(cache_max_age=60)
    if not auth.api_token:
        raise ValueError(
            "no $JUPYTERHUB_API_TOKEN: run flexlab front as a JupyterHub service (docs/security.md)"
        )
    if not auth.access_scopes:
        auth.access_scopes = {f"access:services!service={service_name}"}
    return auth


def make_app(manager: PoolManager, identity: IdentityProvider, *, base_url: str = "/") -> web.Application:
    """The tornado application of the front: the extension's routes under ``base_url``."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    handlers = [(url_path_join(base, pattern), handler) for pattern, handler in routes()]
    settings = {
        "base_url": base,
        "identity_provider": identity,
        "allow_remote_access": True,  # reached through the Hub's proxy, by any host name
        "flexlab_manager": manager,
        "flexlab_owner_source": "identity",
        "serverapp": None,
    }
    return web.Application(handlers, **settings)  # type: ignore[arg-type]


def listen_address(url: str) -> tuple[str, int]:
    """(host, port) of ``$JUPYTERHUB_SERVICE_URL`` (``http://127.0.0.1:10101``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"the service URL {url!r} is not http://HOST:PORT")
    return parts.hostname, parts.port


async def serve(
    manager: PoolManager,
    identity: IdentityProvider,
    *,
    host: str,
    port: int,
    base_url: str,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then close the manager."""
    app = make_app(manager, identity, base_url=base_url)
    server = app.listen(port, address=host, xheaders=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("flexlab front: serving %s on http://%s:%d for %s", base_url, host, port, manager.address)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.stop()
        await manager.aclose()
        logger.info("flexlab front: stopped")


def run(address: str, *, tls: str | None, url: str | None = None, service_name: str = SERVICE_NAME) -> None:
    """``flexlab front``: connect to the pool and serve until stopped (blocking)."""
    service_url = url or os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    if not service_url:
        raise ValueError("no --url and no $JUPYTERHUB_SERVICE_URL: where should the front listen?")
    host, port = listen_address(service_url)
    base_url = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{service_name}/"
    identity = HubTokenIdentity(hub_auth(service_name))
    manager = PoolManager(address, embedded=False, tls=tls, user_tier=True)
    manager.start()  # fails now, not at the first request, when the pool cannot be reached
    # distributed's logging config silences tornado; the front's requests belong in the Hub's log
    logging.getLogger("tornado.access").setLevel(logging.INFO)
    logging.getLogger("tornado.application").setLevel(logging.ERROR)
    asyncio.run(serve(manager, identity, host=host, port=port, base_url=base_url))
