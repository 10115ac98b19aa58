"""Sign-in with the company's identity provider (issue 22), against a real OpenID provider
process (``tests/oidc_provider.py``: discovery, JWKS, a token endpoint, key rotation):
users in different groups get exactly their documents through ``/v1/retrieve``,
``/v1/ask`` and ``/v1/chat/completions``; forged, expired, misaddressed and tampered tokens
are refused with a message that says which check failed and never echoes the token; a
rotated key is picked up; an unreachable provider is a 503 naming it while API keys work."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client
from tests.oidc_provider import OidcProvider
from tests.servers import free_port

DOCS = {
    "public/holidays.md": "# Holidays\n\nThe office closes for the winter holiday policy week.\n",
    "hr/salary-bands.md": "# Salary bands\n\nThe salary band policy sets pay for grade 7.\n",
    "eng/deploy-keys.md": "# Deploy keys\n\nThe deploy key policy rotates keys every 90 days.\n",
}
SEES = {
    "alice": {"holidays.md", "deploy-keys.md"},  # /staff -> everyone, engineering
    "bob": {"holidays.md", "salary-bands.md"},  # /staff -> everyone, the HR DN -> hr
    "carol": set(),  # no groups: nothing
}


def oidc_settings(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "audience": "kb-service",
        "group_map": {"/staff": "everyone", "cn=HR,ou=Groups,dc=example,dc=com": "hr"},
        "scope_map": {"ask": ["*"], "ingest": ["hr"]},
        "leeway_s": 5,
        "refresh_min_s": 2,
        **extra,
    }


@pytest.fixture(scope="module")
def oidc_kb(make_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ingest.pipeline import Ingestor
    from rag.services import build_knowledge_base

    root = tmp_path_factory.mktemp("oidc-kb")
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    settings = make_settings(
        ingest={
            "default_groups": ["everyone"],
            "group_rules": [
                {"pattern": "hr/*", "groups": ["hr"]},
                {"pattern": "eng/*", "groups": ["engineering"]},
            ],
        }
    )
    kb = build_knowledge_base(settings)
    results = list(Ingestor(settings, kb.embedder, kb.store, listeners=kb.listeners).add([root]))
    assert {r.status for r in results} == {"added"}, results
    return settings


@pytest.fixture(scope="module")
async def signed_in(
    oidc_kb: Any, smol_engine: Any, oidc_provider: OidcProvider
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from rag.config import AuthSettings
    from serving.app import create_app

    auth = AuthSettings(
        required=True, rate_per_minute=600, burst=200, oidc=oidc_settings(oidc_provider.issuer)
    )
    app = create_app(oidc_kb.model_copy(update={"auth": auth}), engine=smol_engine)
    async with ready_client(app) as c:
        yield c, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sources(c: httpx.AsyncClient, token: str) -> set[str]:
    resp = await c.post("/v1/retrieve", json={"query": "policy", "k": 10}, headers=bearer(token))
    assert resp.status_code == 200, resp.text
    return {Path(h["source"]).name for h in resp.json()["hits"]}


async def test_each_user_gets_exactly_their_groups_documents(
    signed_in: tuple[httpx.AsyncClient, Any], oidc_provider: OidcProvider
) -> None:
    c, app = signed_in
    for user, expected in SEES.items():
        assert await sources(c, oidc_provider.token(user)) == expected, user
    # The same through nested roles (Keycloak's realm_access.roles) and an ES256 key.
    bob = oidc_provider.token("bob", alg="ES256")
    assert await sources(c, bob) == SEES["bob"]

    asked = await c.post(
        "/v1/ask", json={"question": "What is the salary band policy?"}, headers=bearer(bob)
    )
    assert asked.status_code == 200, asked.text
    cited = {Path(x["source"]).name for x in asked.json()["citations"]}
    assert cited <= SEES["bob"]
    alice = oidc_provider.token("alice")
    chat = {
        "model": "knowledge-base",
        "messages": [{"role": "user", "content": "What is the salary band policy?"}],
    }
    answered = await c.post("/v1/chat/completions", json=chat, headers=bearer(alice))
    assert answered.status_code == 200, answered.text
    assert "grade 7" not in answered.text  # alice may not read HR's documents

    # Scopes from claims: only HR may upload; alice asks but may not.
    refused = await c.post(
        "/v1/documents", files={"files": ("x.md", b"# X\n\ntext\n")}, headers=bearer(alice)
    )
    assert refused.status_code == 403
    records = app.state.rag.audit.records(caller="user:bob")
    assert {r.action for r in records} >= {"retrieve", "ask"}
    assert all(r.caller == f"user:bob via oidc:{oidc_provider.issuer[7:]}" for r in records)
    assert "hr" in records[-1].groups


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
    )


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


async def test_forged_and_misaddressed_tokens_are_refused_saying_why(
    signed_in: tuple[httpx.AsyncClient, Any], oidc_provider: OidcProvider
) -> None:
    c, app = signed_in
    good = oidc_provider.token("alice")
    header, claims = _parts(good)
    jwks = oidc_provider.jwks()
    [rsa] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    def number(b64: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)), "big")

    public_pem = (
        RSAPublicNumbers(number(rsa["e"]), number(rsa["n"]))
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    confused_head = _unsigned({**header, "alg": "HS256"}, claims)
    mac = hmac.new(public_pem, confused_head.encode(), hashlib.sha256).digest()
    confused = f"{confused_head}.{_b64(mac)}"  # HMAC keyed with the public key
    tampered_body = {**claims, "groups": ["cn=HR,ou=Groups,dc=example,dc=com"]}
    tampered = _unsigned(header, tampered_body) + "." + good.split(".")[2]
    attacks = {
        "expired": (oidc_provider.token("alice", lifetime=-60), "expired"),
        "not yet valid": (oidc_provider.token("alice", not_before_in=600), "not valid yet"),
        "wrong audience": (oidc_provider.token("alice", client_id="other-app"), "audience"),
        "wrong issuer": (
            oidc_provider.token("alice", issuer="https://evil.example"),
            "not issued by",
        ),
        "alg none": (_unsigned({**header, "alg": "none"}, claims) + ".", "'none'"),
        "alg confusion": (confused, "'HS256'"),
        "tampered": (tampered, "signature does not verify"),
        "unknown key": (
            _unsigned({**header, "kid": "nobody"}, claims) + "." + good.split(".")[2],
            "does not publish",
        ),
        "garbage": ("eyJhbGciOi.not-base64.at-all", "not a well-formed JWT"),
    }
    for name, (token, says) in attacks.items():
        for route, payload in (
            ("/v1/retrieve", {"query": "policy"}),
            ("/v1/ask", {"question": "salary band?"}),
        ):
            resp = await c.post(route, json=payload, headers=bearer(token))
            assert resp.status_code == 401, (name, route, resp.text)
            message = resp.json()["error"]["message"]
            assert says in message, (name, message)
            assert token not in resp.text and token.split(".")[1] not in resp.text
    failures = app.state.rag.audit.records(action="login_failure")
    assert len(failures) >= 2 * len(attacks)
    assert all(r.status == 401 and r.caller == "bearer token" for r in failures)
    assert all(good.split(".")[1] not in json.dumps(r.to_json()) for r in failures)


async def test_a_rotated_key_is_fetched_once_and_the_retired_one_refused(
    signed_in: tuple[httpx.AsyncClient, Any], oidc_provider: OidcProvider
) -> None:
    import asyncio

    c, _ = signed_in
    before = oidc_provider.token("bob")
    assert await sources(c, before) == SEES["bob"]
    rotated = oidc_provider.rotate()
    await asyncio.sleep(2.1)  # past refresh_min_s since the last fetch
    fetches = oidc_provider.stats()["jwks_fetches"]
    after = oidc_provider.token("bob")
    assert _parts(after)[0]["kid"] == rotated["current"]
    assert await sources(c, after) == SEES["bob"]  # the new key, fetched on its first use
    assert oidc_provider.stats()["jwks_fetches"] == fetches + 1
    stale = await c.post("/v1/retrieve", json={"query": "policy"}, headers=bearer(before))
    assert stale.status_code == 401 and "does not publish" in stale.json()["error"]["message"]
    # A flood of tokens naming unknown keys fetches the keys at most once per refresh_min_s.
    header, claims = _parts(after)
    for i in range(20):
        forged = _unsigned({**header, "kid": f"k{i}"}, claims) + "." + after.split(".")[2]
        resp = await c.post("/v1/retrieve", json={"query": "x"}, headers=bearer(forged))
        assert resp.status_code == 401
    assert oidc_provider.stats()["jwks_fetches"] <= fetches + 2


async def test_an_unreachable_provider_is_a_503_naming_it_and_keys_still_work(
    oidc_kb: Any, smol_engine: Any, oidc_provider: OidcProvider
) -> None:
    from rag.config import AuthSettings
    from serving.app import create_app

    nowhere = f"http://127.0.0.1:{free_port()}"
    auth = AuthSettings(required=True, oidc=oidc_settings(nowhere))
    app = create_app(oidc_kb.model_copy(update={"auth": auth}), engine=smol_engine)
    async with ready_client(app) as c:
        token = oidc_provider.token("alice")
        resp = await c.post("/v1/retrieve", json={"query": "policy"}, headers=bearer(token))
        assert resp.status_code == 503, resp.text
        message = resp.json()["error"]["message"]
        assert nowhere in message and "API keys still work" in message
        _, secret = app.state.rag.keys.create("fallback", ["ask"], ["everyone"])
        ok = await c.post("/v1/retrieve", json={"query": "policy"}, headers=bearer(secret))
        assert ok.status_code == 200


def test_settings_refuse_symmetric_algorithms_and_a_missing_audience() -> None:
    from pydantic import ValidationError

    from rag.config import OidcSettings

    with pytest.raises(ValidationError, match="not allowed"):
        OidcSettings(issuer="https://sso", audience="kb", algorithms=["HS256"])
    with pytest.raises(ValidationError, match="not allowed"):
        OidcSettings(issuer="https://sso", audience="kb", algorithms=["none"])
    with pytest.raises(ValidationError, match="audience is required"):
        OidcSettings(issuer="https://sso")


async def test_the_widget_passes_the_providers_token_as_its_identity(
    oidc_kb: Any, smol_engine: Any, oidc_provider: OidcProvider
) -> None:
    """The site's identity callback hands the widget the provider's token: the widget token
    still binds the page's origin, and a token listing identity_groups narrows the
    directory's groups to those (the widget itself sends it as X-Widget-Identity, and asks
    the callback again after a 401)."""
    from rag.config import AuthSettings, WidgetSettings, WidgetToken
    from serving.app import create_app

    site = "https://intranet.example"
    tokens = [
        WidgetToken(token="w" * 20, name="intranet", origins=[site], groups=[]),
        WidgetToken(
            token="p" * 20,
            name="partner",
            origins=["https://partner.example"],
            groups=[],
            identity_groups=["everyone"],
        ),
    ]
    settings = oidc_kb.model_copy(
        update={
            "auth": AuthSettings(required=True, oidc=oidc_settings(oidc_provider.issuer)),
            "widget": WidgetSettings(tokens=tokens),
        }
    )
    app = create_app(settings, engine=smol_engine)

    async def found(identity: str, token: str = "w" * 20, origin: str = site) -> Any:
        headers = {"X-Widget-Token": token, "Origin": origin, "X-Widget-Identity": identity}
        return await c.post("/v1/retrieve", json={"query": "policy", "k": 10}, headers=headers)

    async with ready_client(app) as c:
        for user in ("alice", "bob"):
            resp = await found(oidc_provider.token(user))
            assert resp.status_code == 200, resp.text
            assert {Path(h["source"]).name for h in resp.json()["hits"]} == SEES[user]
        bob = oidc_provider.token("bob")
        narrowed = await found(bob, "p" * 20, "https://partner.example")
        assert {Path(h["source"]).name for h in narrowed.json()["hits"]} == {"holidays.md"}
        assert (await found(bob, "w" * 20, "https://evil.example")).status_code == 403
        expired = await found(oidc_provider.token("bob", lifetime=-60))
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        [record] = app.state.rag.audit.records(action="retrieve", caller="user:bob")[-1:]
        assert record.caller.startswith("user:bob via widget:partner:")
        assert record.groups == ("everyone",)
