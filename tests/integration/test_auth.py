"""API keys, scopes, rate limits and body limits on the real app, and a production profile
that refuses to start without keys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client
from tests.conftest import ASSETS, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def secured(sample_kb: Any, smol_engine: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from rag.config import AuthSettings
    from serving.app import create_app

    auth = AuthSettings(required=True, rate_per_minute=0.5, burst=2, max_body_kb=4)
    settings = sample_kb.model_copy(update={"auth": auth})
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as c:
        yield c, app.state.rag.keys


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_keys_scopes_revocation_and_rate_limit(
    secured: tuple[httpx.AsyncClient, Any],
) -> None:
    c, keys = secured
    question = {"question": "What is the name of the shared print queue?"}
    missing = await c.post("/v1/ask", json=question)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "rag-ingest keys create" in missing.json()["error"]["message"]
    assert (
        await c.post("/v1/ask", json=question, headers=bearer("kb_nope_nope"))
    ).status_code == 401

    _, ingest_only = keys.create("loader", ["ingest"], ["everyone"])
    forbidden = await c.post("/v1/ask", json=question, headers=bearer(ingest_only))
    assert forbidden.status_code == 403 and "'ask' scope" in forbidden.json()["error"]["message"]

    key, secret = keys.create("bot", ["ask"], ["everyone"])
    for _ in range(2):  # the burst
        ok = await c.post("/v1/ask", json=question, headers={"X-API-Key": secret})
        assert ok.status_code == 200, ok.text
    limited = await c.post("/v1/ask", json=question, headers=bearer(secret))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 120
    chat = {"model": "knowledge-base", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        await c.post("/v1/chat/completions", json=chat, headers=bearer(secret))
    ).status_code == 429

    keys.revoke(key.key_id)
    assert (await c.post("/v1/ask", json=question, headers=bearer(secret))).status_code == 401


async def test_large_bodies_are_refused(secured: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = secured
    resp = await c.post("/v1/ask", json={"question": "x" * 10_000})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


def test_server_refuses_to_start_without_keys(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_AUTH__REQUIRED": "true",
        "RAG_PATHS__DATA_DIR": str(tmp_path),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
    }
    run = subprocess.run(
        [sys.executable, "-m", "serving.cli", "--port", "9"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "rag-ingest keys create" in run.stderr
    created = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "keys", "create", "--name", "ops", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "keys", "list"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "ops" in listed.stdout and "kb_" not in listed.stdout  # never the secret
