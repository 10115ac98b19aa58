"""``rag-ingest curate add/list/edit/retire``: curated answers from the command line.

The same store as ``/v1/curated`` (:class:`rag.state.curated.CuratedStore` in the state
database ``state.url`` names); a running service picks a change up within
``curated.check_interval_s``. Changes are recorded as made by ``cli:<user>@<host>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from rag.errors import BadRequestError, NotFoundError, RagError, how_to_run

app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Curated answers: written or approved by admins, served instead of a generated "
    "answer to questions that mean the same.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON lines for scripts.")]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile", metavar="NAME", help="Config profile (default: $RAG_PROFILE or dev)."
    ),
]
QuestionOpt = Annotated[
    str | None, typer.Option("--question", metavar="QUESTION", help="The question it answers.")
]
AnswerOpt = Annotated[
    str | None, typer.Option("--answer", metavar="ANSWER", help="The answer to give.")
]
AnswerFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--answer-file", metavar="FILE", help="Read the answer from this UTF-8 text file."
    ),
]
GroupOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--group", metavar="GROUP", help="An access group whose members are given it (repeat)."
    ),
]
OwnerOpt = Annotated[
    str | None,
    typer.Option("--owner", metavar="WHO", help="Who answers for it: a name or an e-mail."),
]
ReviewOpt = Annotated[
    str | None,
    typer.Option(
        "--review-by",
        metavar="YYYY-MM-DD",
        help="When it is due for review (default: curated.review_days from today).",
    ),
]
IdArg = Annotated[
    str, typer.Argument(metavar="CURATED_ID", help="The id from `rag-ingest curate list`.")
]


def _base() -> Any:
    """The ``rag-ingest`` module: its settings loader, error output and user name."""
    from ingest import cli

    return cli


@contextmanager
def _store(profile: str | None) -> Iterator[Any]:
    from rag.services import build_curated_store, open_state

    settings = _base()._settings(profile)
    db = open_state(settings)
    try:
        yield build_curated_store(settings, db)
    finally:
        db.close()


def _answer_text(answer: str | None, answer_file: Path | None) -> str | None:
    if answer is not None and answer_file is not None:
        raise BadRequestError("Give --answer or --answer-file, not both.")
    if answer_file is None:
        return answer
    try:
        return answer_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadRequestError(
            f"Cannot read the answer from {answer_file} ({type(e).__name__}: {e}). Give a "
            "readable UTF-8 text file."
        ) from e


def _recorded_question(profile: str | None, answer_id: str, needed: bool) -> str:
    """The question of a recorded answer (an error when there is none); ``needed``: no
    --question was given, so one must have been recorded."""
    from rag.services import build_feedback_store, open_state

    settings = _base()._settings(profile)
    db = open_state(settings)
    try:
        record = build_feedback_store(settings, db).answer(answer_id)
    finally:
        db.close()
    if record is None:
        raise NotFoundError(
            f"No recorded answer with answer_id {answer_id!r}. Copy the answer_id from the "
            f"answer (or {how_to_run('rag-ingest report')}), or give --question instead."
        )
    if not record.question and needed:
        raise BadRequestError(
            f"Answer {answer_id} was recorded without its question "
            "(feedback.store_questions is off). Give --question."
        )
    return record.question or ""


def _show(entry: Any, today: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(entry.to_json(today), ensure_ascii=False))
        return
    state = "stale" if entry.active and entry.stale(today) else entry.status
    typer.echo(
        f"{entry.curated_id}  {state:<7}  review by {entry.review_by.isoformat()}  "
        f"owner {entry.owner}  groups={','.join(entry.groups)}  {entry.question}"
    )


@app.command("add")
def add(
    question: QuestionOpt = None,
    answer: AnswerOpt = None,
    answer_file: AnswerFileOpt = None,
    group: GroupOpt = None,
    owner: OwnerOpt = None,
    review_by: ReviewOpt = None,
    from_answer: Annotated[
        str | None,
        typer.Option(
            "--from-answer",
            metavar="ANSWER_ID",
            help="Written for this recorded answer (e.g. a thumbed-down one): its question "
            "is used unless --question is given.",
        ),
    ] = None,
    from_cluster: Annotated[
        bool,
        typer.Option(
            "--from-cluster", help="Written for a cluster of unanswered questions (the report)."
        ),
    ] = False,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Add a curated answer; it is served from now on to callers in its groups."""
    try:
        text = _answer_text(answer, answer_file)
        if text is None:
            raise BadRequestError("No answer given: --answer ANSWER or --answer-file FILE.")
        if owner is None:
            raise BadRequestError(
                "No owner given: --owner WHO (a name or an e-mail address: who answers for it)."
            )
        if from_answer is not None and from_cluster:
            raise BadRequestError("Give --from-answer or --from-cluster, not both.")
        origin = f"answer:{from_answer}" if from_answer else "cluster" if from_cluster else "fresh"
        if from_answer is not None:
            recorded = _recorded_question(profile, from_answer, question is None)
            question = question if question is not None else recorded
        if question is None:
            raise BadRequestError("No question given: --question QUESTION (or --from-answer ID).")
        with _store(profile) as store:
            entry = store.add(
                question,
                text,
                groups=group or [],
                owner=owner,
                by=_base()._cli_user(),
                review_by=review_by,
                origin=origin,
            )
            today = store.today()
    except RagError as exc:
        _base()._fail(exc, as_json)
    if not as_json:
        typer.echo(f"added curated answer {entry.curated_id}:")
    _show(entry, today, as_json)


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option("--status", metavar="STATUS", help="Only active or retired ones."),
    ] = None,
    stale: Annotated[
        bool, typer.Option("--stale", help="Only those past their review date.")
    ] = False,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Curated answers, oldest first, with owner, groups, review date and whether stale."""
    try:
        if status not in (None, "active", "retired"):
            raise BadRequestError(f"--status {status!r} is not valid: active or retired.")
        with _store(profile) as store:
            entries = store.list(status=status, stale=True if stale else None)
            today = store.today()
    except RagError as exc:
        _base()._fail(exc, as_json)
    for entry in entries:
        _show(entry, today, as_json)
    if not as_json and not entries:
        typer.echo(f"no curated answers (add one: {how_to_run('rag-ingest curate add')} ...)")


@app.command("edit")
def edit(
    curated_id: IdArg,
    question: QuestionOpt = None,
    answer: AnswerOpt = None,
    answer_file: AnswerFileOpt = None,
    group: GroupOpt = None,
    owner: OwnerOpt = None,
    review_by: ReviewOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Change a curated answer (what is given replaces what was there; --group replaces
    all its groups). A past --review-by marks it due for review now."""
    try:
        text = _answer_text(answer, answer_file)
        with _store(profile) as store:
            entry = store.edit(
                curated_id,
                by=_base()._cli_user(),
                question=question,
                answer=text,
                groups=group or None,
                owner=owner,
                review_by=review_by,
            )
            today = store.today()
    except RagError as exc:
        _base()._fail(exc, as_json)
    if not as_json:
        typer.echo(f"changed curated answer {entry.curated_id}:")
    _show(entry, today, as_json)


@app.command("retire")
def retire(curated_id: IdArg, as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """Stop serving a curated answer (it is kept for the record)."""
    try:
        with _store(profile) as store:
            entry = store.retire(curated_id, by=_base()._cli_user())
            today = store.today()
    except RagError as exc:
        _base()._fail(exc, as_json)
    if not as_json:
        typer.echo(f"retired curated answer {entry.curated_id}:")
    _show(entry, today, as_json)
