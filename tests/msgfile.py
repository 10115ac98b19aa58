"""Write small but valid Outlook ``.msg`` files for tests (no writer exists offline).

Two layers, both following Microsoft's specifications:

- :func:`compound_file` writes an OLE/CFB compound file ([MS-CFB]): version 3, 512-byte
  sectors, one FAT (up to 109 FAT sectors, so no DIFAT: files up to ~7 MB), a directory whose
  sibling trees are proper red-black trees, and a mini stream (64-byte mini sectors, listed
  in the mini FAT) for streams under 4,096 bytes.
- :func:`msg_bytes` lays out a message in it ([MS-OXMSG]): a ``__properties_version1.0``
  stream per object (32-byte header at the top, 8 bytes for recipients and attachments,
  then 16-byte property entries), a ``__substg1.0_XXXXYYYY`` stream per variable-length
  property (PtypString as UTF-16LE without its terminator, PtypBinary as is), one
  ``__recip_version1.0_#NNNNNNNN`` storage per recipient, one
  ``__attach_version1.0_#NNNNNNNN`` storage per attachment (a file attached by value, or
  an attached Outlook item: a message of its own in the attachment's
  ``__substg1.0_3701000D`` storage, with a 24-byte header), and the named-property mapping
  storage ``__nameid_version1.0`` (empty).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

Tree = Mapping[str, Union[bytes, "Tree"]]
"""A storage: its children by name, a stream (bytes) or a storage (another mapping)."""

SECTOR = 512
MINI_SECTOR = 64
MINI_CUTOFF = 4096
MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
_FREESECT, _ENDOFCHAIN, _FATSECT, _NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
_PER_SECTOR = SECTOR // 4
_HEADER_DIFAT = 109
_STORAGE, _STREAM, _ROOT = 1, 2, 5
_RED, _BLACK = 0, 1

# Property types ([MS-OXCDATA] 2.11.1) and the ids used here ([MS-OXPROPS]).
PT_LONG, PT_BOOLEAN, PT_SYSTIME = 0x0003, 0x000B, 0x0040
PT_UNICODE, PT_BINARY, PT_OBJECT = 0x001F, 0x0102, 0x000D
PR_MESSAGE_CLASS, PR_SUBJECT, PR_CLIENT_SUBMIT_TIME = 0x001A, 0x0037, 0x0039
PR_SENT_REPRESENTING_NAME, PR_TRANSPORT_MESSAGE_HEADERS = 0x0042, 0x007D
PR_SENDER_NAME, PR_SENDER_ADDRTYPE, PR_SENDER_EMAIL_ADDRESS = 0x0C1A, 0x0C1E, 0x0C1F
PR_RECIPIENT_TYPE, PR_DISPLAY_TO, PR_MESSAGE_FLAGS = 0x0C15, 0x0E04, 0x0E07
PR_ATTACH_SIZE, PR_ATTACH_NUMBER, PR_BODY = 0x0E20, 0x0E21, 0x1000
PR_ROWID, PR_DISPLAY_NAME, PR_ADDRTYPE, PR_EMAIL_ADDRESS = 0x3000, 0x3001, 0x3002, 0x3003
PR_STORE_SUPPORT_MASK, PR_SMTP_ADDRESS = 0x340D, 0x39FE
PR_ATTACH_DATA_BIN, PR_ATTACH_EXTENSION, PR_ATTACH_FILENAME = 0x3701, 0x3703, 0x3704
PR_ATTACH_METHOD, PR_ATTACH_LONG_FILENAME, PR_RENDERING_POSITION = 0x3705, 0x3707, 0x370B
PR_ATTACH_MIME_TAG, PR_ATTACH_DATA_OBJ = 0x370E, 0x3701
ATTACH_BY_VALUE, ATTACH_EMBEDDED_MSG, MAPI_TO, MSGFLAG_READ, MSGFLAG_HASATTACH = 1, 5, 1, 0x01, 0x10
STORE_UNICODE_OK = 0x00040000
_READABLE_WRITABLE = 0x00000006
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)


# ----------------------------------------------------------------------------- [MS-CFB]


@dataclass
class _Entry:
    name: str
    kind: int
    data: bytes = b""
    children: list[int] | None = None
    left: int = _NOSTREAM
    right: int = _NOSTREAM
    child: int = _NOSTREAM
    color: int = _BLACK
    start: int = 0
    size: int = 0

    def links(self) -> tuple[int, int, int]:
        return (self.left, self.right, self.child)


def _cfb_key(name: str) -> tuple[int, str]:
    """[MS-CFB] 2.6.4: shorter names first, then by upper-cased code points."""
    return (len(name.encode("utf-16-le")), name.upper())


def _flatten(tree: Tree) -> list[_Entry]:
    entries = [_Entry("Root Entry", _ROOT, children=[])]

    def add(parent: int, children: Tree) -> None:
        for name, value in children.items():
            if not 0 < len(name) <= 31 or any(c in name for c in "/\\:!"):
                raise ValueError(f"invalid compound-file entry name: {name!r}")
            index = len(entries)
            kids = entries[parent].children
            assert kids is not None
            kids.append(index)
            if isinstance(value, bytes):
                entries.append(_Entry(name, _STREAM, data=value))
            else:
                entries.append(_Entry(name, _STORAGE, children=[]))
                add(index, value)

    add(0, tree)
    return entries


def _link_siblings(entries: list[_Entry]) -> None:
    """Each storage's children as a balanced binary search tree coloured red-black: all
    black but the deepest level, which is red when the tree is not perfect (the midpoint
    construction puts every empty link on the last two levels, so black heights agree)."""
    for entry in entries:
        kids = sorted(entry.children or [], key=lambda i: _cfb_key(entries[i].name))
        if len({_cfb_key(entries[i].name) for i in kids}) != len(kids):
            raise ValueError(f"duplicate names in storage {entry.name!r}")
        depths: dict[int, int] = {}
        entry.child = _subtree(entries, kids, 0, len(kids), 0, depths)
        deepest = max(depths.values(), default=0)
        perfect = len(kids) == 2 ** (deepest + 1) - 1
        for node, depth in depths.items():
            red = depth == deepest and depth > 0 and not perfect
            entries[node].color = _RED if red else _BLACK


def _subtree(
    entries: list[_Entry], kids: list[int], lo: int, hi: int, depth: int, depths: dict[int, int]
) -> int:
    """The root of a balanced tree over ``kids[lo:hi]`` (recording each node's depth)."""
    if lo >= hi:
        return _NOSTREAM
    mid = (lo + hi) // 2
    node = kids[mid]
    depths[node] = depth
    entries[node].left = _subtree(entries, kids, lo, mid, depth + 1, depths)
    entries[node].right = _subtree(entries, kids, mid + 1, hi, depth + 1, depths)
    return node


def _dir_entry(entry: _Entry) -> bytes:
    """One 128-byte directory entry; an unused slot has no name and no links."""
    raw_name = entry.name.encode("utf-16-le") + b"\0\0" if entry.kind else b""
    return (
        raw_name.ljust(64, b"\0")
        + struct.pack("<HBB3I", len(raw_name), entry.kind, entry.color, *entry.links())
        + b"\0" * 36  # CLSID, state bits, creation and modification times
        + struct.pack("<IQ", entry.start, entry.size)
    )


def _chain(table: list[int], first: int, count: int) -> None:
    for i in range(count):
        table[first + i] = first + i + 1 if i < count - 1 else _ENDOFCHAIN


def _pad(data: bytes, unit: int) -> bytes:
    return data + b"\0" * (-len(data) % unit)


def compound_file(tree: Tree) -> bytes:
    """The bytes of a version-3 compound file holding ``tree`` under its root storage."""
    entries = _flatten(tree)
    _link_siblings(entries)

    # Small streams go to the mini stream, the rest get sectors of their own.
    mini_fat: list[int] = []
    mini_stream = bytearray()
    big: list[_Entry] = []
    for entry in entries:
        if entry.kind != _STREAM:
            continue
        if not entry.data:
            entry.start = _ENDOFCHAIN  # [MS-CFB] 2.6.3: an empty stream has no sectors
            continue
        entry.size = len(entry.data)
        if entry.size >= MINI_CUTOFF:
            big.append(entry)
            continue
        first, count = len(mini_fat), -(-entry.size // MINI_SECTOR)
        mini_fat.extend([_FREESECT] * count)
        _chain(mini_fat, first, count)
        entry.start = first
        mini_stream += _pad(entry.data, MINI_SECTOR)

    directory = b"".join(_dir_entry(e) for e in entries)
    unused = _dir_entry(_Entry("", 0))
    directory += unused * (-len(entries) % (SECTOR // 128))
    mini_fat_raw = b"".join(struct.pack("<I", v) for v in mini_fat)
    mini_fat_raw += struct.pack("<I", _FREESECT) * (-len(mini_fat) % _PER_SECTOR)

    # Sector counts, then the FAT large enough to list itself too.
    n_dir = len(directory) // SECTOR
    n_minifat = len(mini_fat_raw) // SECTOR
    n_mini = -(-len(mini_stream) // SECTOR)
    n_big = [-(-e.size // SECTOR) for e in big]
    n_data = n_dir + n_minifat + n_mini + sum(n_big)
    n_fat = 1
    while n_fat * _PER_SECTOR < n_data + n_fat:
        n_fat += 1
    if n_fat > _HEADER_DIFAT:
        raise ValueError("compound file too large for a header-only DIFAT (about 7 MB)")

    fat = [_FREESECT] * (n_fat * _PER_SECTOR)
    for i in range(n_fat):
        fat[i] = _FATSECT
    cursor = n_fat
    dir_start = cursor
    _chain(fat, cursor, n_dir)
    cursor += n_dir
    minifat_start = cursor if n_minifat else _ENDOFCHAIN
    _chain(fat, cursor, n_minifat)
    cursor += n_minifat
    root = entries[0]
    root.start = cursor if n_mini else _ENDOFCHAIN
    root.size = len(mini_stream)
    _chain(fat, cursor, n_mini)
    cursor += n_mini
    for entry, count in zip(big, n_big, strict=True):
        entry.start = cursor
        _chain(fat, cursor, count)
        cursor += count

    # The directory again, now that the start sectors are known.
    directory = b"".join(_dir_entry(e) for e in entries)
    directory += unused * (-len(entries) % (SECTOR // 128))
    difat = list(range(n_fat)) + [_FREESECT] * (_HEADER_DIFAT - n_fat)
    header = (
        MAGIC
        + b"\0" * 16  # header CLSID
        + struct.pack("<HHHHH", 0x003E, 0x0003, 0xFFFE, 9, 6)
        + b"\0" * 6
        + struct.pack("<IIIII", 0, n_fat, dir_start, 0, MINI_CUTOFF)
        + struct.pack("<IIII", minifat_start, n_minifat, _ENDOFCHAIN, 0)
        + struct.pack(f"<{_HEADER_DIFAT}I", *difat)
    )
    assert len(header) == SECTOR
    body = [
        b"".join(struct.pack("<I", v) for v in fat),
        directory,
        mini_fat_raw if n_minifat else b"",
        _pad(bytes(mini_stream), SECTOR),
        *(_pad(e.data, SECTOR) for e in big),
    ]
    out = header + b"".join(body)
    assert len(out) == SECTOR * (1 + cursor)
    return out


# ---------------------------------------------------------------------------- [MS-OXMSG]

Value = str | bytes | int | bool | dt.datetime


def _properties(header: bytes, props: Mapping[tuple[int, int], Value]) -> dict[str, bytes]:
    """The ``__properties_version1.0`` stream and one ``__substg1.0_`` stream per
    variable-length property of one object."""
    entries = [header]
    streams: dict[str, bytes] = {}
    for (pid, ptype), value in sorted(props.items()):
        tag = struct.pack("<HHI", ptype, pid, _READABLE_WRITABLE)
        if ptype in (PT_UNICODE, PT_BINARY):
            if ptype == PT_UNICODE:
                assert isinstance(value, str)
                data, size = value.encode("utf-16-le"), len(value.encode("utf-16-le")) + 2
            else:
                assert isinstance(value, bytes)
                data, size = value, len(value)
            streams[f"__substg1.0_{pid:04X}{ptype:04X}"] = data
            entries.append(tag + struct.pack("<II", size, 0))
        elif ptype == PT_OBJECT:  # a storage beside this stream: no size ([MS-OXMSG] 2.4.2.2)
            entries.append(tag + struct.pack("<II", 0xFFFFFFFF, 0))
        elif ptype == PT_SYSTIME:
            assert isinstance(value, dt.datetime)
            ticks = int((value - _FILETIME_EPOCH).total_seconds()) * 10_000_000
            entries.append(tag + struct.pack("<Q", ticks))
        elif ptype in (PT_LONG, PT_BOOLEAN):
            assert isinstance(value, int)
            entries.append(tag + struct.pack("<II", int(value), 0))
        else:
            raise ValueError(f"property type 0x{ptype:04X} is not supported here")
    return {"__properties_version1.0": b"".join(entries), **streams}


@dataclass(frozen=True, slots=True)
class MsgAttachment:
    """A file attached by value, or with ``item`` an attached Outlook item (an embedded
    message: ``data`` is then ignored). ``long_name=None`` leaves out
    PR_ATTACH_LONG_FILENAME (older clients write the 8.3 PR_ATTACH_FILENAME only)."""

    long_name: str | None
    data: bytes = b""
    short_name: str = ""
    mime_type: str = ""
    item: Mail | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    """A message (class IPM.Note, Unicode strings); ``sender`` and each ``to`` item are
    (display name, SMTP address)."""

    subject: str
    body: str
    sender: tuple[str, str] = ("", "")
    to: Sequence[tuple[str, str]] = ()
    attachments: Sequence[MsgAttachment] = ()
    sent: dt.datetime | None = None
    transport_headers: str | None = None


def _short(name: str) -> str:
    stem, _, ext = name.rpartition(".") if "." in name else (name, "", "")
    stem = "".join(c for c in stem.upper() if c.isalnum())[:6] or "FILE"
    return f"{stem}~1.{ext.upper()[:3]}" if ext else f"{stem}~1"


def msg_bytes(
    *,
    subject: str,
    body: str,
    sender: tuple[str, str] = ("", ""),
    to: Sequence[tuple[str, str]] = (),
    attachments: Sequence[MsgAttachment] = (),
    sent: dt.datetime | None = None,
    transport_headers: str | None = None,
) -> bytes:
    """The bytes of a ``.msg`` file holding the :class:`Mail` with these fields."""
    mail = Mail(subject, body, sender, to, attachments, sent, transport_headers)
    tree = _message(mail, embedded=False)
    tree["__nameid_version1.0"] = {  # the named-property mapping: none used here
        "__substg1.0_00020102": b"",
        "__substg1.0_00030102": b"",
        "__substg1.0_00040102": b"",
    }
    return compound_file(tree)


def _message(mail: Mail, *, embedded: bool) -> dict[str, bytes | Tree]:
    """A message's storage: the top level (32-byte properties header) or an attached item
    (24 bytes, [MS-OXMSG] 2.4.1.2)."""
    to, attachments = mail.to, mail.attachments
    props: dict[tuple[int, int], Value] = {
        (PR_MESSAGE_CLASS, PT_UNICODE): "IPM.Note",
        (PR_SUBJECT, PT_UNICODE): mail.subject,
        (PR_BODY, PT_UNICODE): mail.body,
        (PR_STORE_SUPPORT_MASK, PT_LONG): STORE_UNICODE_OK,
        (PR_MESSAGE_FLAGS, PT_LONG): MSGFLAG_READ | (MSGFLAG_HASATTACH if attachments else 0),
        (PR_DISPLAY_TO, PT_UNICODE): "; ".join(name or address for name, address in to),
    }
    name, address = mail.sender
    if name:
        props[(PR_SENDER_NAME, PT_UNICODE)] = name
        props[(PR_SENT_REPRESENTING_NAME, PT_UNICODE)] = name
    if address:
        props[(PR_SENDER_ADDRTYPE, PT_UNICODE)] = "SMTP"
        props[(PR_SENDER_EMAIL_ADDRESS, PT_UNICODE)] = address
    if mail.sent is not None:
        props[(PR_CLIENT_SUBMIT_TIME, PT_SYSTIME)] = mail.sent
    if mail.transport_headers is not None:
        props[(PR_TRANSPORT_MESSAGE_HEADERS, PT_UNICODE)] = mail.transport_headers
    counts = (len(to), len(attachments), len(to), len(attachments))
    header = struct.pack("<8x4I", *counts) + (b"" if embedded else b"\0" * 8)
    tree: dict[str, bytes | Tree] = dict(_properties(header, props))
    for row, (rname, raddress) in enumerate(to):
        recipient: dict[tuple[int, int], Value] = {
            (PR_RECIPIENT_TYPE, PT_LONG): MAPI_TO,
            (PR_ROWID, PT_LONG): row,
            (PR_DISPLAY_NAME, PT_UNICODE): rname or raddress,
            (PR_ADDRTYPE, PT_UNICODE): "SMTP",
            (PR_EMAIL_ADDRESS, PT_UNICODE): raddress,
            (PR_SMTP_ADDRESS, PT_UNICODE): raddress,
        }
        tree[f"__recip_version1.0_#{row:08X}"] = _properties(b"\0" * 8, recipient)
    for number, item in enumerate(attachments):
        tree[f"__attach_version1.0_#{number:08X}"] = _attachment(number, item)
    return tree


def _attachment(number: int, item: MsgAttachment) -> dict[str, bytes | Tree]:
    props: dict[tuple[int, int], Value] = {
        (PR_ATTACH_NUMBER, PT_LONG): number,
        (PR_RENDERING_POSITION, PT_LONG): 0xFFFFFFFF,
    }
    if item.item is not None:
        props[(PR_ATTACH_METHOD, PT_LONG)] = ATTACH_EMBEDDED_MSG
        props[(PR_DISPLAY_NAME, PT_UNICODE)] = item.long_name or item.item.subject
        props[(PR_ATTACH_DATA_OBJ, PT_OBJECT)] = b""
        tree: dict[str, bytes | Tree] = dict(_properties(b"\0" * 8, props))
        tree[f"__substg1.0_{PR_ATTACH_DATA_OBJ:04X}{PT_OBJECT:04X}"] = _message(
            item.item, embedded=True
        )
        return tree
    shown = item.long_name or item.short_name
    props |= {
        (PR_ATTACH_METHOD, PT_LONG): ATTACH_BY_VALUE,
        (PR_ATTACH_SIZE, PT_LONG): len(item.data),
        (PR_ATTACH_DATA_BIN, PT_BINARY): item.data,
        (PR_ATTACH_FILENAME, PT_UNICODE): item.short_name or _short(shown),
        (PR_DISPLAY_NAME, PT_UNICODE): shown,
    }
    if item.long_name is not None:
        props[(PR_ATTACH_LONG_FILENAME, PT_UNICODE)] = item.long_name
    if "." in shown:
        props[(PR_ATTACH_EXTENSION, PT_UNICODE)] = "." + shown.rpartition(".")[2]
    if item.mime_type:
        props[(PR_ATTACH_MIME_TAG, PT_UNICODE)] = item.mime_type
    return dict(_properties(b"\0" * 8, props))


def write_msg(path: Path, **fields: object) -> Path:
    """Write :func:`msg_bytes` (same keyword arguments) to ``path``."""
    path.write_bytes(msg_bytes(**fields))  # type: ignore[arg-type]
    return path
