"""The Jupyter server extension is a trusted client of a TLS pool: ``FlexlabJupyter.tls_dir``
(what ``flexlab lab --tls`` sets) gives it the client certificate, and the kernels it starts
get the same folder through ``$FLEXLAB_TLS``; without it the API answers 503 with why."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest
from flexlab_dask import FlexCluster

from flexlab.commands.lab import lab_argv
from flexlab.tls import TLS_ENV


@pytest.fixture
def tls_setting(request: pytest.FixtureRequest, pool_tls: Path) -> str:
    return str(pool_tls) if request.param == "pool" else ""


@pytest.fixture
def jp_server_config(tls_pool: FlexCluster, tls_setting: str) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"flexlab_jupyter": True}},
        "FlexlabJupyter": {
            "scheduler_address": tls_pool.scheduler_address,
            "tls_dir": tls_setting,
            "connect_timeout": 3.0,
        },
    }


@pytest.fixture(autouse=True)
def _no_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TLS_ENV, raising=False)
    monkeypatch.delenv("DASK_FLEXLAB__TLS", raising=False)


@pytest.mark.parametrize("tls_setting", ["pool"], indirect=True)
async def test_the_extension_reads_the_pool_with_the_client_certificate(
    jp_fetch: Any, jp_serverapp: Any, tls_pool: FlexCluster, pool_tls: Path
) -> None:
    resp = await jp_fetch("flexlab", "api", "pool")
    assert resp.code == 200
    pool = json.loads(resp.body)
    assert [h["name"] for h in pool["hosts"]] == ["gpu-host"]
    info = json.loads((await jp_fetch("flexlab", "api", "info")).body)
    assert info["scheduler"] == tls_pool.scheduler_address
    assert os.environ[TLS_ENV] == str(pool_tls)  # kernels started from now on
    await jp_serverapp.cleanup_extensions()
    assert TLS_ENV not in os.environ


@pytest.mark.parametrize("tls_setting", ["none"], indirect=True)
async def test_without_the_certificate_the_api_says_what_is_missing(jp_fetch: Any) -> None:
    resp = await jp_fetch("flexlab", "api", "pool", raise_error=False)
    assert resp.code == 503
    err = json.loads(resp.body)
    assert err["error"] == "PoolUnavailable"
    assert "the pool's TLS folder" in err["message"]


def test_flexlab_lab_passes_the_folder_to_the_extension(pool_tls: Path) -> None:
    args = argparse.Namespace(
        port=8888,
        ip="127.0.0.1",
        no_browser=True,
        allow_root=False,
        scheduler="tls://127.0.0.1:8786",
        tls=str(pool_tls),
        jupyter_args=[],
    )
    argv = lab_argv(args)
    assert "--FlexlabJupyter.scheduler_address=tls://127.0.0.1:8786" in argv
    assert f"--FlexlabJupyter.tls_dir={pool_tls}" in argv


def test_flexlab_lab_refuses_tls_without_a_pool_to_use_it_on(
    pool_tls: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flexlab.cli import main

    monkeypatch.delenv("FLEXLAB_SCHEDULER", raising=False)
    assert main(["lab", "--tls", str(pool_tls), "--no-browser"]) == 2
    assert "with --scheduler tls://HOST:PORT" in capsys.readouterr().err
    assert TLS_ENV not in os.environ  # nothing was changed
