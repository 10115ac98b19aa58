"""``rag-ingest backup`` and ``restore`` as a user runs them (issue 25).

A real store (Chroma, manifest, BM25 index, state database with an API key) is built by the
real CLI in a tmp folder; a backup is made while a real ``rag-serve`` process answers
searches on it, then restored into fresh paths and searched again. A corrupted or
incomplete backup is refused before anything is touched, data already at the target is
kept aside only with ``--force``, a non-empty DEST and settings other than the embedded
default are refused. Every command is a subprocess (``python -m ingest.cli``); the server is
started with a remote engine nobody answers, so it serves retrieval without loading a model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ASSETS, REPO
from tests.e2e.serverproc import run_server
from tests.servers import free_port

pytestmark = pytest.mark.usefixtures("assets")

DOCS = {
    "parking.md": "# Parking\n\nVisitors park on level -2 of the garage, in bay P7.\n",
    "lunch.md": "# Lunch\n\nThe canteen serves lunch from 11:30 to 14:00.\n",
    "badges.md": "# Badges\n\nLost badges are replaced at the reception desk.\n",
}
QUERY = "where do visitors park their car"


@dataclass(frozen=True)
class Site:
    """One set of paths: a store, its manifest and BM25 index beside it, a data folder."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store" / "chroma"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        return {
            "RAG_PROFILE": "test",
            "RAG_STORE__PATH": str(self.store),
            "RAG_PATHS__DATA_DIR": str(self.data),
            "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        }

    def settings(self) -> Any:
        from rag.config import load_settings

        paths = {"assets_dir": str(ASSETS), "data_dir": str(self.data)}
        overrides = {"paths": paths, "store": {"path": str(self.store)}}
        return load_settings("test", overrides=overrides, environ={})


def cli(site: Site, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **site.env(), **env},
        cwd=REPO,
        timeout=120,
        check=False,
    )


def events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def documents(site: Site) -> list[tuple[str, str, int]]:
    proc = cli(site, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return sorted((e["doc_id"], e["source"], e["chunks"]) for e in events(proc))


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def answers_searches(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Ready for this test: it searches (``/readyz`` stays 503: no engine answers)."""
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.TransportError):
            if httpx.post(f"{base}/v1/retrieve", json={"query": QUERY}).status_code == 200:
                return
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.25)


def serving(site: Site) -> contextlib.AbstractContextManager[str]:
    """A real ``rag-serve`` on ``site``; yields its address once it answers searches."""
    env = {
        **site.env(),
        "RAG_LLM__BACKEND": "openai",
        "RAG_LLM__BASE_URL": "http://127.0.0.1:9/v1",  # nothing there: no model is loaded
        "RAG_LLM__MODEL": "gpt-oss-120b",
    }
    site.data.mkdir(parents=True, exist_ok=True)
    return run_server(site.store, site.data, free_port(), env, ready=answers_searches)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A knowledge base of three documents and one API key, built by the real CLI."""
    site = Site(tmp_path_factory.mktemp("source"))
    kb = site.root / "kb"
    kb.mkdir()
    for name, text in DOCS.items():
        (kb / name).write_text(text, encoding="utf-8")
    proc = cli(site, "add", str(kb), "--json")
    assert proc.returncode == 0, proc.stderr
    proc = cli(site, "keys", "create", "--name", "backup-test", "--json")
    assert proc.returncode == 0, proc.stderr
    return site


@dataclass(frozen=True)
class Archive:
    path: Path
    proc: subprocess.CompletedProcess[str]
    answers: list[tuple[int, str]]


@pytest.fixture(scope="module")
def archive(source: Site, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """``rag-ingest backup`` run while a real ``rag-serve`` keeps searching the store."""
    dest = tmp_path_factory.mktemp("backups") / "kb-backup"
    answers: list[tuple[int, str]] = []
    stop = threading.Event()
    with serving(source) as base:

        def search() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    reply = client.post("/v1/retrieve", json={"query": QUERY, "k": 1})
                    hits = reply.json().get("hits", []) if reply.status_code == 200 else []
                    answers.append((reply.status_code, hits[0]["source"] if hits else ""))

        searcher = threading.Thread(target=search)
        searcher.start()
        try:
            proc = cli(source, "backup", str(dest), "--json")
        finally:
            stop.set()
            searcher.join()
    return Archive(dest, proc, answers)


def test_a_backup_made_while_serving_restores_into_fresh_paths_and_finds_the_same_documents(
    source: Site, archive: Archive, tmp_path: Path
) -> None:
    proc = archive.proc
    assert proc.returncode == 0, proc.stderr
    parts = {e["part"] for e in events(proc) if e["event"] == "part"}
    assert parts == {"chroma", "keyword", "state", "manifest"}
    summary = events(proc)[-1]
    assert summary["event"] == "backup"
    assert summary["documents"] == 3 and summary["chunks"] == summary["store_chunks"] == 3
    assert summary["keyword_chunks"] == 3
    # The service kept answering, and correctly, while the backup ran.
    assert len(archive.answers) >= 2
    assert set(archive.answers) == {(200, "kb/parking.md")}

    info = json.loads((archive.path / "backup.json").read_text(encoding="utf-8"))
    assert info["format"] == 1 and info["rag_version"] and info["created_at"]
    assert info["embedder"] == "builtin:use-multilingual-v3"
    assert info["collection"] == "knowledge" and info["documents"] == 3
    assert "chroma/chroma.sqlite3" in info["files"] and "state.sqlite3" in info["files"]
    on_disk = {
        p.relative_to(archive.path).as_posix()
        for p in archive.path.rglob("*")
        if p.is_file() and p.name != "backup.json"
    }
    assert on_disk == set(info["files"])  # no -wal/-shm, nothing unlisted
    assert not archive.path.with_name("kb-backup.partial").exists()

    fresh = Site(tmp_path / "restored")
    proc = cli(fresh, "restore", str(archive.path), "--json")
    assert proc.returncode == 0, proc.stderr
    restored = events(proc)[-1]
    assert restored["event"] == "restored" and restored["moved_aside"] == []
    for key in ("documents", "chunks", "store_chunks", "keyword_chunks", "embedder"):
        assert restored[key] == info[key], key
    assert documents(fresh) == documents(source)
    keys = events(cli(fresh, "keys", "list", "--json"))
    assert [k["name"] for k in keys] == ["backup-test"]

    from rag.services import build_knowledge_base, build_retriever

    settings = fresh.settings()
    kb = build_knowledge_base(settings, live=True)
    retriever = build_retriever(settings, kb, reconcile=False)  # the restored BM25 as it is
    for mode in ("dense", "keyword", "hybrid"):
        hits = retriever.search(QUERY, None, 1, mode=mode)
        assert [h.chunk.source for h in hits] == ["kb/parking.md"], mode

    # A live reader (this process) has the restored store open: restoring over it is refused.
    proc = cli(fresh, "restore", str(archive.path), "--force", "--json")
    assert proc.returncode == 5, proc.stderr
    error = events(proc)[-1]
    assert error["error"] == "index_busy" and f"pid {os.getpid()} " in error["message"]
    assert "Stop rag-serve" in error["message"]
    assert not list(fresh.store.parent.glob("*.before-restore-*"))


def test_a_backup_holds_the_writer_lock_while_it_copies(source: Site, tmp_path: Path) -> None:
    from ingest.backup import Copied, backup
    from rag.errors import IndexBusyError
    from rag.index.manifest import Manifest

    settings = source.settings()
    seen: list[str] = []

    def during(copied: Copied) -> None:
        with Manifest(settings.store.manifest_path()) as manifest, pytest.raises(IndexBusyError):
            manifest.lock()
        if not seen:  # a real second writer is told, and changes nothing
            proc = cli(source, "delete", "kb/lunch.md", "--json")
            assert proc.returncode == 1, proc.stderr
            assert "Another rag-ingest is writing" in events(proc)[-1]["message"]
        seen.append(copied.name)

    info = backup(settings, tmp_path / "in-process", on_part=during)
    assert seen == ["chroma", "keyword", "state", "manifest"]
    assert info["documents"] == 3
    with Manifest(settings.store.manifest_path()) as manifest:
        manifest.lock()  # released once the backup is written

    # While another writer holds the lock, a backup that may not wait says so and writes nothing.
    with Manifest(settings.store.manifest_path()) as manifest:
        manifest.lock()
        proc = cli(source, "backup", str(tmp_path / "busy"), "--wait", "0", "--json")
    assert proc.returncode == 5, proc.stderr
    error = events(proc)[-1]
    assert error["error"] == "index_busy" and "writing to this index" in error["message"]
    assert not (tmp_path / "busy").exists() and not (tmp_path / "busy.partial").exists()


def test_a_corrupted_or_incomplete_backup_is_refused_and_nothing_is_touched(
    source: Site, archive: Archive, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(archive.path, copy)
    target = copy / "chroma" / "chroma.sqlite3"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    before = files_under(source.root)

    fresh = Site(tmp_path / "fresh")
    for site, extra in ((fresh, []), (source, ["--force"])):
        proc = cli(site, "restore", str(copy), *extra, "--json")
        assert proc.returncode == 2, proc.stderr
        error = events(proc)[-1]
        assert error["error"] == "bad_request"
        assert "corrupted" in error["message"] and "chroma/chroma.sqlite3" in error["message"]
    assert not fresh.root.exists()
    assert files_under(source.root) == before

    target.write_bytes(bytes(data[: len(data) // 2]))  # cut short: the size already differs
    proc = cli(fresh, "restore", str(copy), "--json")
    assert "corrupted" in events(proc)[-1]["message"]
    shutil.copy(archive.path / "chroma" / "chroma.sqlite3", target)
    (copy / "keyword" / "CURRENT").unlink()
    proc = cli(fresh, "restore", str(copy), "--json")
    assert proc.returncode == 2, proc.stderr
    message = events(proc)[-1]["message"]
    assert "incomplete" in message and "keyword/CURRENT is missing" in message
    (copy / "backup.json").unlink()
    proc = cli(fresh, "restore", str(copy), "--json")
    assert proc.returncode == 2 and "no backup.json" in events(proc)[-1]["message"]
    assert not fresh.root.exists()


def test_restoring_over_data_needs_force_and_keeps_the_old_data_aside(
    archive: Archive, tmp_path: Path
) -> None:
    site = Site(tmp_path / "site")
    assert cli(site, "restore", str(archive.path)).returncode == 0
    full = documents(site)
    (lunch,) = [doc_id for doc_id, shown, _ in full if shown == "kb/lunch.md"]
    proc = cli(site, "delete", lunch, "--json")
    assert proc.returncode == 0, proc.stderr
    changed = documents(site)
    assert len(changed) == 2

    proc = cli(site, "restore", str(archive.path), "--json")
    assert proc.returncode == 2, proc.stderr
    message = events(proc)[-1]["message"]
    assert "already hold data" in message and "--force" in message
    assert str(site.store) in message
    assert documents(site) == changed
    assert not list(site.root.rglob("*.before-restore-*"))

    proc = cli(site, "restore", str(archive.path), "--force")
    assert proc.returncode == 0, proc.stderr
    assert "moved aside" in proc.stdout and "3 documents" in proc.stdout
    assert documents(site) == full
    aside = {p.name.split(".before-restore-")[0] for p in site.root.rglob("*.before-restore-*")}
    assert aside == {"chroma", "chroma-manifest.sqlite", "knowledge", "state.sqlite3"}

    from rag.index.manifest import Manifest

    (kept,) = site.store.parent.glob("chroma-manifest.sqlite.before-restore-*")
    with Manifest(kept) as manifest:
        assert manifest.stats("knowledge")["documents"] == 2  # the data that was there


def test_backup_refuses_a_destination_that_holds_anything(source: Site, tmp_path: Path) -> None:
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine", encoding="utf-8")
    proc = cli(source, "backup", str(dest), "--json")
    assert proc.returncode == 2, proc.stderr
    message = events(proc)[-1]["message"]
    assert "not an empty folder" in message and str(dest) in message
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "taken.partial").exists()

    from ingest.backup import backup
    from rag.errors import BadRequestError

    foreign = tmp_path / "other.partial"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a backup's", encoding="utf-8")
    with pytest.raises(BadRequestError, match="not left by an interrupted backup"):
        backup(source.settings(), tmp_path / "other")
    assert (foreign / "keep.txt").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    info = backup(source.settings(), empty)  # an empty folder is fine
    assert info["documents"] == 3 and (empty / "backup.json").is_file()


def test_settings_other_than_the_embedded_default_are_refused_with_what_to_do(
    source: Site, archive: Archive, tmp_path: Path
) -> None:
    proc = cli(source, "backup", str(tmp_path / "b"), "--json", RAG_STORE__MODE="http")
    assert proc.returncode == 2, proc.stderr
    error = events(proc)[-1]
    assert error["error"] == "config_error"
    assert "Chroma server's own data folder" in error["message"]

    url = "postgresql+psycopg://rag@db-host/rag"
    for args in (["backup", str(tmp_path / "b")], ["restore", str(archive.path)]):
        proc = cli(source, *args, "--json", RAG_STATE__URL=url)
        assert proc.returncode == 2, proc.stderr
        message = events(proc)[-1]["message"]
        assert "pg_dump" in message and "embedded default" in message
    assert not (tmp_path / "b").exists()
