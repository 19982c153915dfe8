"""The per-user Jupyter server in front mode: its REST API forwards to the front with the
user's Hub token, and its kernels get the front, never the pool's certificate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.security.front.conftest import Hub

pytestmark = pytest.mark.slow


@pytest.fixture
def jp_server_config(
    hub: Hub, tokens: dict[str, str], pool_tls: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    # what a careless deployment might leave in the server's environment: it must not reach kernels
    monkeypatch.setenv("FLEXLAB_TLS", str(pool_tls))
    monkeypatch.setenv("FLEXLAB_SCHEDULER", "tls://127.0.0.1:1")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens["ana"])  # what the Hub gives ana's server
    monkeypatch.delenv("FLEXLAB_FRONT", raising=False)
    return {
        "ServerApp": {"jpserver_extensions": {"flexlab_jupyter": True}},
        "FlexlabJupyter": {"front_url": hub.front},
    }


async def test_the_panel_api_forwards_to_the_front_as_the_hub_user(
    jp_fetch: Any, jp_serverapp: Any, hub: Hub, tokens: dict[str, str]
) -> None:
    info = json.loads((await jp_fetch("flexlab", "api", "info")).body)
    assert info["user"] == "ana"
    assert info["embedded"] is False
    pool = json.loads((await jp_fetch("flexlab", "api", "pool")).body)
    assert pool["user"] == "ana"
    assert [h["name"] for h in pool["hosts"]] == ["gpu-host"]
    resp = await jp_fetch("flexlab", "api", "leases", method="POST", body=json.dumps({"request": "t4:0.25"}))
    lease = json.loads(resp.body)
    assert resp.code == 201
    assert lease["owner"] == "ana"
    resp = await jp_fetch("flexlab", "api", "leases", "L99999", raise_error=False)
    assert resp.code == 404
    bad = await jp_fetch(
        "flexlab", "api", "leases", method="POST", body=json.dumps({"request": "t4:7"}), raise_error=False
    )
    assert bad.code == 400
    assert json.loads(bad.body)["error"] == "InvalidRequest"
    resp = await jp_fetch("flexlab", "api", "leases", lease["lease_id"], method="DELETE")
    assert json.loads(resp.body)["state"] == "released"


async def test_kernels_get_the_front_and_never_the_pool_certificate(
    jp_fetch: Any, jp_serverapp: Any, hub: Hub, tokens: dict[str, str]
) -> None:
    """A kernel of the server: no pool certificate, the front as ana, and the code the panel
    inserts for its lease runs a task there (the lease's worker joined the server's own
    private scheduler, which the kernel reaches with the credentials the server wrote)."""
    assert "FLEXLAB_TLS" not in os.environ
    assert "FLEXLAB_SCHEDULER" not in os.environ
    assert os.environ["FLEXLAB_FRONT"] == hub.front
    resp = await jp_fetch("flexlab", "api", "leases", method="POST", body=json.dumps({"request": "t4:0.25"}))
    lease = json.loads(resp.body)
    private_file = Path(os.environ["FLEXLAB_PRIVATE"])
    assert private_file.stat().st_mode & 0o777 == 0o600
    km = jp_serverapp.kernel_manager
    kid = await km.start_kernel()
    client = km.get_kernel(kid).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        async def run(code: str) -> str:
            out.clear()
            reply = await client.execute_interactive(code, output_hook=hook, timeout=120)
            assert reply["content"]["status"] == "ok", out
            return "".join(out).strip()

        env = await run(
            "import os, flexlab\n"
            "print(repr((os.environ.get('FLEXLAB_TLS'), os.environ.get('FLEXLAB_SCHEDULER'), "
            "os.environ.get('FLEXLAB_FRONT'), flexlab.PoolClient().state()['user'])))"
        )
        assert env == repr((None, None, hub.front, "ana"))
        done = await run(
            lease["attach_code"].replace(
                "lease.submit(where).result()", "print(lease.submit(where).result())"
            )
        )
        assert f"'slice': '{lease['slice_id'] or lease['lease_id']}'" in done or lease["lease_id"] in done, (
            done
        )
    finally:
        client.stop_channels()
        await km.shutdown_kernel(kid, now=True)
        await jp_fetch("flexlab", "api", "leases", lease["lease_id"], method="DELETE")


async def test_a_stopping_server_gives_back_the_panels_leases(
    hub: Hub, tokens: dict[str, str], tmp_path: Path
) -> None:
    """Their workers' scheduler stops with the server: the pool would keep them until their TTL."""
    from flexlab_jupyter.manager import FrontManager

    from flexlab.front import FrontClient

    manager = FrontManager(hub.front, tokens["ana"], private_file=str(tmp_path / "private.json"))
    lease = await manager.create_lease("ana", "t4:0.25", ttl="10m")
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    await manager.aclose()
    assert FrontClient(hub.front, tokens["ana"]).get_lease(lease["lease_id"])["state"] == "released"
    assert not (tmp_path / "private.json").exists()
