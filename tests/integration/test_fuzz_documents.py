"""Fuzzing the two routes that change the knowledge base (upload and delete), which the
end-to-end fuzz test skips because its server is shared: here against the real app with a
store of its own. No 5xx, and every response matches the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

pytestmark = pytest.mark.slow

WRITERS = {"POST /v1/documents", "DELETE /v1/documents/{doc_id}"}


def test_document_writers_conform_to_the_schema(make_settings: Any, smol_engine: Any) -> None:
    from serving.app import create_app

    app = create_app(make_settings(), engine=smol_engine)
    with TestClient(app) as client:  # runs the lifespan: the knowledge base opens
        for _ in range(600):
            if client.get("/readyz").status_code == 200:
                break
        # a text part named `files` (curl -F files=path, without the @) is a per-file failure
        mixed = client.post(
            "/v1/documents",
            data={"files": "report.pdf"},
            files=[("files", ("note.txt", b"The canteen opens at 11:30.", "text/plain"))],
        )
        assert mixed.status_code == 200, mixed.text
        outcomes = {r["filename"]: r for r in mixed.json()["results"]}
        assert outcomes["note.txt"]["status"] == "added"
        assert outcomes["files[1]"]["status"] == "failed"
        assert "-F files=@" in outcomes["files[1]"]["error"]

        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [
            op
            for op in (result.ok() for result in schema.get_all_operations())
            if op.label in WRITERS
        ]
        assert {op.label for op in operations} == WRITERS
        failures: list[str] = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=12,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def run(case: Any) -> None:
                case.call_and_validate()

            try:
                run()
            except Exception as exc:
                failures.append(f"{operation.label}: {exc}"[:2000])
        assert not failures, "\n\n".join(failures)
        assert client.get("/healthz").status_code == 200
