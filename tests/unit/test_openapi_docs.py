"""The OpenAPI document is complete: every route, model and error response described, with
examples that are themselves valid against the schemas they illustrate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import SettingsFactory

FASTAPI_DEFAULTS = {"Successful Response", "Validation Error", "Additional Response", ""}
OPEN_ROUTES = {"/healthz", "/readyz", "/metrics", "/v1/models", "/widget.js", "/widget/demo"}


@pytest.fixture(scope="module")
def doc(make_settings: SettingsFactory) -> dict[str, Any]:
    from serving.app import create_app

    return create_app(make_settings(auth={"required": True})).openapi()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": doc["components"]})


def media_examples(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [e["value"] for e in media.get("examples", {}).values()]


def test_every_route_is_described(doc: dict[str, Any]) -> None:
    ops = list(operations(doc))
    assert len(ops) >= 16
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert len(op.get("description", "")) > 30, where
        assert op.get("tags"), where
        assert "200" in op["responses"], where
        for code, response in op["responses"].items():
            assert response.get("description", "") not in FASTAPI_DEFAULTS, (where, code)
            assert "X-Request-ID" in response.get("headers", {}), (where, code)
        for param in op.get("parameters", []):
            assert param.get("description"), (where, param["name"])


def test_every_response_has_an_example(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        for code, response in op["responses"].items():
            content = response.get("content")
            assert content, (method, path, code)
            for media_type, media in content.items():
                examples = media_examples(media)
                if not examples and "schema" in media:
                    examples = resolve(doc, media["schema"]).get("examples", [])
                assert examples, (method, path, code, media_type)
        body = op.get("requestBody")
        if body is not None:
            for media_type, media in body["content"].items():
                if media_type == "multipart/form-data":
                    continue  # binary parts: described in words (see the next test)
                assert resolve(doc, media["schema"]).get("examples"), (method, path)


def test_errors_are_documented_as_the_service_sends_them(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape is not what we send
    for path, method, op in operations(doc):
        for code, response in op["responses"].items():
            if int(code) < 400:
                continue
            media = response["content"]["application/json"]
            expected = "ReadyResponse" if path == "/readyz" else "ErrorResponse"
            assert media["schema"]["$ref"].endswith("/" + expected), (method, path, code)
            if expected == "ErrorResponse":
                assert media_examples(media), (method, path, code)
            if code in ("429", "503"):
                assert "Retry-After" in response["headers"], (method, path, code)


def test_callers_and_limits_are_documented(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert {"apiKey", "apiKeyHeader", "widgetToken"} <= set(schemes)
    for path, method, op in operations(doc):
        codes = set(op["responses"])
        if path in OPEN_ROUTES:
            assert "security" not in op, path
            continue
        assert {"401", "403", "503"} <= codes, (method, path)
        # auth.required is on in this app: anonymous access is not offered
        assert op["security"] and {} not in op["security"], (method, path)
        if "requestBody" in op:
            assert {"413", "422"} <= codes, (method, path)
    for path in ("/v1/ask", "/v1/chat/completions"):
        assert {"429", "503", "504"} <= set(doc["paths"][path]["post"]["responses"])


def test_anonymous_access_is_shown_when_the_profile_allows_it(
    make_settings: SettingsFactory,
) -> None:
    from serving.app import create_app

    doc = create_app(make_settings()).openapi()  # the test profile: auth off
    assert {} in doc["paths"]["/v1/ask"]["post"]["security"]


def test_every_model_is_described_with_examples(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert len(schemas) >= 30
    for name, schema in schemas.items():
        assert schema.get("description"), name
        # FastAPI's generated multipart form: an example would be sent as text, not a file
        assert schema.get("examples") or name.startswith("Body_"), name
        for prop, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop}"


def test_examples_are_valid_against_their_schemas(doc: dict[str, Any]) -> None:
    checked = 0
    for name, schema in doc["components"]["schemas"].items():
        if name.startswith("Body_"):
            continue  # multipart: the example stands for binary parts
        check = validator(doc, schema)
        for example in schema.get("examples", []):
            errors = [e.message for e in check.iter_errors(example)]
            assert not errors, (name, errors)
            checked += 1
    for path, method, op in operations(doc):
        for code, response in op["responses"].items():
            media = response.get("content", {}).get("application/json")
            if media is None or "schema" not in media:
                continue
            check = validator(doc, media["schema"])
            for example in media_examples(media):
                errors = [e.message for e in check.iter_errors(example)]
                assert not errors, (method, path, code, errors)
                checked += 1
    assert checked > 50


def test_a_wrong_example_would_be_caught(doc: dict[str, Any]) -> None:
    check = validator(doc, {"$ref": "#/components/schemas/AskResponse"})
    assert list(check.iter_errors({"answer": "no answer_id, citations or usage"}))


def sse_events(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event", "message"), fields["data"]))
    return events


def test_stream_examples_match_the_wire_format(doc: dict[str, Any]) -> None:
    ask = doc["paths"]["/v1/ask"]["post"]["responses"]["200"]["content"]
    events = sse_events(ask["text/event-stream"]["example"])
    assert [e for e, _ in events] == ["citations", "delta", "delta", "done"]
    done = json.loads(events[-1][1])
    check = validator(doc, {"$ref": "#/components/schemas/AskResponse"})
    assert not list(check.iter_errors(done))

    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    events = sse_events(chat["text/event-stream"]["example"])
    assert events[-1] == ("message", "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["citations"][0]["n"] == 1


def test_a_route_keeps_its_own_error_example(doc: dict[str, Any]) -> None:
    media = doc["paths"]["/v1/feedback"]["post"]["responses"]["404"]["content"]
    messages = [e["error"]["message"] for e in media_examples(media["application/json"])]
    assert messages and all("answer_id" in m for m in messages)
