"""The PromQL of the shipped Grafana dashboard and rules file, and the metric names it reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import flexlab

OPS = Path(flexlab.__file__).parent / "ops"
DASHBOARD = OPS / "grafana-dashboard.json"
RULES = OPS / "prometheus-rules.yml"


def queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard (panels and variables) and the rules."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    exprs += [str(v["definition"]) for v in dash["templating"]["list"] if v.get("type") == "query"]
    rules = yaml.safe_load(RULES.read_text())
    exprs += [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return exprs


def metric_names(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\bflexlab_[a-z0-9_]+", e)}


def missing_metrics(exposition: str, exprs: list[str]) -> list[str]:
    """Names the expressions read that the exposition does not declare (a histogram's
    ``_bucket``, ``_sum`` and ``_count`` are declared by its family)."""
    kinds = dict(re.findall(r"^# TYPE (flexlab_\w+) (\w+)$", exposition, re.M))
    missing = []
    for name in sorted(metric_names(exprs)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in kinds and not (base != name and kinds.get(base) == "histogram"):
            missing.append(name)
    return missing


def runnable(expr: str) -> str:
    """``expr`` with Grafana's variables filled in, as Prometheus would be asked."""
    return expr.replace("$vendor", ".*").replace(
        "label_values(flexlab_device_compute_capacity, vendor)", "flexlab_device_compute_capacity"
    )
