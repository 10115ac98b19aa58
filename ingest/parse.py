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

from ingest.ocr import IMAGE_SUFFIXES, OcrOptions, OcrUnavailableError
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
    | IMAGE_SUFFIXES
)


@dataclass(frozen=True, slots=True)
class Element:
    kind: ElementKind
    text: str
    page: int | None = None
    depth: int = 0
    html: str | None = None
    sheet: str = ""
    ocr_confidence: float | None = None
    """Set when OCR read this text from a scanned page or an image (0-100)."""


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    elements: list[Element]
    pages: int
    warnings: tuple[str, ...] = ()
    """Pages left out (OCR confidence under the floor, too slow, no OCR available)."""
    ocr_pages: int = 0


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


def parse_file(
    path: Path, *, pdf_strategy: str = "fast", ocr: OcrOptions | None = None
) -> ParsedDocument:
    """Parse one file; raise :class:`IngestError` with a fix-it message when it cannot be read.
    ``ocr``: how scanned PDF pages (strategies ``text`` and ``ocr_only``) and images are read
    (None: images are refused, scanned pages left out)."""
    _quiet_env()
    suffix = path.suffix.lower()
    if suffix == ".pdf" and pdf_strategy in {"text", "ocr_only"}:
        return _parse_pdf_text(path, ocr, ocr_all=pdf_strategy == "ocr_only")
    if suffix in IMAGE_SUFFIXES:
        return _parse_image(path, ocr)
    try:
        raw = _partition(path, pdf_strategy)
    except IngestError:
        raise
    except Exception as exc:  # unstructured raises anything from zip to pdfminer errors
        raise IngestError(
            f"{path.name}: could not be parsed as {suffix} "
            f"({type(exc).__name__}: {str(exc)[:200]}). Check that the file opens in its "
            "usual application, re-save or re-export it, and add it again."
        ) from exc
    elements = [e for e in (_convert(r) for r in raw) if e is not None]
    warnings: tuple[str, ...] = ()
    ocr_pages = 0
    if suffix in {".pptx", ".docx"} and ocr is not None and ocr.enabled:
        extra, warned, ocr_pages = _office_pictures(path, ocr)
        # Slides in order (a stable sort: a slide's own title stays before its picture's text).
        elements = sorted([*elements, *extra], key=lambda e: e.page or 0)
        warnings = tuple(warned)
    if suffix in {".eml", ".msg"}:
        header = _email_header(raw)
        if header is not None:
            elements.insert(0, header)
    if not any(e.text.strip() or e.html for e in elements):
        if suffix in {".eml", ".msg"}:
            # unstructured returns nothing at all for an encrypted message.
            raise IngestError(
                f"{path.name}: no text found (an empty or encrypted message). Save a "
                "decrypted copy of the message and add that."
            )
        raise IngestError(
            f"{path.name}: no text found (empty, or a scan without a text layer). "
            "Export it with text, or parse it with OCR (ingest.pdf_strategy: text, the "
            "default, reads scanned pages with Tesseract)."
        )
    pages = max((e.page or 0 for e in elements), default=0) or 1
    return ParsedDocument(
        title=_title(path, raw, elements),
        elements=elements,
        pages=pages,
        warnings=warnings,
        ocr_pages=ocr_pages,
    )


def _office_pictures(path: Path, ocr: OcrOptions) -> tuple[list[Element], list[str], int]:
    from ingest.office_images import picture_elements
    from ingest.pdf_text import MIN_LAYER_CHARS

    try:
        return picture_elements(path, ocr, MIN_LAYER_CHARS)
    except OcrUnavailableError as exc:
        raise OcrUnavailableError(f"{path.name}: {exc.message}") from exc


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


def _parse_pdf_text(path: Path, ocr: OcrOptions | None, *, ocr_all: bool) -> ParsedDocument:
    from ingest.pdf_text import pdf_elements

    try:
        read = pdf_elements(path, ocr, ocr_all=ocr_all)
    except OcrUnavailableError as exc:
        raise OcrUnavailableError(f"{path.name}: {exc.message}") from exc
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(
            f"{path.name}: could not be parsed as .pdf ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Check that it opens in a PDF reader, export it again, and "
            "add it again."
        ) from exc
    if not any(e.text.strip() for e in read.elements):
        raise IngestError(
            f"{path.name}: no text found"
            + (f" ({'; '.join(read.warnings)})" if read.warnings else "")
            + ". Export it with a text layer, or rescan it straight at 300 dpi."
        )
    return ParsedDocument(
        title=_title(path, [], read.elements),
        elements=read.elements,
        pages=read.pages,
        warnings=tuple(read.warnings),
        ocr_pages=read.ocr_pages,
    )


def _parse_image(path: Path, ocr: OcrOptions | None) -> ParsedDocument:
    """An image file (a screenshot, a scanned page; a TIFF may hold several pages): OCR."""
    from ingest.layout import page_elements
    from ingest.ocr import accept, image_frames, read_pages

    if ocr is None or not ocr.enabled:
        raise IngestError(
            f"{path.name}: images are read with OCR, which is turned off "
            "(ingest.ocr.enabled: false). Turn it on to index images."
        )
    frames = image_frames(path, path.name)
    try:
        read = read_pages(path, ocr, frames=frames)
    except IngestError as exc:
        raise type(exc)(f"{path.name}: {exc.message.rstrip('.')}.") from exc
    pages: list[list[str]] = [[] for _ in range(max([frames] + [p.number for p in read]))]
    confidence: dict[int, float] = {}
    warnings: list[str] = []
    for page in read:
        if accept(page, f"page {page.number}", ocr, warnings):
            pages[page.number - 1] = page.lines
            confidence[page.number] = page.confidence
    elements = page_elements(pages, confidence)
    if not elements:
        why = "; ".join(warnings) or "OCR found no words in it: a photo or a diagram?"
        raise IngestError(f"{path.name}: no text found ({why}). Nothing was indexed.")
    return ParsedDocument(
        title=_title(path, [], elements),
        elements=elements,
        pages=len(pages),
        warnings=tuple(warnings),
        ocr_pages=len(read),
    )
