"""E-mail attachments: names made safe and unique, forwarded messages, .msg refusal."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.guard import check_file
from ingest.mail import attachments, safe_name
from rag.errors import IngestError


def test_attachment_names_are_plain_unique_and_keep_a_usable_suffix(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg["Subject"] = "Files"
    msg.set_content("See attached.")
    msg.add_attachment(b"one", maintype="text", subtype="plain", filename="../../etc/notes.txt")
    msg.add_attachment(b"two", maintype="text", subtype="plain", filename="notes.txt")
    msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="\x07.hidden")
    msg.add_attachment(b"%PDF-", maintype="application", subtype="pdf")  # no name at all
    inner = EmailMessage()
    inner["Subject"] = "Original question"
    inner.set_content("Forwarded body.")
    msg.add_attachment(inner)
    path = tmp_path / "mail.eml"
    path.write_bytes(bytes(msg))

    found = attachments(path)

    assert [a.name for a in found] == [
        "notes.txt",
        "notes-2.txt",
        "hidden.csv",
        "attachment-4.pdf",
        "Original question.eml",
    ]
    assert [a.data for a in found[:2]] == [b"one", b"two"]
    assert b"Forwarded body." in found[4].data


def test_inline_parts_without_a_name_are_not_documents(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg.set_content("plain body")
    msg.add_alternative("<p>html body</p>", subtype="html")
    path = tmp_path / "alt.eml"
    path.write_bytes(bytes(msg))
    assert attachments(path) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a/b\\c.docx", "c.docx"), ("x" * 300 + ".pdf", "x" * 116 + ".pdf"), ("", "attachment-3")],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name, 3) == expected


def test_a_msg_that_is_not_an_ole_file_is_refused_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "mail.msg"
    path.write_bytes(b"From: someone\n\nnot outlook")
    with pytest.raises(IngestError, match=r"not an Outlook \.msg file"):
        check_file(path, max_unzipped_mb=10, max_zip_ratio=100)
