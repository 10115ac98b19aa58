"""The test-support ``.msg`` writer (tests/msgfile.py) against the readers the product
uses: olefile in its strict mode, python-oxmsg, and unstructured through ingest's parser."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import olefile
import pytest
from oxmsg import Message

from ingest.parse import parse_file
from tests.msgfile import MsgAttachment, Tree, compound_file, write_msg

RED, BLACK = 0, 1  # [MS-CFB] 2.6.1 colour flags (olefile names no constants for them)
SENT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
BIG = bytes(range(256)) * 40  # over the 4,096-byte mini-stream cutoff: regular sectors


def sample(path: Path) -> Path:
    return write_msg(
        path,
        subject="Quarterly documents 季度文件",
        body="The quarterly documents are attached.\r\nBudget review is on Friday.\r\n",
        sender=("Finance Team", "finance@example.com"),
        to=[("Staff", "staff@example.com"), ("", "bob@example.com")],
        attachments=[
            MsgAttachment("notes.md", b"# Notes\n\nBring badges.\n", mime_type="text/markdown"),
            MsgAttachment("table.bin", BIG),
            MsgAttachment(None, b"item,price\nbadge,5\n", short_name="PRICES.CSV"),
        ],
        sent=SENT,
    )


def test_oxmsg_reads_back_what_was_written(tmp_path: Path) -> None:
    msg = Message.load(str(sample(tmp_path / "m.msg")))

    assert msg.message_class == "IPM.Note"
    assert msg.subject == "Quarterly documents 季度文件"
    assert msg.body == "The quarterly documents are attached.\r\nBudget review is on Friday.\r\n"
    assert msg.sender == '"Finance Team" <finance@example.com>'
    assert msg.sent_date == SENT
    assert [(r.name, r.email_address) for r in msg.recipients] == [
        ("Staff", "staff@example.com"),
        ("bob@example.com", "bob@example.com"),
    ]
    assert msg.attachment_count == 3
    got = [(a.file_name, a.mime_type, a.file_bytes, a.attached_by_value) for a in msg.attachments]
    assert got == [
        ("notes.md", "text/markdown", b"# Notes\n\nBring badges.\n", True),
        ("table.bin", "application/octet-stream", BIG, True),
        (None, "application/octet-stream", b"item,price\nbadge,5\n", True),
    ]


def _tree_ok(entries: list[Any], sid: int, lo: Any, hi: Any) -> int:
    """Black height of the sibling subtree at ``sid``; asserts order and red-black rules."""
    if sid == olefile.NOSTREAM:
        return 1
    node = entries[sid]
    key = (len(node.name), node.name.upper())
    assert (lo is None or lo < key) and (hi is None or key < hi), "not in [MS-CFB] order"
    for kid in (node.sid_left, node.sid_right):
        if node.color == RED and kid != olefile.NOSTREAM:
            assert entries[kid].color == BLACK, "red node with a red child"
    left = _tree_ok(entries, node.sid_left, lo, key)
    right = _tree_ok(entries, node.sid_right, key, hi)
    assert left == right, "unequal black heights"
    return left + int(node.color == BLACK)


@pytest.mark.parametrize("width", [1, 2, 3, 7, 12, 40])
def test_compound_file_passes_olefiles_strict_checks(tmp_path: Path, width: int) -> None:
    tree: dict[str, bytes | Tree] = {
        f"s{i:0{1 + i % 3}d}": bytes([i]) * (i * 37) for i in range(width)
    }
    tree |= {
        "big": BIG * 20,
        "empty": b"",
        "folder": {"inner": b"x" * 5000, "tiny": b"y"},
    }
    path = tmp_path / "f.cfb"
    path.write_bytes(compound_file(tree))

    with olefile.OleFileIO(str(path), raise_defects=olefile.DEFECT_INCORRECT) as ole:
        assert ole.parsing_issues == []
        assert ole.num_fat_sectors > 1  # 200 KB: more than one FAT sector
        for name, data in tree.items():
            if isinstance(data, bytes):
                assert ole.openstream(name).read() == data
        assert ole.openstream("folder/inner").read() == b"x" * 5000
        assert ole.openstream("folder/tiny").read() == b"y"
        entries = ole.direntries
        folders = [e for e in entries if e is not None and e.entry_type != olefile.STGTY_STREAM]
        assert len(folders) == 2
        for folder in folders:
            assert entries[folder.sid_child].color == BLACK  # the root of a sibling tree
            _tree_ok(entries, folder.sid_child, None, None)


def test_ingest_parser_reads_headers_and_body(tmp_path: Path) -> None:
    doc = parse_file(sample(tmp_path / "m.msg"))

    assert doc.title == "Quarterly documents 季度文件"
    header, *body = [e.text for e in doc.elements]
    assert header.splitlines() == [
        'From: "Finance Team" <finance@example.com>',
        "To: staff@example.com, bob@example.com",
        "Subject: Quarterly documents 季度文件",
        "Date: 2026-03-02T09:30:00+00:00",
    ]
    assert "Budget review is on Friday." in " ".join(body)
    assert not any("Bring badges" in t for t in body)  # attachments are not the message
