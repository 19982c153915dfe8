"""Fixtures: telemetry recorded from a real FlexCluster run (``record_fixture.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flexlab.core.poolstate import PoolState

pytest.importorskip(
    "bokeh", reason="the dashboard needs the 'dashboard' extra: pip install -e '.[dashboard]'"
)

DATA = Path(__file__).parent / "data" / "pool_telemetry.json"


@pytest.fixture(scope="session")
def _recorded() -> dict[str, Any]:
    return json.loads(DATA.read_text())


@pytest.fixture
def recorded(_recorded: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the recording: ``state`` and ``frames``."""
    return copy.deepcopy(_recorded)


@pytest.fixture
def raw_state(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded state's wire JSON (to edit before reading it)."""
    state: dict[str, Any] = recorded["state"]
    return state


@pytest.fixture
def state(raw_state: dict[str, Any]) -> PoolState:
    """The recorded state, typed, as the dashboard reads it."""
    return PoolState.from_json(raw_state)


@pytest.fixture
def frames(recorded: dict[str, Any]) -> list[dict[str, Any]]:
    return recorded["frames"]
