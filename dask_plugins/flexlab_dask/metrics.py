"""``/metrics`` of the scheduler's HTTP server with the pool's series in it.

distributed serves its own Prometheus metrics at ``/metrics`` from ``prometheus_client``'s
process-wide registry. The pool's families (``flexlab.core.metrics.collect``, computed from
the plugin's live objects) belong to one scheduler, and a test process runs several, so they
are written by the plugin itself (``render_text``), never registered process-wide.
:func:`install` puts a ``/metrics`` handler in front of distributed's on this scheduler's HTTP
application only (tornado consults handlers added with ``add_handlers`` before the
application's first ones); it writes distributed's exposition followed by the pool's.
:meth:`MetricsRoute.remove` takes the handler out again when the plugin closes; then the
route serves distributed's metrics alone, as before.

This module only translates; what each series means is decided in ``flexlab.core.metrics``
and listed in ``docs/metrics.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flexlab.core.metrics import Family
from flexlab.core.metrics.exposition import render_text

logger = logging.getLogger("flexlab.metrics")

#: The text exposition format distributed's registry and ``render_text`` write.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsRoute:
    """The ``/metrics`` handler installed on one scheduler's HTTP application."""

    def __init__(self, app: Any, rules: list[Any]) -> None:
        self.app = app
        self.rules = rules

    def remove(self) -> None:
        routed = self.app.default_router.rules
        for rule in self.rules:
            if rule in routed:
                routed.remove(rule)
        self.rules = []


def render(registry: Any) -> bytes:
    """A ``prometheus_client`` registry's exposition (distributed's series)."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry))


def install(scheduler: Any, families: Callable[[], list[Family]]) -> MetricsRoute | None:
    """Serve ``families()`` with distributed's metrics at this scheduler's ``/metrics``.
    None (and a log line) where that cannot be: no HTTP server, no ``prometheus_client``."""
    app = getattr(scheduler, "http_application", None)
    if app is None:
        logger.info("flexlab: the scheduler has no HTTP server; no /metrics")
        return None
    try:
        import prometheus_client
        from distributed.http.scheduler.prometheus.core import PrometheusHandler
    except ImportError as exc:
        logger.info("flexlab: no Prometheus metrics (%s)", exc)
        return None

    class FlexlabMetricsHandler(PrometheusHandler):
        """distributed's ``/metrics`` (its collectors, the process-wide registry), then the
        pool's series of this scheduler."""

        def get(self) -> None:
            self.set_header("Content-Type", CONTENT_TYPE)
            self.write(render(prometheus_client.REGISTRY))
            self.write(render_text(families()).encode())

    path = _metrics_path(app, PrometheusHandler)
    before = list(app.default_router.rules)
    app.add_handlers(r".*$", [(path, FlexlabMetricsHandler, {"dask_server": scheduler})])
    added = [r for r in app.default_router.rules if r not in before]
    return MetricsRoute(app, added)


def _metrics_path(app: Any, handler: type) -> str:
    """The path distributed serves its metrics at (under the scheduler's HTTP prefix)."""
    for rule in getattr(app.wildcard_router, "rules", ()):
        target = rule.target
        pattern = getattr(getattr(rule.matcher, "regex", None), "pattern", None)
        if isinstance(target, type) and issubclass(target, handler) and pattern:
            return str(pattern).rstrip("$")
    return "/metrics"
