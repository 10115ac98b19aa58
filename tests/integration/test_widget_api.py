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
PARTNER_TOKEN = "partner-widget-token-00001"
PARTNER_ORIGIN = "https://partner.example.org"
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
                    "identity_groups": ["hr"],
                },
                {"token": CONTRACTOR_TOKEN, "origins": [ORIGIN], "groups": ["contractors"]},
                {
                    "token": PARTNER_TOKEN,
                    "name": "partner",
                    "origins": [PARTNER_ORIGIN],
                    "groups": ["everyone"],
                    "identity_secret_env": "KB_TEST_WIDGET_SECRET",
                },
            ],
        }
    )
    # These tests are about who may ask and see what, not the answer's length: 16 tokens
    # keep the real engine's answers (5 in the history test alone) short.
    llm = sample_kb.llm.model_copy(update={"max_tokens": 16})
    settings = sample_kb.model_copy(update={"widget": widget, "llm": llm})
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
    assert stored.subject.startswith("user:alice via widget:intranet:")
    assert (stored.rating, stored.comment) == ("down", "too vague")
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


async def _ask(c: httpx.AsyncClient, headers: dict[str, str], cid: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"question": "What is the name of the shared print queue?"}
    if cid is not None:
        body["conversation_id"] = cid
    resp = await c.post("/v1/ask", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_history_is_bound_to_the_caller_token_and_groups(
    client: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 19, finding 5: history was keyed by subject and conversation id only. A partner
    site's signed ``alice`` continued the intranet's ``alice`` conversation, anonymous
    visitors of one token shared one subject (and so each other's conversations), and a user
    whose groups shrank kept restricted history."""
    c, state = client
    answers = state.answers
    intranet_alice = widget_headers(
        **{"X-Widget-Identity": sign_identity(SECRET.encode(), "alice", ["hr"])}
    )
    first = await _ask(c, intranet_alice, "alice-conv")
    assert first["conversation_id"] == "alice-conv"  # a signed-in user's own id is kept
    from serving.widget_auth import widget_principal

    def principal(token: str, origin: str, groups: list[str] | None) -> Any:
        ident = None if groups is None else sign_identity(SECRET.encode(), "alice", groups)
        return widget_principal(state.settings.widget, token, origin, ident)

    owner = principal(TOKEN, ORIGIN, ["hr"])
    assert len(answers.history_for(owner, "alice-conv", ())) == 2
    # The same name through the partner's token, or with fewer groups: another owner.
    for other in (principal(PARTNER_TOKEN, PARTNER_ORIGIN, []), principal(TOKEN, ORIGIN, [])):
        assert answers.history_for(other, "alice-conv", ()) == []
    partner_alice = {
        "X-Widget-Token": PARTNER_TOKEN,
        "Origin": PARTNER_ORIGIN,
        "X-Widget-Identity": sign_identity(SECRET.encode(), "alice", []),
    }
    await _ask(c, partner_alice, "alice-conv")
    assert len(answers.history_for(owner, "alice-conv", ())) == 2  # untouched

    # Anonymous visitors: a client-chosen id is never honoured; the service issues one.
    visitor = widget_headers()
    a = await _ask(c, visitor, "shared-guess")
    b = await _ask(c, visitor, "shared-guess")
    assert a["conversation_id"] != "shared-guess" and b["conversation_id"] != "shared-guess"
    assert a["conversation_id"] != b["conversation_id"] and len(a["conversation_id"]) >= 32
    anon = principal(TOKEN, ORIGIN, None)
    assert len(answers.history_for(anon, a["conversation_id"], ())) == 2
    assert answers.history_for(anon, "shared-guess", ()) == []
    # The visitor holding the issued id continues it.
    again = await _ask(c, visitor, a["conversation_id"])
    assert again["conversation_id"] == a["conversation_id"]
    assert len(answers.history_for(anon, a["conversation_id"], ())) == 4


async def test_a_signed_identity_may_claim_only_its_tokens_groups(
    client: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 19, finding 8: one partner site's secret granted HR. The partner token lists no
    identity groups: an identity it signs claiming ``hr`` (or ``finance``) is refused."""
    c, _ = client
    for groups in (["hr"], ["everyone", "finance"], ["contractors"]):
        forged = sign_identity(SECRET.encode(), "mallory", groups)
        for route, body in (
            ("/v1/ask", {"question": "salary bands?"}),
            ("/v1/retrieve", {"query": "salary"}),
        ):
            resp = await c.post(
                route,
                json=body,
                headers={
                    "X-Widget-Token": PARTNER_TOKEN,
                    "Origin": PARTNER_ORIGIN,
                    "X-Widget-Identity": forged,
                },
            )
            assert resp.status_code == 403, (groups, route, resp.text)
            assert resp.json()["error"]["code"] == "identity_groups_not_allowed"
    # The intranet token allows hr: its identities may claim it (and no more).
    ok = sign_identity(SECRET.encode(), "alice", ["hr"])
    resp = await c.post(
        "/v1/retrieve",
        json={"query": "salary"},
        headers=widget_headers(**{"X-Widget-Identity": ok}),
    )
    assert resp.status_code == 200
    beyond = sign_identity(SECRET.encode(), "alice", ["hr", "finance"])
    resp = await c.post(
        "/v1/retrieve",
        json={"query": "salary"},
        headers=widget_headers(**{"X-Widget-Identity": beyond}),
    )
    assert resp.status_code == 403
