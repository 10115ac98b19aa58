"""Fuzzing with schemathesis against the real server process, from its own OpenAPI schema:
no 5xx, and every response matches the schema (status codes, content types, bodies)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

# Operations that stream or serve files are fuzzed too; the widget demo page is on.
EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def api_schema(e2e_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{e2e_server.base}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    case.call_and_validate(timeout=120)
