"""What a hand-off carries: the question, the transcript, the cited documents and the caller,
as one JSON object (the webhook's body, the e-mail's content). Built once, when the hand-off
is created, and stored with it: every retry sends the same ticket."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from rag.types import HistoryTurn, Principal


@dataclass(frozen=True, slots=True)
class CitedDocument:
    doc_id: str
    title: str
    source: str = ""
    url: str = ""


def ticket_payload(
    *,
    handoff_id: str,
    created_at: float,
    reason: str,
    question: str,
    caller: Principal,
    transcript: Sequence[HistoryTurn] = (),
    documents: Sequence[CitedDocument] = (),
    comment: str | None = None,
    contact: str | None = None,
    answer_id: str | None = None,
    conversation_id: str | None = None,
) -> dict[str, object]:
    """The ticket as JSON-ready data (documented in docs/API.md, "Hand-off to a person")."""
    return {
        "handoff_id": handoff_id,
        "created_at": dt.datetime.fromtimestamp(created_at, dt.UTC).isoformat(),
        "reason": reason,
        "question": question,
        "comment": comment or "",
        "contact": contact or "",
        "transcript": [{"role": t.role, "text": t.text} for t in transcript],
        "documents": [
            {"doc_id": d.doc_id, "title": d.title, "source": d.source, "url": d.url}
            for d in documents
        ],
        "caller": {
            "subject": caller.subject,
            "credential": caller.credential,
            "groups": sorted(caller.groups),
            "anonymous": caller.anonymous,
        },
        "answer_id": answer_id,
        "conversation_id": conversation_id,
    }


def ticket_text(payload: dict[str, object]) -> str:
    """The ticket as plain text (the e-mail body): the question first, then what the person
    needs to pick it up."""
    caller = payload.get("caller")
    who = caller if isinstance(caller, dict) else {}
    lines = [
        f"Question: {payload.get('question', '')}",
        f"Reason: {payload.get('reason', '')}",
    ]
    if payload.get("comment"):
        lines.append(f"Comment: {payload['comment']}")
    if payload.get("contact"):
        lines.append(f"Contact: {payload['contact']}")
    lines.append(
        f"Asked by: {who.get('subject', '')} ({who.get('credential', '')}; groups: "
        f"{', '.join(who.get('groups', []))})"
    )
    transcript = payload.get("transcript")
    if isinstance(transcript, list) and transcript:
        lines += ["", "Transcript:"]
        lines += [f"  {t.get('role', '')}: {t.get('text', '')}" for t in transcript]
    documents = payload.get("documents")
    if isinstance(documents, list) and documents:
        lines += ["", "Cited documents:"]
        for d in documents:
            where = d.get("url") or d.get("source") or ""
            lines.append(f"  - {d.get('title') or d.get('doc_id')} ({where})".rstrip())
    lines += ["", f"Hand-off {payload.get('handoff_id', '')}, {payload.get('created_at', '')}"]
    return "\n".join(lines) + "\n"
