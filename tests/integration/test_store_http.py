"""The vector store against both Chroma modes: embedded (a temp folder) and a real
``chroma run`` server process (``store.mode: http``), with the same tests.

Vectors are small and fixed, so no embedding model is loaded here.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.config import StoreSettings, load_settings
from rag.errors import ConfigError, EmbedderMismatchError, StoreError
from rag.index.store import ChromaStore, auth_headers
from rag.types import Chunk
from tests.chroma_server import ChromaServer
from tests.servers import free_port

DIM = 8
StoreFactory = Callable[..., StoreSettings]


def vec(i: int) -> list[float]:
    """Unit basis-like vectors: chunk i is nearest to query vec(i)."""
    v = [0.05] * DIM
    v[i % DIM] = 1.0
    return v


def chunk(doc: str, i: int, **kw: Any) -> Chunk:
    return Chunk(
        chunk_id=f"{doc}:h:{i}",
        doc_id=doc,
        text=f"{doc} part {i} 中文",
        source=f"{doc}.md",
        title=doc.title(),
        section=f"S{i}",
        index=i,
        **kw,
    )


@pytest.fixture(params=["embedded", "http"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """``make(**store_keys)``: store settings for a fresh, empty store in either mode."""
    mode = request.param
    server: ChromaServer | None = (
        request.getfixturevalue("chroma_server") if mode == "http" else None
    )
    database = f"db_{uuid.uuid4().hex[:12]}"

    def make(**keys: Any) -> StoreSettings:
        store: dict[str, Any] = {"mode": mode, "path": str(tmp_path / "chroma")}
        if server is not None:
            store |= {"host": server.host, "port": server.port, "database": database}
        store |= keys
        return load_settings("test", overrides={"store": store}, environ={}).store

    return make


def test_write_query_update_delete(store_settings: StoreFactory) -> None:
    store = ChromaStore(store_settings(), embedder_id="emb-a", dimension=DIM)
    chunks = [chunk("alpha", 0, page=3, groups=("hr", "it")), chunk("alpha", 1), chunk("beta", 2)]
    store.upsert(chunks, [vec(0), vec(1), vec(2)], "hash-1")
    assert store.count() == 3
    hit = store.query(vec(0), 2)[0]
    assert hit.chunk == chunks[0] and hit.score > 0.99
    assert store.file_hash("alpha") == "hash-1" and store.file_hash("nope") is None
    assert sorted(store.chunk_ids("alpha")) == ["alpha:h:0", "alpha:h:1"]
    store.delete_ids(["alpha:h:1"])
    store.delete_document("beta")
    assert store.count() == 1 and store.chunk_ids("beta") == []
    # The data outlives the client: a new store object sees it; another model is refused.
    again = ChromaStore(store_settings(), embedder_id="emb-a", dimension=DIM)
    assert again.count() == 1 and again.query(vec(0), 1)[0].chunk.page == 3
    with pytest.raises(EmbedderMismatchError, match="emb-a"):
        ChromaStore(store_settings(), embedder_id="emb-b", dimension=DIM)


def test_databases_on_one_server_are_separate(chroma_server: ChromaServer) -> None:
    def settings(database: str) -> StoreSettings:
        store = {"mode": "http", "host": "127.0.0.1", "port": chroma_server.port}
        return load_settings(
            "test", overrides={"store": {**store, "database": database}}, environ={}
        ).store

    name = uuid.uuid4().hex[:8]
    kb_a = ChromaStore(settings(f"a_{name}"), embedder_id="e", dimension=DIM)
    kb_b = ChromaStore(settings(f"b_{name}"), embedder_id="e", dimension=DIM)
    kb_a.upsert([chunk("alpha", 0)], [vec(0)])
    assert (kb_a.count(), kb_b.count()) == (1, 0)
    listed = httpx.get(
        f"{chroma_server.url}/api/v2/tenants/default_tenant/databases/a_{name}/collections"
    )
    assert [c["name"] for c in listed.json()] == ["knowledge"]


def test_missing_tenant_and_stopped_server_are_clear_errors(chroma_server: ChromaServer) -> None:
    base = {"mode": "http", "host": "127.0.0.1"}
    tenant = {**base, "port": chroma_server.port, "tenant": "no_such_tenant"}
    settings = load_settings("test", overrides={"store": tenant}, environ={}).store
    with pytest.raises(StoreError, match="no tenant 'no_such_tenant'"):
        ChromaStore(settings, embedder_id="e", dimension=DIM)
    down = load_settings("test", overrides={"store": {**base, "port": free_port()}}, environ={})
    with pytest.raises(StoreError, match="Cannot reach the Chroma server"):
        ChromaStore(down.store, embedder_id="e", dimension=DIM)


def test_auth_token_comes_from_the_environment_only() -> None:
    settings = StoreSettings(mode="http", auth_token_env="CHROMA_TOKEN")
    assert auth_headers(settings, {"CHROMA_TOKEN": "s3cret"}) == {"Authorization": "Bearer s3cret"}
    raw = settings.model_copy(update={"auth_header": "X-Chroma-Token"})
    assert auth_headers(raw, {"CHROMA_TOKEN": "s3cret"}) == {"X-Chroma-Token": "s3cret"}
    assert auth_headers(StoreSettings(mode="http"), {"CHROMA_TOKEN": "x"}) == {}
    with pytest.raises(ConfigError, match="CHROMA_TOKEN"):
        auth_headers(settings, {})


class _AuthProxy(http.server.BaseHTTPRequestHandler):
    """Stands for a Chroma behind an authenticating gateway: 401 without the token."""

    upstream = ""
    token = ""
    seen: list[str] = []  # noqa: RUF012 - shared on purpose, one proxy per test

    def _forward(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        resp = httpx.request(
            self.command,
            self.upstream + self.path,
            content=body,
            headers={"content-type": self.headers.get("content-type", "application/json")},
        )
        self.send_response(resp.status_code)
        self.send_header("content-type", resp.headers.get("content-type", "application/json"))
        self.send_header("content-length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


def test_auth_header_reaches_the_server(
    chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type(
        "Proxy", (_AuthProxy,), {"upstream": chroma_server.url, "token": "t0k", "seen": []}
    )
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        store = {
            "mode": "http",
            "host": "127.0.0.1",
            "port": proxy.server_address[1],
            "database": f"auth_{uuid.uuid4().hex[:8]}",
            "auth_token_env": "KB_CHROMA_TOKEN",
        }
        settings = load_settings("test", overrides={"store": store}, environ={}).store
        monkeypatch.setenv("KB_CHROMA_TOKEN", "wrong")
        with pytest.raises(StoreError, match="auth token"):
            ChromaStore(settings, embedder_id="e", dimension=DIM)
        monkeypatch.setenv("KB_CHROMA_TOKEN", "t0k")
        kb = ChromaStore(settings, embedder_id="e", dimension=DIM)
        kb.upsert([chunk("alpha", 0)], [vec(0)])
        assert kb.query(vec(0), 1)[0].chunk.doc_id == "alpha"
        assert handler.seen and set(handler.seen[-3:]) == {"Bearer t0k"}
    finally:
        proxy.shutdown()
        proxy.server_close()
