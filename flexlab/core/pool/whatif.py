"""The pool's one "what if": placement asked on a copy of the ledger's arrays with some
allocations given back. The live ledger is never touched, so a question cannot leave
capacity behind or change an allocation's place.

>>> WhatIf(ledger, profile).place(request, freed=["a3", "lease-L2"]).ok  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flexlab.core.ledger import Ledger
from flexlab.core.placement.framework import Decision, Explanation, PlacementProfile, explain, place
from flexlab.core.placement.policies import make_profile
from flexlab.core.request import SliceRequest
from flexlab.core.snapshot import PoolArrays


@dataclass(frozen=True)
class WhatIf:
    """Placement of a request in the pool as it would be with ``freed`` allocations released."""

    ledger: Ledger
    profile: PlacementProfile

    def pool(self, freed: Iterable[str] = ()) -> PoolArrays:
        """A copy of the ledger's arrays with ``freed`` (allocation ids) released."""
        return self.ledger.pool_without(freed)

    def place(self, request: SliceRequest, freed: Iterable[str] = ()) -> Decision:
        return place(request, self.pool(freed), self.profile)

    def explain(self, request: SliceRequest, freed: Iterable[str] = ()) -> Explanation:
        return explain(request, self.pool(freed), self.profile)

    def fits_ever(self, request: SliceRequest, freed: Iterable[str] = ()) -> Explanation:
        """Whether ``request`` could fit with ``freed`` given back: its code and counted
        reasons. Feasibility is the filters' alone, so no policy's scores are computed (the
        ``where`` of the answer is first-fit's, not the policy's)."""
        ids = list(freed)
        return explain(request, self.pool(ids) if ids else self.ledger.pool, _FEASIBILITY)


#: Filters decide whether a request can ever fit; the cheapest score breaks the tie.
_FEASIBILITY = make_profile("firstfit")
