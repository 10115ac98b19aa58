"""Pictures inside PPTX slides and DOCX documents, OCRed when they hold the only text (a
slide that is one screenshot, a scanned form pasted into Word). Read with the standard
library from the zip package: a slide's pictures through its relationships file, a Word
document's in the order its body refers to them. No vendor library; the file has already
passed ``ingest/guard.py``'s zip checks.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

from ingest.ocr import (
    OcrOptions,
    OcrUnavailableError,
    accept,
    image_frames,
    read_pages,
)
from ingest.parse import Element
from rag.errors import IngestError

_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_IMAGE_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"
_EMBED = re.compile(rb'r:(?:embed|id)="([^"]+)"')
_TEXT = re.compile(rb"<(?:a|w):t(?:\s[^>]*)?>([^<]*)</(?:a|w):t>")
_SLIDE_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide"
_SLIDE_ID = re.compile(rb"<p:sldId\s[^>]*r:id=\"([^\"]+)\"")
_OCR_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif", ".bmp")
MAX_PICTURE_BYTES = 20_000_000


def _relationships(package: zipfile.ZipFile, part: str, kind: str) -> dict[str, str]:
    """A part's internal relationships of one type: id -> the target's part name."""
    folder, name = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", name + ".rels")
    try:
        root = ElementTree.fromstring(package.read(rels))
    except (KeyError, ElementTree.ParseError):
        return {}
    found = {}
    for rel in root.iter(_REL):
        if rel.get("Type") == kind and rel.get("TargetMode") != "External":
            target = posixpath.normpath(posixpath.join(folder, rel.get("Target", "")))
            found[rel.get("Id", "")] = target
    return found


def _pictures(package: zipfile.ZipFile, part: str) -> list[bytes]:
    """The pictures a part shows, in the order it refers to them (each once)."""
    body = package.read(part)
    targets = _relationships(package, part, _IMAGE_TYPE)
    seen: set[str] = set()
    pictures = []
    for match in _EMBED.finditer(body):
        target = targets.get(match.group(1).decode("ascii", "replace"))
        if target is None or target in seen or not target.lower().endswith(_OCR_SUFFIXES):
            continue
        seen.add(target)
        try:
            info = package.getinfo(target)
        except KeyError:
            continue
        if info.file_size <= MAX_PICTURE_BYTES:
            pictures.append(package.read(target))
    return pictures


def _text_chars(body: bytes) -> int:
    return sum(len(m.group(1).strip()) for m in _TEXT.finditer(body))


def slides_to_read(path: Path, min_chars: int) -> dict[int, list[bytes]]:
    """PPTX: the pictures of each slide (numbered in presentation order, as the slide
    numbers of citations are) whose own text is shorter than ``min_chars``."""
    found: dict[int, list[bytes]] = {}
    with zipfile.ZipFile(path) as package:
        presentation = "ppt/presentation.xml"
        slides = _relationships(package, presentation, _SLIDE_TYPE)
        order = [
            m.group(1).decode("ascii", "replace")
            for m in _SLIDE_ID.finditer(package.read(presentation))
        ]
        for number, rel_id in enumerate(order, start=1):
            part = slides.get(rel_id)
            if part is None or part not in package.namelist():
                continue
            if _text_chars(package.read(part)) >= min_chars:
                continue
            pictures = _pictures(package, part)
            if pictures:
                found[number] = pictures
    return found


def document_pictures(path: Path, min_chars: int) -> list[bytes]:
    """DOCX: the body's pictures when the document's own text is shorter than ``min_chars``."""
    with zipfile.ZipFile(path) as package:
        body = package.read("word/document.xml")
        if _text_chars(body) >= min_chars:
            return []
        return _pictures(package, "word/document.xml")


def picture_elements(
    path: Path, ocr: OcrOptions, min_chars: int
) -> tuple[list[Element], list[str], int]:
    """OCR of the pictures that hold a PPTX slide's or a DOCX document's only text: the
    elements (slide numbers kept), what was left out, and how many pictures were read."""
    from ingest.layout import page_elements

    if path.suffix.lower() == ".pptx":
        by_slide = slides_to_read(path, min_chars)
    else:
        pictures = document_pictures(path, min_chars)
        by_slide = {1: pictures} if pictures else {}
    if not by_slide:
        return [], [], 0
    pages: list[list[str]] = [[] for _ in range(max(by_slide))]
    confidence: dict[int, float] = {}
    warnings: list[str] = []
    read_count = 0
    for number, pictures in by_slide.items():
        where = f"slide {number}" if path.suffix.lower() == ".pptx" else "picture"
        lines: list[str] = []
        scores: list[float] = []
        for picture in pictures:
            try:
                image_frames(picture, f"{path.name}: {where}")
                read = read_pages(picture, ocr)
            except OcrUnavailableError:
                raise
            except IngestError as exc:
                warnings.append(f"{where}: a picture was not read ({exc.message})")
                continue
            read_count += 1
            for page in read:
                if accept(page, where, ocr, warnings):
                    lines += [*([""] if lines else []), *page.lines]
                    scores.append(page.confidence)
        if lines:
            pages[number - 1] = lines
            confidence[number] = min(scores)
    elements = page_elements(pages, confidence)
    if path.suffix.lower() != ".pptx":
        elements = [replace(e, page=None) for e in elements]
    return elements, warnings, read_count
