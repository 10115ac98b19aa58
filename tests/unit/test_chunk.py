from __future__ import annotations

from ingest.chunk import make_chunks, plan_chunks, table_rows, table_to_markdown_parts
from ingest.parse import Element, ParsedDocument


def words(text: str) -> int:
    return len(text.split())


TABLE = (
    "<table><tr><th>Code</th><th>Item</th></tr>"
    + "".join(f"<tr><td>HW-{i}</td><td>Laptop model {i}</td></tr>" for i in range(30))
    + "</table>"
)


def test_table_rows_keep_header_and_cells() -> None:
    rows = table_rows(TABLE)
    assert rows[0] == ["Code", "Item"]
    assert rows[1] == ["HW-0", "Laptop model 0"]
    assert len(rows) == 31


def test_large_table_splits_by_rows_with_header_repeated() -> None:
    parts = table_to_markdown_parts(TABLE, words, limit=40)
    assert len(parts) > 1
    seen = []
    for part in parts:
        lines = part.splitlines()
        assert lines[0] == "| Code | Item |"
        assert lines[1] == "| --- | --- |"
        assert words(part) <= 40
        seen += list(lines[2:])
    # every row exactly once, whole
    assert seen == [f"| HW-{i} | Laptop model {i} |" for i in range(30)]


def test_sections_follow_headings_and_long_text_is_split() -> None:
    long_text = " ".join(f"Sentence number {i} about leave." for i in range(60))
    doc = ParsedDocument(
        title="Leave policy",
        elements=[
            Element("title", "Leave policy", 1, 0),
            Element("text", "Intro text.", 1),
            Element("title", "Annual leave", 1, 1),
            Element("text", long_text, 2),
            Element("table", "", 3, 0, TABLE),
        ],
        pages=3,
    )
    plans = plan_chunks(doc, words, chunk_tokens=50, overlap=5)
    assert plans[0].section == "Leave policy" and plans[0].text == "Intro text."
    annual = [p for p in plans if p.section == "Leave policy > Annual leave"]
    assert len(annual) > 3
    assert all(words(p.text) <= 50 for p in plans)
    assert any(p.page == 3 and p.text.startswith("| Code | Item |") for p in plans)
    chunks = make_chunks(
        plans, doc_id="d1", id_prefix="d1:abc", source="x.docx", title="Leave", groups=("hr",)
    )
    assert [c.index for c in chunks] == list(range(len(plans)))
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    assert all(c.groups == ("hr",) and len(c.content_hash) == 64 for c in chunks)


def test_pdf_text_layer_keeps_pages_and_headings_and_drops_running_headers() -> None:
    from pathlib import Path

    from ingest.parse import parse_file

    kb = Path(__file__).resolve().parents[2] / "examples" / "kb"
    doc = parse_file(kb / "facilities-office-guide.pdf", pdf_strategy="text")
    assert doc.pages == 3 and doc.title == "Facilities Office Guide"
    titles = [(e.page, e.text) for e in doc.elements if e.kind == "title"]
    assert (1, "2. Meeting rooms and desks") in titles
    assert (3, "6. Safety and emergencies") in titles
    text = " ".join(e.text for e in doc.elements)
    assert "Northwind Robotics - Facilities Office Guide (Oslo" not in text  # running header
    assert "Page 2" not in text
    fire = [e for e in doc.elements if "fire assembly point" in e.text]
    assert fire and fire[0].page == 3
    plans = plan_chunks(doc, words, chunk_tokens=60, overlap=0)
    assert any(p.section == "6. Safety and emergencies" and p.page == 3 for p in plans)


def test_a_scanned_page_is_a_chunk_of_its_own_so_citations_name_its_page() -> None:
    short = [
        Element("text", "停车证的上限为236元每月。", 1, ocr_confidence=91.0),
        Element("text", "访客证的上限为12小时。", 2, ocr_confidence=88.0),
        Element("text", "Typed text on page three.", 3),
        Element("text", "More typed text on page four.", 4),
    ]
    plans = plan_chunks(ParsedDocument("t", short, 4), words, chunk_tokens=100, overlap=0)
    assert [(p.page, p.ocr_confidence) for p in plans] == [(1, 91.0), (2, 88.0), (3, None)]
    assert plans[2].text == "Typed text on page three.\n\nMore typed text on page four."
