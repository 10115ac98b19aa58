"""Rate limits an attacker could step around (issue 19, Low), against a real uvicorn server
started with the options ``rag-serve`` gives it (:func:`serving.cli.uvicorn_options`).

- Anonymous widget visitors are told apart by address; uvicorn's default trusts
  ``X-Forwarded-For`` from 127.0.0.1, so a rotating header was a fresh budget per request.
- ``/v1/retrieve``, a document's source and uploads were not rate limited at all.

The limiter runs before the body is validated, so invalid requests are enough: no answer is
generated.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.servers import free_port, serve_app, until_ready

pytestmark = pytest.mark.slow

TOKEN = "rate-limit-widget-token-0001"
ORIGIN = "http://site.example"
BURST = 3


@contextlib.asynccontextmanager
async def served(
    make_settings: Any, engine: Any, trusted: list[str]
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app behind a real uvicorn configured as ``rag-serve`` configures it."""
    from serving.app import create_app
    from serving.cli import uvicorn_options

    settings = make_settings(
        auth={"required": True, "rate_per_minute": 1, "burst": BURST},
        server={"port": free_port(), "forwarded_allow_ips": trusted},
        widget={
            "tokens": [{"token": TOKEN, "name": "rl", "origins": [ORIGIN], "groups": ["everyone"]}]
        },
    )
    app = create_app(settings, engine=engine)
    options = {**uvicorn_options(settings), "log_level": "warning"}
    async with (
        serve_app(app, **options) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        await until_ready(client)
        yield client, app.state.rag


def widget(n: int) -> dict[str, str]:
    """An anonymous widget visitor claiming a new address each time."""
    return {"X-Widget-Token": TOKEN, "Origin": ORIGIN, "X-Forwarded-For": f"203.0.113.{n}"}


async def statuses_of_rotating_visitors(client: httpx.AsyncClient) -> list[int]:
    got = []
    for n in range(BURST + 3):
        resp = await client.post("/v1/ask", json={"no_question": True}, headers=widget(n))
        got.append(resp.status_code)
    return got


def test_rag_serve_trusts_no_proxy_headers_unless_told() -> None:
    from rag.config import load_settings
    from serving.cli import uvicorn_options

    options = uvicorn_options(load_settings("prod-cpu", environ={}))
    assert options["proxy_headers"] is False
    behind = load_settings(
        "prod-cpu", environ={}, overrides={"server": {"forwarded_allow_ips": ["10.0.0.2"]}}
    )
    options = uvicorn_options(behind)
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == ["10.0.0.2"]


async def test_a_rotating_forwarded_for_does_not_reset_an_anonymous_budget(
    make_settings: Any, smol_engine: Any
) -> None:
    async with served(make_settings, smol_engine, trusted=[]) as (client, _):
        got = await statuses_of_rotating_visitors(client)
    assert got[:BURST] == [422] * BURST, got  # invalid bodies: the limiter ran first
    assert set(got[BURST:]) == {429}, got


async def test_a_trusted_proxy_forwards_each_visitors_address(
    make_settings: Any, smol_engine: Any
) -> None:
    """The same requests through a trusted proxy are different visitors: the attack above,
    which uvicorn's default (trust 127.0.0.1) let any local client make."""
    async with served(make_settings, smol_engine, trusted=["127.0.0.1"]) as (client, _):
        got = await statuses_of_rotating_visitors(client)
    assert 429 not in got, got


async def test_search_sources_and_uploads_are_rate_limited(
    make_settings: Any, smol_engine: Any
) -> None:
    async with served(make_settings, smol_engine, trusted=[]) as (client, state):
        requests: dict[str, Any] = {
            "retrieve": lambda h: client.post("/v1/retrieve", json={"query": "x"}, headers=h),
            "source": lambda h: client.get("/v1/documents/no-such-doc/source", headers=h),
            "upload": lambda h: client.post(
                "/v1/documents",
                files=[("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream"))],
                data={"groups": "everyone"},
                headers=h,
            ),
        }
        for route, send in requests.items():
            _, secret = state.keys.create(route, ["ask", "ingest"], ["everyone"])
            headers = {"Authorization": f"Bearer {secret}"}
            got = [(await send(headers)).status_code for _ in range(BURST + 1)]
            assert 429 not in got[:BURST] and got[BURST] == 429, (route, got)
        # Each key has its own budget: the last one spent is not another's.
        _, fresh = state.keys.create("fresh", ["ask"], ["everyone"])
        resp = await client.get(
            "/v1/documents/no-such-doc/source", headers={"Authorization": f"Bearer {fresh}"}
        )
        assert resp.status_code == 404
