"""The widget's server side in the real app: script, demo page, CORS by origin, feedback and
the access-checked source view, with the real engine and the sample knowledge base."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from serving.widget_auth import sign_identity
from tests.asgi import ready_client

pytestmark = pytest.mark.slow

ORIGIN = "https://intranet.example.com"
TOKEN = "intranet-widget-token-0001"
CONTRACTOR_TOKEN = "contractor-widget-token-01"
SECRET = "test-identity-secret-0123456789-abcdef"  # HS256 wants >= 32 bytes


@pytest.fixture(scope="module")
async def client(
    sample_kb: Any, smol_engine: Any, monkeypatch_module: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from rag.config import WidgetSettings
    from serving.app import create_app

    monkeypatch_module.setenv("KB_TEST_WIDGET_SECRET", SECRET)
    widget = WidgetSettings.model_validate(
        {
            "demo_page": True,
            "tokens": [
                {
                    "token": TOKEN,
                    "name": "intranet",
                    "origins": [ORIGIN],
                    "groups": ["everyone"],
                    "identity_secret_env": "KB_TEST_WIDGET_SECRET",
                },
                {"token": CONTRACTOR_TOKEN, "origins": [ORIGIN], "groups": ["contractors"]},
            ],
        }
    )
    settings = sample_kb.model_copy(update={"widget": widget})
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as c:
        yield c, app.state.rag


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def widget_headers(token: str = TOKEN, origin: str = ORIGIN, **extra: str) -> dict[str, str]:
    return {"X-Widget-Token": token, "Origin": origin, **extra}


async def test_script_and_demo_page(client: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = client
    js = await c.get("/widget.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "kb-widget src:" in js.text
    page = await c.get("/widget/demo?lang=zh")
    assert page.status_code == 200
    assert f'data-token="{TOKEN}"' in page.text and 'data-lang="zh"' in page.text


async def test_cors_follows_the_token_origins(client: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = client
    pre = await c.options(
        "/v1/ask",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204  # a preflight reveals nothing; the real call is checked
    assert "x-widget-token" in pre.headers["access-control-allow-headers"]
    refused = await c.post(
        "/v1/ask",
        json={"question": "Where is the print queue?"},
        headers=widget_headers(origin="https://evil.example"),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert refused.headers["access-control-allow-origin"] == "https://evil.example"
    anonymous = await c.get("/v1/documents/x/source", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in anonymous.headers
    bad_token = await c.post(
        "/v1/ask", json={"question": "hi"}, headers=widget_headers(token="x" * 20)
    )
    assert bad_token.status_code == 403
    assert bad_token.json()["error"]["code"] == "invalid_widget_token"
    forged = sign_identity(b"not-the-secret-though-just-as-long", "mallory", ["hr"])
    bad_identity = await c.post(
        "/v1/ask",
        json={"question": "hi"},
        headers=widget_headers(**{"X-Widget-Identity": forged}),
    )
    assert bad_identity.status_code == 401
    assert bad_identity.json()["error"]["code"] == "invalid_identity"


async def test_answer_feedback_and_source_view(client: tuple[httpx.AsyncClient, Any]) -> None:
    c, state = client
    ident = sign_identity(SECRET.encode(), "alice", ["hr"])
    alice = widget_headers(**{"X-Widget-Identity": ident})
    events: list[tuple[str, Any]] = []
    payload = {"question": "What is the name of the shared print queue?", "stream": True}
    async with c.stream("POST", "/v1/ask", json=payload, headers=alice) as resp:
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        name = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    done = events[-1][1]
    assert events[-1][0] == "done" and len(done["answer_id"]) == 32
    cited = done["citations"][0]
    assert cited["chunk_id"] and cited["doc_id"]

    ok = await c.post(
        "/v1/feedback",
        json={"answer_id": done["answer_id"], "rating": "down", "comment": "too vague"},
        headers=alice,
    )
    assert ok.status_code == 200, ok.text
    [stored] = state.feedback.feedback(done["answer_id"])
    assert (stored.subject, stored.rating, stored.comment) == ("user:alice", "down", "too vague")
    other = await c.post(  # an anonymous visitor cannot rate alice's answer
        "/v1/feedback",
        json={"answer_id": done["answer_id"], "rating": "up"},
        headers=widget_headers(),
    )
    assert other.status_code == 404

    src = await c.get(f"/v1/documents/{cited['doc_id']}/source", headers=alice)
    assert src.status_code == 200
    body = src.json()
    assert body["title"] == cited["title"]
    assert cited["chunk_id"] in {p["chunk_id"] for p in body["passages"]}
    hidden = await c.get(
        f"/v1/documents/{cited['doc_id']}/source", headers=widget_headers(token=CONTRACTOR_TOKEN)
    )
    assert hidden.status_code == 404  # not in the contractors group: as if it did not exist
    assert cited["title"] not in hidden.text
