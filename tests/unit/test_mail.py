"""E-mail attachments: names made safe and unique, forwarded messages and attached Outlook
items; damaged, foreign and encrypted .msg files refused with a fix."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

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


def _outlook(path: Path) -> Path:
    from tests.msgfile import MsgAttachment, write_msg

    return write_msg(
        path,
        subject="Files",
        body="See attached.",
        sender=("Finance", "finance@example.com"),
        attachments=[
            MsgAttachment("..\\..\\notes.txt", b"one"),
            MsgAttachment("notes.txt", b"two"),
            MsgAttachment(None, b"a,b\n1,2\n", short_name="PRICES.CSV"),  # 8.3 name only
            MsgAttachment(None, b"%PDF-", short_name="", mime_type="application/pdf"),
        ],
    )


def test_msg_attachments_keep_their_bytes_and_get_plain_unique_names(tmp_path: Path) -> None:
    found = attachments(_outlook(tmp_path / "mail.msg"))

    assert [(a.name, a.data) for a in found] == [
        ("notes.txt", b"one"),
        ("notes-2.txt", b"two"),
        ("PRICES.CSV", b"a,b\n1,2\n"),
        ("FILE~1.pdf", b"%PDF-"),  # no usable name: the MIME type gives the suffix
    ]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) // 2], "cut short"),
        (lambda data: data[:-700], "cut short"),  # only the last attachment's tail is gone
        (lambda data: data[:1024], "structure is damaged"),
        (lambda data: data[:1024] + b"\xff" * (len(data) - 1024), "not an Outlook message"),
    ],
)
def test_a_damaged_msg_is_refused_before_it_reads_as_empty_or_partial(
    tmp_path: Path, damage: Any, expected: str
) -> None:
    good = _outlook(tmp_path / "good.msg")
    check_file(good, max_unzipped_mb=10, max_zip_ratio=100)
    path = tmp_path / "bad.msg"
    path.write_bytes(damage(good.read_bytes()))
    with pytest.raises(IngestError, match=expected) as caught:
        check_file(path, max_unzipped_mb=10, max_zip_ratio=100)
    assert "Save the message from Outlook again" in caught.value.message


def test_another_compound_file_named_msg_is_refused(tmp_path: Path) -> None:
    from tests.msgfile import compound_file

    path = tmp_path / "report.msg"
    path.write_bytes(compound_file({"WordDocument": b"\0" * 600, "1Table": b"\0" * 80}))
    with pytest.raises(IngestError, match="not an Outlook message"):
        check_file(path, max_unzipped_mb=10, max_zip_ratio=100)


def test_an_attached_outlook_item_becomes_an_eml_with_its_headers_and_body(
    tmp_path: Path,
) -> None:
    import datetime as dt
    from email import message_from_bytes, policy

    from tests.msgfile import Mail, MsgAttachment, write_msg

    original = Mail(
        subject="Re: budget v2.1",
        body="The revised budget is 1.2 million. 预算已修订。\r\n",
        sender=("Ana Lima", "ana@example.com"),
        to=[("Finance", "finance@example.com")],
        attachments=[MsgAttachment("inner.txt", b"not unpacked: one level only")],
        sent=dt.datetime(2026, 2, 27, 16, 5, tzinfo=dt.UTC),
    )
    path = write_msg(
        tmp_path / "fwd.msg",
        subject="Fw: budget",
        body="Forwarding the thread.",
        attachments=[MsgAttachment(None, item=original), MsgAttachment("a.txt", b"file")],
    )
    check_file(path, max_unzipped_mb=10, max_zip_ratio=100)

    found = attachments(path)

    assert [a.name for a in found] == ["Re: budget v2.1.eml", "a.txt"]
    eml = message_from_bytes(found[0].data, policy=policy.default)
    assert eml["Subject"] == "Re: budget v2.1"
    assert eml["From"] == "Ana Lima <ana@example.com>"
    assert eml["To"] == "Finance <finance@example.com>"
    assert eml["Date"] == "Fri, 27 Feb 2026 16:05:00 +0000"
    assert "预算已修订" in eml.get_body().get_content()  # type: ignore[union-attr]
    assert b"one level only" not in found[0].data


def test_a_forwarded_eml_named_after_a_subject_with_a_dot_stays_an_eml(tmp_path: Path) -> None:
    inner = EmailMessage()
    inner["Subject"] = "Budget v2.1 / final"
    inner.set_content("Forwarded body.")
    msg = EmailMessage()
    msg.set_content("See below.")
    msg.add_attachment(inner)
    path = tmp_path / "fwd.eml"
    path.write_bytes(bytes(msg))
    assert [a.name for a in attachments(path)] == ["Budget v2.1 - final.eml"]


def test_an_encrypted_message_is_named_as_such_not_as_a_scan(tmp_path: Path) -> None:
    from ingest.parse import parse_file
    from tests.msgfile import write_msg

    path = write_msg(
        tmp_path / "secret.msg",
        subject="Salaries",
        body="",
        transport_headers="Subject: Salaries\r\nContent-Type: multipart/encrypted; "
        'protocol="application/pgp-encrypted"; boundary=b\r\n\r\n',
    )
    with pytest.raises(IngestError, match="encrypted message") as caught:
        parse_file(path)
    assert "OCR" not in caught.value.message
