"""E-mails with attachments against a real Chroma and the real embedder: each attachment
is a document of its own, tied to its message through add, update, sync and delete, and a
hostile attachment fails alone. The kill -9 case runs the real CLI."""

from __future__ import annotations

import json
import signal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from rag.errors import IngestError
from tests.conftest import ASSETS, KB_DIR
from tests.integration.test_ingest_cli import check_consistent, cli, events, zip_with
from tests.integration.test_ingest_sync import consistent, open_kb

pytestmark = pytest.mark.usefixtures("assets")


@pytest.fixture(scope="module")
def embedder(make_settings: Any) -> Any:
    from rag.index.embedding import create_embedder

    return create_embedder(make_settings().embedding)


def write_mail(path: Path, body: str, files: dict[str, bytes]) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"] = "finance@example.com", "staff@example.com"
    msg["Subject"] = "Quarterly documents"
    msg.set_content(body)
    for name, data in files.items():
        maintype, subtype = ("text", "csv") if name.endswith(".csv") else ("application", "x")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    path.write_bytes(bytes(msg))


def by_name(results: Any) -> dict[str, Any]:
    return {r.path.rpartition("/")[2]: r for r in results}


def test_attachments_are_documents_that_live_and_die_with_their_message(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    bomb = tmp_path / "bomb.docx"
    zip_with(bomb, "word/document.xml", 30_000_000)
    pdf = (KB_DIR / "facilities-office-guide.pdf").read_bytes()
    files = {
        "guide.pdf": pdf,
        "leave.docx": (KB_DIR / "hr-leave-policy.docx").read_bytes(),
        "prices.csv": b"item,price\nbadge,5\nlanyard,2\n",
        "../../etc/passwd.txt": b"Visitors sign in at the lobby desk.\n",
        "bomb.docx": bomb.read_bytes(),
        "broken.pdf": pdf[: len(pdf) // 2],
        "logo.png": b"\x89PNG\r\n\x1a\n",
    }
    mail = root / "mail.eml"
    write_mail(mail, "The quarterly documents are attached. Budget review is on Friday.", files)
    (root / "mail.eml.meta.json").write_text(json.dumps({"groups": ["finance"]}))
    ingestor = open_kb(make_settings(), embedder)
    collection = ingestor._store.name

    first = by_name(ingestor.sync(root))

    parent = first["mail.eml"]
    assert parent.status == "added" and not parent.parent
    assert {n: r.status for n, r in first.items()} == {
        "mail.eml": "added",
        "guide.pdf": "added",
        "leave.docx": "added",
        "prices.csv": "added",
        "passwd.txt": "added",  # the name's folders are dropped
        "bomb.docx": "failed",
        "broken.pdf": "failed",
        "logo.png": "skipped",
    }
    assert all(r.parent == parent.doc_id for n, r in first.items() if n != "mail.eml")
    assert "attachment bomb.docx" in (first["bomb.docx"].error or "")
    assert "zip bomb" in (first["bomb.docx"].error or "")
    assert "truncated" in (first["broken.pdf"].error or "")
    assert first["guide.pdf"].pages == 3

    chunks = ingestor._store.chunks_where(None)
    mine = [c for c in chunks if c.doc_id == parent.doc_id]
    guide = [c for c in chunks if c.doc_id == first["guide.pdf"].doc_id]
    assert mine and guide and len({c.doc_id for c in chunks}) == 5
    assert all(c.groups == ("finance",) for c in chunks)
    assert all(c.parent == parent.doc_id for c in chunks if c.doc_id != parent.doc_id)
    assert guide[0].source == "kb/mail.eml#attachment/guide.pdf"  # never the server path
    assert any(c.page == 3 for c in guide)
    # The message's own document holds its headers and body, not the attachments' text.
    assert any("Budget review" in c.text and "Subject" in c.text for c in mine)
    assert not any("assembly point" in c.text.lower() for c in mine)
    assert any("assembly point" in c.text.lower() for c in guide)
    manifest = ingestor.manifest
    assert len(manifest.children(collection, parent.doc_id)) == 4
    assert {Path(p).name for p, _, _ in manifest.failures(collection)} == {
        "bomb.docx",
        "broken.pdf",
    }
    consistent(ingestor)
    with pytest.raises(IngestError, match="is an attachment"):
        ingestor.delete(first["leave.docx"].doc_id)

    # Unchanged message: skipped as a whole, attachments included.
    assert {n: r.status for n, r in by_name(ingestor.sync(root)).items()} == {
        "mail.eml": "unchanged"
    }

    # Changed message: the docx is gone, the csv changed; replaced together.
    old_leave = manifest.chunk_ids(collection, first["leave.docx"].doc_id)
    files.pop("leave.docx")
    files["prices.csv"] = b"item,price\nbadge,7\n"
    write_mail(mail, "Corrected prices attached.", files)
    second = by_name(ingestor.sync(root))
    assert {n: r.status for n, r in second.items() if r.status != "failed"} == {
        "mail.eml": "updated",
        "guide.pdf": "updated",
        "prices.csv": "updated",
        "passwd.txt": "updated",
        "logo.png": "skipped",
        "leave.docx": "deleted",
    }
    in_store = set(ingestor._store.all_ids())
    assert not in_store & set(old_leave)
    assert len(manifest.children(collection, parent.doc_id)) == 3
    prices = ingestor._store.document_chunks(second["prices.csv"].doc_id)
    assert any("7" in c.text for c in prices) and not any("lanyard" in c.text for c in prices)
    consistent(ingestor)

    # The message's file is gone: sync deletes it and its attachments.
    mail.unlink()
    third = [(Path(r.path).name, r.status) for r in ingestor.sync(root)]
    assert third == [("mail.eml", "deleted")]
    assert ingestor._store.all_ids() == []
    assert manifest.stats(collection)["documents"] == 0
    assert manifest.failures(collection) == []
    consistent(ingestor)


def test_kill_9_between_store_and_commit_keeps_the_old_attachments_until_the_rerun(
    embedder: Any, tmp_path: Path
) -> None:
    from rag.config import load_settings

    root, store = tmp_path / "kb", tmp_path / "store"
    root.mkdir()
    mail = root / "mail.eml"
    write_mail(mail, "Price list attached.", {"a.csv": b"item,price\nbadge,5\n"})
    # The first version in-process (the settings the CLI below uses), to save a start-up.
    settings = load_settings(
        "test", overrides={"store": {"path": str(store)}, "paths": {"assets_dir": str(ASSETS)}}
    )
    ingestor = open_kb(settings, embedder)
    assert [r.status for r in ingestor.add([root])] == ["added", "added"]
    ingestor.manifest.close()
    before = check_consistent(store)
    assert sorted(p.split("/kb/")[1] for p in before) == ["mail.eml", "mail.eml#attachment/a.csv"]

    write_mail(mail, "New price list.", {"b.csv": b"item,price\nbadge,6\n"})
    proc = cli(store, "add", str(root), "--json", crash="after_upsert:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    proc = cli(store, "add", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    statuses = {e["path"].rpartition("/")[2]: e["status"] for e in events(proc) if "status" in e}
    assert statuses == {"mail.eml": "updated", "b.csv": "added", "a.csv": "deleted"}
    after = check_consistent(store)
    assert sorted(p.split("/kb/")[1] for p in after) == ["mail.eml", "mail.eml#attachment/b.csv"]
    summary = next(e for e in events(proc) if e["event"] == "summary")
    assert summary["done"] == 1  # attachments are not counted as files


def test_reindex_rebuilds_attachments_from_their_message(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    from ingest.reindex import Reindex
    from rag.index.manifest import Manifest
    from tests.integration.test_ingest_sync import Renamed

    root = tmp_path / "kb"
    root.mkdir()
    write_mail(root / "mail.eml", "Prices attached.", {"a.csv": b"item,price\nbadge,5\n"})
    settings = make_settings()
    ingestor = open_kb(settings, embedder)
    assert [r.status for r in ingestor.add([root])] == ["added", "added"]
    ingestor.manifest.close()

    with Manifest(settings.store.manifest_path()) as manifest:
        job = Reindex(settings, Renamed(embedder, "builtin:use-multilingual-v3@v2"), manifest)
        results = [(Path(r.path).name, r.status, bool(r.parent)) for r in job.run()]
        assert results == [("mail.eml", "added", False), ("a.csv", "added", True)]
        job.switch()
        docs = list(manifest.documents(job.target))
    assert sorted(bool(d.parent) for d in docs) == [False, True]
    assert all(d.embedder.endswith("@v2") for d in docs)


def write_outlook(path: Path, body: str, files: dict[str, bytes], item: Any = None) -> None:
    from tests.msgfile import MsgAttachment, write_msg

    attached = [MsgAttachment(name, data) for name, data in files.items()]
    write_msg(
        path,
        subject="Travel policy update",
        body=body,
        sender=("Finance Team", "finance@example.com"),
        to=[("Staff", "staff@example.com")],
        attachments=attached + ([MsgAttachment(None, item=item)] if item else []),
    )


def test_outlook_messages_and_their_attachments_are_documents_tied_together(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    mail = root / "mail.msg"
    files = {
        "per-diem.md": b"# Per diem\n\nThe daily meal allowance abroad is 62 euros.\n",
        "leave.docx": (KB_DIR / "hr-leave-policy.docx").read_bytes(),
        "mileage.csv": b"vehicle,rate\ncar,0.30\nbicycle,0.10\n",
    }
    from tests.msgfile import Mail

    thread = Mail(  # an attached Outlook item ("attach as item")
        subject="Re: train or plane?",
        body="Trains are required for trips under four hours.",
        sender=("Ana Lima", "ana@example.com"),
    )
    write_outlook(mail, "Please read the attached travel rules before booking.", files, thread)
    (root / "mail.msg.meta.json").write_text(json.dumps({"groups": ["finance"]}))
    good = root / "other.md"
    good.write_text("# Parking\n\nVisitor parking is on level two.\n")
    cut = root / "cut.msg"  # a valid OLE header, the rest of the file cut off
    cut.write_bytes(mail.read_bytes()[:3000])
    ingestor = open_kb(make_settings(), embedder)
    collection = ingestor._store.name

    first = by_name(ingestor.sync(root))

    assert {n: r.status for n, r in first.items()} == {
        "mail.msg": "added",
        "per-diem.md": "added",
        "leave.docx": "added",
        "mileage.csv": "added",
        "Re: train or plane?.eml": "added",
        "other.md": "added",
        "cut.msg": "failed",
    }
    error = first["cut.msg"].error or ""
    assert "\n" not in error and error.startswith("cut.msg: ") and "damaged" in error
    assert "Save the message from Outlook again" in error
    parent = first["mail.msg"]
    assert not parent.parent
    children = {n for n, r in first.items() if r.parent == parent.doc_id}
    assert children == {"per-diem.md", "leave.docx", "mileage.csv", "Re: train or plane?.eml"}
    chunks = ingestor._store.chunks_where(None)
    family = [c for c in chunks if c.doc_id != first["other.md"].doc_id]
    assert len({c.doc_id for c in family}) == 5
    assert all(c.groups == ("finance",) for c in family)
    mine = [c for c in family if c.doc_id == parent.doc_id]
    text = " ".join(c.text for c in mine)
    assert "Subject: Travel policy update" in text and "finance@example.com" in text
    assert "attached travel rules" in text
    assert "62 euros" not in text  # the attachments are documents of their own
    per_diem = ingestor._store.document_chunks(first["per-diem.md"].doc_id)
    assert per_diem[0].source == "kb/mail.msg#attachment/per-diem.md"  # never the server path
    assert per_diem[0].parent == parent.doc_id and "62 euros" in per_diem[0].text
    assert any(
        "0.30" in c.text for c in ingestor._store.document_chunks(first["mileage.csv"].doc_id)
    )
    item = ingestor._store.document_chunks(first["Re: train or plane?.eml"].doc_id)
    assert "Trains are required" in item[0].text and "ana@example.com" in item[0].text
    manifest = ingestor.manifest
    assert len(manifest.children(collection, parent.doc_id)) == 4
    assert [Path(p).name for p, _, _ in manifest.failures(collection)] == ["cut.msg"]
    assert "cut.msg" not in {Path(d.path).name for d in manifest.documents(collection)}
    consistent(ingestor)

    # Unchanged: skipped as a whole; the damaged file is tried again and fails again.
    again = {n: r.status for n, r in by_name(ingestor.sync(root)).items()}
    assert again == {"mail.msg": "unchanged", "other.md": "unchanged", "cut.msg": "failed"}

    # The message's file is gone: sync deletes it with its attachments.
    mail.unlink()
    cut.unlink()
    gone = {Path(r.path).name: r.status for r in ingestor.sync(root)}
    assert gone == {"mail.msg": "deleted", "other.md": "unchanged"}
    assert {c.doc_id for c in ingestor._store.chunks_where(None)} == {first["other.md"].doc_id}
    assert manifest.stats(collection)["documents"] == 1
    assert manifest.failures(collection) == []
    consistent(ingestor)
