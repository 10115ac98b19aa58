"""PDF text layer with pypdfium2 (the only importer of it): ``ingest.pdf_strategy: text``.

Several times cheaper than ``unstructured``'s ``fast`` strategy for the same text (which
has no table inference either). Lines are joined into paragraphs (a short line ends one),
running headers and footers (the same first/last lines on most pages, digits ignored) and
bare page numbers are dropped, and short unpunctuated lines that start a block become
headings, so chunks still follow the document's sections.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ingest.parse import Element, looks_like_heading
from rag.errors import IngestError

_PAGE_NUMBER = re.compile(r"^(page\s*)?\d+(\s*(/|of)\s*\d+)?$", re.IGNORECASE)
_NUMBERED = re.compile(r"^\d+(\.\d+)*\.?\s+\S")
_END = (".", "。", "!", "！", "?", "？", ":", "：", ";", "；", ",", "，")


def _page_lines(path: Path) -> list[list[str]]:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise IngestError(
            f"{path.name}: the PDF cannot be opened ({exc}). If it is password-protected, "
            "save a copy without the password; otherwise export it to PDF again."
        ) from exc
    pages: list[list[str]] = []
    try:
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            text = textpage.get_text_range()
            textpage.close()
            page.close()
            lines = (
                ln.strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            )
            pages.append([ln for ln in lines if ln])
    finally:
        document.close()
    return pages


def _running_lines(pages: list[list[str]]) -> set[str]:
    if len(pages) < 2:
        return set()
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({re.sub(r"\d+", "#", ln) for ln in lines[:2] + lines[-2:]})
    need = max(2, (len(pages) + 1) // 2)
    return {ln for ln, n in seen.items() if n >= need}


def pdf_elements(path: Path) -> tuple[list[Element], int]:
    """The PDF's paragraphs and headings with their page numbers, and the page count."""
    pages = _page_lines(path)
    running = _running_lines(pages)
    elements: list[Element] = []
    for number, lines in enumerate(pages, start=1):
        kept = [
            ln
            for i, ln in enumerate(lines)
            if not _PAGE_NUMBER.match(ln)
            and not ((i < 2 or i >= len(lines) - 2) and re.sub(r"\d+", "#", ln) in running)
        ]
        width = max((len(ln) for ln in kept), default=0)
        paragraph: list[str] = []
        for i, line in enumerate(kept):
            has_more = i + 1 < len(kept)
            if (
                (not paragraph or _NUMBERED.match(line))
                and has_more
                and len(line) < 80
                and not line.endswith(_END)
                and looks_like_heading(line)
            ):
                if paragraph:
                    elements.append(Element("text", " ".join(paragraph), number))
                    paragraph = []
                elements.append(Element("title", line, number, 0))
                continue
            paragraph.append(line)
            if len(line) < 0.75 * width or not has_more:
                elements.append(Element("text", " ".join(paragraph), number))
                paragraph = []
        if paragraph:
            elements.append(Element("text", " ".join(paragraph), number))
    return elements, len(pages)
