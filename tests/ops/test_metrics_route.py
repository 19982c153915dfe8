"""Each scheduler's /metrics has its own pool's series, and loses them when the plugin closes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from distributed import Client
from flexlab_dask import FlexCluster

from flexlab.core.topology import DeviceSpec, HostSpec
from flexlab.mock.model import reset_mock_devices
from tests.ops.queries import missing_metrics, queries

pytestmark = pytest.mark.slow


def _metrics(cluster: FlexCluster) -> str:
    url = f"http://127.0.0.1:{cluster.scheduler.http_server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def _hosts(text: str) -> set[str]:
    return set(re.findall(r'^flexlab_device_compute_capacity\{[^}]*host="([^"]+)"', text, re.M))


def test_two_schedulers_in_one_process_serve_their_own_pools() -> None:
    reset_mock_devices()
    solo = [HostSpec("solo", 8000, 65536, (DeviceSpec("t4", 0),))]
    with (
        FlexCluster(dashboard_address="127.0.0.1:0", loop_interval=0.2) as a,
        FlexCluster(solo, dashboard_address="127.0.0.1:0", loop_interval=0.2) as b,
        Client(a) as client,
    ):
        text_a, text_b = _metrics(a), _metrics(b)
        assert _hosts(text_a) == {"ascend-a", "nvidia-b", "mixed-c"}
        assert _hosts(text_b) == {"solo"}
        for text in (text_a, text_b):  # one family each, distributed's series beside them
            assert text.count("# TYPE flexlab_device_compute_capacity gauge") == 1
            assert "# TYPE dask_scheduler_workers gauge" in text
            # every metric the Grafana dashboard and the alert rules read is there
            assert missing_metrics(text, queries()) == []

        async def close_plugin(dask_scheduler):  # type: ignore[no-untyped-def]
            await dask_scheduler.plugins["flexlab"].close()

        client.run_on_scheduler(close_plugin)
        after = _metrics(a)
        # no flexlab family left (other tests' Jupyter servers may label a series "flexlab_jupyter...")
        assert [
            x for x in after.splitlines() if x.startswith(("flexlab_", "# HELP flexlab_", "# TYPE flexlab_"))
        ] == []
        assert "# TYPE dask_scheduler_workers gauge" in after
        assert _hosts(_metrics(b)) == {"solo"}
        assert a.flex_plugin.errors == []
        assert b.flex_plugin.errors == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flexlab_up_serves_metrics_at_its_dashboard_address(tmp_path: Path) -> None:
    port, http = _free_port(), _free_port()
    env = {**os.environ, "DASK_FLEXLAB__STATE_FILE": str(tmp_path / "leases.sqlite")}
    log = (tmp_path / "up.log").open("w")
    args = ["up", "--port", str(port), "--dashboard", f"127.0.0.1:{http}", "--provider", "mock", "--threads"]
    up = subprocess.Popen(
        [sys.executable, "-m", "flexlab.cli", *args], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        text = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "flexlab_hosts 3.0" not in text:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as r:
                    text = r.read().decode()
            except OSError:
                assert up.poll() is None, (tmp_path / "up.log").read_text()
        assert "flexlab_hosts 3.0" in text, (tmp_path / "up.log").read_text()
        assert _hosts(text) == {"ascend-a", "nvidia-b", "mixed-c"}
        assert f"metrics:  http://127.0.0.1:{http}/metrics" in (tmp_path / "up.log").read_text()
    finally:
        up.terminate()
        up.wait(timeout=60)
        log.close()


def test_a_host_whose_agent_goes_silent_counts_as_lost() -> None:
    """What the FlexlabHostLost alert reads: a silent agent's host is lost and counted; a host
    whose agent leaves is not."""
    import dask

    reset_mock_devices()
    two = [
        HostSpec("quiet", 8000, 65536, (DeviceSpec("t4", 0),)),
        HostSpec("leaves", 8000, 65536, (DeviceSpec("t4", 0),)),
    ]
    with (
        dask.config.set({"flexlab.agent-timeout": "1s"}),
        FlexCluster(two, dashboard_address="127.0.0.1:0", loop_interval=0.2) as cluster,
    ):

        def lost() -> float:
            (line,) = [
                ln for ln in _metrics(cluster).splitlines() if ln.startswith("flexlab_hosts_lost_total ")
            ]
            return float(line.split()[1])

        assert lost() == 0.0
        quiet, leaves = cluster.agents
        cluster.sync(leaves.close, leave=True)
        cluster.sync(quiet.close, leave=False)  # dies without a word
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _hosts(_metrics(cluster)):
            time.sleep(0.2)
        assert _hosts(_metrics(cluster)) == set()
        assert lost() == 1.0
        assert cluster.flex_plugin.errors == []
