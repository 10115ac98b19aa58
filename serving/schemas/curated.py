"""Wire models of ``/v1/curated``: answers admins write or approve (rag/state/curated.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.state.curated import (
    MAX_ANSWER_CHARS,
    MAX_GROUPS,
    MAX_OWNER_CHARS,
    MAX_QUESTION_CHARS,
    CuratedEntry,
)

# What the store accepts (rag/state/curated.py), said in the schema too, for clients and the
# API fuzzer; the store checks it and says what to fix, so pydantic does not check it again.
TEXT: dict[str, Any] = {"pattern": r"\S"}
GROUPS: dict[str, Any] = {
    "minItems": 1,
    "items": {"type": "string", "pattern": r"^[\w.:@-]{1,64}$"},
}
DATE: dict[str, Any] = {"format": "date"}

CURATED_EXAMPLE: dict[str, Any] = {
    "curated_id": "4be8c21f0a",
    "question": "How do I book the large meeting room?",
    "answer": "Book the large meeting room (Atlas, 3rd floor) in the Rooms calendar; "
    "bookings over 4 hours need the office manager's approval.",
    "groups": ["everyone"],
    "owner": "facilities@example.com",
    "review_by": "2027-06-30",
    "stale": False,
    "status": "active",
    "origin": "cluster",
    "created_at": 1798675200.0,
    "updated_at": 1798675200.0,
    "created_by": "key:a1b2c3d4",
    "updated_by": "key:a1b2c3d4",
    "language": "en",
}


class CuratedCreate(BaseModel):
    """A new curated answer: written fresh, for a cluster of unanswered questions from the
    report (`from_cluster`), or from a recorded answer (`from_answer_id`, e.g. one rated
    thumbs-down: its question is copied unless `question` is given)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "question": "How do I book the large meeting room?",
                    "answer": "Book it (Atlas, 3rd floor) in the Rooms calendar.",
                    "groups": ["everyone"],
                    "owner": "facilities@example.com",
                    "review_by": "2027-06-30",
                },
                {
                    "from_answer_id": "3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
                    "answer": "Contractors get 10 days of leave a year; see their contract.",
                    "groups": ["staff"],
                    "owner": "hr@example.com",
                },
                {
                    "from_cluster": "booking the big meeting room",
                    "question": "How do I book the large meeting room?",
                    "answer": "Book it (Atlas, 3rd floor) in the Rooms calendar.",
                    "groups": ["everyone"],
                    "owner": "facilities@example.com",
                },
            ],
            # The question, or where to take it from (checked again by the route).
            "anyOf": [
                {"required": [k], "properties": {k: {"type": "string"}}}
                for k in ("question", "from_answer_id", "from_cluster")
            ],
            "not": {
                "required": ["from_answer_id", "from_cluster"],
                "properties": {
                    "from_answer_id": {"type": "string"},
                    "from_cluster": {"type": "string"},
                },
            },
        },
    )

    question: str | None = Field(
        None,
        max_length=MAX_QUESTION_CHARS,
        json_schema_extra=TEXT,
        description="The question it answers (paraphrases match too). Required unless "
        "from_answer_id or from_cluster gives it.",
    )
    answer: str = Field(
        ..., max_length=MAX_ANSWER_CHARS, json_schema_extra=TEXT, description="The answer to give."
    )
    groups: list[str] = Field(
        ...,
        max_length=MAX_GROUPS,
        json_schema_extra=GROUPS,
        description="Access groups whose members are given it (any one suffices, as for "
        "documents); at least one.",
    )
    owner: str = Field(
        ...,
        max_length=MAX_OWNER_CHARS,
        json_schema_extra=TEXT,
        description="Who answers for it (a name or an e-mail address); shown in the citation.",
    )
    review_by: str | None = Field(
        None,
        json_schema_extra=DATE,
        description="YYYY-MM-DD: when it is due for review; after it (or at once, for a past "
        "date) the answer is still served, marked stale. Default: curated.review_days from "
        "today.",
    )
    from_answer_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A recorded answer's answer_id (any caller's): its question is used "
        "unless `question` is given; origin answer:<id>.",
    )
    from_cluster: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        description="The example question of an unanswered cluster in the report: the "
        "question unless `question` is given; origin cluster.",
    )


class CuratedPatch(BaseModel):
    """What to change (absent fields stay as they are)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"answer": "Book it (Atlas, 4th floor since May) in the Rooms calendar."},
                {"review_by": "2028-01-31", "owner": "ops@example.com"},
            ]
        },
    )

    question: str | None = Field(
        None, max_length=MAX_QUESTION_CHARS, json_schema_extra=TEXT, description="New question."
    )
    answer: str | None = Field(
        None, max_length=MAX_ANSWER_CHARS, json_schema_extra=TEXT, description="New answer."
    )
    groups: list[str] | None = Field(
        None,
        max_length=MAX_GROUPS,
        json_schema_extra=GROUPS,
        description="New access groups (replaces them all).",
    )
    owner: str | None = Field(
        None, max_length=MAX_OWNER_CHARS, json_schema_extra=TEXT, description="New owner."
    )
    review_by: str | None = Field(
        None,
        json_schema_extra=DATE,
        description="New review date, YYYY-MM-DD; a past date marks the answer due for "
        "review now (served, stale).",
    )

    @property
    def empty(self) -> bool:
        """Nothing to change (every field absent or null)."""
        return all(v is None for v in self.model_dump().values())


class CuratedOut(BaseModel):
    """One curated answer."""

    model_config = ConfigDict(json_schema_extra={"examples": [CURATED_EXAMPLE]})

    curated_id: str = Field(..., description="Its id (cited as doc_id curated:<id>).")
    question: str = Field(..., description="The question it answers.")
    answer: str = Field(..., description="The answer given.")
    groups: list[str] = Field(..., description="Access groups whose members are given it.")
    owner: str = Field(..., description="Who answers for it.")
    review_by: str = Field(..., description="When it is due for review, YYYY-MM-DD.")
    stale: bool = Field(..., description="Past its review date: served, marked stale.")
    status: Literal["active", "retired"] = Field(
        ..., description="active (served) or retired (kept for the record, never served)."
    )
    origin: str = Field(..., description="fresh, cluster, or answer:<answer_id>.")
    created_at: float = Field(..., description="Unix time it was added.")
    updated_at: float = Field(..., description="Unix time it was last changed.")
    created_by: str = Field(..., description="The admin who added it (key:<id> or a user).")
    updated_by: str = Field(..., description="The admin who last changed it.")
    language: str = Field(..., description="The question's language: en, zh or und.")

    @classmethod
    def of(cls, entry: CuratedEntry, today: Any) -> CuratedOut:
        return cls.model_validate(entry.to_json(today))


class CuratedList(BaseModel):
    """Curated answers, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"curated": [CURATED_EXAMPLE], "count": 1}]}
    )

    curated: list[CuratedOut] = Field(..., description="The answers that pass the filters.")
    count: int = Field(..., description="How many.")
