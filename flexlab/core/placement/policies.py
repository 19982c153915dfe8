"""Named placement profiles: the policies flexlab ships.

>>> sorted(POLICIES)
['bestfit', 'binpack', 'fgd', 'firstfit', 'flexlab', 'spread']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from flexlab.core.placement.flexlab_policy import FlexlabScore
from flexlab.core.placement.fragmentation import FGDScore, Shape, ShapeDistribution
from flexlab.core.placement.framework import PlacementProfile
from flexlab.core.placement.request_view import RequestView
from flexlab.core.placement.scores import BestFitScore, BinpackScore, FirstFitScore, SpreadScore

#: Policy name -> what it does, for help texts.
POLICIES: dict[str, str] = {
    "firstfit": "first feasible host in node-list order, its tightest device",
    "bestfit": "least host CPU and accelerator compute left over (openb simulator's BestFit)",
    "fgd": "Fragmentation Gradient Descent (Weng et al., ATC'23), as in the reference simulator",
    "flexlab": "flexlab's default: stranding-aware fragmentation with model reservation",
    "binpack": "fullest device and host first (consolidate)",
    "spread": "emptiest device and host first (headroom)",
}
#: Policies that need a distribution of request shapes.
NEEDS_DISTRIBUTION = frozenset({"fgd", "flexlab"})


def shape_of(name: str, request: RequestView) -> Shape:
    """The shape policy ``name`` counts ``request`` as: with its exact host memory for
    flexlab, without for FGD (and the rest)."""
    return Shape.of(request, with_memory=name == "flexlab")


def distribution_from_counts(
    name: str, counts: Mapping[Shape, float], *, coverage: float = 0.95
) -> ShapeDistribution:
    """The distribution of policy ``name`` from counted shapes (``shape_of``; counts may be
    fractional, e.g. a prior's pseudo-observations): FGD's typical shapes covering
    ``coverage`` of the requests; for flexlab every shape (it picks the typical ones itself)."""
    return ShapeDistribution.from_counts(counts, coverage=1.0 if name == "flexlab" else coverage)


def distribution_for(
    name: str, requests: Iterable[RequestView], *, coverage: float = 0.95
) -> ShapeDistribution:
    """The shape distribution a policy measures fragmentation against, from ``requests``
    (a workload, or a window of recent requests): FGD's typical pods (the most frequent
    shapes, host memory ignored); for flexlab every shape with its exact host memory (it
    takes the typical ones itself and keeps the rare large ones for host reservation)."""
    counts: Counter[Shape] = Counter(shape_of(name, r) for r in requests)
    return distribution_from_counts(name, counts, coverage=coverage)


def make_profile(
    name: str,
    *,
    distribution: ShapeDistribution | None = None,
    host_rank: npt.NDArray[np.int64] | None = None,
) -> PlacementProfile:
    """The profile of a named policy.

    ``fgd`` and ``flexlab`` measure fragmentation against ``distribution`` (the caller's
    state: from the workload or recent requests). ``host_rank`` orders hosts for ties
    between equal scores (lowest first; node-list order when None): the reference
    simulator breaks BestFit's and FGD's ties by node names that carry a seeded random
    prefix, i.e. by a random permutation fixed for the whole run; the benchmark gives
    ``flexlab`` the same order.
    """
    rank = host_rank
    if name in NEEDS_DISTRIBUTION and distribution is None:
        raise ValueError(f"policy {name!r} needs a distribution of request shapes")
    if name == "firstfit":
        return PlacementProfile("firstfit", ((FirstFitScore(), 1.0),), device_choice="tightest")
    if name == "bestfit":
        return PlacementProfile(
            "bestfit", ((BestFitScore(quantize=True), 1.0),), device_choice="tightest", host_rank=rank
        )
    if name == "fgd":
        assert distribution is not None
        return PlacementProfile(
            "fgd", ((FGDScore(distribution, quantize=True), 1.0),), device_choice="first", host_rank=rank
        )
    if name == "flexlab":
        assert distribution is not None
        return PlacementProfile(
            "flexlab", ((FlexlabScore(distribution), 1.0),), device_choice="tightest", host_rank=rank
        )
    if name == "binpack":
        return PlacementProfile("binpack", ((BinpackScore(), 1.0),), device_choice="tightest")
    if name == "spread":
        return PlacementProfile("spread", ((SpreadScore(), 1.0),), device_choice="first")
    raise ValueError(f"unknown policy {name!r}; allowed: {', '.join(POLICIES)}")
