"""The pure core: devices, slices, requests, the ledger and placement.

Nothing here imports Dask, Jupyter, Bokeh or a vendor SDK (enforced by import-linter), so
every decision can be tested and benchmarked alone.
"""

from __future__ import annotations

from flexlab.core.catalog import CATALOG, DeviceModel, Profile, get_model, lookup_product_name
from flexlab.core.errors import (
    FlexlabError,
    InvalidRequest,
    LeaseEnded,
    LedgerConflict,
    NotOwner,
    QuotaExceeded,
    UnknownName,
    Unschedulable,
)
from flexlab.core.ledger import Allocation, Ledger, SliceGrant
from flexlab.core.request import Selector, SliceRequest, parse_request
from flexlab.core.topology import DeviceSpec, HostSpec

__all__ = [
    "CATALOG",
    "Allocation",
    "DeviceModel",
    "DeviceSpec",
    "FlexlabError",
    "HostSpec",
    "InvalidRequest",
    "LeaseEnded",
    "Ledger",
    "LedgerConflict",
    "NotOwner",
    "Profile",
    "QuotaExceeded",
    "Selector",
    "SliceGrant",
    "SliceRequest",
    "UnknownName",
    "Unschedulable",
    "get_model",
    "lookup_product_name",
    "parse_request",
]
