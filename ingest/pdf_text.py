"""PDF text layer with pypdfium2 (the only importer of it): ``ingest.pdf_strategy: text``,
and pages rendered for OCR.

Several times cheaper than ``unstructured``'s ``fast`` strategy for the same text (which
has no table inference either). A page whose text layer holds fewer than
:data:`MIN_LAYER_CHARS` characters (a scan, or a photo of a page) is rendered in grey at
``ingest.ocr.dpi`` and read by Tesseract (``ingest/ocr.py``): a mixed document OCRs only
the pages that need it; ``pdf_strategy: ocr_only`` OCRs every page. Lines become
paragraphs and headings in ``ingest/layout.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ingest.layout import page_elements
from ingest.ocr import MAX_PIXELS, OcrOptions, OcrPageError, accept, read_pages
from ingest.parse import Element
from rag.errors import IngestError

MIN_LAYER_CHARS = 20
"""Fewer non-space characters than this on a page: no usable text layer (OCR it)."""


@dataclass
class PdfText:
    elements: list[Element]
    pages: int
    warnings: list[str] = field(default_factory=list)
    ocr_pages: int = 0


def _lines(text: str) -> list[str]:
    lines = (ln.strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return [ln for ln in lines if ln]


def _render(page: object, dpi: int) -> tuple[bytes, int]:
    """The page as a grey PNM image (what Tesseract reads from stdin) and its resolution."""
    width_pt, height_pt = page.get_size()  # type: ignore[attr-defined]
    scale = dpi / 72
    if width_pt * height_pt * scale * scale > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / max(width_pt * height_pt, 1.0))
    bitmap = page.render(scale=scale, grayscale=True)  # type: ignore[attr-defined]
    pixels = bitmap.to_numpy()
    height, width = pixels.shape[:2]
    header = f"P5\n{width} {height}\n255\n".encode("ascii")
    return header + pixels.reshape(height, width).tobytes(), max(1, round(scale * 72))


def _ocr_page(
    page: object,
    number: int,
    ocr: OcrOptions,
    pages: list[list[str]],
    confidence: dict[int, float],
    warnings: list[str],
) -> None:
    image, dpi = _render(page, ocr.dpi)
    try:
        read = read_pages(image, ocr, dpi=dpi)
    except OcrPageError as exc:
        warnings.append(f"page {number}: {exc.message}; not indexed.")
        return
    if read and accept(read[0], f"page {number}", ocr, warnings):
        pages[number - 1] = read[0].lines
        confidence[number] = read[0].confidence


def pdf_elements(path: Path, ocr: OcrOptions | None = None, *, ocr_all: bool = False) -> PdfText:
    """The PDF's paragraphs and headings with their page numbers, the page count, and what
    was left out. ``ocr``: read pages without a text layer (every page with ``ocr_all``)."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise IngestError(
            f"{path.name}: the PDF cannot be opened ({exc}). If it is password-protected, "
            "save a copy without the password; otherwise export it to PDF again."
        ) from exc
    pages: list[list[str]] = []
    confidence: dict[int, float] = {}
    warnings: list[str] = []
    unread: list[int] = []
    ocr_pages = 0
    try:
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                lines = _lines(textpage.get_text_range())
                textpage.close()
                pages.append(lines)
                usable = sum(len(ln.replace(" ", "")) for ln in lines) >= MIN_LAYER_CHARS
                if usable and not ocr_all:
                    continue
                if ocr is None or not ocr.enabled:
                    unread.append(index + 1)
                    continue
                _ocr_page(page, index + 1, ocr, pages, confidence, warnings)
                ocr_pages += 1
            finally:
                page.close()
    finally:
        document.close()
    if unread:
        warnings.append(
            f"{_page_list(unread)} no text layer; not read (ingest.ocr.enabled is false). "
            "Turn OCR on to index scanned pages."
        )
    return PdfText(page_elements(pages, confidence), len(pages), warnings, ocr_pages)


def _page_list(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"page {numbers[0]} has"
    shown = ", ".join(str(n) for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")
    return f"pages {shown} have"
