"""Lease creation rate of the live pool (``SlicePool.create_lease``), no Dask in the way.

    python benchmarks/lease_bench.py [--hosts 150] [--leases 1500] [--policy flexlab]

Hosts of 8 V100S each, carved on demand; leases of three shapes (half, whole and a quarter
of a device, with host CPU and RAM) until ``--leases`` are made. Prints host registration
time and leases a second.
"""

from __future__ import annotations

import argparse
import time

from flexlab.core.pool import SlicePool
from flexlab.core.request import parse_request
from flexlab.core.topology import DeviceSpec, HostSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=150)
    ap.add_argument("--leases", type=int, default=1500)
    ap.add_argument("--policy", default="flexlab")
    args = ap.parse_args()
    t0 = time.perf_counter()
    pool = SlicePool(policy=args.policy, carve_on_register=False)
    for i in range(args.hosts):
        pool.register_host(
            HostSpec(f"h{i}", 96_000, 512 * 1024, tuple(DeviceSpec("v100s-32gb", j) for j in range(8)))
        )
    t1 = time.perf_counter()
    shapes = [
        parse_request(s)
        for s in ("gpu:0.5,cpu=4,ram=8GiB", "gpu:1,cpu=8,ram=16GiB", "gpu:0.25,cpu=2,ram=4GiB")
    ]
    for i in range(args.leases):
        pool.create_lease(shapes[i % 3], owner=f"u{i % 10}", ttl_s=1e6)
    t2 = time.perf_counter()
    print(
        f"{args.hosts} hosts ({8 * args.hosts} GPUs) registered in {t1 - t0:.2f} s; "
        f"{args.leases} leases ({args.policy}) in {t2 - t1:.2f} s: {args.leases / (t2 - t1):.0f} a second"
    )


if __name__ == "__main__":
    main()
