"""Schemathesis against the OpenAPI file: generated requests to a live Jupyter server (with the
embedded mock pool) get no 5xx and no answer that breaks the documented schema."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.meta import negated_parameters

OPENAPI = Path(__file__).resolve().parents[2] / "extension" / "flexlab_jupyter" / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)

#: Query parameters that Jupyter Server itself reads on every request (its token login, its
#: activity tracking, its XSRF token): the handlers accept them as Jupyter does
#: (``handlers._ANY_QUERY``), so a generated "unknown parameter" of one of these names is no
#: schema violation to reject.
JUPYTER_QUERY = frozenset({"token", "no_track_activity", "_xsrf"})


@schema.hook
def filter_query(ctx: Any, query: dict[str, Any] | None) -> bool:
    return not (query and JUPYTER_QUERY & set(query))


class Server:
    """A ``jupyter server`` process on 127.0.0.1 with its token."""

    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "FLEXLAB_SCHEDULER"}
        env["FLEXLAB_USER"] = "fuzzer"
        self.log = (tmp / "server.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.open_browser=False",
                "--ServerApp.allow_root=True",
                f"--ServerApp.root_dir={tmp}",
                f"--IdentityProvider.token={self.token}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        req = urllib.request.Request(
            f"{self.url}/flexlab/api/info", headers={"Authorization": f"token {self.token}"}
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"jupyter server not up on {self.url} after {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("openapi"))
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()
    log = Path(srv.log.name).read_text()
    errors = [
        line for line in log.splitlines() if "Uncaught exception" in line or re.search(r"\] 5\d\d ", line)
    ]
    assert errors == [], "\n".join(errors)


def test_the_openapi_file_is_valid() -> None:
    ops = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert ("POST", "/flexlab/api/leases") in ops
    assert len(ops) == 10


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # schemathesis' own
@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, server: Server) -> None:
    # Any string is a valid `request` for the schema, but not for the request grammar:
    # a schema-valid body may get a 400 that names the field (which the schema documents).
    # The token goes with every request, except where the case is one without it (a
    # negative case that drops the required Authorization header): that one must get a 401,
    # not the token added back and a 200 (which schemathesis rightly calls a bad request accepted).
    dropped = {name.lower() for name, _ in negated_parameters(case.meta)}
    headers = {} if "authorization" in dropped else {"Authorization": f"token {server.token}"}
    case.call_and_validate(
        base_url=server.url,
        headers=headers,
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
