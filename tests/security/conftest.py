"""Fixtures of the security tests: a pool's TLS folder and one from another CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlab.commands.certs import write_pool_certs


@pytest.fixture(scope="session")
def pool_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pool's CA and certificates (127.0.0.1 and localhost)."""
    folder = tmp_path_factory.mktemp("pool") / "tls"
    write_pool_certs(folder)
    return folder


@pytest.fixture(scope="session")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of every role from another CA, with the same names and SANs."""
    folder = tmp_path_factory.mktemp("other") / "tls"
    write_pool_certs(folder, name="another pool")
    return folder
