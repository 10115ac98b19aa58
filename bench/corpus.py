"""A generated, mixed office corpus for the ingest benchmark (deterministic for a seed).

At ``scale=1``: 300 documents, >= 1,500 pages: multi-page PDFs (a text layer written by
hand, no PDF library), DOCX, PPTX, XLSX, Markdown, HTML, text, CSV and EML, some Chinese.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

_WORDS = [
    "policy",
    "employee",
    "office",
    "badge",
    "leave",
    "annual",
    "travel",
    "expense",
    "receipt",
    "manager",
    "approval",
    "laptop",
    "network",
    "password",
    "account",
    "printer",
    "meeting",
    "room",
    "floor",
    "building",
    "security",
    "visitor",
    "contract",
    "invoice",
    "budget",
    "quarter",
    "report",
    "team",
    "project",
    "deadline",
    "schedule",
    "training",
    "safety",
    "parking",
    "canteen",
    "holiday",
    "benefit",
    "insurance",
    "pension",
    "salary",
    "review",
    "onboarding",
    "access",
]
_ZH = "公司员工出差报销标准住宿交通餐饮审批流程经理财务部门每月季度年度预算合同发票安全培训"


@dataclass(frozen=True)
class CorpusInfo:
    documents: int
    pages: int
    bytes: int


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(8, 18))
    return " ".join(words).capitalize() + f" (ref {rng.randint(100, 9999)})."


def _paragraph(rng: random.Random, sentences: int = 5) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _zh_paragraph(rng: random.Random) -> str:
    return "".join(rng.choice(_ZH) for _ in range(rng.randint(60, 120))) + "。"


def _pdf(path: Path, rng: random.Random, pages: int) -> None:
    """A text-layer PDF: Helvetica, ~45 lines of ~90 characters per page."""
    objects: list[bytes] = []
    page_ids = []
    font_id = 3
    for _ in range(pages):
        lines = []
        text = " ".join(_paragraph(rng, 4) for _ in range(10))
        while text and len(lines) < 45:
            cut = text.rfind(" ", 0, 90) if len(text) > 90 else len(text)
            lines.append(text[:cut])
            text = text[cut:].lstrip()
        body = "BT /F1 10 Tf 12 TL 50 760 Td " + " ".join(
            "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
            for ln in lines
        )
        stream = (body + " ET").encode("latin-1")
        content_id = 4 + 2 * len(page_ids) + 1
        page_ids.append(4 + 2 * len(page_ids))
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    head = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(head + objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    trailer = f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    out += trailer.encode()
    path.write_bytes(bytes(out))


def _docx(path: Path, rng: random.Random, pages: int) -> None:
    import docx

    document = docx.Document()
    for section in range(pages):
        document.add_heading(f"Section {section + 1}: {rng.choice(_WORDS)} rules", level=1)
        for _ in range(4):
            document.add_paragraph(_paragraph(rng, 5))
        if section % 2 == 0:
            table = document.add_table(rows=1, cols=3)
            for cell, name in zip(table.rows[0].cells, ("Code", "Item", "Limit"), strict=True):
                cell.text = name
            for row in range(8):
                cells = table.add_row().cells
                cells[0].text, cells[1].text = f"C-{row}", rng.choice(_WORDS)
                cells[2].text = str(rng.randint(10, 900))
    document.save(str(path))


def _pptx(path: Path, rng: random.Random, slides: int) -> None:
    from pptx import Presentation

    deck = Presentation()
    for number in range(slides):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide {number + 1}: {rng.choice(_WORDS)} update"
        slide.placeholders[1].text = "\n".join(_sentence(rng) for _ in range(5))
    deck.save(str(path))


def _xlsx(path: Path, rng: random.Random, sheets: int) -> None:
    from openpyxl import Workbook

    book = Workbook()
    for index in range(sheets):
        sheet = book.active if index == 0 else book.create_sheet()
        sheet.title = f"Sheet{index + 1}"
        sheet.append(["Item code", "Item", "Owner", "Price"])
        for row in range(60):
            sheet.append([f"IT-{index}-{row}", rng.choice(_WORDS), rng.choice(_WORDS), row * 3])
    book.save(str(path))


def _markdown(rng: random.Random, pages: int, zh: bool) -> str:
    parts = []
    for section in range(pages * 2):
        parts.append(f"## Part {section + 1} {rng.choice(_WORDS)}\n")
        for _ in range(3):
            parts.append((_zh_paragraph(rng) if zh else _paragraph(rng, 5)) + "\n")
    return "# Guide\n\n" + "\n".join(parts)


def make_corpus(folder: Path, scale: float = 1.0, seed: int = 7) -> CorpusInfo:
    """Write the corpus into ``folder``; returns counts (pages as laid out)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = max(10, round(300 * scale))
    kinds = ["pdf"] * 30 + ["docx"] * 20 + ["pptx"] * 10 + ["xlsx"] * 8 + ["md"] * 12
    kinds += ["html"] * 8 + ["txt"] * 6 + ["csv"] * 2 + ["eml"] * 4
    random.Random(seed).shuffle(kinds)
    pages = 0
    for n in range(total):
        kind = kinds[n % len(kinds)]
        path = folder / f"doc-{n:04d}.{kind}"
        if kind == "pdf":
            count = rng.randint(8, 14)
            _pdf(path, rng, count)
        elif kind == "docx":
            count = rng.randint(3, 6)
            _docx(path, rng, count)
        elif kind == "pptx":
            count = rng.randint(6, 12)
            _pptx(path, rng, count)
        elif kind == "xlsx":
            count = rng.randint(1, 3)
            _xlsx(path, rng, count)
        elif kind in {"md", "txt"}:
            count = rng.randint(1, 3)
            path.write_text(_markdown(rng, count, zh=n % 5 == 0), encoding="utf-8")
        elif kind == "html":
            count = rng.randint(1, 3)
            body = "".join(
                f"<h2>Topic {i}</h2><p>{_paragraph(rng, 6)}</p><p>{_paragraph(rng, 6)}</p>"
                for i in range(count * 3)
            )
            path.write_text(f"<html><body><h1>Notice</h1>{body}</body></html>", encoding="utf-8")
        elif kind == "csv":
            count = 1
            rows = [f"R-{i},{rng.choice(_WORDS)},{rng.randint(1, 99)}" for i in range(80)]
            path.write_text("code,item,qty\n" + "\n".join(rows) + "\n", encoding="utf-8")
        else:
            count = 1
            msg = EmailMessage()
            msg["From"], msg["To"] = "it@example.com", "all@example.com"
            msg["Subject"] = f"Notice {n}: {rng.choice(_WORDS)}"
            msg.set_content("\n\n".join(_paragraph(rng, 5) for _ in range(4)))
            path.write_bytes(bytes(msg))
        pages += count
    size = sum(p.stat().st_size for p in folder.iterdir())
    return CorpusInfo(total, pages, size)
