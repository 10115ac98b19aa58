"""The disk under the index failing: a read-only store, and a full disk during ingest.

- Read-only: the real Chroma on a folder made read-only for real (``chmod -R a-w``; as root,
  who ignores permissions, ``chattr +i`` where the file system has it, or a subprocess
  without CAP_DAC_OVERRIDE). Writes get a clear 503 / CLI error that says what to do,
  searches and answers keep working, and nothing changes.
- Disk full: simulated with the ingest crash hook (``RAG_TEST_CRASH_AT=point:n:enospc``
  raises the OSError a full disk gives, between a batch's store write and its manifest
  commit). The CLI says what to do and exits non-zero; the re-run completes with every
  document stored exactly once and no orphan chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.errors import DiskFullError, StoreReadOnlyError, how_to_run, storage_failure
from tests.asgi import ready_client
from tests.conftest import ASSETS, REPO
from tests.integration.test_ingest_cli import check_consistent, cli, events, statuses

pytestmark = pytest.mark.usefixtures("assets")

NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _chattr(flag: str, path: Path) -> bool:
    done = subprocess.run(["chattr", "-R", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[list[str]]:
    """Make ``path`` read-only for real; yields the prefix a subprocess must run under for
    it to hold ([] when it holds for this process too)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        try:
            yield []
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
    elif shutil.which("chattr") and _chattr("+i", path):
        try:
            yield []
        finally:
            _chattr("-i", path)
    elif shutil.which("setpriv"):
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        try:
            yield NO_DAC
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
    else:  # pragma: no cover - depends on the machine
        pytest.skip("running as root without chattr +i or setpriv: cannot make it read-only")


def test_chroma_and_sqlite_messages_map_to_typed_errors() -> None:
    # What Chroma 1.5 and SQLite actually raise (seen on a read-only / immutable folder).
    read_only_messages = [
        "error returned from database: (code: 8) attempt to write a readonly database",
        "Query error: Database error: error returned from database: (code: 1544) attempt to "
        "write a readonly database",
        "Query error: Database error: error returned from database: (code: 14) unable to "
        "open database file",
    ]
    for message in read_only_messages:
        error = storage_failure(RuntimeError(message), "vector store", "/kb")
        assert isinstance(error, StoreReadOnlyError), message
        assert error.http_status == 503 and "chmod -R u+w /kb" in error.message
    for exc in [
        OSError(errno.ENOSPC, "No space left on device"),
        sqlite3.OperationalError("database or disk is full"),
        RuntimeError("Failed to write segment: No space left on device (os error 28)"),
    ]:
        full = storage_failure(exc, "index", "/kb")
        assert isinstance(full, DiskFullError), exc
        assert full.exit_code == 7 and "rag-ingest sync" in full.message
    assert storage_failure(OSError(errno.EROFS, "Read-only file system"), "x", "/") is not None
    assert storage_failure(ValueError("bad metadata"), "vector store", "/kb") is None


def snapshot(store: Path) -> tuple[list[tuple[str, str, int]], list[str]]:
    """The manifest's documents and the store's chunk ids."""
    from rag.config import StoreSettings
    from rag.index.manifest import Manifest
    from rag.index.store import ChromaStore

    settings = StoreSettings(path=store)
    chroma = ChromaStore(settings, embedder_id=None)
    with Manifest(settings.manifest_path()) as manifest:
        docs = [(d.path, d.version, d.chunks) for d in manifest.documents(chroma.name)]
    return docs, sorted(chroma.all_ids())


def test_disk_full_then_read_only_store_then_recovery(tmp_path: Path) -> None:
    """A bad week for the index's disk: each failure is a clear CLI error, none corrupts."""
    root, store = tmp_path / "kb", tmp_path / "store"
    root.mkdir()
    for name in "abc":
        (root / f"{name}.md").write_text(f"# Doc {name}\n\nThe code for {name} is {name * 3}-7.\n")
    one_doc_per_batch = {"RAG_INGEST__EMBED_BATCH_CHUNKS": "1"}

    # 1. The disk fills up after b's chunks are written, before the manifest records b.
    proc = cli(
        store, "sync", str(root), "--json", crash="after_upsert:2:enospc", **one_doc_per_batch
    )
    assert proc.returncode == 7, proc.stderr
    assert statuses(proc) == {"a.md": "added"}
    error = events(proc)[-1]
    assert error["event"] == "error" and error["error"] == "disk_full"
    assert error["message"].startswith("Disk full")
    assert f"re-run {how_to_run('rag-ingest sync')} " in error["message"]
    assert "Traceback" not in proc.stderr
    before = snapshot(store)

    # 2. Someone makes the store read-only: a clear error on the terminal, nothing changes.
    with read_only(store) as prefix:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "ingest.cli", "sync", str(root)],
            capture_output=True,
            text=True,
            env=cli_env(store),
            cwd=REPO,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: The vector store at"), proc.stderr
    assert "cannot be written" in proc.stderr and f"chmod -R u+w {store}" in proc.stderr
    assert "Nothing was changed" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(store) == before

    # 3. Space freed and permissions restored: the same command completes; every document
    #    stored exactly once, no orphan chunks (b's interrupted write is cleaned up).
    proc = cli(store, "sync", str(root), "--json", **one_doc_per_batch)
    assert proc.returncode == 0, proc.stderr
    assert statuses(proc) == {"a.md": "unchanged", "b.md": "added", "c.md": "added"}
    docs = check_consistent(store)
    assert sorted(Path(p).name for p in docs) == ["a.md", "b.md", "c.md"]
    assert all(len(ids) == 1 for ids in docs.values())


def cli_env(store: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_STORE__PATH": str(store),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
    }


@pytest.fixture
async def own_kb(
    sample_kb: Any, make_settings: Any, smol_engine: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, dict[str, str]]]:
    """The app on a private copy of the sample knowledge base (it will be made read-only)."""
    from serving.app import create_app

    settings = make_settings(
        auth={"required": True, "rate_per_minute": 0},
        llm={"max_tokens": 12},
        context={"max_tokens": 300},
    )
    shutil.copytree(sample_kb.paths.data_dir, settings.paths.data_dir, dirs_exist_ok=True)
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as client:
        state = app.state.rag
        _, secret = state.keys.create("t", ["ask", "ingest"], ["everyone"])
        yield client, settings, {"Authorization": f"Bearer {secret}"}


@pytest.mark.slow
async def test_read_only_store_under_a_running_service(
    own_kb: tuple[httpx.AsyncClient, Any, dict[str, str]],
) -> None:
    client, settings, auth = own_kb
    query = {"query": "guest Wi-Fi password", "k": 5}
    hits_before = (await client.post("/v1/retrieve", json=query, headers=auth)).json()["hits"]
    docs_before = (await client.get("/v1/documents", headers=auth)).json()
    upload = [("files", ("lobby.md", b"# Lobby\n\nThe lobby opens at 06:45.\n", "text/markdown"))]

    with read_only(settings.store.path) as prefix:
        if prefix:
            pytest.skip("as root, this file system cannot make the store read-only in-process")
        up = await client.post("/v1/documents", files=upload, headers=auth)
        assert up.status_code == 503, up.text
        assert up.headers["retry-after"]
        error = up.json()["error"]
        assert error["code"] == "store_read_only"
        assert "cannot be written" in error["message"] and "chmod -R u+w" in error["message"]
        # Reading still works: search and answers go on while writes are refused.
        during = await client.post("/v1/retrieve", json=query, headers=auth)
        assert during.status_code == 200 and during.json()["hits"] == hits_before
        ask = await client.post(
            "/v1/ask", json={"question": "What is the guest Wi-Fi password?"}, headers=auth
        )
        assert ask.status_code == 200 and ask.json()["answer"]
        assert (await client.get("/readyz")).json()["status"] == "ready"

    # Writable again: nothing was corrupted, and the upload now goes through.
    assert (await client.post("/v1/retrieve", json=query, headers=auth)).json()["hits"] == (
        hits_before
    )
    assert (await client.get("/v1/documents", headers=auth)).json() == docs_before
    up = await client.post("/v1/documents", files=upload, headers=auth)
    assert up.status_code == 200 and up.json()["results"][0]["status"] == "added"
    check_consistent(settings.store.path)


async def test_a_service_started_on_a_read_only_store_says_what_to_do(
    sample_kb: Any, make_settings: Any
) -> None:
    from serving.app import create_app

    settings = make_settings()
    shutil.copytree(sample_kb.paths.data_dir, settings.paths.data_dir, dirs_exist_ok=True)
    with read_only(settings.store.path) as prefix:
        if prefix:
            pytest.skip("as root, this file system cannot make the store read-only in-process")
        app = create_app(settings)  # fails while opening the store: the engine never loads
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for _ in range(600):
                    ready = await client.get("/readyz")
                    if ready.json()["status"] != "loading":
                        break
                    await asyncio.sleep(0.1)
                assert ready.status_code == 503 and ready.json()["status"] == "failed"
                assert "cannot be written" in ready.json()["detail"]
                resp = await client.post("/v1/ask", json={"question": "Where is the canteen?"})
                assert resp.status_code == 503 and resp.headers["retry-after"]
                message = resp.json()["error"]["message"]
                assert f"chmod -R u+w {settings.store.path}" in message


def test_a_store_that_failed_to_open_opens_once_it_is_fixed(tmp_path: Path) -> None:
    """chromadb caches a System per path before starting it; one that failed to start was
    handed to every later client in the process ('RustBindingsAPI' object has no attribute
    'bindings'), so a store made readable again stayed broken until a restart."""
    from rag.config import StoreSettings
    from rag.errors import StoreError
    from rag.index.store import ChromaStore

    store = tmp_path / "chroma"
    (store / "chroma.sqlite3").mkdir(parents=True)  # not a database: the start fails
    settings = StoreSettings(path=store)
    with pytest.raises(StoreError):  # reported as unwritable (SQLite code 14)
        ChromaStore(settings, embedder_id="e", dimension=4)
    shutil.rmtree(store)
    opened = ChromaStore(settings, embedder_id="e", dimension=4)
    assert opened.all_ids() == []
