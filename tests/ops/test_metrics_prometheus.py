"""A real Prometheus scrapes a running pool's /metrics (issue 14).

Debian's ``prometheus`` package (``make test`` installs it, like Chromium) gives the server
and ``promtool``. The server listens on 127.0.0.1 on a free port with its own config and
storage in a temporary directory, and is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client
from flexlab_dask import FlexCluster

import flexlab
from flexlab.client import PoolClient
from flexlab.mock.model import reset_mock_devices
from tests.ops.queries import RULES, metric_names, missing_metrics, queries, runnable

pytestmark = pytest.mark.slow


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: `make test` installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (apt-get install prometheus, or make test)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def busy_for(seconds: float) -> str:
    """Task body: keep the slice's mock device busy for ``seconds``."""
    from distributed import get_worker

    from flexlab.mock.workloads import kernel

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        kernel(work=0.05, demand=1.0)
    return str(get_worker().name)


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        args = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        body = json.loads(_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(args)}"))
        assert body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])

    def by(self, expr: str, label: str, at: float) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr, at)}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlexCluster, Client, Prometheus]]:
    """A mock pool with leases of two owners running tasks and one lease that waits, and a
    Prometheus server that scrapes its /metrics every second."""
    prometheus = _tool("prometheus")
    reset_mock_devices()
    with (
        FlexCluster(loop_interval=0.2, telemetry_interval=0.2, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        http = cluster.scheduler.http_server.port
        work = tmp_path_factory.mktemp("prometheus")
        port = _free_port()
        (work / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            "scrape_configs:\n"
            f"  - job_name: flexlab\n    static_configs: [{{targets: ['127.0.0.1:{http}']}}]\n"
        )
        log = (work / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            prom = Prometheus(f"http://127.0.0.1:{port}", proc)
            deadline = time.monotonic() + 60
            while True:
                try:
                    _get(f"{prom.url}/-/ready")
                    break
                except OSError:
                    assert proc.poll() is None, (work / "prometheus.log").read_text()
                    assert time.monotonic() < deadline, "prometheus did not get ready in 60 s"
                    time.sleep(0.2)
            alice = [flexlab.lease(s, owner="alice", client=client) for s in ("v100s:0.5", "mlu:0.5")]
            bob = [flexlab.lease(s, owner="bob", client=client) for s in ("a100:1g.10gb", "t4:0.25")]
            flexlab.lease("v100s:1", owner="carol", client=client, wait=False)  # cannot fit now
            futures = [le.submit(busy_for, 120.0, pure=False) for le in (alice[0], alice[1], bob[1])]
            yield cluster, client, prom
            client.cancel(futures)
            assert cluster.flex_plugin.errors == []
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def _figures(state: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-vendor utilisation and per-owner leased device-equivalents from a pool state."""
    per_vendor: dict[str, list[float]] = {}
    for host in state["hosts"]:
        for dev in host["devices"]:
            per_vendor.setdefault(dev["vendor"], []).append(float(dev["utilisation"]))
    util = {v: sum(xs) / len(xs) for v, xs in per_vendor.items()}
    leased: dict[str, float] = {}
    for le in state["leases"]:
        if le.get("compute_milli") is not None and le.get("state") not in ("released", "expired"):
            size = le["compute_milli"] / 1000 * len(le["devices"])
            leased[le["owner"]] = leased.get(le["owner"], 0.0) + size
    return util, leased


def _close(a: dict[str, float], b: dict[str, float], tol: float = 2e-3) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= tol for k in a)


def test_promql_matches_the_pool_state_at_the_same_moment(
    running: tuple[FlexCluster, Client, Prometheus],
) -> None:
    cluster, client, prom = running
    pc = PoolClient(client)
    deadline = time.monotonic() + 90
    tried = []
    while time.monotonic() < deadline:
        before = pc.state()
        asked = time.time()
        # wait for a scrape that started after the first reading
        while True:
            stamps = prom.query("timestamp(flexlab_hosts)")
            scraped = float(stamps[0]["value"][1]) if stamps else 0.0
            if scraped > asked:
                break
            time.sleep(0.2)
        after = pc.state()
        util, leased = _figures(before)
        tried.append((util, _figures(after)[0]))
        if not (_close(util, _figures(after)[0]) and _close(leased, _figures(after)[1])):
            continue  # the pool changed between the readings: try again
        if max(util.values()) == 0.0 or not leased:
            continue  # the tasks have not started yet
        prom_util = prom.by(
            "sum by (vendor) (flexlab_device_compute_used)"
            " / sum by (vendor) (flexlab_device_compute_capacity)",
            "vendor",
            scraped,
        )
        prom_leased = prom.by("sum by (owner) (flexlab_owner_compute_leased)", "owner", scraped)
        assert _close(prom_util, util), (prom_util, util)
        assert _close(prom_leased, leased), (prom_leased, leased)
        assert leased == {"alice": pytest.approx(1.0), "bob": pytest.approx(leased["bob"])}
        assert leased["bob"] > 0.25  # a MIG 1g.10gb instance and a quarter T4
        assert max(util.values()) > 0.1
        break
    else:
        pytest.fail(f"the pool never held still across one scrape: {tried[-3:]}")
    up = prom.query('up{job="flexlab"}')
    assert [float(r["value"][1]) for r in up] == [1.0]
    assert cluster.flex_plugin.errors == []


def _exposition(cluster: FlexCluster) -> str:
    return _get(f"http://127.0.0.1:{cluster.scheduler.http_server.port}/metrics").decode()


def _families(text: str, prefixes: tuple[str, ...]) -> str:
    """The lines of the exposition's families whose names start with ``prefixes``.

    In this test process the scheduler's /metrics also serves the families that other tests'
    Jupyter servers put in prometheus_client's global registry (jupyter_server's own, one of
    which promtool flags); a scheduler started by ``flexlab up`` has none of them."""
    kept = []
    for line in text.splitlines():
        name = (
            line.split()[2] if line.startswith(("# HELP ", "# TYPE ")) else line.split("{")[0].split(" ")[0]
        )
        if name.startswith(prefixes):
            kept.append(line)
    return "\n".join(kept) + "\n"


def test_promtool_finds_nothing_to_report(running: tuple[FlexCluster, Client, Prometheus]) -> None:
    cluster, _, prom = running
    promtool = _tool("promtool")
    text = _families(_exposition(cluster), ("flexlab_", "dask_"))
    assert "flexlab_device_compute_capacity{" in text
    assert "dask_scheduler_workers" in text  # distributed's own series are still there
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, b"")
    rules = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, timeout=60, check=False
    )
    out = rules.stdout.decode() + rules.stderr.decode()
    assert rules.returncode == 0, out
    assert [
        ln for ln in out.splitlines() if ln.strip() and not re.match(r"\s*(Checking |SUCCESS: )", ln)
    ] == []
    # the server loaded the rules and evaluates each without error
    deadline = time.monotonic() + 30
    while True:
        groups = json.loads(_get(f"{prom.url}/api/v1/rules"))["data"]["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        if (health and all(h == "ok" for h in health.values())) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(health) >= {
        "FlexlabPoolSaturated",
        "FlexlabWorkWaitingLong",
        "FlexlabHostLost",
        "FlexlabPluginErrors",
    }
    assert set(health.values()) == {"ok"}, health


def test_every_metric_the_dashboard_and_rules_query_is_exposed_and_evaluates(
    running: tuple[FlexCluster, Client, Prometheus],
) -> None:
    cluster, _, prom = running
    exprs = queries()
    assert len(exprs) > 20
    assert len(metric_names(exprs)) >= 15
    assert missing_metrics(_exposition(cluster), exprs) == []
    for e in exprs:  # valid PromQL that Prometheus evaluates on the scraped series
        prom.query(runnable(e))
    with_data = [e for e in exprs if "$vendor" in e and prom.query(runnable(e))]
    assert len(with_data) >= 8
