"""Before the engine is ready, or when it cannot start, the API says so clearly."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def test_missing_model_gives_503_with_the_fix(make_settings: Any, assets: Any) -> None:
    from serving.app import create_app

    settings = make_settings(llm={"model": "/nonexistent/gpt-oss-20b"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            for _ in range(300):
                ready = await client.get("/readyz")
                if ready.json()["status"] != "loading":
                    break
                await asyncio.sleep(0.1)
            assert ready.status_code == 503
            assert ready.json()["status"] == "failed"
            assert "/nonexistent/gpt-oss-20b" in ready.json()["detail"]
            resp = await client.post("/v1/ask", json={"question": "Where is the canteen?"})
            assert resp.status_code == 503
            assert resp.headers["retry-after"]
            error = resp.json()["error"]
            assert error["code"] == "engine_not_ready"
            assert "llm.model" in error["message"] or "copy them here" in error["message"]
