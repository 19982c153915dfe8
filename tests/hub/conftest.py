"""The JupyterHub deployment's fixtures (tests/hub/deployment.py).

These tests run in the browser tests' pytest run (``FLEXLAB_BROWSER_TESTS=1``, ``make test``):
Playwright's event loop cannot share a session with pytest-jupyter's (toolchain P18), and the
deployment, made once per module, serves the browser and the non-browser checks alike.
They need root (system users); elsewhere they skip and say why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# The browser tests' Chromium launch and artifacts folder, the same fixtures here.
from ..browser.conftest import artifacts, browser_type_launch_args  # noqa: F401
from .deployment import Deployment, Service, unavailable

collect_ignore_glob = [] if os.environ.get("FLEXLAB_BROWSER_TESTS") else ["test_*.py"]


@pytest.fixture(scope="module")
def hub() -> Iterator[Deployment]:
    """JupyterHub for ana and bob (system users), the flexlab front as a Hub service holding
    the pool's client certificate, and a TLS pool; all stopped and removed afterwards."""
    why = unavailable()
    if why:
        pytest.skip(why)
    deployment = Deployment(
        ("ana", "bob"),
        services=[
            Service(
                "flexlab",
                ["{python}", "-m", "flexlab.cli", "front", "--scheduler", "{scheduler}", "--tls", "{tls}"],
            )
        ],
        singleuser_args=["--FlexlabJupyter.front_url={public}/services/flexlab/"],
        user_scopes=["access:services!service=flexlab"],
        # private leases' workers run as their owners' accounts, not the agent's (root): the
        # owner's code on them cannot read the pool's certificates (docs/security.md)
        pool_args=["--policy", "firstfit", "--private-user", "{owner}"],
    )
    try:
        yield deployment.start()
    finally:
        deployment.close()
