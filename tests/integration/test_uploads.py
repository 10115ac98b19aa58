"""Uploads share the service's one ingest pipeline: two at once both succeed (the second
waits its turn), one that waits too long gets a 409 that says to retry, and a real
``rag-ingest`` writing in another process gives a clear 409 too."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client
from tests.conftest import REPO

pytestmark = pytest.mark.slow

DOCS = {
    "parking.md": "# Parking\nVisitors park on level P2; the code for the barrier is PARK-2231.\n",
    "canteen.md": "# Canteen\nThe canteen opens at 11:30 and closes at 14:00 on weekdays.\n",
}


@pytest.fixture(scope="module")
async def api(make_settings: Any, smol_engine: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from serving.app import create_app

    settings = make_settings(auth={"rate_per_minute": 0})
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as client:
        yield client, app


def one(name: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, DOCS[name].encode(), "text/markdown"))]


async def test_two_uploads_at_once_both_succeed(api: tuple[httpx.AsyncClient, Any]) -> None:
    client, app = api
    first, second = await asyncio.gather(
        *(client.post("/v1/documents", files=one(name)) for name in DOCS)
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    results = [r for resp in (first, second) for r in resp.json()["results"]]
    assert sorted(r["status"] for r in results) == ["added", "added"]
    assert not app.state.http.uploads.busy
    found = await client.post("/v1/retrieve", json={"query": "barrier code parking", "k": 3})
    assert "PARK-2231" in found.json()["hits"][0]["text"]


async def test_an_upload_that_waits_too_long_is_told_to_retry(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    client, app = api
    uploads = app.state.http.uploads
    settings = app.state.rag.settings
    app.state.rag.settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"upload_wait_s": 0.2})}
    )
    try:
        async with uploads._lock:  # an upload being indexed, as far as the queue can tell
            resp = await client.post("/v1/documents", files=one("parking.md"))
    finally:
        app.state.rag.settings = settings
    assert resp.status_code == 409
    error = resp.json()["error"]
    assert error["code"] == "index_busy" and "Retry" in error["message"]
    again = await client.post("/v1/documents", files=one("parking.md"))
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] in ("added", "unchanged")


async def test_a_rag_ingest_in_another_process_gives_a_clear_409(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    client, app = api
    manifest = app.state.rag.settings.store.manifest_path()
    holder = await asyncio.create_subprocess_exec(  # what a running rag-ingest holds
        sys.executable,
        "-c",
        "import pathlib, sys; from rag.index.manifest import Manifest; "
        f"m = Manifest(pathlib.Path({str(manifest)!r})); m.lock(); "
        "print('locked', flush=True); sys.stdin.read()",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        resp = await client.post("/v1/documents", files=one("canteen.md"))
    finally:
        await holder.communicate(b"")
    assert resp.status_code == 409
    assert "Another rag-ingest is writing to this index" in resp.json()["error"]["message"]
    assert not app.state.http.uploads.busy
    assert (await client.post("/v1/documents", files=one("canteen.md"))).status_code == 200
