"""flexlab's defaults in ``dask.config`` under the ``flexlab`` key (see flexlab.yaml)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.config
import yaml

from flexlab.core.placement.live import LivePolicy

_FILE = Path(__file__).with_name("flexlab.yaml")

with _FILE.open() as f:
    DEFAULTS: dict[str, Any] = yaml.safe_load(f)

dask.config.update_defaults(DEFAULTS)


def get(key: str, default: Any = None) -> Any:
    """A flexlab setting, e.g. ``get("lease.default-ttl")``."""
    return dask.config.get(f"flexlab.{key}", default=default)


def seconds(key: str) -> float:
    from dask.utils import parse_timedelta

    value = parse_timedelta(get(key))
    return float(value) if value is not None else 0.0


def state_file() -> str:
    path = str(get("state-file") or "")
    if path:
        return path
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "flexlab" / "leases.sqlite")


def live_policy(name: str | None = None) -> LivePolicy:
    """The pool's placement policy: ``name`` (default: ``policy``) with the learning
    settings ``policy-window``, ``policy-prior-weight`` and ``policy-rebuild-every``.

    Raises ``InvalidRequest`` (field ``policy``) for a name that is not a policy.
    """
    return LivePolicy(
        name or str(get("policy")),
        window=int(get("policy-window", 2000)),
        prior_weight=float(get("policy-prior-weight", 200)),
        rebuild_every=int(get("policy-rebuild-every", 100)),
    )
