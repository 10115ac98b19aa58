"""Curated answers (issue 24) over the real app: admins write them through /v1/curated and
`rag-ingest curate`; callers in their groups asking the question (or a paraphrase) get them,
cited as "curated by <owner>, <date>"; nobody else does, and near misses do not.

The app runs the sample knowledge base with API keys; answers are extractive (the engine is
never needed to tell a curated answer from a generated one). The CLI writes to the same
state database as the running app: a change it makes is served without a restart, as on
another replica.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.state.curated import CuratedStore
from rag.state.db import StateDB
from tests.asgi import ready_client
from tests.clock import Clock
from tests.ingest_cli import cli

pytestmark = pytest.mark.slow

QUESTION = "How do I book the large meeting room in the Berlin office?"
ANSWER = (
    "Book Atlas (3rd floor) in the Rooms calendar. Bookings over 4 hours need the office "
    "manager's approval."
)
OWNER = "facilities@example.com"


@dataclass
class World:
    client: httpx.AsyncClient
    app: Any
    settings: Any
    admin: dict[str, str]
    staff: dict[str, str]
    outsider: dict[str, str]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
async def world(
    sample_kb: Any, smol_engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    from rag.config import AuthSettings
    from serving.app import create_app

    data = tmp_path_factory.mktemp("curated-state")
    settings = sample_kb.model_copy(
        update={
            "auth": AuthSettings(required=True, rate_per_minute=0),
            "paths": sample_kb.paths.model_copy(update={"data_dir": data}),
            "answer": sample_kb.answer.model_copy(update={"mode": "extractive"}),
        }
    )
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as client:
        keys = app.state.rag.keys
        _, admin = keys.create("helpdesk-admin", ["admin", "ask", "metrics"], ["staff"])
        _, staff = keys.create("staff", ["ask"], ["everyone", "staff"])
        _, outsider = keys.create("contractor", ["ask"], ["everyone", "contractors"])
        yield World(client, app, settings, bearer(admin), bearer(staff), bearer(outsider))


async def ask(w: World, question: str, who: dict[str, str]) -> dict[str, Any]:
    resp = await w.client.post("/v1/ask", json={"question": question}, headers=who)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def streamed(w: World, question: str) -> list[tuple[str, Any]]:
    """``/v1/ask`` with ``stream: true`` as the staff caller: the SSE events (name, data)."""
    events: list[tuple[str, Any]] = []
    name = ""
    payload = {"question": question, "stream": True}
    async with w.client.stream("POST", "/v1/ask", json=payload, headers=w.staff) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def curated_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in body["citations"] if c["doc_id"].startswith("curated:")]


async def add(w: World, **fields: Any) -> dict[str, Any]:
    payload = {"question": QUESTION, "answer": ANSWER, "groups": ["staff"], "owner": OWNER}
    resp = await w.client.post("/v1/curated", json=payload | fields, headers=w.admin)
    assert resp.status_code == 200, resp.text
    entry: dict[str, Any] = resp.json()
    return entry


async def test_a_curated_answer_is_served_to_its_groups_only_and_never_to_a_near_miss(
    world: World,
) -> None:
    w = world
    entry = await add(w)
    today = date.today()
    assert entry["review_by"] == (today + timedelta(days=180)).isoformat()
    assert entry["status"] == "active" and entry["origin"] == "fresh" and not entry["stale"]
    assert entry["created_by"].startswith("key:")

    body = await ask(w, QUESTION, w.staff)
    assert body["origin"] == "curated" and body["answer"] == ANSWER
    [cite] = body["citations"]
    assert cite["doc_id"] == f"curated:{entry['curated_id']}"
    assert cite["source"] == f"curated by {OWNER}, {today.isoformat()}"
    assert cite["curated_by"] == OWNER and cite["title"] == QUESTION and not cite["stale"]

    # Streamed, for a paraphrase: the citation first, the text in pieces, then done.
    events = await streamed(w, "How can I book the large meeting room in the Berlin office?")
    names = [name for name, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and names.count("delta") >= 2
    assert events[0][1]["citations"][0]["curated_by"] == OWNER
    assert "".join(d["text"] for n, d in events if n == "delta") == ANSWER
    assert events[-1][1]["origin"] == "curated"

    # Near misses: another office, another number. They get the documents' answer.
    for near in (
        "How do I book the large meeting room in the Madrid office?",
        "How do I book the 2 large meeting rooms in the Berlin office?",
    ):
        missed = await ask(w, near, w.staff)
        assert missed["origin"] != "curated" and not curated_of(missed), near

    # Outside its groups: not in the answer, not in the search.
    other = await ask(w, QUESTION, w.outsider)
    assert other["origin"] != "curated" and not curated_of(other)
    found = await w.client.post("/v1/retrieve", json={"query": QUESTION}, headers=w.outsider)
    assert found.status_code == 200 and not any(h["curated"] for h in found.json()["hits"])
    # In them: the curated answer is the first hit, within k.
    found = await w.client.post("/v1/retrieve", json={"query": QUESTION, "k": 3}, headers=w.staff)
    hits = found.json()["hits"]
    assert len(hits) == 3 and hits[0]["curated"] and hits[0]["text"] == ANSWER
    assert not any(h["curated"] for h in hits[1:])

    # Only admins manage them.
    for method, path in (("GET", "/v1/curated"), ("POST", "/v1/curated")):
        denied = await w.client.request(method, path, headers=w.staff, json={})
        assert denied.status_code == 403, denied.text
        assert "'admin' scope" in denied.json()["error"]["message"]

    metrics = await w.client.get("/metrics", headers=w.admin)
    assert 'kb_curated_answers_served_total{freshness="current"} 2.0' in metrics.text
    assert 'kb_curated_answers{freshness="current"} 1.0' in metrics.text
    await w.client.post(f"/v1/curated/{entry['curated_id']}/retire", headers=w.admin)


async def test_edits_change_what_is_served_a_past_review_date_is_stale_and_retire_stops_it(
    world: World,
) -> None:
    w = world
    question = "Who approves a laptop replacement for the Berlin office?"
    entry = await add(w, question=question, answer="Your team lead approves it.")
    cid = entry["curated_id"]
    path = f"/v1/curated/{cid}"

    edited = await w.client.patch(
        path, json={"answer": "The IT asset desk approves it."}, headers=w.admin
    )
    assert edited.status_code == 200 and edited.json()["updated_at"] > entry["updated_at"]
    assert (await ask(w, question, w.staff))["answer"] == "The IT asset desk approves it."

    yesterday = (date.today() - timedelta(days=1)).isoformat()
    due = await w.client.patch(path, json={"review_by": yesterday}, headers=w.admin)
    assert due.status_code == 200 and due.json()["stale"]
    body = await ask(w, question, w.staff)
    assert body["origin"] == "curated" and body["citations"][0]["stale"]
    listed = (await w.client.get("/v1/curated?stale=true", headers=w.admin)).json()
    assert [e["curated_id"] for e in listed["curated"]] == [cid] and listed["count"] == 1

    retired = await w.client.post(f"{path}/retire", headers=w.admin)
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    after = await ask(w, question, w.staff)
    assert after["origin"] != "curated" and not curated_of(after)
    again = await w.client.patch(path, json={"answer": "x"}, headers=w.admin)
    assert again.status_code == 409 and "retired" in again.json()["error"]["message"]
    gone = await w.client.get("/v1/curated?status=retired", headers=w.admin)
    assert cid in [e["curated_id"] for e in gone.json()["curated"]]


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"groups": []}, 422, "No access groups given"),
        ({"groups": ["bad group"]}, 422, "is not valid"),
        ({"answer": "   "}, 422, "The answer is empty"),
        ({"owner": ""}, 422, "The owner is empty"),
        ({"review_by": "31/01/2027"}, 422, "Write it as YYYY-MM-DD"),
        ({"question": None}, 422, "No question given"),
        ({"from_answer_id": "nope"}, 404, "No recorded answer with answer_id 'nope'"),
        ({"from_answer_id": "a", "from_cluster": "b"}, 422, "not both"),
        ({"colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ],
)
async def test_bad_input_says_what_to_fix(
    world: World, fields: dict[str, Any], status: int, says: str
) -> None:
    payload = {"question": "Where is the first-aid kit?", "answer": "By the lifts."}
    payload |= {"groups": ["staff"], "owner": OWNER} | fields
    resp = await world.client.post("/v1/curated", json=payload, headers=world.admin)
    assert resp.status_code == status, resp.text
    assert says in resp.json()["error"]["message"]


async def test_unknown_ids_duplicates_and_empty_changes_are_refused_clearly(world: World) -> None:
    w = world
    missing = await w.client.get("/v1/curated/0000000000", headers=w.admin)
    assert missing.status_code == 404
    assert "rag-ingest curate list" in missing.json()["error"]["message"]
    entry = await add(w, question="Where is the Berlin office's first-aid kit?", answer="Lifts.")
    twice = await w.client.post(
        "/v1/curated",
        json={
            "question": "where is the berlin office's first-aid kit",
            "answer": "Reception.",
            "groups": ["staff", "everyone"],
            "owner": OWNER,
        },
        headers=w.admin,
    )
    assert twice.status_code == 409
    assert f"rag-ingest curate edit {entry['curated_id']}" in twice.json()["error"]["message"]
    empty = await w.client.patch(f"/v1/curated/{entry['curated_id']}", json={}, headers=w.admin)
    assert empty.status_code == 200 and empty.json() == entry  # nothing given: unchanged
    past = await w.client.post(
        "/v1/curated",
        json={
            "question": "Who refills the Berlin office's first-aid kit?",
            "answer": "Facilities, monthly.",
            "groups": ["staff"],
            "owner": OWNER,
            "review_by": "2020-01-01",
        },
        headers=w.admin,
    )
    assert past.status_code == 200 and past.json()["stale"]  # due for review at once
    await w.client.post(f"/v1/curated/{entry['curated_id']}/retire", headers=w.admin)


async def test_an_admin_curates_the_question_of_a_recorded_answer(world: World) -> None:
    w = world
    question = "Can contractors in the Berlin office use the gym?"
    first = await ask(w, question, w.staff)
    assert first["origin"] != "curated"
    entry = await add(
        w,
        question=None,
        from_answer_id=first["answer_id"],
        answer="Contractors may use the gym with a day pass from reception.",
    )
    assert entry["question"] == question
    assert entry["origin"] == f"answer:{first['answer_id']}"
    again = await ask(w, question, w.staff)
    assert again["origin"] == "curated" and again["answer"].startswith("Contractors may")
    one = await w.client.get(f"/v1/curated/{entry['curated_id']}", headers=w.admin)
    assert one.status_code == 200 and one.json()["question"] == question
    await w.client.post(f"/v1/curated/{entry['curated_id']}/retire", headers=w.admin)


async def test_the_cli_adds_lists_edits_and_retires_what_the_running_service_serves(
    world: World, tmp_path: Path
) -> None:
    import asyncio

    w = world
    env = {"RAG_PATHS__DATA_DIR": str(w.settings.paths.data_dir)}
    store = w.settings.store.path
    question = "What is the door code of the Berlin bike cellar?"
    answer_file = tmp_path / "answer.txt"
    answer_file.write_text("Ask reception: the code changes monthly.", encoding="utf-8")

    added = cli(
        store,
        "curate", "add", "--question", question, "--answer-file", str(answer_file),
        "--group", "staff", "--owner", "Facilities team", "--from-cluster", "--json",
        **env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    entry = json.loads(added.stdout)
    assert entry["origin"] == "cluster" and entry["created_by"].startswith("cli:")
    cid = entry["curated_id"]

    await asyncio.sleep(w.settings.curated.check_interval_s)  # another process changed it
    body = await ask(w, question, w.staff)
    assert body["answer"] == "Ask reception: the code changes monthly."
    assert body["citations"][0]["source"].startswith("curated by Facilities team, ")

    listed = cli(store, "curate", "list", "--status", "active", "--json", **env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert cid in [r["curated_id"] for r in rows]

    edited = cli(store, "curate", "edit", cid, "--answer", "Reception has it.", "--json", **env)
    assert edited.returncode == 0 and json.loads(edited.stdout)["answer"] == "Reception has it."
    await asyncio.sleep(w.settings.curated.check_interval_s)
    assert (await ask(w, question, w.staff))["answer"] == "Reception has it."

    retired = cli(store, "curate", "retire", cid, "--json", **env)
    assert retired.returncode == 0 and json.loads(retired.stdout)["status"] == "retired"
    await asyncio.sleep(w.settings.curated.check_interval_s)
    assert (await ask(w, question, w.staff))["origin"] != "curated"

    bad = cli(store, "curate", "edit", "nope", "--owner", "x", "--json", **env)
    assert bad.returncode == 2
    error = json.loads(bad.stdout)
    assert error["error"] == "not_found" and "rag-ingest curate list" in error["message"]
    no_groups = cli(store, "curate", "add", "--question", "q?", "--answer", "a", "--owner", "o")
    assert no_groups.returncode == 2 and "No access groups given" in no_groups.stderr


def test_the_store_on_sqlite_and_postgresql(state_url: str) -> None:
    """Two StateDB objects stand for two replicas: a change on one moves the version the
    other reads; review dates and staleness follow the store's clock."""
    clock = Clock(1_900_000_000.0)
    one, two = StateDB(state_url), StateDB(state_url)
    try:
        a = CuratedStore(one, review_days=30, language_of=lambda q: "en", clock=clock)
        b = CuratedStore(two, review_days=30, clock=clock)
        before = b.version()
        entry = a.add("Q one?", "A one.", groups=["staff"], owner="o", by="admin")
        assert b.version() != before and b.get(entry.curated_id).language == "en"
        assert entry.review_by == a.today() + timedelta(days=30)
        seen = b.version()
        a.edit(entry.curated_id, by="admin", owner="p")  # same second: still a new version
        assert b.version() != seen and b.get(entry.curated_id).owner == "p"
        clock.now += 31 * 86400
        assert [e.curated_id for e in b.list(stale=True)] == [entry.curated_id]
        assert b.retire(entry.curated_id, by="admin").status == "retired"
        assert b.list(status="active") == [] and len(b.list(status="retired")) == 1
    finally:
        one.close()
        two.close()
