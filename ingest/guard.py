"""Cheap checks on a file's bytes before a parser sees it: hostile or broken input gets one
clear line saying what is wrong and what to do, instead of a parser's stack trace, a hang
or a memory blow-up.

- office files (DOCX, PPTX, XLSX) must be zip archives with their main part, and the sizes
  their zip directory declares must stay under a limit and a compression ratio (zip bombs);
- PDFs must start with ``%PDF-`` and end with ``%%EOF`` (truncated downloads), and an
  encrypted PDF must open with an empty password;
- text formats must be valid UTF-8 (or carry a UTF-16 byte-order mark) and hold no NUL
  bytes (a binary file with a ``.txt`` name);
- Outlook ``.msg`` files must be whole OLE compound files holding a message (a cut-short
  copy otherwise reads as an empty or partial message without any error).
"""

from __future__ import annotations

import mmap
import zipfile
from pathlib import Path

from rag.errors import IngestError

_OFFICE_MAIN_PART = {
    ".docx": ("word/document.xml", "Word"),
    ".pptx": ("ppt/presentation.xml", "PowerPoint"),
    ".xlsx": ("xl/workbook.xml", "Excel"),
}
_UTF8_TEXT = frozenset({".txt", ".md", ".markdown", ".csv", ".html", ".htm"})
_MB = 1_000_000


def shown(path: Path | str) -> str:
    """A path safe to print on one line: control characters (newlines...) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


def check_file(path: Path, *, max_unzipped_mb: float, max_zip_ratio: float) -> None:
    """Raise :class:`IngestError` when the file cannot be parsed safely."""
    suffix = path.suffix.lower()
    if suffix in _OFFICE_MAIN_PART:
        _check_office(path, suffix, max_unzipped_mb, max_zip_ratio)
    elif suffix == ".pdf":
        _check_pdf(path)
    elif suffix in _UTF8_TEXT:
        _check_text(path, require_utf8=True)
    elif suffix == ".eml":
        _check_text(path, require_utf8=False)
    elif suffix == ".msg":
        _check_msg(path)


def _check_office(path: Path, suffix: str, max_mb: float, max_ratio: float) -> None:
    part, app = _OFFICE_MAIN_PART[suffix]
    name = shown(path.name)
    if not zipfile.is_zipfile(path):
        raise IngestError(
            f"{name}: not a valid {suffix} file (it is not a zip archive; perhaps an old "
            f"binary format renamed, or a damaged copy). Open it in {app} and save it as "
            f"{suffix}, then add it again."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IngestError(
            f"{name}: damaged {suffix} archive ({exc}). Re-save it from {app} and add it again."
        ) from exc
    declared = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if declared > max_mb * _MB:
        raise IngestError(
            f"{name}: expands to {declared / _MB:,.0f} MB when unpacked (limit "
            f"{max_mb:g} MB); refused as a possible zip bomb. If it is genuine, split it or "
            "raise ingest.max_unzipped_mb."
        )
    if declared > 10 * _MB and declared > max_ratio * max(packed, 1):
        raise IngestError(
            f"{name}: compressed {declared / max(packed, 1):,.0f}:1 (limit {max_ratio:g}:1); "
            "refused as a possible zip bomb. If it is genuine, raise ingest.max_zip_ratio."
        )
    if part not in {i.filename for i in infos}:
        raise IngestError(
            f"{name}: a zip archive but not a {app} document (no {part}). Check the file "
            "type, or save it again from its application."
        )


def _check_pdf(path: Path) -> None:
    name = shown(path.name)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m.find(b"%PDF-", 0, 1024) < 0:
            raise IngestError(
                f"{name}: not a PDF (no %PDF header). Check the file type, or export it to "
                "PDF again."
            )
        if m.rfind(b"%%EOF", max(0, len(m) - 4096)) < 0:
            raise IngestError(
                f"{name}: truncated or damaged PDF (no end-of-file marker). Download or "
                "export it again, then add it again."
            )
        encrypted = m.find(b"/Encrypt") >= 0
    if encrypted:
        _check_pdf_password(path)


def _check_pdf_password(path: Path) -> None:
    from pypdf import PdfReader

    name = shown(path.name)
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(
                f"{name}: the PDF is password-protected. Save a copy without the password "
                "(or with permissions only) and add that."
            )
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(
            f"{name}: encrypted PDF that cannot be opened ({type(exc).__name__}). Save a "
            "copy without encryption and add that."
        ) from exc


_OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


def _check_msg(path: Path) -> None:
    from ingest.mail import msg_problem

    resave = (
        "Save the message from Outlook again (File > Save As > Outlook Message Format), or "
        "as .eml, and add it again."
    )
    with path.open("rb") as handle:
        head = handle.read(8)
    if head != _OLE_MAGIC:
        raise IngestError(f"{shown(path.name)}: not an Outlook .msg file (no OLE header). {resave}")
    problem = msg_problem(path)
    if problem is not None:
        raise IngestError(f"{shown(path.name)}: {problem}. {resave}")


def _check_text(path: Path, *, require_utf8: bool) -> None:
    name = shown(path.name)
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise IngestError(
                f"{name}: damaged UTF-16 text at byte {exc.start}. Save it again as UTF-8."
            ) from exc
        return
    if b"\x00" in data[:8192]:
        raise IngestError(
            f"{name}: binary data, not text (NUL bytes), despite its {path.suffix} name. "
            "Check what the file really is and give it the right extension."
        )
    if not require_utf8:
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{name}: not valid UTF-8 text (bad byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}). Convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8 (or GB18030 for "
            "Chinese), then add it again."
        ) from exc
