"""The pool state: one typed model of what ``flexlab status``, the REST API, the notebook
helpers and the dashboards read.

The scheduler plugin builds a :class:`PoolState` from its ``SlicePool``
(``flexlab_dask/state.py``) and sends ``to_json()``; every reader turns the JSON back with
:meth:`PoolState.from_json`, which checks every field and raises :class:`MalformedPoolState`
naming the path, what it found and what is allowed. The field names are the wire contract,
documented in ``docs/wire.md``; a field with a default may be absent (an older scheduler),
keys this model does not know are ignored (a newer one).

The request form's device menu is computed here once (:func:`device_menu`) and sent with the
state, so the notebook widget and the JupyterLab panel offer the same choices under the same
names.

The package has one job per module: ``model`` (the frozen dataclasses, field by field with
what each means), ``menu`` (the device menu and vendor names) and ``codec`` (the checked JSON
codec of any frozen dataclass). Import the names from here.

>>> s = PoolState.from_json({"time": 1.0, "hosts": []})
>>> [c.label for c in s.menu]
['Any accelerator (0)']
>>> PoolState.from_json({"time": "noon", "hosts": []})
Traceback (most recent call last):
...
flexlab.core.poolstate.MalformedPoolState: pool state: time: expected a number, got 'noon' (str)
"""

from __future__ import annotations

from typing import Any, TypeVar

from flexlab.core.poolstate.codec import MalformedPoolState, decoder, encode
from flexlab.core.poolstate.menu import VENDOR_NAMES, MenuChoice, MenuGroup, device_menu, vendor_name
from flexlab.core.poolstate.model import (
    DeviceState,
    ForecastError,
    HiClass,
    HiMove,
    HiState,
    HostState,
    LeaseStateName,
    LeaseView,
    PluginInfo,
    PolicyShape,
    PolicyState,
    PoolEvent,
    PoolState,
    SliceState,
    SpeedRate,
    WaitingWork,
    WarmSlice,
)

T = TypeVar("T")


def from_json(cls: type[T], payload: object, path: str = "") -> T:
    """Any model of this package from its wire JSON: ``from_json(LeaseView, answer["lease"])``
    (the ``flexlab_lease_*`` answers carry a lease's fields)."""
    return decoder(cls)(payload, path)


def to_json(obj: object) -> Any:
    """Any model of this package as plain JSON."""
    return encode(obj)


__all__ = [
    "VENDOR_NAMES",
    "DeviceState",
    "ForecastError",
    "HiClass",
    "HiMove",
    "HiState",
    "HostState",
    "LeaseStateName",
    "LeaseView",
    "MalformedPoolState",
    "MenuChoice",
    "MenuGroup",
    "PluginInfo",
    "PolicyShape",
    "PolicyState",
    "PoolEvent",
    "PoolState",
    "SliceState",
    "SpeedRate",
    "WaitingWork",
    "WarmSlice",
    "device_menu",
    "from_json",
    "to_json",
    "vendor_name",
]
