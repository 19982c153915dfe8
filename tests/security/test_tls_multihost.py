"""A TLS pool deployed as docs/security.md says, across "machines": the scheduler and a GPU
host each in a network namespace of their own, on real addresses beyond loopback, the client
in the root namespace (tests/multihost's lab). Certificates carry the machines' addresses;
the task of a lease runs on the other host's slice worker over TLS; from a third machine, an
agent with another CA's certificate never joins, and one that would listen on the network
without TLS refuses to start."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import flexlab
from flexlab.commands.certs import write_pool_certs
from flexlab.dask_client import open_client
from flexlab.tls import pool_security

from ..multihost.harness import Lab, netns_available, wait_for

pytestmark = pytest.mark.slow

SPEC = "version: 1\nhosts:\n  - name: gpu-a\n    cpu: 8\n    memory: 32GiB\n    devices:\n      - model: t4\n"
ENV = {"DASK_FLEXLAB__LOOP_INTERVAL": "0.5s", "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    lab = Lab(tmp_path, tls=tmp_path / "tls", env=ENV)
    try:
        for node in ("sched", "h1", "rogue"):
            lab.add_node(node)
        write_pool_certs(tmp_path / "tls", [lab.nodes["sched"].address, lab.nodes["h1"].address])
        yield lab
    finally:
        lab.close()
        assert lab.leftovers() == [], f"the lab left {lab.leftovers()}"


def run_on(lab: Lab, node: str, argv: list[str], log: str, timeout: float = 60) -> tuple[int, str]:
    proc = lab.run(node, argv, log)
    proc.wait(timeout)
    return proc.returncode, (lab.tmp / f"{log}.log").read_text()


def test_a_tls_pool_across_machines(lab: Lab, tmp_path: Path, other_tls: Path) -> None:
    spec = tmp_path / "pool.yaml"
    spec.write_text(SPEC)
    lab.start_scheduler(tmp_path / "leases.sqlite")
    lab.start_agent("h1", spec, "gpu-a")
    sched, h1 = lab.nodes["sched"].address, lab.nodes["h1"].address
    assert lab.scheduler_address == f"tls://{sched}:8786"

    client = wait_for(
        lambda: open_client(lab.scheduler_address, timeout="10s", security=lab.security()),
        90,
        "the scheduler",
        lab,
    )
    with client:

        def ready() -> bool:
            st = flexlab.PoolClient(client).state()
            slices = [s for h in st["hosts"] for d in h["devices"] for s in d["slices"]]
            return [h["name"] for h in st["hosts"]] == ["gpu-a"] and any(
                s["state"] == "ready" for s in slices
            )

        wait_for(ready, 90, "gpu-a and its slice", lab)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert workers
        assert all(a.startswith(f"tls://{h1}:") for a in workers)  # --listen: the host's address
        with flexlab.lease("t4:0.5", owner="ana", client=client, timeout=90) as lease:
            assert lease.submit(lambda x: x + 1, 41).result(timeout=60) == 42

        # across the network: a client without the certificate, or with another CA's
        with pytest.raises(TypeError, match="TLS expects a `ssl_context`"):
            open_client(lab.scheduler_address, timeout="3s")
        with pytest.raises(OSError, match=r"Timed out|certificate|handshake"):
            open_client(
                lab.scheduler_address, timeout="3s", security=pool_security(str(other_tls), client="client")
            )

        agent = [sys.executable, "-m", "flexlab.cli", "agent", "--provider", "mock", "--spec", str(spec)]
        rogue = lab.nodes["rogue"].address
        listen = ["--listen", rogue, "--register-timeout", "4"]
        code, out = run_on(
            lab, "rogue", [*agent, lab.scheduler_address, "--tls", str(other_tls), *listen], "r1"
        )
        assert code == 2, out
        assert "could not register" in out
        code, out = run_on(lab, "rogue", [*agent, f"tcp://{sched}:8786", *listen], "r2")
        assert code == 2, out
        assert f"refusing to listen on {rogue} (slice workers (--listen)) without TLS" in out
        assert "Traceback" not in (lab.tmp / "r1.log").read_text()

        assert [h["name"] for h in flexlab.PoolClient(client).state()["hosts"]] == ["gpu-a"]
        errors = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["flexlab"].errors)
        assert errors == []
    assert lab.stop_processes() == []
