"""pytest-jupyter's fixtures and hooks for the server extension's TLS tests, in this folder only
(as in tests/jupyter: its per-test event loop must not reach the other tests)."""

from __future__ import annotations

import pytest

pytest.importorskip("jupyter_server")

from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_fetch, jp_serverapp, async tests)
