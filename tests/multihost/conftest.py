"""Fixtures of the multi-host tests: a pool on four network namespaces (scheduler + three
host agents), a client on it, and the leases of three owners."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Lab, netns_available
from .pool import Pool

SKIP = netns_available()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Namespaces, links and processes of one run; all gone after the test, pass or fail."""
    if SKIP is not None:
        pytest.skip(SKIP)
    # FLEXLAB_MULTIHOST_TLS=1: the same tests over mutual TLS (certificates per run).
    lab = Lab(tmp_path, tls=tmp_path / "tls" if os.environ.get("FLEXLAB_MULTIHOST_TLS") else None)
    try:
        yield lab
    finally:
        lab.close()
        assert lab.leftovers() == [], f"the lab left {lab.leftovers()}"


@pytest.fixture
def pool(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pool]:
    """A running pool: scheduler, three agents with one T4 each, a client, three leases.
    Indirect parameters: settings of every process (``{"agent-timeout": "10s"}``)."""
    settings = getattr(request, "param", {})
    p = Pool(lab, tmp_path, settings)
    try:
        p.start()
        yield p
    finally:
        p.close()
