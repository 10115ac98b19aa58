"""Curated answers: an answer an admin wrote or approved for a question, in the state database.

A curated answer is served instead of a generated one when a caller's question means the
same (:mod:`rag.answering.curated` matches them) and the caller is in one of its access
groups. Each has an owner (who answers for it), a review date (after it the answer is still
served, marked stale) and an origin: ``fresh``, ``cluster`` (written for a cluster of
unanswered questions in the helpdesk report) or ``answer:<answer_id>`` (written from a
recorded answer, e.g. one rated thumbs-down). Retired answers are kept for the record and
never served.

Every replica reads the same rows: :meth:`CuratedStore.version` is cheap, and a replica
reloads its in-memory copy when it moves (each write raises the newest ``updated_at``).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from rag.errors import BadRequestError, ConflictError, NotFoundError, how_to_run
from rag.migrations import Migration
from rag.state.db import StateDB

Status = Literal["active", "retired"]
STATUSES: tuple[Status, ...] = ("active", "retired")
MAX_QUESTION_CHARS = 2000
MAX_ANSWER_CHARS = 20_000
MAX_OWNER_CHARS = 200
MAX_GROUPS = 50
_GROUP = re.compile(r"^[\w.:@-]{1,64}$")
_ORIGIN = re.compile(r"^(fresh|cluster|answer:[\w.:-]{1,64})$")
_COLUMNS = (
    "curated_id",
    "question",
    "answer",
    "access_groups",
    "owner",
    "review_by",
    "status",
    "origin",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "language",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM curated_answers"
_INSERT = (
    f"INSERT INTO curated_answers ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)})"
)


def migrations() -> list[Migration]:
    return [
        Migration(
            1,
            "curated answers",
            """CREATE TABLE IF NOT EXISTS curated_answers (
                curated_id    VARCHAR(32) PRIMARY KEY,
                question      TEXT NOT NULL,
                answer        TEXT NOT NULL,
                access_groups TEXT NOT NULL,
                owner         TEXT NOT NULL,
                review_by     VARCHAR(10) NOT NULL,
                status        VARCHAR(8) NOT NULL CHECK (status IN ('active', 'retired')),
                origin        TEXT NOT NULL,
                created_at    DOUBLE PRECISION NOT NULL,
                updated_at    DOUBLE PRECISION NOT NULL,
                created_by    TEXT NOT NULL,
                updated_by    TEXT NOT NULL,
                language      VARCHAR(8) NOT NULL
            );
            CREATE INDEX IF NOT EXISTS curated_answers_status ON curated_answers (status)""",
        ),
    ]


@dataclass(frozen=True, slots=True)
class CuratedEntry:
    curated_id: str
    question: str
    answer: str
    groups: tuple[str, ...]
    """The access groups whose members are given it (as for documents: any one suffices)."""
    owner: str
    """Who answers for it: a name or an e-mail address."""
    review_by: date
    status: Status
    origin: str
    """``fresh``, ``cluster`` or ``answer:<answer_id>``."""
    created_at: float
    updated_at: float
    created_by: str
    updated_by: str
    language: str
    """``en``, ``zh`` or ``und``: the question's language."""

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def updated_on(self) -> date:
        """The day it was written or last edited (local time)."""
        return date.fromtimestamp(self.updated_at)

    def stale(self, today: date) -> bool:
        """Past its review date: still served, marked stale."""
        return today > self.review_by

    def to_json(self, today: date) -> dict[str, Any]:
        return {
            "curated_id": self.curated_id,
            "question": self.question,
            "answer": self.answer,
            "groups": list(self.groups),
            "owner": self.owner,
            "review_by": self.review_by.isoformat(),
            "stale": self.stale(today),
            "status": self.status,
            "origin": self.origin,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
            "updated_by": self.updated_by,
            "language": self.language,
        }


def parse_date(text: str | date, what: str = "review_by") -> date:
    """A calendar date from ``YYYY-MM-DD``, else a 422 saying the format."""
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise BadRequestError(
            f"{what} {text!r} is not a date. Write it as YYYY-MM-DD, e.g. 2027-01-31."
        ) from None


def _entry(row: Sequence[Any]) -> CuratedEntry:
    return CuratedEntry(
        curated_id=row[0],
        question=row[1],
        answer=row[2],
        groups=tuple(g for g in str(row[3]).split("|") if g),
        owner=row[4],
        review_by=date.fromisoformat(row[5]),
        status=row[6],
        origin=row[7],
        created_at=float(row[8]),
        updated_at=float(row[9]),
        created_by=row[10],
        updated_by=row[11],
        language=row[12],
    )


def _same_question(a: str, b: str) -> bool:
    """The same words, whatever the case, spacing and final punctuation."""

    def norm(text: str) -> str:
        return " ".join(text.casefold().split()).rstrip(" ?？.。!！")

    return norm(a) == norm(b)


def _text(value: str, what: str, limit: int, hint: str) -> str:
    text = value.strip()
    if not text:
        raise BadRequestError(f"The {what} is empty. {hint}")
    if len(text) > limit:
        raise BadRequestError(
            f"The {what} has {len(text)} characters; the limit is {limit}. Shorten it."
        )
    return text


def _groups(groups: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(g.strip() for g in groups if g.strip()))
    if not cleaned:
        raise BadRequestError(
            "No access groups given. Name at least one group whose members may be given "
            "this answer (e.g. everyone, or staff): the same groups as the documents it "
            "stands for."
        )
    if len(cleaned) > MAX_GROUPS:
        raise BadRequestError(f"{len(cleaned)} groups given; the limit is {MAX_GROUPS}.")
    bad = [g for g in cleaned if not _GROUP.match(g)]
    if bad:
        raise BadRequestError(
            f"Group name {bad[0]!r} is not valid: use 1-64 letters, digits, or . : @ _ - "
            "(as in the documents' access groups)."
        )
    return cleaned


class CuratedStore:
    """Curated answers in ``db``. ``review_days``: the review date of an answer added without
    one (days from today); ``language_of``: the question's language (``en``, ``zh``...);
    ``clock``: Unix time (tests move it)."""

    def __init__(
        self,
        db: StateDB,
        *,
        review_days: int = 180,
        language_of: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.review_days = review_days
        self._language_of = language_of
        self._clock = clock
        db.migrate("curated", migrations())

    def today(self) -> date:
        return date.fromtimestamp(self._clock())

    def _language(self, question: str) -> str:
        return self._language_of(question) if self._language_of is not None else ""

    def _review_date(self, value: str | date) -> date:
        """Any real date: one in the past makes the answer due for review (stale) at once."""
        return parse_date(value)

    def _next_time(self, tx: Any) -> float:
        """Now, but always after the newest ``updated_at``: each write moves :meth:`version`."""
        [(newest,)] = tx.rows("SELECT MAX(updated_at) FROM curated_answers")
        now = self._clock()
        return now if newest is None else max(now, float(newest) + 0.001)

    def _check_duplicate(
        self, tx: Any, question: str, groups: Sequence[str], curated_id: str = ""
    ) -> None:
        for row in tx.rows(_SELECT + " WHERE status = 'active'"):
            other = _entry(row)
            if other.curated_id == curated_id or not _same_question(other.question, question):
                continue
            shared = sorted(set(other.groups) & set(groups))
            if shared:
                raise ConflictError(
                    f"Curated answer {other.curated_id} already answers this question for "
                    f"group(s) {', '.join(shared)}. Edit it "
                    f"({how_to_run(f'rag-ingest curate edit {other.curated_id}')}) or retire "
                    "it first."
                )

    def add(
        self,
        question: str,
        answer: str,
        *,
        groups: Sequence[str],
        owner: str,
        by: str,
        review_by: str | date | None = None,
        origin: str = "fresh",
    ) -> CuratedEntry:
        """A new active curated answer; ``by``: the admin who added it."""
        question = _text(question, "question", MAX_QUESTION_CHARS, "Write the question it answers.")
        answer = _text(answer, "answer", MAX_ANSWER_CHARS, "Write the answer to give.")
        owner = _text(
            owner,
            "owner",
            MAX_OWNER_CHARS,
            "Name who is responsible for the answer (a name or an e-mail address).",
        )
        cleaned = _groups(groups)
        if not _ORIGIN.match(origin):
            raise BadRequestError(
                f"origin {origin!r} is not valid: fresh, cluster, or answer:<answer_id>."
            )
        day = (
            self.today() + timedelta(days=self.review_days)
            if review_by is None
            else self._review_date(review_by)
        )
        with self.db.write() as tx:
            self._check_duplicate(tx, question, cleaned)
            now = self._next_time(tx)
            row = {
                "curated_id": secrets.token_hex(5),
                "question": question,
                "answer": answer,
                "access_groups": "|".join(cleaned),
                "owner": owner,
                "review_by": day.isoformat(),
                "status": "active",
                "origin": origin,
                "created_at": now,
                "updated_at": now,
                "created_by": by,
                "updated_by": by,
                "language": self._language(question),
            }
            tx.run(_INSERT, row)
        return _entry([row[c] for c in _COLUMNS])

    def get(self, curated_id: str) -> CuratedEntry:
        with self.db.read() as tx:
            rows = tx.rows(_SELECT + " WHERE curated_id = :id", {"id": curated_id})
        if not rows:
            raise self._missing(curated_id)
        return _entry(rows[0])

    def _missing(self, curated_id: str) -> NotFoundError:
        return NotFoundError(
            f"No curated answer with id {curated_id!r}. List them with "
            f"{how_to_run('rag-ingest curate list')} (or GET /v1/curated)."
        )

    def list(
        self, *, status: Status | None = None, stale: bool | None = None
    ) -> list[CuratedEntry]:
        """Oldest first; ``status``/``stale`` (past the review date) filter when given."""
        if status is not None and status not in STATUSES:
            raise BadRequestError(f"status {status!r} is not valid: active or retired.")
        sql, params = _SELECT, {}
        if status is not None:
            sql, params = sql + " WHERE status = :status", {"status": status}
        with self.db.read() as tx:
            entries = [_entry(r) for r in tx.rows(sql + " ORDER BY created_at", params)]
        if stale is None:
            return entries
        today = self.today()
        return [e for e in entries if e.stale(today) == stale]

    def edit(
        self,
        curated_id: str,
        *,
        by: str,
        question: str | None = None,
        answer: str | None = None,
        groups: Sequence[str] | None = None,
        owner: str | None = None,
        review_by: str | date | None = None,
    ) -> CuratedEntry:
        """Change what is given (None: unchanged). A review date in the past is allowed
        here: it marks the answer as due for review now."""
        if all(v is None for v in (question, answer, groups, owner, review_by)):
            raise BadRequestError(
                "Nothing to change: give at least one of question, answer, groups, owner or "
                "review_by."
            )
        changes: dict[str, Any] = {}
        if question is not None:
            changes["question"] = _text(
                question, "question", MAX_QUESTION_CHARS, "Write the question it answers."
            )
            changes["language"] = self._language(changes["question"])
        if answer is not None:
            changes["answer"] = _text(
                answer, "answer", MAX_ANSWER_CHARS, "Write the answer to give."
            )
        if groups is not None:
            changes["access_groups"] = "|".join(_groups(groups))
        if owner is not None:
            changes["owner"] = _text(
                owner, "owner", MAX_OWNER_CHARS, "Name who is responsible for the answer."
            )
        if review_by is not None:
            changes["review_by"] = self._review_date(review_by).isoformat()
        with self.db.write() as tx:
            rows = tx.rows(_SELECT + " WHERE curated_id = :id", {"id": curated_id})
            if not rows:
                raise self._missing(curated_id)
            current = _entry(rows[0])
            if not current.active:
                raise ConflictError(
                    f"Curated answer {curated_id} is retired: it is kept for the record and "
                    f"cannot be changed. Add a new one "
                    f"({how_to_run('rag-ingest curate add')}, or POST /v1/curated)."
                )
            self._check_duplicate(
                tx,
                changes.get("question", current.question),
                changes["access_groups"].split("|")
                if "access_groups" in changes
                else current.groups,
                curated_id,
            )
            changes |= {"updated_at": self._next_time(tx), "updated_by": by}
            assignments = ", ".join(f"{c} = :{c}" for c in changes)
            tx.run(
                f"UPDATE curated_answers SET {assignments} WHERE curated_id = :curated_id",
                {**changes, "curated_id": curated_id},
            )
            rows = tx.rows(_SELECT + " WHERE curated_id = :id", {"id": curated_id})
        return _entry(rows[0])

    def retire(self, curated_id: str, *, by: str) -> CuratedEntry:
        """Stop serving it (kept for the record). Retiring a retired answer changes nothing."""
        with self.db.write() as tx:
            rows = tx.rows(_SELECT + " WHERE curated_id = :id", {"id": curated_id})
            if not rows:
                raise self._missing(curated_id)
            if _entry(rows[0]).active:
                tx.run(
                    "UPDATE curated_answers SET status = 'retired', updated_at = :now, "
                    "updated_by = :by WHERE curated_id = :id",
                    {"now": self._next_time(tx), "by": by, "id": curated_id},
                )
                rows = tx.rows(_SELECT + " WHERE curated_id = :id", {"id": curated_id})
        return _entry(rows[0])

    def version(self) -> tuple[int, float]:
        """Changes whenever an answer is added, edited or retired (by any replica)."""
        with self.db.read() as tx:
            [(count, newest)] = tx.rows(
                "SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM curated_answers"
            )
        return int(count), float(newest)
