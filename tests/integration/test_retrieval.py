"""Hybrid retrieval with access control, on a real Chroma store, real embeddings and BM25."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from rag.types import Chunk, Principal
from tests.asgi import ready_client

pytestmark = pytest.mark.slow

SECRET = "ZEBRA-7731"
EVERYONE = Principal("alice", frozenset({"everyone"}))
HR = Principal("hana", frozenset({"hr"}))
NOBODY = Principal("nobody", frozenset())


def _chunk(doc: str, i: int, text: str, groups: tuple[str, ...], title: str) -> Chunk:
    return Chunk(
        chunk_id=f"{doc}:h:{i}",
        doc_id=doc,
        text=text,
        source=f"/kb/{doc}.md",
        title=title,
        section="Main",
        index=i,
        groups=groups,
        content_hash=f"{doc}{i}",
    )


CHUNKS = [
    _chunk("salary", 0, f"The salary band code for senior engineers is {SECRET}.", ("hr",), "Pay"),
    _chunk("salary", 1, "Salary reviews happen every March for all engineers.", ("hr",), "Pay"),
    _chunk("wifi", 0, "The guest Wi-Fi password is harbor-blue-42.", ("everyone",), "Wi-Fi"),
    _chunk("wifi", 1, "The staff wireless network is NW-Staff.", ("everyone",), "Wi-Fi"),
    _chunk("travel", 0, "出差住宿费用上限为每晚600元，餐补每日100元。", ("everyone", "hr"), "差旅"),
    _chunk("pay-faq", 0, "Salary questions go to the payroll desk.", ("everyone",), "Payroll"),
]


@pytest.fixture(scope="module")
def acl_kb(make_settings: Any, assets: Any) -> Iterator[Any]:
    from rag.services import build_knowledge_base, build_retriever

    settings = make_settings()
    kb = build_knowledge_base(settings)
    kb.store.upsert(CHUNKS, kb.embedder.embed_documents([c.text for c in CHUNKS]))
    assert kb.keyword is not None
    kb.keyword.on_upsert(CHUNKS)
    kb.keyword.commit()
    yield settings, kb, build_retriever(settings, kb)
    kb.keyword.close()


PATHS = {
    "overfetch": {"overfetch_min_share": 0.0},  # always over-fetch, then drop
    "exact": {"overfetch_min_share": 1.0},  # exhaustive search over the readable vectors
    "filter": {"overfetch_min_share": 1.0, "exact_max_chunks": 0},  # Chroma's group filter
}


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
@pytest.mark.parametrize("path", list(PATHS))
def test_a_caller_never_sees_another_groups_chunks(acl_kb: Any, mode: str, path: str) -> None:
    from rag.retrieval.hybrid import SearchStats

    settings, _, retriever = acl_kb
    retriever.settings = settings.retrieval.model_copy(update=PATHS[path])
    try:
        for query in ["salary band code for senior engineers", SECRET, "salary"]:
            stats = SearchStats()
            hits = retriever.search(query, EVERYONE, 10, mode=mode, stats=stats)
            assert all("everyone" in h.chunk.groups for h in hits)
            assert all(SECRET not in h.chunk.text for h in hits)
            assert stats.dense_path == ("" if mode == "keyword" else path)
        hr_hits = retriever.search("salary band code for senior engineers", HR, 3, mode=mode)
        assert hr_hits and SECRET in hr_hits[0].chunk.text
        assert retriever.search("salary", NOBODY, 10, mode=mode) == []
    finally:
        retriever.settings = settings.retrieval


@pytest.mark.parametrize("path", list(PATHS))
def test_a_caller_whose_groups_read_nothing_gets_no_hits_not_an_error(
    acl_kb: Any, path: str
) -> None:
    from rag.types import Principal

    settings, _, retriever = acl_kb
    retriever.settings = settings.retrieval.model_copy(update=PATHS[path])
    nobody = Principal("visitor", frozenset({"no-such-group"}))
    for mode in ("dense", "keyword", "hybrid"):
        assert retriever.search("wifi password", nobody, 4, mode=mode) == []
    retriever.settings = settings.retrieval


def test_exact_path_matches_the_filter_and_follows_group_changes(acl_kb: Any) -> None:
    settings, kb, retriever = acl_kb
    exact = settings.retrieval.model_copy(update=PATHS["exact"])
    filtered = settings.retrieval.model_copy(update=PATHS["filter"])
    vector = kb.embedder.embed_query("wifi password")
    results = {}
    for name, cfg in (("exact", exact), ("filter", filtered)):
        retriever.settings = cfg
        hits = retriever.search("", EVERYONE, 4, mode="dense", vector=vector)
        results[name] = [(h.chunk.chunk_id, round(h.score, 4)) for h in hits]
    assert results["exact"] == results["filter"]  # same chunks, order and cosine scores
    assert results["exact"][0][0] == "wifi:h:0"
    moved = [c for c in CHUNKS if c.chunk_id == "wifi:h:0"]
    hr_only = [replace(c, groups=("hr",)) for c in moved]
    retriever.settings = exact
    try:
        # The store says HR-only before the keyword index is rebuilt: the cached vectors
        # still list the chunk, but it is read back from the store and dropped.
        kb.store.upsert(hr_only, kb.embedder.embed_documents([c.text for c in hr_only]))
        for path in ("exact", "overfetch"):  # overfetch: groups from the stale keyword index
            retriever.settings = settings.retrieval.model_copy(update=PATHS[path])
            for mode in ("dense", "hybrid"):
                hits = retriever.search("wifi password", EVERYONE, 4, mode=mode, vector=vector)
                assert hits and "wifi:h:0" not in [h.chunk.chunk_id for h in hits]
        retriever.settings = exact
        kb.keyword.on_upsert(hr_only)
        kb.keyword.commit()  # a new generation: the HR vectors are read again
        hits = retriever.search("", HR, 4, mode="dense", vector=vector)
        assert hits[0].chunk.chunk_id == "wifi:h:0"
    finally:
        kb.store.upsert(moved, kb.embedder.embed_documents([c.text for c in moved]))
        kb.keyword.on_upsert(moved)
        kb.keyword.commit()
        retriever.settings = settings.retrieval


def test_hybrid_fuses_dense_and_keyword_and_finds_chinese(acl_kb: Any) -> None:
    _, _, retriever = acl_kb
    hits = retriever.search("出差住宿每晚上限多少钱", EVERYONE, 3, mode="keyword")
    assert hits and hits[0].chunk.doc_id == "travel" and hits[0].keyword_score
    hits = retriever.search("NW-Staff", EVERYONE, 3, mode="hybrid")
    top = hits[0]
    assert top.chunk.chunk_id == "wifi:h:1"
    assert top.dense_score is not None and top.keyword_score is not None
    assert top.score == pytest.approx(1.0)  # convex fusion: the best of both rankers
    configured = retriever.settings
    retriever.settings = configured.model_copy(update={"fusion": "rrf"})
    try:
        top = retriever.search("NW-Staff", EVERYONE, 3, mode="hybrid")[0]
    finally:
        retriever.settings = configured
    assert top.chunk.chunk_id == "wifi:h:1"
    # First in both rankings, k = 60.
    assert top.score == pytest.approx((configured.dense_weight + configured.keyword_weight) / 61)


def test_a_question_the_embedder_cannot_read_is_ranked_by_bm25_alone(acl_kb: Any) -> None:
    """A model declared to read English only (all-MiniLM-L6-v2's ``embedding.languages``):
    its vectors of a Chinese question are noise, so hybrid search gives that question BM25's
    ranking (``unread_dense_weight`` 0); a model declared to read Chinese (the default) is
    fused as configured."""
    from rag.retrieval.hybrid import Retriever

    settings, kb, bilingual = acl_kb
    retriever = Retriever(settings.retrieval, kb.embedder, kb.store, kb.keyword, languages=("en",))
    question = "出差住宿每晚上限多少钱"
    keyword = retriever.search(question, EVERYONE, 5, mode="keyword")
    hybrid = retriever.search(question, EVERYONE, 5, mode="hybrid")
    assert [h.chunk.chunk_id for h in hybrid] == [h.chunk.chunk_id for h in keyword]
    best = keyword[0].keyword_score
    assert best is not None
    # Convex fusion, max scaling, dense weighted 0: BM25's share of the best score.
    assert [h.score for h in hybrid] == pytest.approx(
        [(h.keyword_score or 0.0) / best for h in keyword]
    )
    fused = bilingual.search(question, EVERYONE, 5, mode="hybrid")
    assert any(h.dense_score is not None for h in fused)
    assert [h.score for h in fused] != pytest.approx([h.score for h in hybrid])
    # An English question is fused as configured by both.
    english = retriever.search("wifi password", EVERYONE, 3, mode="hybrid")
    assert english[0].dense_score is not None and english[0].keyword_score is not None


def test_filters_restrict_to_documents(acl_kb: Any) -> None:
    from rag.errors import BadRequestError
    from rag.retrieval.hybrid import Filters

    _, _, retriever = acl_kb
    only = Filters.parse({"doc_id": "pay-faq"})
    for mode in ("dense", "keyword", "hybrid"):
        hits = retriever.search("salary", EVERYONE, 5, filters=only, mode=mode)
        assert [h.chunk.doc_id for h in hits] == ["pay-faq"]
    with pytest.raises(BadRequestError, match="Unknown filter"):
        Filters.parse({"groups": "hr"})


def test_keyword_index_heals_after_a_crash_and_other_processes_see_updates(
    acl_kb: Any, tmp_path: Any
) -> None:
    from rag.index.keyword import KeywordIndex

    _, kb, _ = acl_kb
    folder = tmp_path / "kw"
    writer = KeywordIndex(folder)
    writer.on_upsert(CHUNKS[:2])
    writer.on_upsert([_chunk("gone", 0, "a chunk the store never had", ("everyone",), "X")])
    writer.commit()
    reader = KeywordIndex(folder)  # another process: reads the published index only
    assert len(reader) == 3
    # The store holds CHUNKS; the index lacks four and has one extra: reconcile heals it.
    added, removed = writer.reconcile(kb.store.all_ids(), kb.store.get_chunks)
    assert (added, removed) == (len(CHUNKS) - 2, 1)
    assert writer.table_ids() == {c.chunk_id for c in CHUNKS}
    reader._checked_at = 0.0  # skip the half-second re-check pause
    assert len(reader) == len(CHUNKS)
    assert reader.search("guest password", 1)[0][0] == "wifi:h:0"
    # A fresh instance memory-maps the same published index.
    assert KeywordIndex(folder).search("NW-Staff", 1)[0][0] == "wifi:h:1"
    writer.on_delete(["wifi:h:1"])
    writer.commit()
    reader._checked_at = 0.0
    assert all(cid != "wifi:h:1" for cid, _ in reader.search("NW-Staff wireless", 5))


async def test_ask_and_retrieve_never_leak_another_groups_text(
    acl_kb: Any, smol_engine: Any
) -> None:
    """Through the API: hits, SSE events, citations and answers of an 'everyone' caller
    never carry the HR-only chunk; an HR caller gets it."""
    import json

    from serving.app import create_app
    from serving.principal import get_principal

    settings, _, _ = acl_kb
    app = create_app(settings, engine=smol_engine)
    caller = {"who": EVERYONE}
    app.dependency_overrides[get_principal] = lambda: caller["who"]
    async with ready_client(app) as client:
        question = "What is the salary band code for senior engineers?"
        raw = []
        for body in (
            {"query": question, "k": 10},
            {"query": SECRET, "k": 10, "mode": "keyword"},
        ):
            resp = await client.post("/v1/retrieve", json=body)
            assert resp.status_code == 200
            raw.append(resp.text)
        resp = await client.post("/v1/ask", json={"question": question, "stream": True})
        raw.append(resp.text)
        resp = await client.post("/v1/ask", json={"question": question})
        raw.append(resp.text)
        for text in raw:
            assert SECRET not in text and "salary:h" not in text
        caller["who"] = HR
        resp = await client.post("/v1/retrieve", json={"query": question, "k": 1})
        assert SECRET in json.dumps(resp.json()["hits"])


def test_langchain_retriever_returns_documents_the_principal_may_read(acl_kb: Any) -> None:
    from rag.retrieval.langchain_retriever import KnowledgeRetriever

    _, _, retriever = acl_kb
    lc = KnowledgeRetriever(retriever=retriever, principal=EVERYONE, k=4)
    docs = lc.invoke("salary band code for senior engineers")
    assert docs and all(SECRET not in d.page_content for d in docs)
    assert {"doc_id", "title", "source", "page", "section", "score"} <= set(docs[0].metadata)
    hr = KnowledgeRetriever(retriever=retriever, principal=HR, k=1, mode="keyword")
    assert SECRET in hr.invoke(SECRET)[0].page_content


def test_the_keyword_index_knows_each_chunks_language(acl_kb: Any) -> None:
    """Fusion by language reads each candidate's language from the published BM25 index."""
    _, kb, _ = acl_kb
    assert kb.keyword.languages(["travel:h:0", "wifi:h:0", "unknown:h:0"]) == {
        "travel:h:0": "zh",
        "wifi:h:0": "en",
    }
