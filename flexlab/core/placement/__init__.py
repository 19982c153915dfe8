"""Placement: where a request goes in a pool, in the Kubernetes scheduler framework's terms.

Filter plugins reject candidates with structured reasons, score plugins rank the rest, a
``PlacementProfile`` (a named, weighted list of score plugins) decides. ``place`` reserves
nothing; ``explain`` also counts why a request fits nowhere, per device class.

>>> from flexlab.core.placement import explain, make_profile, place
>>> from flexlab.core.placement.testing import Req, Sel, tiny_pool
>>> pool = tiny_pool()
>>> place(Req(compute_milli=500, host_cpu_milli=2000), pool, make_profile("bestfit")).devices
(4,)
>>> two_npus = Req(selector=Sel(kinds=frozenset({"npu"})), compute_milli=1000, devices=2)
>>> e = explain(two_npus, pool, make_profile("firstfit"))
>>> e.code.value, e.reasons_by_class["ascend-910b3"]
('UNRESOLVABLE', {<Reason.NOT_ENOUGH_DEVICES: 8>: 1})
"""

from __future__ import annotations

from flexlab.core.placement.filters import DEFAULT_FILTERS, FilterPlugin, Need, compute_need
from flexlab.core.placement.flexlab_policy import FlexlabScore, ModelPressure, StrandingModel
from flexlab.core.placement.fragmentation import (
    FGDScore,
    FragmentationModel,
    Shape,
    ShapeDistribution,
)
from flexlab.core.placement.framework import (
    Candidates,
    Decision,
    Explanation,
    PlacementProfile,
    ScorePlugin,
    apply,
    explain,
    new_decision_id,
    place,
    release,
)
from flexlab.core.placement.live import LivePolicy
from flexlab.core.placement.policies import POLICIES, distribution_for, make_profile
from flexlab.core.placement.request_view import RequestView, SelectorView
from flexlab.core.placement.scores import BestFitScore, BinpackScore, FirstFitScore, SpreadScore
from flexlab.core.placement.status import Code, Reason, Status

__all__ = [
    "DEFAULT_FILTERS",
    "POLICIES",
    "BestFitScore",
    "BinpackScore",
    "Candidates",
    "Code",
    "Decision",
    "Explanation",
    "FGDScore",
    "FilterPlugin",
    "FirstFitScore",
    "FlexlabScore",
    "FragmentationModel",
    "LivePolicy",
    "ModelPressure",
    "Need",
    "PlacementProfile",
    "Reason",
    "RequestView",
    "ScorePlugin",
    "SelectorView",
    "Shape",
    "ShapeDistribution",
    "SpreadScore",
    "Status",
    "StrandingModel",
    "apply",
    "compute_need",
    "distribution_for",
    "explain",
    "make_profile",
    "new_decision_id",
    "place",
    "release",
]
