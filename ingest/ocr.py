"""OCR with Tesseract (the ``tesseract`` program from Debian's ``tesseract-ocr``), for PDF
pages without a usable text layer and for image files (PNG, JPEG, TIFF, WebP).

The program runs once per page (a TIFF: once per file, all its frames) as a subprocess with
a time limit and one thread (the parse pool runs files in parallel); it writes its
tab-separated output (``tsv``): words with their confidences, grouped by Tesseract into
blocks, paragraphs and lines. A page's confidence is the mean word confidence weighted by
characters (0-100). Pillow (the only other vendor library here) reads image headers only:
the size and frame count are checked before Tesseract decodes anything.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import IngestError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"})
MAX_PIXELS = 100_000_000
"""A page or image larger than this (an A4 page at 1,000 dpi) is refused or rendered
smaller: Tesseract's memory grows with the pixel count."""

_PACKAGES = {"eng": "tesseract-ocr-eng", "chi_sim": "tesseract-ocr-chi-sim"}


class OcrUnavailableError(IngestError):
    """Tesseract, or one of its language packs, is not installed."""

    code = "ocr_unavailable"


class OcrPageError(IngestError):
    """One page could not be read (too slow, or Tesseract failed on it)."""

    code = "ocr_failed"


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """What ``ingest.ocr`` configures, in a picklable form for the parse workers."""

    enabled: bool = True
    languages: str = "chi_sim+eng"
    dpi: int = 300
    min_confidence: float = 60.0
    page_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class OcrPage:
    """The text Tesseract read on one page: lines, with ``""`` between paragraphs."""

    number: int
    lines: list[str] = field(default_factory=list)
    confidence: float = 0.0
    words: int = 0


def install_hint(languages: str = "chi_sim+eng") -> str:
    packages = ["tesseract-ocr"] + [
        _PACKAGES.get(lang, "tesseract-ocr-" + lang.replace("_", "-").lower())
        for lang in languages.split("+")
        if lang
    ]
    return "sudo apt-get install -y " + " ".join(packages)


@functools.cache
def _installed_languages(binary: str) -> frozenset[str]:
    try:
        out = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def tesseract(languages: str) -> str:
    """The path of the ``tesseract`` program, once its language packs are known to be there."""
    binary = shutil.which("tesseract")
    if binary is None:
        raise OcrUnavailableError(
            "OCR needs Tesseract, which is not installed on this machine. Install it with "
            f"`{install_hint(languages)}` (`make setup` does this when run as root), or set "
            "ingest.ocr.enabled: false to skip pages without text."
        )
    installed = _installed_languages(binary)
    missing = [lang for lang in languages.split("+") if lang and lang not in installed]
    if missing:
        raise OcrUnavailableError(
            f"OCR language data {', '.join(missing)} is not installed for Tesseract. Install "
            f"it with `{install_hint('+'.join(missing))}`, or change ingest.ocr.languages."
        )
    return binary


def accept(page: OcrPage, where: str, ocr: OcrOptions, warnings: list[str]) -> bool:
    """Whether what OCR read on a page is indexed: blank pages are skipped, pages under the
    confidence floor are reported in ``warnings`` and left out."""
    if not page.words:
        return False  # a blank page (a separator sheet)
    if page.confidence < ocr.min_confidence:
        warnings.append(
            f"{where}: OCR confidence {page.confidence:.0f} is under "
            f"ingest.ocr.min_confidence ({ocr.min_confidence:g}); not indexed. A straight, "
            "clean 300 dpi scan reads better."
        )
        return False
    return True


def image_frames(source: Path | bytes, name: str) -> int:
    """How many pages an image holds (a TIFF may hold several); refuses images that are not
    readable or are too large to OCR safely, before anything is decoded."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            frames = int(getattr(image, "n_frames", 1))
    except Image.DecompressionBombError:
        width = height = MAX_PIXELS  # over the limit below
        frames = 1
    except Exception as exc:
        raise IngestError(
            f"{name}: not a readable image ({type(exc).__name__}). Check that it opens "
            "in an image viewer, save it again as PNG, JPEG, TIFF or WebP, and add it again."
        ) from exc
    if width * height > MAX_PIXELS:
        raise IngestError(
            f"{name}: the image is {width:,} x {height:,} pixels, more than OCR reads "
            f"safely ({MAX_PIXELS // 1_000_000} megapixels). Scan or export it at 300 dpi "
            "and add it again."
        )
    return max(1, frames)


def read_pages(
    source: Path | bytes, options: OcrOptions, *, frames: int = 1, dpi: int | None = None
) -> list[OcrPage]:
    """OCR an image file (all its frames) or one rendered page (PNM bytes)."""
    binary = tesseract(options.languages)
    # An absolute path: a file named "-l.png" is never read as an option.
    command = [binary, "stdin" if isinstance(source, bytes) else str(source.resolve()), "stdout"]
    command += ["-l", options.languages, "--psm", "3"]
    if dpi is not None:
        command += ["--dpi", str(dpi)]
    command.append("tsv")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OMP_THREAD_LIMIT": "1",  # the parse pool is the parallelism
        "LC_ALL": "C.UTF-8",
    }
    if os.environ.get("TESSDATA_PREFIX"):
        env["TESSDATA_PREFIX"] = os.environ["TESSDATA_PREFIX"]
    limit = options.page_timeout_s * frames
    try:
        done = subprocess.run(
            command,
            input=source if isinstance(source, bytes) else None,
            capture_output=True,
            timeout=limit,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrPageError(
            f"OCR took longer than {limit:g} s (ingest.ocr.page_timeout_s per page)"
        ) from exc
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrPageError(f"Tesseract failed ({why[-1][:160] if why else done.returncode})")
    return parse_tsv(done.stdout.decode("utf-8", "replace"))


def _cjk(ch: str) -> bool:
    return (
        "\u3400" <= ch <= "\u9fff"
        or "\uf900" <= ch <= "\ufaff"
        or "\u3000" <= ch <= "\u303f"
        or "\uff00" <= ch <= "\uffef"
    )


def join_text(left: str, right: str) -> str:
    """Join two pieces of running text: no space between Chinese characters (Tesseract and
    PDF line breaks both split them), one space otherwise."""
    if not left:
        return right
    if not right:
        return left
    if _cjk(left[-1]) and _cjk(right[0]):
        return left + right
    return left + " " + right


@dataclass
class _Line:
    """One line Tesseract found: its words joined, where it is, and what it belongs to."""

    key: tuple[int, int, int]
    """(block, paragraph, line) in Tesseract's numbering."""
    text: str
    left: int
    top: int
    right: int
    bottom: int

    def add(self, text: str, left: int, top: int, right: int, bottom: int) -> None:
        self.text = join_text(self.text, text)
        self.left, self.top = min(self.left, left), min(self.top, top)
        self.right, self.bottom = max(self.right, right), max(self.bottom, bottom)

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass
class _Reading:
    lines: list[_Line] = field(default_factory=list)
    weighted: float = 0.0
    chars: int = 0
    words: int = 0


def parse_tsv(tsv: str) -> list[OcrPage]:
    """Tesseract's ``tsv`` output as pages of lines (``""`` between paragraphs)."""
    pages: dict[int, _Reading] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] not in {"1", "5"}:
            continue
        page = pages.setdefault(int(cols[1]), _Reading())  # level 1: a page, maybe blank
        text = "\t".join(cols[11:]).strip()
        conf = float(cols[10])
        if cols[0] == "1" or not text or conf < 0:
            continue
        key = (int(cols[2]), int(cols[3]), int(cols[4]))  # block, paragraph, line
        left, top, width, height = (int(c) for c in cols[6:10])
        if page.lines and page.lines[-1].key == key:
            page.lines[-1].add(text, left, top, left + width, top + height)
        else:
            page.lines.append(_Line(key, text, left, top, left + width, top + height))
        page.weighted += conf * len(text)
        page.chars += len(text)
        page.words += 1
    return [
        OcrPage(
            number,
            _paragraphs(_table_rows(r.lines)),
            r.weighted / r.chars if r.chars else 0.0,
            r.words,
        )
        for number, r in sorted(pages.items())
    ]


def _table_rows(lines: list[_Line]) -> list[_Line]:
    """Put table rows back together. Tesseract often reads a table column by column (each
    column a block), which separates a value from its row. Lines of different blocks at the
    same height, side by side and covering well under the width they span (cells, not two
    columns of running text), become one line, placed where the row's first cell was."""
    rows: list[list[_Line]] = []
    placed: dict[int, int] = {}
    for i, line in enumerate(lines):
        for r, row in enumerate(rows):
            first = row[0]
            height = min(line.bottom - line.top, first.bottom - first.top)
            if (
                all(other.key[0] != line.key[0] for other in row)
                and abs(line.middle - first.middle) <= height / 2
                and all(line.right < o.left or line.left > o.right for o in row)
            ):
                row.append(line)
                placed[i] = r
                break
        else:
            placed[i] = len(rows)
            rows.append([line])
    result: list[_Line] = []
    emitted: set[int] = set()
    for i, line in enumerate(lines):
        r = placed[i]
        row = rows[r]
        if len(row) == 1:
            result.append(line)
            continue
        span = max(o.right for o in row) - min(o.left for o in row)
        if sum(o.right - o.left for o in row) >= 0.7 * span:
            result.append(line)  # two columns of text side by side: keep their order
            continue
        if r in emitted:
            continue
        emitted.add(r)
        cells = sorted(row, key=lambda o: o.left)
        merged = _Line(
            (-1 - r, 0, 0),
            " ".join(o.text for o in cells),
            cells[0].left,
            min(o.top for o in cells),
            cells[-1].right,
            max(o.bottom for o in cells),
        )
        result.append(merged)
    return result


def _paragraphs(lines: list[_Line]) -> list[str]:
    """Line texts with ``""`` where a new paragraph (or a table row) starts."""
    out: list[str] = []
    previous: tuple[int, int, int] | None = None
    for line in lines:
        if previous is not None and (previous[:2] != line.key[:2] or line.key[0] < 0):
            out.append("")
        out.append(line.text)
        previous = line.key
    return out
