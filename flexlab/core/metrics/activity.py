"""The metric families of what happened and of the Hi loop: the recorder's counters, lease
waits, preemptions, warm slices, forecast against actual arrivals, stranded compute, and the
runtime's own (errors, agents). ``pool.collect`` gathers them with the pool's state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flexlab.core.forecast import classify
from flexlab.core.metrics.model import Family
from flexlab.core.metrics.recorder import MetricsRecorder
from flexlab.core.metrics.stranded import idle_and_stranded
from flexlab.core.request import SliceRequest

if TYPE_CHECKING:
    from flexlab.core.hiloop import HiLoop
    from flexlab.core.pool import SlicePool
    from flexlab.core.prewarm import WarmPlanner


def request_class(request: SliceRequest) -> str:
    return classify(request).describe()


def counter_families(recorder: MetricsRecorder) -> list[Family]:
    """What the recorder counted: placements, lease requests and waits, pool events."""
    placed = Family(
        "flexlab_task_placements_total",
        "counter",
        "Task placement decisions by outcome (bound, wait, fail) and placement code",
        ("outcome", "code"),
    )
    for key in sorted(recorder.placements):
        placed.add(key, float(recorder.placements[key]))
    asked = Family(
        "flexlab_lease_requests_total",
        "counter",
        "Lease requests by request class and outcome (warm: active at once on a warm slice; "
        "placed: its slice carved; waiting; refused)",
        ("class", "outcome"),
    )
    for (cls, outcome), n in sorted(recorder.lease_requests.items()):
        asked.add((cls, outcome), float(n))
    wait = Family(
        "flexlab_lease_wait_seconds",
        "histogram",
        "Time from a lease's request until its slice's worker serves it, by how it was served "
        "(warm slice or carved)",
        ("source",),
    )
    for source, h in recorder.lease_wait.items():
        wait.add((source,), h.value())
    events = Family(
        "flexlab_pool_events_total",
        "counter",
        "Events of the pool by kind (carve, lease, lost, preempt, prewarm, reclaim, host, wait)",
        ("kind",),
    )
    for kind in sorted(recorder.events):
        events.add((kind,), float(recorder.events[kind]))
    missed = Family(
        "flexlab_pool_events_missed_total",
        "counter",
        "Events that left the pool's bounded log before they were counted",
    )
    missed.add((), float(recorder.events_missed))
    lost = Family(
        "flexlab_hosts_lost_total",
        "counter",
        "Hosts declared lost because their agent was silent for flexlab.agent-timeout (not those that left)",
    )
    lost.add((), float(recorder.hosts_lost))
    return [placed, asked, wait, events, missed, lost]


def hi_families(
    pool: SlicePool, now: float, *, hi: HiLoop | None, planner: WarmPlanner | None
) -> list[Family]:
    """The Hi loop's: preemptions, rejected moves, warm slices, forecast against actual."""
    pre = Family("flexlab_preemptions_total", "counter", "Leases preempted for higher-priority ones")
    pre.add((), float(hi.preempted if hi is not None else 0))
    rejected = Family(
        "flexlab_hi_moves_rejected_total",
        "counter",
        "Moves of the Hi loop its manager rejected, by reason",
        ("reason",),
    )
    for r, n in sorted((hi.rejected if hi is not None else {}).items(), key=lambda kv: kv[0].value):
        rejected.add((r.value,), float(n))
    warm = Family(
        "flexlab_warm_slices",
        "gauge",
        "Warm slices held ahead of forecast leases, by request class",
        ("class",),
    )
    target = Family(
        "flexlab_warm_slices_target", "gauge", "Warm slices the Hi loop wants, by request class", ("class",)
    )

    def class_of(text: str) -> str:
        req = planner.request_for(text) if planner is not None else None
        return request_class(req) if req is not None else "unknown"

    held = Counter(class_of(s.warm_for or "") for s in pool.warm_slices())
    for cls in sorted(held):
        warm.add((cls,), float(held[cls]))
    wanted: Counter[str] = Counter()
    prewarm = hi.prewarm if hi is not None else None
    for text, k in (prewarm.targets if prewarm is not None else {}).items():
        wanted[class_of(text)] += k
    for cls in sorted(wanted):
        target.add((cls,), float(wanted[cls]))
    forecast = Family(
        "flexlab_lease_arrivals_forecast_per_second",
        "gauge",
        "Lease arrivals the Hi loop forecasts over its horizon, per second, by request class",
        ("class",),
    )
    last = Family(
        "flexlab_lease_arrivals_last_window",
        "gauge",
        "Lease arrivals in the forecaster's last closed window (flexlab.hi.bucket seconds), by request class",
        ("class",),
    )
    predicted = Family(
        "flexlab_lease_arrivals_last_window_forecast",
        "gauge",
        "What was forecast for that last closed window, by request class",
        ("class",),
    )
    if planner is not None and planner.forecaster is not None:
        span = planner.horizon * planner.bucket_s
        for v in planner.view(now):
            forecast.add((v.request_class,), v.forecast / span)
            last.add((v.request_class,), v.last_bucket)
            predicted.add((v.request_class,), v.predicted_last)
    return [pre, rejected, warm, target, forecast, last, predicted]


def stranded_families(pool: SlicePool) -> list[Family]:
    lab = ("vendor", "model")
    idle = Family(
        "flexlab_compute_idle",
        "gauge",
        "Idle compute: not carved, or headroom of shared slices; device-equivalents",
        lab,
    )
    stranded = Family(
        "flexlab_compute_stranded",
        "gauge",
        "Idle compute that none of the request shapes the pool expects fits; device-equivalents",
        lab,
    )
    for key, (i, s) in sorted(idle_and_stranded(pool).items()):
        idle.add(key, i / 1000)
        stranded.add(key, s / 1000)
    return [idle, stranded]


def runtime_families(
    pool: SlicePool, *, policy: str, errors: int, agents_last_seen: Mapping[str, float]
) -> list[Family]:
    info = Family("flexlab_pool_info", "gauge", "The pool's placement policy (value 1)", ("policy",))
    info.add((policy or pool.live_policy.name,), 1.0)
    errors_f = Family(
        "flexlab_plugin_errors_total",
        "counter",
        "Exceptions inside the scheduler plugin (bugs; the scheduler would swallow them)",
    )
    errors_f.add((), float(errors))
    seen = Family(
        "flexlab_host_agent_last_seen_timestamp_seconds",
        "gauge",
        "When the host's agent last called the scheduler (seconds since the epoch)",
        ("host",),
    )
    for host in sorted(agents_last_seen):
        if host in pool.ledger.hosts:
            seen.add((host,), float(agents_last_seen[host]))
    return [info, errors_f, seen]
