"""Parse a file into structural elements with ``unstructured`` (the only importer of it).

The rest of ingest sees :class:`Element` only: a kind (title, text, table), its text, the
page or slide it came from, the heading depth, and for tables the HTML that keeps rows and
header apart.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.errors import IngestError, UnsupportedFileError

ElementKind = Literal["title", "text", "table"]

SUPPORTED_SUFFIXES = frozenset(
    {
        ".pdf",
        ".docx",
        ".pptx",
        ".xlsx",
        ".csv",
        ".html",
        ".htm",
        ".md",
        ".markdown",
        ".txt",
        ".eml",
        ".msg",
    }
)


@dataclass(frozen=True, slots=True)
class Element:
    kind: ElementKind
    text: str
    page: int | None = None
    depth: int = 0
    html: str | None = None
    sheet: str = ""


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    elements: list[Element]
    pages: int


def _quiet_env() -> None:
    # unstructured reports usage unless told not to; this service never phones home.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    # "No languages specified, defaulting to English" on every PDF: noise, not news.
    logging.getLogger("unstructured").setLevel(logging.ERROR)


def _partition(path: Path, pdf_strategy: str) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from unstructured.partition.pdf import partition_pdf

        return list(partition_pdf(filename=str(path), strategy=pdf_strategy))
    if suffix == ".docx":
        from unstructured.partition.docx import partition_docx

        return list(partition_docx(filename=str(path)))
    if suffix == ".pptx":
        from unstructured.partition.pptx import partition_pptx

        return list(partition_pptx(filename=str(path)))
    if suffix == ".xlsx":
        from unstructured.partition.xlsx import partition_xlsx

        return list(partition_xlsx(filename=str(path)))
    if suffix == ".csv":
        from unstructured.partition.csv import partition_csv

        return list(partition_csv(filename=str(path)))
    if suffix in {".html", ".htm"}:
        from unstructured.partition.html import partition_html

        return list(partition_html(filename=str(path)))
    if suffix in {".md", ".markdown"}:
        from unstructured.partition.md import partition_md

        return list(partition_md(filename=str(path)))
    if suffix == ".eml":
        from unstructured.partition.email import partition_email

        # Attachments become documents of their own (ingest/mail.py), checked first.
        return list(partition_email(filename=str(path), process_attachments=False))
    if suffix == ".msg":
        from unstructured.partition.msg import partition_msg

        return list(partition_msg(filename=str(path), process_attachments=False))
    if suffix == ".txt":
        from unstructured.partition.text import partition_text

        return list(partition_text(filename=str(path)))
    raise UnsupportedFileError(
        f"{path.name}: file type {suffix or '(none)'} is not supported; supported types are "
        f"{', '.join(sorted(SUPPORTED_SUFFIXES))}."
    )


def _page_of(meta: Any) -> int | None:
    page = getattr(meta, "page_number", None)
    return int(page) if isinstance(page, int) else None


def _convert(raw: Any) -> Element | None:
    text = str(getattr(raw, "text", "") or "").strip()
    category = str(getattr(raw, "category", ""))
    meta = getattr(raw, "metadata", None)
    page = _page_of(meta)
    if category == "Table":
        html = getattr(meta, "text_as_html", None)
        if not text and not html:
            return None
        sheet = getattr(meta, "page_name", None)
        return Element(
            "table", text, page, 0, str(html) if html else None, str(sheet) if sheet else ""
        )
    if not text:
        return None
    if category == "Title" and looks_like_heading(text):
        depth = getattr(meta, "category_depth", None)
        return Element("title", text, page, int(depth) if isinstance(depth, int) else 0)
    if category in {"PageBreak", "Header", "Footer", "PageNumber"}:
        return None
    return Element("text", text, page)


def looks_like_heading(text: str) -> bool:
    """unstructured's fast PDF strategy calls some wrapped sentence ends titles ("work.")."""
    if len(text) > 200 or text.endswith((".", "。", ",", "，", ";", ":")):
        return False
    return len(text.split()) >= 2 or any("\u3400" <= ch <= "\u9fff" for ch in text)


def _email_header(raw_elements: list[Any]) -> Element | None:
    if not raw_elements:
        return None
    meta = getattr(raw_elements[0], "metadata", None)
    fields = [
        ("From", getattr(meta, "sent_from", None)),
        ("To", getattr(meta, "sent_to", None)),
        ("Subject", getattr(meta, "subject", None)),
        ("Date", getattr(meta, "last_modified", None)),
    ]
    lines = []
    for name, value in fields:
        if value:
            shown = ", ".join(value) if isinstance(value, list) else str(value)
            lines.append(f"{name}: {shown}")
    return Element("text", "\n".join(lines)) if lines else None


def parse_file(path: Path, *, pdf_strategy: str = "fast") -> ParsedDocument:
    """Parse one file; raise :class:`IngestError` with a fix-it message when it cannot be read."""
    _quiet_env()
    if path.suffix.lower() == ".pdf" and pdf_strategy == "text":
        return _parse_pdf_text(path)
    try:
        raw = _partition(path, pdf_strategy)
    except IngestError:
        raise
    except Exception as exc:  # unstructured raises anything from zip to pdfminer errors
        raise IngestError(
            f"{path.name}: could not be parsed as {path.suffix.lower()} "
            f"({type(exc).__name__}: {str(exc)[:200]}). Check that the file opens in its "
            "usual application, re-save or re-export it, and add it again."
        ) from exc
    elements = [e for e in (_convert(r) for r in raw) if e is not None]
    if path.suffix.lower() in {".eml", ".msg"}:
        header = _email_header(raw)
        if header is not None:
            elements.insert(0, header)
    if not any(e.text.strip() or e.html for e in elements):
        if path.suffix.lower() in {".eml", ".msg"}:
            # unstructured returns nothing at all for an encrypted message.
            raise IngestError(
                f"{path.name}: no text found (an empty or encrypted message). Save a "
                "decrypted copy of the message and add that."
            )
        raise IngestError(
            f"{path.name}: no text found (empty, or a scan without a text layer). "
            "Export it with text, or enable OCR (ingest.pdf_strategy: ocr_only) for scans."
        )
    pages = max((e.page or 0 for e in elements), default=0) or 1
    return ParsedDocument(title=_title(path, raw, elements), elements=elements, pages=pages)


def _title(path: Path, raw: list[Any], elements: list[Element]) -> str:
    if path.suffix.lower() in {".eml", ".msg"} and raw:
        subject = getattr(getattr(raw[0], "metadata", None), "subject", None)
        if subject:
            return str(subject)
    for element in elements:
        if element.kind == "title":
            return element.text
    stem = " ".join(path.stem.replace("-", " ").replace("_", " ").split())
    return stem[:1].upper() + stem[1:] if stem else path.name


def _parse_pdf_text(path: Path) -> ParsedDocument:
    from ingest.pdf_text import pdf_elements

    try:
        elements, pages = pdf_elements(path)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(
            f"{path.name}: could not be parsed as .pdf ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Check that it opens in a PDF reader, export it again, and "
            "add it again."
        ) from exc
    if not any(e.text.strip() for e in elements):
        raise IngestError(
            f"{path.name}: no text found (a scan without a text layer?). Export it with "
            "text, or enable OCR (ingest.pdf_strategy: ocr_only) for scans."
        )
    return ParsedDocument(title=_title(path, [], elements), elements=elements, pages=pages)
