"""Schemathesis against the front (the OpenAPI file of /flexlab/api/, served by the Hub
service under /services/flexlab/): generated requests of a Hub user get no 5xx and no answer
that breaks the documented schema, as the Jupyter server's do (tests/jupyter/test_openapi.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.security.front.conftest import Hub, call

OPENAPI = Path(__file__).resolve().parents[3] / "extension" / "flexlab_jupyter" / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def fuzz(hub: Hub) -> Iterator[str]:
    """A Hub token of the user the fuzzer acts as; its leases are given back afterwards, and
    the front logged no uncaught exception and answered no 5xx."""
    token = hub.token("fuzz")
    yield token
    _, leases = call(hub.front + "flexlab/api/leases", "GET", token)
    for x in leases["leases"]:
        call(hub.front + f"flexlab/api/leases/{x['lease_id']}", "DELETE", token)
    errors = [
        line
        for line in hub.logs().splitlines()
        if "Uncaught exception" in line or re.search(r"\b5\d\d [A-Z]+ /services/flexlab/", line)
    ]
    assert errors == [], "\n".join(errors)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # schemathesis' own
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_front_conforms_to_the_schema(case: schemathesis.Case, hub: Hub, fuzz: str) -> None:
    case.call_and_validate(
        base_url=hub.front.rstrip("/"),
        headers={"Authorization": f"token {fuzz}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
