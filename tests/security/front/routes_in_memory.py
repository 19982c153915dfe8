"""A JupyterHub proxy that keeps its routing table in memory and proxies nothing.

The front's tests call the Hub's API and the front's service port directly, so they need
no HTTP proxy; the full deployment with configurable-http-proxy from npm is tests/hub's.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.proxy import Proxy


class InMemoryRoutes(Proxy):
    """The routes the Hub adds, kept for it to read back; nothing is served."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def add_route(self, routespec: str, target: str, data: dict[str, Any]) -> None:
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec: str) -> None:
        self.routes.pop(routespec, None)

    async def get_all_routes(self) -> dict[str, dict[str, Any]]:
        return dict(self.routes)
