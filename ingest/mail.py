"""The attachments of an e-mail (``.eml`` with the standard library, Outlook ``.msg`` with
python-oxmsg: the only importer of it).

Each attachment comes back as a name and its bytes; the name is made safe (no folders, no
control characters, no leading dot) and unique within the message, and keeps a suffix the
pipeline can dispatch on. A forwarded message (``message/rfc822``) is an ``.eml``
attachment; its own attachments are not unpacked (one level only). Parts without a file
name that are only the body's inline images or alternatives are left out.
"""

from __future__ import annotations

import email
import email.message
import mimetypes
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path, PurePosixPath

MAIL_SUFFIXES = frozenset({".eml", ".msg"})
ATTACHMENT_MARK = "#attachment/"
_NAME_MAX = 120
_EXTRA_TYPES = {
    "message/rfc822": ".eml",
    "text/markdown": ".md",
    "text/csv": ".csv",
    "text/plain": ".txt",
    "text/html": ".html",
}


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    data: bytes


def attachments(path: Path) -> list[Attachment]:
    """The attachments of a message file (``.eml`` or ``.msg``), in message order."""
    raw = _msg_attachments(path) if path.suffix.lower() == ".msg" else _eml_attachments(path)
    named: list[Attachment] = []
    seen: set[str] = set()
    for index, (name, content_type, data) in enumerate(raw, start=1):
        safe = _unique(safe_name(name, index, content_type), seen)
        seen.add(safe.lower())
        named.append(Attachment(safe, data))
    return named


def _eml_attachments(path: Path) -> list[tuple[str, str, bytes]]:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    if not isinstance(message, EmailMessage):
        return []
    found: list[tuple[str, str, bytes]] = []
    for part in message.iter_attachments():
        content_type = part.get_content_type()
        name = part.get_filename() or ""
        if content_type == "message/rfc822":
            inner = part.get_payload()
            body = inner[0] if isinstance(inner, list) and inner else None
            if not isinstance(body, email.message.Message):
                continue
            data = body.as_bytes()
            name = name or str(body.get("Subject") or "message")
        else:
            if not name and part.get_content_disposition() != "attachment":
                continue  # an inline image or alternative of the body, not a document
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            data = payload
        found.append((name, content_type, data))
    return found


def _msg_attachments(path: Path) -> list[tuple[str, str, bytes]]:
    from oxmsg import Message

    message = Message.load(str(path))
    found: list[tuple[str, str, bytes]] = []
    for item in message.attachments:
        data = item.file_bytes
        if not data:
            continue  # an embedded message or OLE object, not a file
        found.append((item.file_name or "", item.mime_type or "", data))
    return found


def safe_name(name: str, index: int, content_type: str = "") -> str:
    """A plain file name for an attachment: the last path part, printable, no leading dot."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = "".join(c for c in base if c.isprintable()).strip().lstrip(".").strip()
    suffix = Path(base).suffix if base else ""
    if not suffix:
        guessed = _EXTRA_TYPES.get(content_type) or mimetypes.guess_extension(content_type or "")
        suffix = guessed or ""
        base = f"{base or f'attachment-{index}'}{suffix}"
    if len(base) > _NAME_MAX:
        base = base[: _NAME_MAX - len(suffix)] + suffix
    return base


def _unique(name: str, seen: set[str]) -> str:
    if name.lower() not in seen:
        return name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while f"{stem}-{n}{suffix}".lower() in seen:
        n += 1
    return f"{stem}-{n}{suffix}"


def attachment_key(parent: str, name: str) -> str:
    """The path-like key of an attachment: ``<parent path>#attachment/<name>``."""
    return f"{parent}{ATTACHMENT_MARK}{name}"
