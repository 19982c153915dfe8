"""The live pool's placement policy: a named policy whose shape distribution is learned.

``fgd`` and ``flexlab`` measure fragmentation against the shapes requests are expected to
have. The openb benchmark takes them from the whole workload up front; a live pool cannot
see its future, so ``LivePolicy`` learns them from the requests it has seen:

* a **rolling window** of the last ``window`` observed shapes (2,000 by default: about the
  openb default workload's 8,152 pods split into four, long enough for the rare 8-device
  requests to be counted, short enough to follow a change of use within an afternoon);
* a **cold-start prior** (``PRIOR_MIX``): device shares as the openb ``default`` workload
  asks for them, rounded to quarters (its accelerator requests: 55% whole devices, 19%
  about three quarters, 15% about half, 10% a quarter or less), with no host CPU or memory,
  as the live pool carves task slices. It weighs as ``prior_weight`` observations (200);
  each real observation displaces one, so after 200 requests the distribution is the
  window's alone;
* the distribution is rebuilt every ``rebuild_every`` observations (100), and sooner, at
  least ``new_shape_gap`` (10) observations after the last rebuild, when a shape the
  distribution lacks arrives. A rebuild costs a few milliseconds at 1,000 devices (the
  fragmentation model recomputes every host once); between rebuilds ``observe`` is a
  counter update and placement keeps its incremental caches.

Shapes are counted the way the benchmark counts them (``policies.shape_of`` and
``distribution_from_counts``): FGD's typical shapes without host memory, flexlab's every
shape with its exact host memory. A profile request (MIG ``1g.10gb``, vNPU templates; the
openb trace has none) counts as the profile's compute share on the first catalog model
that offers it. The other policies learn nothing; ``observe`` only counts.

Live placement ties go to node-list order (``host_rank`` None): the benchmark's seeded host
order reproduces the reference simulator and has no meaning in a live pool.

>>> from flexlab.core.placement import place
>>> from flexlab.core.placement.testing import Req, tiny_pool
>>> live = LivePolicy("flexlab")
>>> live.observe(Req(compute_milli=500))
>>> place(Req(compute_milli=500), tiny_pool(), live.profile).ok
True
>>> s = live.state()
>>> (s["name"], s["observations"], s["prior_weight_left"])
('flexlab', 1, 199.0)
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import replace
from typing import Any

from flexlab.core.catalog import CATALOG
from flexlab.core.errors import InvalidRequest
from flexlab.core.placement.flexlab_policy import FlexlabScore
from flexlab.core.placement.fragmentation import FGDScore, Shape, ShapeDistribution
from flexlab.core.placement.framework import PlacementProfile
from flexlab.core.placement.policies import (
    NEEDS_DISTRIBUTION,
    POLICIES,
    distribution_from_counts,
    make_profile,
    shape_of,
)
from flexlab.core.placement.request_view import RequestView
from flexlab.core.request import SliceRequest

__all__ = ["DEFAULT_POLICY", "PRIOR_MIX", "LivePolicy", "fixed_state"]

#: The live pool's default policy.
DEFAULT_POLICY = "flexlab"
DEFAULT_WINDOW = 2000
DEFAULT_PRIOR_WEIGHT = 200.0
DEFAULT_REBUILD_EVERY = 100
DEFAULT_NEW_SHAPE_GAP = 10
#: Shapes listed in ``state()`` at most (the most frequent first).
STATE_SHAPES = 12

#: The cold-start prior: (compute milli of one device, share). The openb ``default``
#: workload's 7,064 accelerator pods, shares rounded to the nearest quarter (0.81 and 0.65
#: to 0.75; 0.46-0.59 to 0.5; 0.05-0.37 to 0.25; its 75 multi-device pods, 1%, to whole),
#: then to 5%: 3,986 whole, 1,331 three-quarter, 1,046 half, 701 quarter.
PRIOR_MIX: tuple[tuple[int, float], ...] = ((1000, 0.55), (750, 0.20), (500, 0.15), (250, 0.10))


def _prior_requests() -> tuple[SliceRequest, ...]:
    return tuple(SliceRequest(compute_milli=milli) for milli, _ in PRIOR_MIX)


class LivePolicy:
    """The ``PlacementProfile`` a live pool places with, and what it learned.

    ``name`` is any of ``POLICIES``. Call ``observe`` with every request the pool is asked
    to place (a lease's request, a task's slice shape) before placing it, and place with
    ``profile`` (the same object throughout: its score plugin's distribution is replaced on
    a rebuild, so the pool may keep a reference).

    >>> LivePolicy("binpack").profile.name
    'binpack'
    """

    def __init__(
        self,
        name: str = DEFAULT_POLICY,
        *,
        window: int = DEFAULT_WINDOW,
        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
        rebuild_every: int = DEFAULT_REBUILD_EVERY,
        new_shape_gap: int = DEFAULT_NEW_SHAPE_GAP,
    ) -> None:
        key = str(name).strip().lower()
        if key not in POLICIES:
            raise InvalidRequest("policy", name, ", ".join(POLICIES))
        if window < 1:
            raise InvalidRequest("policy-window", window, "at least 1 request")
        if prior_weight < 0:
            raise InvalidRequest("policy-prior-weight", prior_weight, ">= 0 observations")
        if rebuild_every < 1:
            raise InvalidRequest("policy-rebuild-every", rebuild_every, "at least 1 observation")
        self.name = key
        self.description = POLICIES[key]
        self.learns = key in NEEDS_DISTRIBUTION
        #: Placing against a distribution given up front (``seeded``), not learned.
        self.is_seeded = False
        self.window = int(window)
        self.prior_weight = float(prior_weight)
        self.rebuild_every = int(rebuild_every)
        self.new_shape_gap = max(0, int(new_shape_gap))
        #: Requests observed in all (the window holds the last ``window`` of them).
        self.observations = 0
        #: Times the distribution was rebuilt (the first build included).
        self.rebuilds = 0
        self._shapes: deque[Shape] = deque()
        self._counts: Counter[Shape] = Counter()
        #: The one object kept for each distinct shape in the window.
        self._interned: dict[Shape, Shape] = {}
        self._prior = {
            shape_of(key, r): share for r, (_, share) in zip(_prior_requests(), PRIOR_MIX, strict=True)
        }
        self._since = 0
        self._new_shape = False
        self._score: FGDScore | FlexlabScore | None = None
        self._profile_milli: dict[tuple[str, frozenset[str], frozenset[str]], int] = {}
        self.distribution: ShapeDistribution | None = None
        self._known: frozenset[Shape] = frozenset()
        if self.learns:
            self.distribution = self._build()
            self._profile = make_profile(key, distribution=self.distribution)
            score = self._profile.scores[0][0]
            assert isinstance(score, FGDScore | FlexlabScore)
            self._score = score
        else:
            self._profile = make_profile(key)

    @classmethod
    def seeded(cls, name: str, distribution: ShapeDistribution) -> LivePolicy:
        """A policy that places against ``distribution`` and learns nothing more: for an
        operator who seeds the pool from a known workload (e.g. last month's requests), and
        for the live openb replay, which must decide with the simulator's inputs.

        >>> from flexlab.core.placement.testing import Req
        >>> dist = ShapeDistribution.from_requests([Req(compute_milli=500)], coverage=1.0)
        >>> live = LivePolicy.seeded("fgd", dist)
        >>> live.observe(Req(compute_milli=250))
        >>> live.distribution is dist, live.state()["seeded"]
        (True, True)
        """
        live = cls(name, prior_weight=0.0)
        if live._score is None:
            raise InvalidRequest(
                "policy", name, f"one that uses a shape distribution: {', '.join(NEEDS_DISTRIBUTION)}"
            )
        live.distribution = distribution
        live._score.distribution = distribution
        live.learns = False
        live.is_seeded = True
        return live

    @property
    def profile(self) -> PlacementProfile:
        """The profile to place with now (``host_rank`` None: ties go to node-list order)."""
        return self._profile

    @property
    def prior_weight_left(self) -> float:
        """How many observations the prior still counts as."""
        return max(0.0, self.prior_weight - self.observations)

    def observe(self, request: RequestView) -> None:
        """Count ``request``'s shape; rebuild the distribution when it is due."""
        self.observations += 1
        if not self.learns:
            return
        shape = shape_of(self.name, request)
        if request.profile is not None and shape.devices and not shape.compute_milli:
            shape = replace(shape, compute_milli=self._profile_share(request))
        if len(self._shapes) >= self.window:
            old = self._shapes.popleft()
            self._counts[old] -= 1
            if self._counts[old] <= 0:
                del self._counts[old]
                del self._interned[old]
        # one object per distinct shape in the window, not one per request
        shape = self._interned.setdefault(shape, shape)
        self._shapes.append(shape)
        self._counts[shape] += 1
        self._since += 1
        if self._counts[shape] == 1 and shape not in self._known:
            self._new_shape = True
        if self._since >= self.rebuild_every or (self._new_shape and self._since >= self.new_shape_gap):
            self.rebuild()

    def _profile_share(self, request: RequestView) -> int:
        """A profile's compute milli on the first catalog model (of the request's models,
        kinds and vendors) that offers it; 0 where none does."""
        name = str(request.profile)
        sel = request.selector
        key = (name, frozenset(sel.models), frozenset(sel.kinds) | frozenset(sel.vendors))
        milli = self._profile_milli.get(key)
        if milli is None:
            milli = 0
            for model in sorted(sel.models or CATALOG):
                entry = CATALOG.get(model)
                if (
                    entry is not None
                    and (not sel.kinds or entry.kind in sel.kinds)
                    and (not sel.vendors or entry.vendor in sel.vendors)
                    and entry.has_profile(name)
                ):
                    milli = entry.profile_milli(entry.profile(name))
                    break
            self._profile_milli[key] = milli
        return milli

    def rebuild(self) -> None:
        """Rebuild the distribution from the window and what is left of the prior now."""
        if self._score is None:
            return
        self.distribution = self._build()
        self._score.distribution = self.distribution

    def _build(self) -> ShapeDistribution:
        counts: dict[Shape, float] = dict(self._counts)
        left = self.prior_weight_left
        if left > 0:
            for shape, share in self._prior.items():
                counts[shape] = counts.get(shape, 0.0) + left * share
        self._since = 0
        self._new_shape = False
        self.rebuilds += 1
        dist = distribution_from_counts(self.name, counts)
        self._known = frozenset(dist.shapes)
        return dist

    def state(self) -> dict[str, Any]:
        """JSON-able: the policy, how much it learned and the shapes it expects now.

        ``shapes`` lists the ``STATE_SHAPES`` most likely shapes (``shapes_total`` all).
        """
        dist = self.distribution or ShapeDistribution((), ())
        ranked = sorted(zip(dist.shapes, dist.weights, strict=True), key=lambda sw: -sw[1])
        return {
            "name": self.name,
            "description": self.description,
            "learns": self.learns,
            "seeded": self.is_seeded,
            "window": self.window,
            "in_window": len(self._shapes),
            "observations": self.observations,
            "rebuilds": self.rebuilds,
            "prior_weight": self.prior_weight,
            "prior_weight_left": self.prior_weight_left if self.learns else 0.0,
            "shapes_total": len(dist),
            "shapes": [_shape_dict(s, w) for s, w in ranked[:STATE_SHAPES]],
        }

    describe = state


def fixed_state(name: str) -> dict[str, Any]:
    """``LivePolicy.state()``'s fields for a pool that places with a fixed profile ``name``
    (one built without ``LivePolicy``): nothing observed, nothing learned."""
    return {
        "name": name,
        "description": POLICIES.get(name, ""),
        "learns": False,
        "seeded": False,
        "window": 0,
        "in_window": 0,
        "observations": 0,
        "rebuilds": 0,
        "prior_weight": 0.0,
        "prior_weight_left": 0.0,
        "shapes_total": 0,
        "shapes": [],
    }


def _shape_dict(shape: Shape, weight: float) -> dict[str, Any]:
    return {
        "compute_milli": shape.compute_milli,
        "devices": shape.devices,
        "host_cpu_milli": shape.host_cpu_milli,
        "host_memory_mib": shape.host_memory_mib,
        "models": sorted(shape.models),
        "weight": round(weight, 4),
    }
