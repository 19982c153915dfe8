"""Fixtures of the Jupyter server tests: pytest-jupyter's server, one mock pool, two users.

pytest-jupyter's fixtures are imported here (not registered with ``pytest_plugins`` in the
root conftest), so that its per-test event loop only touches the tests of this folder and
the Playwright tests can share a pytest run with them (toolchain P18).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_fetch, jp_serverapp, ...)
from tornado.httpclient import HTTPResponse

#: Tokens of the test identity provider, and the users they name.
USERS = {"alice-token": "alice", "bob-token": "bob"}


class TokenUsers(IdentityProvider):
    """One token per user (``Authorization: token alice-token``); nothing else logs in."""

    def get_user(self, handler: Any) -> User | None:
        header = handler.request.headers.get("Authorization", "")
        name = USERS.get(header.removeprefix("token ").strip())
        if name is None:
            return None
        handler._token_authenticated = True  # token requests skip the XSRF check
        return User(username=name)


@pytest.fixture(scope="session")
def pool_address() -> Iterator[str]:
    """One embedded mock pool for the whole session (each test uses its own lease ids)."""
    from distributed import Client
    from flexlab_dask import FlexCluster

    from flexlab.mock.model import reset_mock_devices

    reset_mock_devices()
    with FlexCluster(loop_interval=0.2, telemetry_interval=0.2) as cluster:
        yield str(cluster.scheduler_address)
        with Client(cluster) as client:
            leftover = client.run_on_scheduler(
                lambda dask_scheduler: list(dask_scheduler.plugins["flexlab"].errors)
            )
        assert leftover == [], f"flexlab plugin errors: {leftover}"


@pytest.fixture
def jp_server_config(pool_address: str) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"flexlab_jupyter": True},
            "identity_provider_class": TokenUsers,
        },
        "FlexlabJupyter": {"scheduler_address": pool_address},
    }


@pytest.fixture(autouse=True)
def _no_pool_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each server finds its pool from its config, never from a neighbour's environment."""
    monkeypatch.delenv("FLEXLAB_SCHEDULER", raising=False)


Fetch = Callable[..., Awaitable[HTTPResponse]]


@pytest.fixture
def api(jp_fetch: Any) -> Fetch:
    """``await api("alice", "GET", "pool")``: a request to /flexlab/api/ as a user (None: no login).

    ``body`` is sent as JSON unless it is ``bytes``; errors come back as responses."""

    def call(user: str | None, method: str, *path: str, body: Any = None, **params: Any) -> Any:
        token = next((t for t, u in USERS.items() if u == user), "nobody")
        kwargs: dict[str, Any] = {"method": method, "raise_error": False}
        if method in ("POST", "PUT", "PATCH"):
            kwargs["body"] = body if isinstance(body, bytes) else json.dumps(body if body is not None else {})
        return jp_fetch(
            "flexlab",
            "api",
            *path,
            headers={"Authorization": f"token {token}"},
            params={k: str(v) for k, v in params.items()},
            **kwargs,
        )

    return call


def payload(resp: HTTPResponse) -> Any:
    """The JSON body of a response."""
    return json.loads(resp.body or b"null")


def env_without_pool() -> dict[str, str]:
    """The environment minus the pool's address (for servers that must start their own)."""
    return {k: v for k, v in os.environ.items() if k != "FLEXLAB_SCHEDULER"}
