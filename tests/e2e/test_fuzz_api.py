"""Fuzzing with schemathesis against the real server process, from its own OpenAPI schema:
no 5xx, and every response matches the schema (status codes, content types, bodies).

Driven through hypothesis directly (one test, every operation in turn): schemathesis' pytest
plugin does not work with this pytest version.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 10
# Uploading and deleting documents would change the knowledge base the other end-to-end
# tests share with this server; tests/integration/test_fuzz_documents.py fuzzes them against an
# app with a store of its own.
SHARED_STATE_WRITERS = {"POST /v1/documents", "DELETE /v1/documents/{doc_id}"}


def test_api_conforms_to_its_schema(e2e_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{e2e_server.base}/openapi.json")
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.label not in SHARED_STATE_WRITERS
    ]
    labels = [op.label for op in operations]
    assert "POST /v1/ask" in labels and "POST /v1/chat/completions" in labels
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(timeout=120)

        try:
            run()
        except Exception as exc:  # collect every operation's first failure, then report
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
