"""Cut parsed elements into chunks that follow the document's structure.

- Headings open sections; each chunk records its heading path (``Leave > Parental leave``).
- Prose of a section is packed up to ``chunk_tokens`` embedding-model tokens and split with
  langchain-text-splitters (paragraph, line, sentence, CJK sentence, word) when longer.
- Tables stay tables: rendered as Markdown with their header row; a large table is split by
  rows with the header repeated, never inside a row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.parse import ParsedDocument
from rag.types import Chunk

CountTokens = Callable[[str], int]
_SEPARATORS = ["\n\n", "\n", "。", "！", "？", ". ", "; ", "；", "，", ", ", " ", ""]


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.header_rows = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._row_is_header = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._row, self._row_is_header = [], False
        elif tag in {"td", "th"} and self._row is not None:
            self._cell = []
            self._row_is_header = self._row_is_header or tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if any(self._row):
                if self._row_is_header and len(self.rows) == self.header_rows:
                    self.header_rows += 1
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    """The table's rows as lists of cell texts; the first row is the header."""
    parser = _TableParser()
    parser.feed(html)
    parser.close()
    return parser.rows


def _md_row(cells: list[str], width: int) -> str:
    padded = cells + [""] * (width - len(cells))
    return "| " + " | ".join(c.replace("|", "\\|") for c in padded) + " |"


def table_to_markdown_parts(html: str, count_tokens: CountTokens, limit: int) -> list[str]:
    """Render a table as Markdown, split by rows so each part fits ``limit`` with the header."""
    rows = table_rows(html)
    if not rows:
        return []
    width = max(len(r) for r in rows)
    header = _md_row(rows[0], width) + "\n" + _md_row(["---"] * width, width)
    parts: list[str] = []
    current: list[str] = []
    used = count_tokens(header)
    for row in rows[1:]:
        line = _md_row(row, width)
        cost = count_tokens(line) + 1
        if current and used + cost > limit:
            parts.append(header + "\n" + "\n".join(current))
            current, used = [], count_tokens(header)
        current.append(line)
        used += cost
    if current or not parts:
        parts.append(header + ("\n" + "\n".join(current) if current else ""))
    return parts


@dataclass
class _Section:
    path: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    page: int | None = None
    ocr: float | None = None
    """The lowest OCR confidence of the texts gathered (None: none came from OCR)."""

    def read(self, confidence: float | None) -> None:
        if confidence is not None:
            self.ocr = confidence if self.ocr is None else min(self.ocr, confidence)


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Chunk texts with their section path and page, before ids are attached."""

    text: str
    section: str
    page: int | None
    sheet: str = ""
    ocr_confidence: float | None = None


def plan_chunks(
    doc: ParsedDocument, count_tokens: CountTokens, chunk_tokens: int, overlap: int
) -> list[ChunkPlan]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=min(overlap, chunk_tokens // 2),
        length_function=count_tokens,
        separators=_SEPARATORS,
        keep_separator="end",
    )
    plans: list[ChunkPlan] = []
    headings: list[str] = []
    section = _Section()

    def flush() -> None:
        text = "\n\n".join(t for t in section.texts if t.strip())
        if text.strip():
            label = " > ".join(section.path)
            pieces = [text] if count_tokens(text) <= chunk_tokens else splitter.split_text(text)
            plans.extend(
                ChunkPlan(p.strip(), label, section.page, ocr_confidence=section.ocr)
                for p in pieces
                if p.strip()
            )
        section.texts, section.page, section.ocr = [], None, None

    for element in doc.elements:
        if element.kind == "title":
            flush()
            depth = max(0, min(element.depth, len(headings)))
            headings[depth:] = [element.text]
            section.path = list(headings)
            continue
        if (
            section.texts
            and element.page != section.page
            and (element.ocr_confidence is not None or section.ocr is not None)
        ):
            flush()  # a scanned page is its own chunk: citations name the page it is on
        if section.page is None:
            section.page = element.page
        if element.kind == "table":
            flush()
            section.page = element.page
            parts = (
                table_to_markdown_parts(element.html, count_tokens, chunk_tokens)
                if element.html
                else [element.text]
            )
            label = " > ".join(section.path)
            plans.extend(
                ChunkPlan(p, label, element.page, element.sheet, element.ocr_confidence)
                for p in parts
                if p.strip()
            )
            section.page = None
            continue
        section.texts.append(element.text)
        section.read(element.ocr_confidence)
        if count_tokens("\n\n".join(section.texts)) >= chunk_tokens:
            flush()
    flush()
    return plans


def detect_language(text: str) -> str:
    """``zh`` when CJK ideographs make up a fifth of the letters, ``en`` for Latin text,
    ``und`` otherwise; a cheap guess, good enough to pick a keyword tokenizer."""
    cjk = latin = 0
    for ch in text:
        if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff":
            cjk += 1
        elif ch.isascii() and ch.isalpha():
            latin += 1
    if cjk and cjk * 5 >= cjk + latin // 4:
        return "zh"
    if latin:
        return "en"
    return "und"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_chunks(
    plans: Iterable[ChunkPlan],
    *,
    doc_id: str,
    id_prefix: str,
    source: str,
    title: str,
    groups: tuple[str, ...],
    ingested_at: str = "",
    url: str = "",
    parent: str = "",
) -> list[Chunk]:
    return [
        Chunk(
            chunk_id=f"{id_prefix}:{i}",
            doc_id=doc_id,
            text=plan.text,
            source=source,
            title=title,
            section=plan.section,
            page=plan.page,
            sheet=plan.sheet,
            ocr_confidence=plan.ocr_confidence,
            index=i,
            groups=groups,
            content_hash=content_hash(plan.text),
            language=detect_language(plan.text),
            ingested_at=ingested_at,
            url=url,
            parent=parent,
        )
        for i, plan in enumerate(plans)
    ]
