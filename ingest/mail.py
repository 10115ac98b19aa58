"""The attachments of an e-mail (``.eml`` with the standard library, Outlook ``.msg`` with
python-oxmsg and the olefile it reads with: the only importer of both).

Each attachment comes back as a name and its bytes; the name is made safe (no folders, no
control characters, no leading dot) and unique within the message, and keeps a suffix the
pipeline can dispatch on. A forwarded message (``message/rfc822``, or an attached Outlook
item) is an ``.eml`` attachment; its own attachments are not unpacked (one level only).
Parts without a file name that are only the body's inline images or alternatives are left
out.
"""

from __future__ import annotations

import email
import email.message
import mimetypes
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oxmsg.storage import Storage

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
        if content_type == "message/rfc822" and not name.lower().endswith(".eml"):
            # Named after its subject ("Re: budget v2.1"): no folders, and parsed as e-mail.
            name = name.replace("/", "-").replace("\\", "-") + ".eml"
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
    import olefile
    from oxmsg.attachment import Attachment as OutlookAttachment
    from oxmsg.storage import Storage

    with olefile.OleFileIO(str(path)) as ole:
        root = Storage.from_ole(ole)
    found: list[tuple[str, str, bytes]] = []
    for storage in root.iter_attachment_storages():
        item = OutlookAttachment(storage)
        props = item.properties
        # Older clients write only the 8.3 name; the display name is the last resort.
        name = (
            item.file_name
            or props.str_prop_value(_PID_ATTACH_FILENAME)
            or props.str_prop_value(_PID_DISPLAY_NAME)
            or ""
        )
        inner = next((s for s in storage.storages if s.name == _EMBEDDED_MESSAGE), None)
        if inner is not None:  # an attached Outlook item: a message of its own
            subject, eml = _embedded_eml(inner)
            found.append((name or subject or "message", "message/rfc822", eml))
            continue
        data = item.file_bytes
        if not data:
            continue  # an OLE object or a link, not a file
        found.append((name, props.str_prop_value(_PID_ATTACH_MIME_TAG) or "", data))
    return found


def _embedded_eml(storage: Storage) -> tuple[str, bytes]:
    """An attached Outlook item as an ``.eml`` (headers and body; its own attachments are
    not unpacked, as for a forwarded ``.eml``) and its subject."""
    from oxmsg.properties import Properties
    from oxmsg.recipient import Recipient

    props = Properties(storage, properties_header_offset=_EMBEDDED_HEADER)
    subject = _one_line(props.str_prop_value(_PID_SUBJECT))
    sender = formataddr(
        (
            _one_line(props.str_prop_value(_PID_SENDER_NAME)),
            _one_line(props.str_prop_value(_PID_SENDER_EMAIL_ADDRESS)),
        )
    )
    to = ", ".join(
        formataddr((_one_line(r.name), _one_line(r.email_address)))
        for r in (Recipient(s) for s in storage.iter_recipient_storages())
    ) or _one_line(props.str_prop_value(_PID_DISPLAY_TO))
    sent = props.date_prop_value(_PID_CLIENT_SUBMIT_TIME)
    message = EmailMessage()
    for header, value in (("From", sender), ("To", to), ("Subject", subject)):
        if value.strip("<> "):
            try:
                message[header] = value
            except (ValueError, TypeError):  # an address the e-mail library cannot write
                continue
    if sent is not None:
        message["Date"] = format_datetime(sent)
    body = props.str_prop_value(_PID_BODY)
    html = props.binary_prop_value(_PID_HTML)
    if body is None and html:
        message.set_content(html.decode(props.body_encoding, errors="replace"), subtype="html")
    else:
        message.set_content(body or "")
    return subject, bytes(message)


def _one_line(value: str | None) -> str:
    return " ".join((value or "").split())


_PID_SUBJECT, _PID_CLIENT_SUBMIT_TIME, _PID_SENDER_NAME = 0x0037, 0x0039, 0x0C1A
_PID_SENDER_EMAIL_ADDRESS, _PID_DISPLAY_TO, _PID_BODY, _PID_HTML = 0x0C1F, 0x0E04, 0x1000, 0x1013
_PID_DISPLAY_NAME, _PID_ATTACH_FILENAME, _PID_ATTACH_MIME_TAG = 0x3001, 0x3704, 0x370E
_EMBEDDED_MESSAGE = "__substg1.0_3701000D"  # PidTagAttachDataObject holding a message
_EMBEDDED_HEADER = 24  # an embedded message's properties header ([MS-OXMSG] 2.4.1.2)
_PROPERTIES = "__properties_version1.0"
_OBJECT_FOLDERS = ("__attach_version1.0_#", "__recip_version1.0_#")


def msg_problem(path: Path) -> str | None:
    """What makes ``path`` unreadable as an Outlook message, or ``None`` when it is whole: a
    compound file whose every stream reads back at its declared size, holding the message's
    property stream and one in each attachment and recipient folder."""
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            if not ole.exists(_PROPERTIES):
                return (
                    "a compound file but not an Outlook message, or a damaged one (no message "
                    "properties; perhaps a Word .doc or another Office file renamed)"
                )
            short = 0
            for parts in ole.listdir(streams=True, storages=False):
                with ole.openstream(parts) as stream:
                    if len(stream.read()) != ole.get_size(parts):
                        short += 1
            bare = [
                parts
                for parts in ole.listdir(streams=False, storages=True)
                if parts[-1].startswith(_OBJECT_FOLDERS)
                and not ole.exists("/".join([*parts, _PROPERTIES]))
            ]
    except Exception as exc:  # olefile raises OSError, OleFileError, IndexError, ...
        return f"its compound-file structure is damaged ({type(exc).__name__})"
    if short:
        return f"cut short or damaged ({short} internal stream(s) shorter than declared)"
    if bare:
        return f"damaged ({len(bare)} attachment or recipient part(s) without properties)"
    return None


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
