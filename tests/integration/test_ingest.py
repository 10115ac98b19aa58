"""Ingest of every sample format into a real Chroma in a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ASSETS, KB_DIR, REPO

pytestmark = pytest.mark.usefixtures("assets")


@pytest.fixture(scope="module")
def kb(make_settings: Any) -> Any:
    from ingest.pipeline import Ingestor
    from rag.services import build_knowledge_base

    settings = make_settings()
    base = build_knowledge_base(settings)
    return settings, base, Ingestor(settings, base.embedder, base.store)


def test_every_sample_format_is_ingested_with_structure(kb: Any) -> None:
    _, base, ingestor = kb
    results = list(ingestor.add([KB_DIR]))
    by_suffix = {Path(r.path).suffix: r for r in results}
    assert {".md", ".html", ".docx", ".pdf", ".pptx", ".xlsx", ".eml", ".txt", ".csv"} <= set(
        by_suffix
    )
    assert all(r.status == "added" and r.chunks > 0 for r in results), results
    assert base.store.count() == sum(r.chunks for r in results)

    def hits_for(query: str) -> list[Any]:
        return base.store.query(base.embedder.embed_query(query), 3)

    pdf = [h for h in hits_for("fire assembly point") if h.chunk.source.endswith(".pdf")]
    assert pdf and pdf[0].chunk.page == 3
    # Each part of a sheet repeats its column names, which the bilingual model's vectors of a
    # table mostly carry (a single item, "webcam", is BM25's to find in hybrid search).
    xlsx = [
        h
        for h in hits_for("item code price lead time approval")
        if h.chunk.source.endswith(".xlsx")
    ]
    assert xlsx and xlsx[0].chunk.text.startswith("| Item code | Item |")
    assert xlsx[0].chunk.sheet == "Equipment"
    docx = [h for h in hits_for("annual leave days") if h.chunk.source.endswith(".docx")]
    assert docx and "Annual leave" in docx[0].chunk.section
    zh = hits_for("出差住宿标准")
    assert zh[0].chunk.source.endswith("finance-expense-policy-zh.md")
    assert zh[0].chunk.language == "zh" and pdf[0].chunk.language == "en"
    assert pdf[0].chunk.section == "6. Safety and emergencies"  # headings from the PDF text


def test_second_run_skips_unchanged_files_and_updates_changed_ones(kb: Any, tmp_path: Path) -> None:
    _, base, ingestor = kb
    again = list(ingestor.add([KB_DIR]))
    assert {r.status for r in again} == {"unchanged"}
    doc = tmp_path / "note.md"
    doc.write_text("# Note\n\nThe canteen code is 1111.\n")
    assert next(ingestor.add([doc])).status == "added"
    before = base.store.count()
    doc.write_text("# Note\n\nThe canteen code is 2222.\n\n## More\n\nSecond section.\n")
    updated = next(ingestor.add([doc]))
    assert updated.status == "updated"
    texts = [h.chunk.text for h in base.store.query(base.embedder.embed_query("canteen code"), 5)]
    assert any("2222" in t for t in texts) and not any("1111" in t for t in texts)
    assert base.store.count() == before - 1 + updated.chunks


def test_bad_files_are_reported_and_the_batch_goes_on(kb: Any, tmp_path: Path) -> None:
    _, _, ingestor = kb
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "broken.docx").write_bytes(b"this is not a zip file")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<<")
    (tmp_path / "good.md").write_text("# Good\n\nThe lobby opens at 06:45.\n")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    results = {Path(r.path).name: r for r in ingestor.add([tmp_path])}
    assert results["good.md"].status == "added"
    assert results["data.bin"].status == "skipped"
    for name in ["empty.txt", "broken.docx", "broken.pdf"]:
        assert results[name].status == "failed", results[name]
        assert results[name].error and name in results[name].error
    assert "empty" in (results["empty.txt"].error or "")


def test_cli_add_json_prints_one_object_per_file(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nThe badge office is room 101.\n")
    (tmp_path / "b.docx").write_bytes(b"not a docx")
    env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_STORE__PATH": str(tmp_path / "store"),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest.cli",
            "add",
            str(tmp_path / "a.md"),
            str(tmp_path / "b.docx"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 1, proc.stderr
    lines = {Path(e["path"]).name: e for e in events if e["event"] == "file"}
    assert sorted(lines) == ["a.md", "b.docx"]
    a, b = lines["a.md"], lines["b.docx"]
    assert a["status"] == "added" and a["chunks"] == 1 and a["doc_id"]
    assert b["status"] == "failed" and "b.docx" in b["error"] and "zip" in b["error"]
    assert set(a) >= {"path", "doc_id", "status", "chunks", "error", "files_per_s", "eta_s"}
    assert events[-1]["event"] == "summary" and events[-1]["added"] == 1
    assert events[-1]["failed"] == 1 and events[-1]["total"] == 2
