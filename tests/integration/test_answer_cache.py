"""The answer cache (issue 24): a repeat or a close paraphrase from a caller with the same
groups is answered at once, the same way and with the same citations, marked ``cached``;
a changed or deleted cited document, another group set or a follow-up misses; the labelled
set's test pairs give no false hit. Real parts: Chroma, the embedding model, the BM25 index,
the state database (SQLite; PostgreSQL for the store), the HTTP app, the CPU engine."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rag.state.answer_cache import AnswerCacheStore, CacheEntry, scope_of
from rag.state.db import StateDB
from rag.types import Principal
from tests.asgi import ready_client, sse

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KB = REPO / "examples" / "kb"
PAIRS = REPO / "examples" / "eval" / "answer-cache" / "pairs.jsonl"
CORPUS = REPO / "examples" / "eval" / "helpdesk-bilingual"
WIFI = "What is the guest Wi-Fi password?"
PARKING = "Where can visitors park at the Harbour office?"
EVERYONE = Principal("alice", frozenset({"everyone"}))


def cache_settings(make_settings: Any, **sections: Any) -> Any:
    """The test profile with the cache on, answering extractively (the CPU profiles' mode:
    no model text, so an answer is never cut off at the test profile's token cap)."""
    return make_settings(cache={"enabled": True}, answer={"mode": "extractive"}, **sections)


@dataclass
class Local:
    """A small knowledge base of its own (its documents change), an answer service over it
    with the cache on, and the ingestor that changes it."""

    settings: Any
    folder: Path
    kb: Any
    service: Any
    cache: Any
    db: StateDB

    def ingest(self) -> None:
        from ingest.pipeline import Ingestor

        ingestor = Ingestor(
            self.settings, self.kb.embedder, self.kb.store, listeners=self.kb.listeners
        )
        try:
            results = list(ingestor.sync(self.folder))
        finally:
            ingestor.close()
        assert not [r for r in results if r.status == "failed"], results

    async def ask(self, question: str, principal: Principal = EVERYONE, **kw: Any) -> Any:
        return await self.service.ask_full(question, principal, **kw)


@pytest.fixture(scope="module")
def local(
    make_settings: Any, smol_engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Local]:
    from rag.answering.answer import AnswerService
    from rag.services import build_answer_cache, build_knowledge_base, build_retriever, open_state

    folder = tmp_path_factory.mktemp("cache-kb")
    shutil.copy(KB / "it-wifi-and-vpn.md", folder)
    (folder / "parking.md").write_text(
        "# Parking at the Harbour office\n\nVisitors park on level B2 of the Harbour office "
        "garage. Register the car at reception to get a free 3-hour ticket.\n",
        encoding="utf-8",
    )
    settings = cache_settings(make_settings)
    kb = build_knowledge_base(settings)
    db = open_state(settings)
    local = Local(settings, folder, kb, None, build_answer_cache(settings, db, kb), db)
    local.ingest()
    local.service = AnswerService(
        settings, build_retriever(settings, kb), smol_engine, cache=local.cache
    )
    yield local
    db.close()
    kb.store.close()


async def test_a_changed_cited_document_misses_and_its_entry_is_dropped(local: Local) -> None:
    first = await local.ask(PARKING)
    assert first.answer.origin == "sources" and "B2" in first.answer.answer
    assert any(c.source.endswith("parking.md") for c in first.answer.citations)
    again = await local.ask(PARKING)
    assert again.answer.origin == "cache"
    assert again.answer.answer == first.answer.answer
    assert again.answer.citations == first.answer.citations
    assert again.sentences == first.sentences

    (local.folder / "parking.md").write_text(
        "# Parking at the Harbour office\n\nVisitors park on level B4 of the Harbour office "
        "garage. Register the car at reception to get a free 2-hour ticket.\n",
        encoding="utf-8",
    )
    local.ingest()
    stale = local.cache.lookups["stale"]
    changed = await local.ask(PARKING)
    assert changed.answer.origin == "sources"
    assert "B4" in changed.answer.answer and "B2" not in changed.answer.answer
    assert local.cache.lookups["stale"] == stale + 1
    # The new answer is cached in turn, with the new version.
    assert (await local.ask(PARKING)).answer.answer == changed.answer.answer

    (local.folder / "parking.md").unlink()
    local.ingest()
    gone = await local.ask(PARKING)
    assert gone.answer.origin == "sources"
    assert not any(c.source.endswith("parking.md") for c in gone.answer.citations)


async def test_another_group_set_never_gets_the_answer(local: Local) -> None:
    await local.ask(WIFI)
    assert (await local.ask(WIFI)).answer.origin == "cache"
    for groups in ({"everyone", "hr"}, {"everyone", "it"}, {"everyone", "hr", "it"}):
        other = Principal("alice", frozenset(groups))
        assert (await local.ask(WIFI, other)).answer.origin == "sources", groups
    # The same groups in another order, or another subject with them: the same scope.
    assert (
        await local.ask(WIFI, Principal("bob", frozenset({"everyone"})))
    ).answer.origin == "cache"


async def test_cache_off_in_config_means_no_hit(
    local: Local, make_settings: Any, smol_engine: Any
) -> None:
    from rag.answering.answer import AnswerService
    from rag.services import build_answer_cache, build_retriever

    off = local.settings.model_copy(
        update={"cache": local.settings.cache.model_copy(update={"enabled": False})}
    )
    assert build_answer_cache(off, local.db, local.kb) is None
    service = AnswerService(off, build_retriever(off, local.kb), smol_engine, cache=None)
    await local.ask(WIFI)  # cached for the service with the cache on
    for _ in range(2):
        assert (await service.ask_full(WIFI, EVERYONE)).answer.origin == "sources"


GROUPS = st.frozensets(st.sampled_from(["hr", "finance", "it", "sales", "legal"]), max_size=3)


@hsettings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stored=GROUPS,
    asking=GROUPS,
    question=st.sampled_from([WIFI, "what is the guest wifi password", "guest Wi-Fi password?"]),
)
def test_property_a_cached_answer_never_reaches_another_group_set(
    local: Local, stored: frozenset[str], asking: frozenset[str], question: str
) -> None:
    """Whatever groups stored an answer and whatever groups ask (both read the cited
    document: everyone), it is served only to exactly the same group set."""
    from rag.types import Answer, Citation, Usage

    chunk = next(
        c for c in local.kb.store.chunks_where({"doc_id": {"$ne": ""}}) if "guest" in c.text.lower()
    )
    local.cache.store.clear()
    answer = Answer(
        "The guest Wi-Fi password is on the card at reception [1].",
        [
            Citation(
                1,
                chunk.doc_id,
                chunk.title,
                chunk.source,
                chunk.page,
                chunk.text[:50],
                chunk.section,
                chunk.chunk_id,
            )
        ],
        Usage(),
    )
    writer = Principal("w", frozenset({"everyone"} | stored))
    assert local.cache.remember(WIFI, writer, answer, [])
    reader = Principal("r", frozenset({"everyone"} | asking))
    found = local.cache.lookup(question, reader)
    if writer.groups == reader.groups:
        assert found is not None and found.answer.answer == answer.answer
    else:
        assert found is None


def test_the_labelled_test_pairs_give_no_false_hit(make_settings: Any, tmp_path: Path) -> None:
    """The labelled set's test split through the real matcher: the knowledge base's
    embedder, the configured threshold and the BM25 index of the helpdesk corpus (for the
    distinctive words). No miss may match; the hit rate is printed."""
    from rag.answering.cache import distinctive_for
    from rag.answering.matching import best_match
    from rag.eval.beir import build_index, load_beir
    from rag.services import build_embedder

    settings = make_settings()
    cfg = settings.cache
    embedder = build_embedder(settings)
    keyword = build_index(
        load_beir(CORPUS, "test"), settings, embedder, tmp_path, embed=False
    ).keyword
    distinctive = distinctive_for(keyword, ["everyone"], cfg.distinctive_share)
    pairs = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line]
    test = [p for p in pairs if p["split"] == "test"]
    assert len(test) >= 100
    false_hits, hits = [], 0
    for p in test:
        found = best_match(
            p["b"],
            embedder.embed_query(p["b"]),
            [(p["a"], embedder.embed_query(p["a"]))],
            threshold=cfg.threshold,
            distinctive=distinctive,
        )
        if found is not None and p["expect"] == "miss":
            false_hits.append(p["id"])
        hits += found is not None and p["expect"] == "hit"
    should = sum(p["expect"] == "hit" for p in test)
    print(f"\nanswer cache, labelled test pairs: {hits}/{should} hits, false hits {false_hits}")
    assert not false_hits
    assert hits >= 1  # repeats at least: a matcher that never matches is no cache


def test_the_store_on_each_database(state_url: str) -> None:
    db = StateDB(state_url)
    try:
        store = AnswerCacheStore(db)
        scope = scope_of({"hr", "everyone"}, "kb", "m")
        assert scope == scope_of(["everyone", "hr", "hr"], "kb", "m")
        assert scope != scope_of({"everyone"}, "kb", "m")
        now = time.time()
        for i in range(5):
            store.put(
                CacheEntry(
                    scope,
                    f"question {i}",
                    "en",
                    (0.5, -1.25, i),
                    {"answer": f"a{i}"},
                    {"c": "v"},
                    created_at=now - 100 + i,
                ),
                max_entries=3,
            )
        got = store.candidates(scope, 10)
        assert [e.question for e in got] == ["question 4", "question 3", "question 2"]
        assert got[0].vector == (0.5, -1.25, 4.0) and got[0].answer == {"answer": "a4"}
        store.put(CacheEntry(scope, "question 4", "en", (1.0,), {"answer": "new"}, {}))
        assert store.count(scope) == 3  # the same question replaced
        store.hit(got[1].id, now)
        again = {e.id: e for e in store.candidates(scope, 10)}
        assert again[got[1].id].hits == 1 and again[got[1].id].last_hit_at == pytest.approx(now)
        store.drop(got[1].id)
        assert store.count(scope) == 2
        assert store.purge(now - 50) == 1  # question 2 is old
        assert store.candidates(scope_of({"everyone"}, "kb", "m"), 10) == []
    finally:
        db.close()


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def client(
    make_settings: Any, smol_engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    from ingest.pipeline import Ingestor
    from rag.services import build_knowledge_base
    from serving.app import create_app

    folder = tmp_path_factory.mktemp("cache-http-kb")
    shutil.copy(KB / "it-wifi-and-vpn.md", folder)
    settings = cache_settings(make_settings)
    kb = build_knowledge_base(settings)
    list(Ingestor(settings, kb.embedder, kb.store).add([folder]))
    kb.store.close()
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as c:
        yield c


async def test_a_repeat_and_a_paraphrase_are_answered_from_the_cache(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.post("/v1/ask", json={"question": WIFI})).json()
    assert first["cached"] is False and first["origin"] == "sources" and first["citations"]
    repeat = (
        await client.post("/v1/ask", json={"question": "what is the GUEST wi-fi password"})
    ).json()
    assert repeat["cached"] is True and repeat["origin"] == "cache"
    for key in ("answer", "citations", "sentences", "unsupported", "quoted", "declined"):
        assert repeat[key] == first[key], key
    assert repeat["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert repeat["answer_id"] != first["answer_id"]

    # A paraphrase, streamed: the same events as a fresh answer, marked in the done event.
    events = await sse(
        client, {"question": "Hey, what's the password for the guest wifi?", "stream": True}
    )
    names = [e for e, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and "delta" in names
    done = events[-1][1]
    assert done["cached"] is True and done["origin"] == "cache"
    assert (
        "".join(d["text"] for e, d in events if e == "delta") == done["answer"] == first["answer"]
    )
    assert events[0][1]["citations"] == first["citations"]

    # Something else about the same document is answered afresh.
    other = (
        await client.post("/v1/ask", json={"question": "What is the staff Wi-Fi password?"})
    ).json()
    assert other["cached"] is False

    metrics = (await client.get("/metrics")).text
    assert 'kb_answer_cache_lookups_total{result="hit"} 2.0' in metrics
    assert 'kb_answers_by_origin_total{origin="cache"} 2.0' in metrics
    assert 'kb_answers_by_origin_total{origin="sources"}' in metrics


async def test_a_follow_up_is_not_answered_from_the_cache(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/ask", json={"question": WIFI})).json()
    cid = first["conversation_id"]
    assert cid
    # The same words as a turn of a conversation: its meaning may depend on the turns before.
    follow = (await client.post("/v1/ask", json={"question": WIFI, "conversation_id": cid})).json()
    assert follow["conversation_id"] == cid
    assert follow["cached"] is False and follow["origin"] == "sources"
