"""The audit log (issue 22): the hash chain on SQLite and PostgreSQL, what the real app
records for each action (never a secret, no question text unless asked), and the CLI that
reads and verifies it."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.state.audit import AuditLog
from rag.state.db import StateDB
from tests.asgi import ready_client
from tests.ingest_cli import cli as ingest_cli


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_chain_verifies_and_shows_where_it_was_changed(state_url: str) -> None:
    db = StateDB(state_url)
    try:
        log = AuditLog(db)
        for i in range(5):
            log.append("ask", caller=f"key:k{i}", groups=["hr"], route="POST /v1/ask")
        assert log.verify().ok and log.verify().checked == 5
        with db.write() as tx:  # someone blames another caller
            tx.run("UPDATE audit_log SET caller = 'key:k9' WHERE seq = 3")
        broken = log.verify()
        assert not broken.ok and broken.broken_at == 3 and "hash" in broken.reason
        with db.write() as tx:  # ... and recomputes that row's hash: the next link breaks
            [(prev,)] = tx.rows("SELECT prev FROM audit_log WHERE seq = 3")
            from rag.state.audit import _fields, _row, record_hash

            [row] = tx.rows("SELECT * FROM audit_log WHERE seq = 3")
            fixed = record_hash(str(prev), _fields(_row(row)))
            tx.run("UPDATE audit_log SET hash = :h WHERE seq = 3", {"h": fixed})
        broken = log.verify()
        assert not broken.ok and broken.broken_at == 4 and "point" in broken.reason
        with db.write() as tx:
            tx.run("DELETE FROM audit_log WHERE seq IN (3, 4)")
        broken = log.verify()
        assert not broken.ok and broken.broken_at == 5 and "missing" in broken.reason
    finally:
        db.close()


def test_retention_moves_the_anchor_and_the_chain_still_verifies(state_url: str) -> None:
    clock = Clock()
    db = StateDB(state_url)
    try:
        log = AuditLog(db, retention_days=1, clock=clock)
        for _ in range(3):
            log.append("retrieve", caller="key:a")
        clock.now += 2 * 86400
        assert log.prune() == 3
        new = log.append("retrieve", caller="key:a")
        assert new.seq == 4  # numbering goes on after the deleted rows
        assert log.verify().ok and log.verify().first_seq == 4
        log.append("retrieve", caller="key:a")
        with db.write() as tx:  # the newest row removed: the head no longer matches
            tx.run("DELETE FROM audit_log WHERE seq = 5")
        assert "newest" in log.verify().reason
        log.append("retrieve", caller="key:a")  # and the next record leaves a gap
        assert "missing" in log.verify().reason
        with db.write() as tx:  # the oldest kept row removed: the anchor no longer matches
            tx.run("DELETE FROM audit_log WHERE seq = 4")
        assert not log.verify().ok and log.verify().broken_at == 6
    finally:
        db.close()


def test_replicas_appending_at_once_extend_one_chain(state_url: str) -> None:
    """Two state connections (two replicas), 40 appends each, at the same time."""
    errors: list[BaseException] = []

    def replica(name: str) -> None:
        db = StateDB(state_url)
        try:
            log = AuditLog(db)
            for i in range(40):
                log.append("ask", caller=f"{name}-{i}")
        except BaseException as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=replica, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db = StateDB(state_url)
    try:
        log = AuditLog(db)
        result = log.verify()
        assert errors == [] and result.ok and result.checked == 80
        assert [r.seq for r in log.records(limit=500)] == list(range(1, 81))
    finally:
        db.close()


def test_question_text_is_kept_only_when_configured(tmp_path: Path) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 's.sqlite3'}")
    try:
        plain = AuditLog(db).append("ask", caller="key:a", text="What is Ana's salary?")
        kept = AuditLog(db, store_text=True).append("ask", caller="key:a", text="Leave days?")
        assert plain.text is None and kept.text == "Leave days?"
        assert AuditLog(db).verify().ok
        with pytest.raises(ValueError, match="unknown audit action"):
            AuditLog(db).append("read_mail", caller="key:a")
    finally:
        db.close()


@pytest.fixture(scope="module")
async def audited(
    sample_kb: Any, smol_engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from rag.config import AuthSettings, StateSettings
    from serving.app import create_app

    folder = tmp_path_factory.mktemp("audit")
    settings = sample_kb.model_copy(
        update={
            "auth": AuthSettings(required=True, rate_per_minute=60, burst=50),
            "state": StateSettings(url=f"sqlite:///{folder / 'state.sqlite3'}"),
        }
    )
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as c:
        yield c, app.state.rag


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_the_app_records_who_did_what_and_never_a_secret(
    audited: tuple[httpx.AsyncClient, Any], tmp_path: Path
) -> None:
    c, services = audited
    key, secret = services.keys.create("asker", ["ask"], ["everyone"])
    loader, loader_secret = services.keys.create("loader", ["ingest", "ask"], ["everyone"])
    question = "What is the name of the shared print queue?"

    asked = await c.post("/v1/ask", json={"question": question}, headers=bearer(secret))
    assert asked.status_code == 200, asked.text
    found = await c.post("/v1/retrieve", json={"query": "VPN", "k": 3}, headers=bearer(secret))
    assert found.status_code == 200
    chat = {"model": "knowledge-base", "messages": [{"role": "user", "content": question}]}
    assert (
        await c.post("/v1/chat/completions", json=chat, headers=bearer(secret))
    ).status_code == 200
    stolen = "kb_abc123_" + "s" * 40
    assert (
        await c.post("/v1/ask", json={"question": "x"}, headers=bearer(stolen))
    ).status_code == 401
    ingest_only, ingest_secret = services.keys.create("uploader", ["ingest"], ["everyone"])
    denied = await c.post("/v1/ask", json={"question": "x"}, headers=bearer(ingest_secret))
    assert denied.status_code == 403
    note = tmp_path / "audit-note.md"
    note.write_text("# Parking\n\nVisitors park on level -2.\n", encoding="utf-8")
    with note.open("rb") as fh:
        upload = await c.post(
            "/v1/documents", files={"files": ("audit-note.md", fh)}, headers=bearer(loader_secret)
        )
    assert upload.status_code == 200, upload.text
    doc_id = upload.json()["results"][0]["doc_id"]
    gone = await c.delete(f"/v1/documents/{doc_id}", headers=bearer(loader_secret))
    assert gone.status_code == 200, gone.text

    log: AuditLog = services.audit
    mine = log.records(caller=f"key:{key.key_id}")
    assert [(r.action, r.route, r.status) for r in mine] == [
        ("ask", "POST /v1/ask", 200),
        ("retrieve", "POST /v1/retrieve", 200),
        ("ask", "POST /v1/chat/completions", 200),
    ]
    cited = {x["doc_id"] for x in asked.json()["citations"]}
    assert set(mine[0].doc_ids) == cited
    assert set(mine[1].doc_ids) == {h["doc_id"] for h in found.json()["hits"]}
    assert all(r.groups == ("everyone",) and r.text is None for r in mine)

    [failure] = log.records(action="login_failure")[-1:]
    assert failure.caller == "key:abc123 (unverified)" and failure.status == 401
    assert failure.reason == "unauthorized"
    [refused] = log.records(caller=f"key:{ingest_only.key_id}")
    assert (refused.action, refused.status, refused.reason) == ("denied", 403, "forbidden")
    loads = log.records(caller=f"key:{loader.key_id}")
    assert [(r.action, r.doc_ids) for r in loads] == [("upload", (doc_id,)), ("delete", (doc_id,))]

    everything = json.dumps([r.to_json() for r in log.records()])
    assert secret not in everything and stolen[10:] not in everything
    assert question not in everything  # audit.store_text is off
    assert log.verify().ok
    _, scraper = services.keys.create("prometheus", ["metrics"], ["everyone"])
    metrics = (await c.get("/metrics", headers=bearer(scraper))).text
    assert 'kb_audit_records_total{action="login_failure"}' in metrics
    assert 'kb_audit_records_total{action="ask"} 2.0' in metrics


def test_the_cli_lists_filters_and_verifies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    store = tmp_path / "store"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done: subprocess.CompletedProcess[str] = ingest_cli(
            store, *args, RAG_PATHS__DATA_DIR=str(tmp_path), RAG_STATE__URL=url
        )
        return done

    created = cli("keys", "create", "--name", "ops", "--json")
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["key_id"]
    assert cli("keys", "revoke", key_id).returncode == 0
    db = StateDB(url)
    try:
        AuditLog(db).append("ask", caller="alice via widget:intranet", groups=["hr"])
    finally:
        db.close()
    rows = [json.loads(x) for x in cli("audit", "--json").stdout.splitlines()]
    assert [r["action"] for r in rows] == ["key_create", "key_revoke", "ask"]
    assert rows[0]["target"] == f"key:{key_id}" and rows[0]["caller"].startswith("cli:")
    alice = [json.loads(x) for x in cli("audit", "--json", "--user", "alice").stdout.splitlines()]
    assert [r["caller"] for r in alice] == ["alice via widget:intranet"]
    assert cli("audit", "--json", "--since", "2999-01-01").stdout == ""
    assert "--since" in cli("audit", "--since", "last tuesday").stderr
    ok = cli("audit", "--verify")
    assert ok.returncode == 0 and "intact: 3 records" in ok.stdout
    db = StateDB(url)
    try:
        with db.write() as tx:
            tx.run("UPDATE audit_log SET caller = 'cli:someone-else@host' WHERE seq = 2")
    finally:
        db.close()
    bad = cli("audit", "--verify")
    assert bad.returncode == 1 and "BROKEN at record 2" in bad.stderr
