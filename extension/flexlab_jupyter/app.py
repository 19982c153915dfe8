"""The server extension: configuration, the pool manager's lifecycle and the routes.

Configure it like any Jupyter server extension (``jupyter_server_config.py`` or the command
line)::

    c.FlexlabJupyter.scheduler_address = "tcp://pool.example.org:8786"
    jupyter lab --FlexlabJupyter.scheduler_address=tcp://127.0.0.1:8786

With no address configured it uses ``$FLEXLAB_SCHEDULER``, then the dask config
``flexlab.scheduler-address``, and otherwise starts the embedded mock pool in the server
process. Kernels started by the server find the same pool through ``$FLEXLAB_SCHEDULER``.

Front mode (the user tier, ``docs/security.md``): with ``front_url`` set, the server holds no
pool credential; its REST API forwards to that flexlab front (``flexlab front``, a JupyterHub
service) with the user's own Hub token (``$JUPYTERHUB_API_TOKEN``), and its kernels get
``$FLEXLAB_FRONT`` instead of the pool's address and certificate::

    c.FlexlabJupyter.front_url = "http://127.0.0.1:8000/services/flexlab/"
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, Int, Unicode

from flexlab_jupyter.handlers import routes
from flexlab_jupyter.manager import FrontManager, PoolManager

#: The environment variable kernels read to find the pool (``flexlab.client.SCHEDULER_ENV``).
SCHEDULER_ENV = "FLEXLAB_SCHEDULER"
#: The environment variable kernels read to find the front (``flexlab.front.FRONT_ENV``).
FRONT_ENV = "FLEXLAB_FRONT"


class FlexlabJupyter(ExtensionApp):
    """flexlab's REST API under ``/flexlab/api/`` and the pool it talks to."""

    name = "flexlab_jupyter"
    load_other_extensions = True
    manager: PoolManager | FrontManager

    scheduler_address = Unicode(
        "",
        config=True,
        help="Address of the flexlab pool's Dask scheduler, e.g. tcp://10.0.0.5:8786. Empty: "
        "$FLEXLAB_SCHEDULER, then the dask config flexlab.scheduler-address, else the embedded pool.",
    )
    tls_dir = Unicode(
        "",
        config=True,
        help="Folder with the pool's ca.pem, client.pem and client-key.pem (flexlab certs) for mutual "
        "TLS to the scheduler. Empty: $FLEXLAB_TLS, then the dask config flexlab.tls, else plain tcp. "
        "Kernels this server starts get the same folder through $FLEXLAB_TLS (docs/security.md).",
    )
    embedded = Bool(
        True,
        config=True,
        help="Start the embedded mock pool (flexlab_dask.FlexCluster) in the server process when no "
        "scheduler address is configured. Off: the API answers 503 until one is configured.",
    )
    owner_source = Enum(
        ["auto", "identity", "server"],
        "auto",
        config=True,
        help="Who owns the leases a browser makes. 'identity': the Jupyter user's username (JupyterHub, "
        "custom identity providers). 'server': anonymous_owner, for a single-user server whose shared "
        "token or password does not name a user. 'auto': 'server' with jupyter_server's own token or "
        "password identity provider, 'identity' otherwise.",
    )
    anonymous_owner = Unicode(
        "",
        config=True,
        help="The owner of leases made through a single-user server (owner_source 'server'). Empty: "
        "$FLEXLAB_USER or the server's login name, which is also what kernels use by default.",
    )
    front_url = Unicode(
        "",
        config=True,
        help="Front mode: the URL of a flexlab front (flexlab front, a JupyterHub service), e.g. "
        "http://127.0.0.1:8000/services/flexlab/. The REST API forwards to it with the user's Hub token "
        "($JUPYTERHUB_API_TOKEN, or front_token), this server reads no pool credential, and its kernels "
        "get $FLEXLAB_FRONT and never $FLEXLAB_TLS or $FLEXLAB_SCHEDULER. Empty: $FLEXLAB_FRONT, else off.",
    )
    front_token = Unicode(
        "",
        config=True,
        help="The token sent to the front in front mode. Empty: $JUPYTERHUB_API_TOKEN (the Hub gives "
        "it to each single-user server; it needs the scope access:services!service=flexlab).",
    )
    api_threads = Int(
        4,
        config=True,
        help="Threads that run the blocking Dask calls of the API, off the server's event loop.",
    )
    connect_timeout = Float(
        10.0,
        config=True,
        help="Seconds to wait for the configured scheduler when connecting.",
    )

    def initialize_settings(self) -> None:
        front = self.front_url or os.environ.get(FRONT_ENV, "")
        if front:
            self._initialize_front(front)
            return
        from flexlab.client import scheduler_address
        from flexlab.tls import TLS_ENV, tls_dir

        address = self.scheduler_address or scheduler_address()
        tls = tls_dir(self.tls_dir) if address else None
        self.manager = PoolManager(
            address,
            embedded=self.embedded,
            threads=self.api_threads,
            connect_timeout=self.connect_timeout,
            tls=tls,
        )
        self._env_set = False
        self._tls_env_set = False
        if tls and not os.environ.get(TLS_ENV):
            os.environ[TLS_ENV] = tls
            self._tls_env_set = True
        if self.manager.embedded:
            self.manager.start()  # ~0.3 s; kernels started from now on must see its address
            self.log.info("flexlab: started the embedded mock pool at %s", self.manager.address)
        if self.manager.address and not os.environ.get(SCHEDULER_ENV):
            os.environ[SCHEDULER_ENV] = self.manager.address
            self._env_set = True
        self.settings.update(
            {
                "flexlab_manager": self.manager,
                "flexlab_owner_source": self.owner_source,
                "flexlab_anonymous_owner": self.anonymous_owner,
            }
        )

    def _initialize_front(self, url: str) -> None:
        """Front mode: forward to ``url``; kernels get the front and nothing of the pool."""
        from flexlab.tls import TLS_ENV

        if self.tls_dir or self.scheduler_address:
            raise ValueError(
                "FlexlabJupyter.front_url excludes scheduler_address and tls_dir: a front-mode server "
                "reaches the pool only through the front (docs/security.md)"
            )
        from flexlab.front import PRIVATE_ENV

        token = self.front_token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = getattr(self.serverapp, "runtime_dir", None) or jupyter_runtime_dir()
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        private_file = os.path.join(runtime, f"flexlab-private-{os.getpid()}.json")
        self.manager = FrontManager(url, token, threads=self.api_threads, private_file=private_file)
        os.environ[PRIVATE_ENV] = private_file  # written at the panel's first lease
        for name in (TLS_ENV, SCHEDULER_ENV):  # never handed to this server's kernels
            if os.environ.pop(name, None) is not None:
                self.log.warning("flexlab: front mode: $%s not passed on to kernels", name)
        self._env_set = self._tls_env_set = False
        self._front_env_set = os.environ.get(FRONT_ENV) != url
        os.environ[FRONT_ENV] = url
        self.log.info("flexlab: front mode, forwarding to %s", url)
        self.settings.update(
            {
                "flexlab_manager": self.manager,
                "flexlab_owner_source": self.owner_source,
                "flexlab_anonymous_owner": self.anonymous_owner,
            }
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        manager: Any = getattr(self, "manager", None)
        if manager is not None:
            await manager.aclose()
        if getattr(self, "_env_set", False):
            os.environ.pop(SCHEDULER_ENV, None)
        if getattr(self, "_front_env_set", False):
            os.environ.pop(FRONT_ENV, None)
        if isinstance(manager, FrontManager):
            from flexlab.front import PRIVATE_ENV

            os.environ.pop(PRIVATE_ENV, None)
        if getattr(self, "_tls_env_set", False):
            from flexlab.tls import TLS_ENV

            os.environ.pop(TLS_ENV, None)
