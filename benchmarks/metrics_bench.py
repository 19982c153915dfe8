"""Cost of the pool's Prometheus metrics on a synthetic pool (no agents, no workers).

    python benchmarks/metrics_bench.py [--hosts 125] [--owners 40] [--scrapes 20] [--slice-series 200]

``--hosts`` hosts of 8 V100S each (125: 1,000 devices), carved into shared slices as they
register; one lease of half a device per host for ``--owners`` owners in turn, tasks bound to a
quarter of a device on every other host, telemetry on every slice, and two leases that wait.
Prints the series count and the median and worst time of:

* ``collect``: the families computed from the pool (``flexlab.core.metrics.collect``);
* ``render``: collect and write them in the text format (``render_text``), what a scrape adds
  to distributed's own;
* ``scrape``: an HTTP GET of ``/metrics`` from a running scheduler with the plugin (distributed's
  own series included), the figure the target is about (under 100 ms at 1,000 devices).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import urllib.request

from distributed import Scheduler
from flexlab_dask.scheduler import FlexScheduler

from flexlab.core.metrics import MetricLimits, collect
from flexlab.core.metrics.exposition import render_text
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec


def build(plugin: FlexScheduler, hosts: int, owners: int) -> None:
    pool = plugin.pool
    for i in range(hosts):
        pool.register_host(
            HostSpec(f"h{i:04d}", 96_000, 512 * 1024, tuple(DeviceSpec("v100s-32gb", j) for j in range(8)))
        )
    half = parse_request("gpu:0.5")
    for i in range(hosts):
        pool.create_lease(half, owner=f"user{i % owners:03d}", ttl_s=1e6)
    quarter = parse_request("gpu:0.25")
    for i in range(0, hosts, 2):
        pool.bind(f"task-{i}", quarter)
    for n, s in enumerate(pool.slices.values()):
        pool.telemetry(s.slice_id, utilisation=(n % 10) / 10, memory_used_mib=1024 * (n % 8))
    for _ in range(2):
        pool.create_lease(parse_request("gpu:1,devices=8"), owner="waiting", ttl_s=1e6)
    plugin.metrics.observe(pool, time.time())


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1000)
    return out


def show(name: str, ms: list[float]) -> None:
    print(f"{name:8s} median {statistics.median(ms):6.1f} ms   max {max(ms):6.1f} ms   ({len(ms)} runs)")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=125)
    ap.add_argument("--owners", type=int, default=40)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--slice-series", type=int, default=200, help="flexlab.metrics.max-slice-series")
    args = ap.parse_args()
    plugin = FlexScheduler(state_file=":memory:", hi=False)
    plugin.metric_limits = MetricLimits(max_slice_series=args.slice_series, max_owners=20)
    build(plugin, args.hosts, args.owners)
    pool = plugin.pool
    fams = plugin.metric_families()
    series = sum(f.series() for f in fams)
    print(
        f"{args.hosts} hosts, {pool.ledger.pool.n_devices} devices, {len(pool.slices)} slices, "
        f"{len(pool.leases)} leases: {series} flexlab series in {len(fams)} families "
        f"(per-slice series {'on' if any(f.name.startswith('flexlab_slice_') for f in fams) else 'off'})"
    )
    show("collect", timed(lambda: collect(pool, plugin.metrics, now=time.time(), limits=plugin.metric_limits),
                          args.scrapes))  # fmt: skip
    show("render", timed(lambda: render_text(plugin.metric_families()), args.scrapes))
    async with Scheduler(dashboard_address="127.0.0.1:0", dashboard=False, plugins=[plugin]) as s:
        url = f"http://127.0.0.1:{s.http_server.port}/metrics"

        def get() -> bytes:
            with urllib.request.urlopen(url, timeout=30) as r:
                return bytes(r.read())

        body = await asyncio.to_thread(get)
        lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
        ours = sum(1 for ln in lines if ln.startswith("flexlab_"))
        print(
            f"scrape: {len(body) / 1e6:.2f} MB, {len(lines)} samples ({ours} flexlab, the rest distributed's)"
        )
        ms = []
        for _ in range(args.scrapes):
            t = time.perf_counter()
            await asyncio.to_thread(get)
            ms.append((time.perf_counter() - t) * 1000)
        show("scrape", ms)


if __name__ == "__main__":
    asyncio.run(main())
