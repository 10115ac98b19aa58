"""``/v1/curated``: curated answers, written or approved by admins (``admin`` scope).

The same store as ``rag-ingest curate``: :class:`rag.state.curated.CuratedStore`. A change
made here is served by this process from the next question on, and by other replicas within
``curated.check_interval_s``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from rag.errors import BadRequestError, NotFoundError
from rag.services import Services
from rag.state.curated import CuratedEntry, CuratedStore
from serving.apidocs import route_error
from serving.deps import Admin, ServicesDep
from serving.schemas.curated import CuratedCreate, CuratedList, CuratedOut, CuratedPatch

router = APIRouter(tags=["curated"])

_DUPLICATE = route_error(
    409,
    "conflict",
    "Curated answer 4be8c21f0a already answers this question for group(s) everyone. Edit it "
    "(rag-ingest curate edit 4be8c21f0a) or retire it first.",
    "An active curated answer already answers this question for one of the groups, or the "
    "answer to change is retired.",
)
_NOT_FOUND = route_error(
    404,
    "not_found",
    "No curated answer with id '4be8c21f0a'. List them with rag-ingest curate list (or GET "
    "/v1/curated).",
    "No curated answer has this id.",
)
CuratedId = Annotated[
    str, Path(min_length=1, max_length=32, description="The id from GET /v1/curated.")
]


async def get_curated_store(services: ServicesDep) -> CuratedStore:
    return services.part(services.curated_store, "curated answers store")


Store = Annotated[CuratedStore, Depends(get_curated_store)]


def _out(store: CuratedStore, entry: CuratedEntry) -> CuratedOut:
    return CuratedOut.of(entry, store.today())


def _changed(services: Services) -> None:
    if services.curated is not None:
        services.curated.changed()


@router.get(
    "/v1/curated",
    summary="List curated answers (admin scope).",
    response_model=CuratedList,
    response_description="Curated answers, oldest first.",
)
async def list_curated(
    _: Admin,
    store: Store,
    status: Annotated[
        Literal["active", "retired"] | None,
        Query(description="Only active (served) or retired ones."),
    ] = None,
    stale: Annotated[
        bool | None,
        Query(description="true: only those past their review date; false: only the others."),
    ] = None,
) -> CuratedList:
    """Every curated answer with its owner, groups, review date and whether it is stale.
    `?stale=true&status=active` lists what is due for review."""
    entries = await asyncio.to_thread(store.list, status=status, stale=stale)
    today = store.today()
    return CuratedList(curated=[CuratedOut.of(e, today) for e in entries], count=len(entries))


@router.post(
    "/v1/curated",
    summary="Add a curated answer (admin scope).",
    response_model=CuratedOut,
    response_description="The curated answer, served from now on.",
    responses={
        404: route_error(
            404,
            "not_found",
            "No recorded answer with answer_id '3f2a9c0e'. Copy the answer_id from the "
            "answer (or the report), or give the question instead.",
            "from_answer_id names no recorded answer.",
        ),
        409: _DUPLICATE,
    },
)
async def add_curated(
    body: CuratedCreate, caller: Admin, store: Store, services: ServicesDep
) -> CuratedOut:
    """An answer given instead of a generated one to questions that mean the same as
    `question`, for callers in one of `groups`; cited as "curated by <owner>, <date>".
    Write it fresh, for a cluster of unanswered questions (`from_cluster`), or from a
    recorded answer (`from_answer_id`, e.g. a thumbed-down one). A question with an active
    curated answer for the same groups is refused: edit that one instead."""
    question, origin = body.question, "fresh"
    if body.from_answer_id is not None and body.from_cluster is not None:
        raise BadRequestError(
            "Give from_answer_id or from_cluster, not both: the answer has one origin."
        )
    if body.from_answer_id is not None:
        origin = f"answer:{body.from_answer_id}"
        recorded = await _recorded_question(services, body.from_answer_id, question is None)
        question = question if question is not None else recorded
    elif body.from_cluster is not None:
        origin = "cluster"
        question = question if question is not None else body.from_cluster
    if question is None:
        raise BadRequestError(
            "No question given. Write the question this answer is for (question), or name a "
            "recorded answer (from_answer_id) or a report cluster (from_cluster)."
        )
    entry = await asyncio.to_thread(
        store.add,
        question,
        body.answer,
        groups=body.groups,
        owner=body.owner,
        by=caller.subject,
        review_by=body.review_by,
        origin=origin,
    )
    _changed(services)
    return _out(store, entry)


async def _recorded_question(services: Services, answer_id: str, needed: bool) -> str:
    """The question of a recorded answer (404 when there is none); ``needed``: the request
    gave no question of its own, so one must have been recorded."""
    feedback = services.part(services.feedback, "feedback store")
    record = await asyncio.to_thread(feedback.answer, answer_id)
    if record is None:
        raise NotFoundError(
            f"No recorded answer with answer_id {answer_id!r}. Copy the answer_id from the "
            "answer (or the report), or give the question instead."
        )
    if not record.question and needed:
        raise BadRequestError(
            f"Answer {answer_id} was recorded without its question "
            "(feedback.store_questions is off). Give the question in the request."
        )
    return record.question or ""


@router.get(
    "/v1/curated/{curated_id}",
    summary="One curated answer (admin scope).",
    response_model=CuratedOut,
    response_description="The curated answer, with whether it is stale.",
    responses={404: _NOT_FOUND},
)
async def get_curated(curated_id: CuratedId, _: Admin, store: Store) -> CuratedOut:
    """A curated answer by its id (a citation's doc_id is `curated:<id>`)."""
    return _out(store, await asyncio.to_thread(store.get, curated_id))


@router.patch(
    "/v1/curated/{curated_id}",
    summary="Change a curated answer (admin scope).",
    response_model=CuratedOut,
    response_description="The answer as it is now served.",
    responses={404: _NOT_FOUND, 409: _DUPLICATE},
)
async def edit_curated(
    curated_id: CuratedId,
    body: CuratedPatch,
    caller: Admin,
    store: Store,
    services: ServicesDep,
) -> CuratedOut:
    """Change the question, answer, groups, owner or review date; what is given replaces
    what was there; nothing given changes nothing. Retired answers cannot be changed (409:
    add a new one)."""
    if body.empty:
        return _out(store, await asyncio.to_thread(store.get, curated_id))
    entry = await asyncio.to_thread(
        store.edit,
        curated_id,
        by=caller.subject,
        question=body.question,
        answer=body.answer,
        groups=body.groups,
        owner=body.owner,
        review_by=body.review_by,
    )
    _changed(services)
    return _out(store, entry)


@router.post(
    "/v1/curated/{curated_id}/retire",
    summary="Retire a curated answer (admin scope).",
    response_model=CuratedOut,
    response_description="The answer, retired: kept for the record, no longer served.",
    responses={404: _NOT_FOUND},
)
async def retire_curated(
    curated_id: CuratedId, caller: Admin, store: Store, services: ServicesDep
) -> CuratedOut:
    """Stop serving it at once (other replicas within a second or so). It is kept for the
    record; retiring it again changes nothing. `rag-ingest curate retire` does the same."""
    entry = await asyncio.to_thread(store.retire, curated_id, by=caller.subject)
    _changed(services)
    return _out(store, entry)
