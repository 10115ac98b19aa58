"""Lines of text per page (a PDF's text layer, or what OCR read) into paragraphs and
headings, with no vendor library: shared by ``ingest/pdf_text.py`` and image OCR.

Lines are joined into paragraphs (a short line ends one, and so does an empty line: OCR's
paragraph break), running headers and footers (the same first/last lines on most pages,
digits ignored) and bare page numbers are dropped, and short unpunctuated lines that start
a block become headings, so chunks still follow the document's sections.
"""

from __future__ import annotations

import re
from collections import Counter

from ingest.ocr import join_text
from ingest.parse import Element, looks_like_heading

_PAGE_NUMBER = re.compile(r"^(page\s*)?\d+(\s*(/|of)\s*\d+)?$", re.IGNORECASE)
_NUMBERED = re.compile(r"^\d+(\.\d+)*\.?\s+\S")
_END = (".", "。", "!", "！", "?", "？", ":", "：", ";", "；", ",", "，")


def _running_lines(pages: list[list[str]]) -> set[str]:
    if len(pages) < 2:
        return set()
    seen: Counter[str] = Counter()
    for page in pages:
        lines = [ln for ln in page if ln]
        seen.update({re.sub(r"\d+", "#", ln) for ln in lines[:2] + lines[-2:]})
    need = max(2, (len(pages) + 1) // 2)
    return {ln for ln, n in seen.items() if n >= need}


def page_elements(
    pages: list[list[str]], ocr_confidence: dict[int, float] | None = None
) -> list[Element]:
    """Elements of pages numbered from 1; ``ocr_confidence`` marks the pages OCR read."""
    confidence = ocr_confidence or {}
    running = _running_lines(pages)
    elements: list[Element] = []
    for number, page in enumerate(pages, start=1):
        elements += _page(page, number, confidence.get(number), running)
    return elements


def _page(page: list[str], number: int, conf: float | None, running: set[str]) -> list[Element]:
    texts = [ln for ln in page if ln]
    edge = set(texts[:2] + texts[-2:])
    kept = [
        ln
        for ln in page
        if not ln
        or (not _PAGE_NUMBER.match(ln) and not (ln in edge and re.sub(r"\d+", "#", ln) in running))
    ]
    if "" in kept:
        return _ocr_paragraphs(kept, number, conf)
    width = max((len(ln) for ln in kept), default=0)
    elements: list[Element] = []
    paragraph = ""
    for i, line in enumerate([*kept, ""]):  # the last "" ends the last paragraph
        if not line:
            if paragraph:
                elements.append(Element("text", paragraph, number, ocr_confidence=conf))
            paragraph = ""
            continue
        has_more = i + 1 < len(kept) and bool(kept[i + 1])
        if (
            (not paragraph or _NUMBERED.match(line))
            and has_more
            and len(line) < 80
            and not line.endswith(_END)
            and looks_like_heading(line)
        ):
            if paragraph:
                elements.append(Element("text", paragraph, number, ocr_confidence=conf))
            paragraph = ""
            elements.append(Element("title", line, number, 0, ocr_confidence=conf))
            continue
        paragraph = join_text(paragraph, line)
        if len(line) < 0.75 * width or not has_more:
            elements.append(Element("text", paragraph, number, ocr_confidence=conf))
            paragraph = ""
    return elements


def _ocr_paragraphs(lines: list[str], number: int, conf: float | None) -> list[Element]:
    """OCR's own paragraphs (``""`` between them). A paragraph of one short line without a
    sentence end is a heading when a paragraph of several lines follows it; runs of one-line
    paragraphs are table rows or a list, and stay text."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    paragraphs = [p for p in paragraphs if p]
    elements: list[Element] = []
    for i, paragraph in enumerate(paragraphs):
        following = paragraphs[i + 1] if i + 1 < len(paragraphs) else []
        line = paragraph[0]
        if (
            len(paragraph) == 1
            and len(following) > 1
            and len(line) < 80
            and not line.endswith(_END)
            and looks_like_heading(line)
        ):
            elements.append(Element("title", line, number, 0, ocr_confidence=conf))
            continue
        text = ""
        for piece in paragraph:
            text = join_text(text, piece)
        elements.append(Element("text", text, number, ocr_confidence=conf))
    return elements
