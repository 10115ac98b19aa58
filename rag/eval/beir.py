"""Retrieval evaluation on BEIR-format datasets (``rag-ingest eval``).

A dataset folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``).
The corpus is chunked the way the service chunks prose (sentences packed up to
``ingest.chunk_tokens`` embedding tokens, one sentence of overlap, the title in front of
each chunk), embedded and stored in a scratch Chroma collection plus a scratch BM25 index
(reused on the next run when the corpus and model are unchanged). Each query is answered by
dense, keyword and hybrid search over chunks; chunk scores roll up to documents (best chunk;
an optional bonus per further matching chunk: on SciFact any bonus hurt, 0.1 cost 0.07
dense nDCG@10), and hybrid fuses the two scored document rankings the way the service fuses
chunks (``retrieval.fusion`` and its weights, :func:`rag.retrieval.hybrid.fuse`).

Metrics (BEIR conventions: linear gains, relevant = grade > 0): nDCG@10, Recall@10,
Recall@100, MRR@10, and search latency p50/p99 in milliseconds (query embedding reported
separately, once, since all modes share it). nDCG@10 also gets a 95% bootstrap interval over
the queries (:func:`bootstrap_ci`): on a few hundred queries it is about +-0.04 wide, so a
difference of 0.01 between two settings is a hint, not a result, until a paired comparison
or a second query set confirms it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import BadRequestError
from rag.index.dictionary import dictionary
from rag.index.keyword import KeywordIndex
from rag.index.lexical import language
from rag.index.store import ChromaStore
from rag.retrieval.hybrid import fuse_hybrid, language_aware, ranked, translates, weights
from rag.seams import Embedder
from rag.types import Chunk

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]
MODES = ("dense", "keyword", "hybrid")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


# -- metrics ---------------------------------------------------------------------------------


def ndcg_at(ranking: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranking: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, g in rels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def mrr_at(ranking: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranking[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def judged(qrels: Qrels) -> list[str]:
    """The queries with at least one relevant document (the ones metrics average over)."""
    return [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: reruns agree)."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2
    return (percentile(means, tail), percentile(means, 1.0 - tail))


def ndcg_per_query(run: Run, qrels: Qrels) -> list[float]:
    """nDCG@10 of each judged query, in :func:`judged` order (missing runs score 0)."""
    return [ndcg_at(run.get(q, []), qrels[q]) for q in judged(qrels)]


def score_run(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean metrics over the queries that have judgements (missing runs score 0)."""
    queries = judged(qrels)
    if not queries:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    n = len(queries)
    return {
        "ndcg@10": sum(ndcg_per_query(run, qrels)) / n,
        "recall@10": sum(recall_at(run.get(q, []), qrels[q], 10) for q in queries) / n,
        "recall@100": sum(recall_at(run.get(q, []), qrels[q], 100) for q in queries) / n,
        "mrr@10": sum(mrr_at(run.get(q, []), qrels[q]) for q in queries) / n,
    }


# -- dataset ---------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: Qrels
    groups: dict[str, str] = field(default_factory=dict)
    """Query id -> its group in the report: ``metadata.kind`` (``en-zh``: an English question
    about Chinese documents) where the query has one, else its language (``en``/``zh``)."""


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise BadRequestError(
                        f"{path}:{line_no} is not valid JSON ({exc}). Fix the file."
                    ) from exc


def load_beir(folder: Path, split: str = "test") -> Dataset:
    corpus_file, queries_file = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_file, queries_file, qrels_file):
        if not path.is_file():
            raise BadRequestError(
                f"{path} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and "
                f"qrels/{split}.tsv."
            )
    corpus = {
        str(d["_id"]): (str(d.get("title") or ""), str(d.get("text") or ""))
        for d in _jsonl(corpus_file)
    }
    queries: dict[str, str] = {}
    groups: dict[str, str] = {}
    for q in _jsonl(queries_file):
        qid, text = str(q["_id"]), str(q.get("text") or "")
        queries[qid] = text
        meta = q.get("metadata")
        kind = meta.get("kind") if isinstance(meta, dict) else None
        groups[qid] = str(kind) if kind else language(text)
    qrels: Qrels = {}
    with qrels_file.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] == "query-id":
                continue
            try:
                grade = int(float(parts[2]))
            except ValueError:
                continue
            if parts[0] in queries:
                qrels.setdefault(parts[0], {})[parts[1]] = grade
    return Dataset(folder.name, corpus, queries, qrels, groups)


# -- chunking and indexing ---------------------------------------------------------------------


def chunk_document(
    doc_id: str, title: str, text: str, count_tokens: Callable[[str], int], limit: int
) -> list[Chunk]:
    """Sentences packed up to ``limit`` tokens, one sentence of overlap between chunks."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()] or [text]
    budget = max(16, limit - count_tokens(title))
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for sentence in sentences:
        cost = count_tokens(sentence)
        if current and used + cost > budget:
            pieces.append(" ".join(current))
            current = [current[-1]] if count_tokens(current[-1]) < budget // 2 else []
            used = sum(count_tokens(s) for s in current)
        current.append(sentence)
        used += cost
    if current:
        pieces.append(" ".join(current))
    return [
        Chunk(
            chunk_id=f"{doc_id}:{i}",
            doc_id=doc_id,
            text=piece,
            source=doc_id,
            title=title,
            index=i,
            groups=("everyone",),
            content_hash=hashlib.sha256(piece.encode()).hexdigest(),
        )
        for i, piece in enumerate(pieces)
    ]


def _embed_text(chunk: Chunk) -> str:
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


@dataclass
class Index:
    store: ChromaStore
    keyword: KeywordIndex
    chunks: int
    build_seconds: float


def build_index(
    dataset: Dataset,
    settings: Settings,
    embedder: Embedder,
    workdir: Path,
    *,
    embed: bool = True,
) -> Index:
    """Chunk, embed and index the corpus in ``workdir`` (reused when unchanged; an
    interrupted run resumes). ``embed=False`` builds the BM25 index only."""
    started = time.perf_counter()
    limit = settings.ingest.chunk_tokens
    chunks: list[Chunk] = []
    for doc_id, (title, text) in dataset.corpus.items():
        chunks.extend(chunk_document(doc_id, title, text, embedder.count_tokens, limit))
    digest = hashlib.sha256()
    digest.update(embedder.model_id.encode())
    for c in chunks:
        digest.update(c.chunk_id.encode() + b"\0" + c.content_hash.encode())
    key = digest.hexdigest()[:16]
    folder = workdir / f"{dataset.name}-{key}"
    store_settings = settings.store.model_copy(
        update={"mode": "embedded", "path": folder / "chroma", "collection": "eval"}
    )
    store = ChromaStore(store_settings, embedder_id=embedder.model_id, dimension=embedder.dimension)
    cfg = settings.retrieval
    keyword = KeywordIndex(
        folder / "keyword",
        k1=cfg.bm25_k1,
        b=cfg.bm25_b,
        stemming=cfg.stemming,
        window=cfg.keyword_window,
    )
    done = folder / ".complete"
    if embed and (not done.is_file() or store.count() != len(chunks)):
        # Resumable: chunks already stored by an interrupted run are not embedded again.
        have = set(store.all_ids())
        # Leading chunks of every document first: a partial index covers every document.
        todo = sorted((c for c in chunks if c.chunk_id not in have), key=lambda c: c.index)
        batch = 256
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            store.upsert(part, embedder.embed_documents([_embed_text(c) for c in part]))
        done.write_text(str(len(chunks)), encoding="utf-8")
    ids = {c.chunk_id for c in chunks}
    if len(keyword) != len(chunks) or keyword.table_ids() != ids or keyword.unplaced():
        keyword.on_delete(sorted(keyword.table_ids()))
        keyword.on_upsert(chunks)
    keyword.commit()  # also rebuilds when only the BM25 settings (k1, b, window) changed
    return Index(store, keyword, len(chunks), time.perf_counter() - started)


# -- running ----------------------------------------------------------------------------------


def roll_up(chunk_scores: Iterable[tuple[str, float]], bonus: float) -> list[str]:
    """Chunk hits (best first) -> documents: best chunk score + ``bonus`` x later chunks."""
    return [doc for doc, _ in roll_up_scored(chunk_scores, bonus)]


def doc_of(chunk_id: str) -> str:
    """The document id of an eval chunk id (``<doc>:<n>``)."""
    return chunk_id.rsplit(":", 1)[0]


def doc_languages(keyword: KeywordIndex, chunk_ids: Iterable[str]) -> dict[str, str]:
    """Each document's language, by the first of its chunks the BM25 index knows."""
    langs: dict[str, str] = {}
    for chunk_id, lang in keyword.languages(list(chunk_ids)).items():
        langs.setdefault(doc_of(chunk_id), lang)
    return langs


def roll_up_scored(
    chunk_scores: Iterable[tuple[str, float]], bonus: float
) -> list[tuple[str, float]]:
    """:func:`roll_up` with each document's score, best first."""
    best: dict[str, float] = {}
    extra: dict[str, float] = {}
    for chunk_id, score in chunk_scores:
        doc = doc_of(chunk_id)
        if doc not in best:
            best[doc] = score
        else:
            extra[doc] = extra.get(doc, 0.0) + score
    total = {d: s + bonus * extra.get(d, 0.0) for d, s in best.items()}
    return [(d, total[d]) for d in ranked(total)]


@dataclass
class ModeResult:
    metrics: dict[str, float]
    latency_ms: list[float] = field(default_factory=list)
    ndcg_ci: tuple[float, float] = (0.0, 0.0)
    """95% bootstrap interval of nDCG@10 over the queries."""

    def row(self) -> dict[str, float]:
        return {
            **{k: round(v, 4) for k, v in self.metrics.items()},
            "ndcg@10_ci_low": round(self.ndcg_ci[0], 4),
            "ndcg@10_ci_high": round(self.ndcg_ci[1], 4),
            "p50_ms": round(percentile(self.latency_ms, 0.5), 2),
            "p99_ms": round(percentile(self.latency_ms, 0.99), 2),
        }


@dataclass
class Report:
    dataset: str
    queries: int
    documents: int
    chunks: int
    index_seconds: float
    embed_query_ms_p50: float
    modes: dict[str, ModeResult]
    hybrid_minus: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """Paired nDCG@10 difference, hybrid minus each single mode: (mean, 95% low, high)."""
    embedder: str = ""
    """The embedder's model id (``...@onnx-int8`` for the shipped ONNX int8 backend)."""
    by_group: dict[str, dict[str, tuple[int, float, float]]] = field(default_factory=dict)
    """Query group -> mode -> (queries, nDCG@10, recall@10), when there are two groups or
    more (:attr:`Dataset.groups`); groups by kind (``en-zh``) are also rolled up by the
    question's language (``en-*``)."""
    group_gain: dict[str, tuple[str, float, float, float]] = field(default_factory=dict)
    """Query group -> (its better single mode by nDCG@10, hybrid minus that mode's nDCG@10,
    paired 95% low, high): whether fusion loses to its better part in that group."""

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "embedder": self.embedder,
            "queries": self.queries,
            "documents": self.documents,
            "chunks": self.chunks,
            "index_seconds": round(self.index_seconds, 1),
            "embed_query_ms_p50": round(self.embed_query_ms_p50, 2),
            "modes": {m: r.row() for m, r in self.modes.items()},
            "hybrid_minus": {
                m: {"delta": round(d, 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
                for m, (d, lo, hi) in self.hybrid_minus.items()
            },
            "groups": {
                g: {
                    m: {"queries": n, "ndcg@10": round(nd, 4), "recall@10": round(r, 4)}
                    for m, (n, nd, r) in modes.items()
                }
                for g, modes in self.by_group.items()
            },
            "groups_hybrid_minus_better": {
                g: {
                    "mode": m,
                    "delta": round(d, 4),
                    "ci_low": round(lo, 4),
                    "ci_high": round(hi, 4),
                }
                for g, (m, d, lo, hi) in self.group_gain.items()
            },
        }

    def table(self) -> str:
        head = (
            f"{self.dataset}: {self.queries} queries, {self.documents} documents, "
            f"{self.chunks} chunks, embedder {self.embedder} (query embedding p50 "
            f"{self.embed_query_ms_p50:.1f} ms, not in the latencies below)"
        )
        cols = ["ndcg@10", "recall@10", "recall@100", "mrr@10", "p50_ms", "p99_ms"]
        ci = "ndcg 95% CI"
        lines = [
            head,
            f"{'mode':<8} {cols[0]:>10} {ci:>13} " + " ".join(f"{c:>10}" for c in cols[1:]),
        ]
        for mode, result in self.modes.items():
            row = result.row()
            span = f"{row['ndcg@10_ci_low']:.3f}-{row['ndcg@10_ci_high']:.3f}"
            lines.append(
                f"{mode:<8} {row[cols[0]]:>10} {span:>13} "
                + " ".join(f"{row[c]:>10}" for c in cols[1:])
            )
        for mode, (delta, lo, hi) in self.hybrid_minus.items():
            lines.append(
                f"hybrid - {mode}: nDCG@10 {delta:+.4f} (paired 95% CI {lo:+.4f} to {hi:+.4f})"
            )
        if self.by_group:
            modes = list(self.modes)
            lines.append(
                "nDCG@10 / recall@10 by query group: "
                + " | ".join(f"{g} ({next(iter(r.values()))[0]})" for g, r in self.by_group.items())
            )
            gain = "hybrid - better (paired 95% CI)" if self.group_gain else ""
            lines.append(f"{'group':<8} " + " ".join(f"{m:>17}" for m in modes) + f"  {gain}")
            for group, results in self.by_group.items():
                cells = [f"{results[m][1]:.4f} / {results[m][2]:.4f}" for m in modes]
                line = f"{group:<8} " + " ".join(f"{c:>17}" for c in cells)
                if group in self.group_gain:
                    better, delta, lo, hi = self.group_gain[group]
                    line += f"  {delta:+.4f} vs {better} ({lo:+.4f} to {hi:+.4f})"
                lines.append(line.rstrip())
        return "\n".join(lines)


def evaluate(
    dataset: Dataset,
    index: Index,
    embedder: Embedder,
    settings: Settings,
    *,
    candidates: int = 200,
    bonus: float = 0.0,
    max_queries: int | None = None,
    modes: Sequence[str] = MODES,
    dense_where: dict[str, Any] | None = None,
) -> Report:
    """Score each mode; ``dense_where`` restricts dense search (e.g. ``{"index": 0}``: the
    leading chunk of each document only)."""
    cfg = settings.retrieval
    use_dense = "dense" in modes or "hybrid" in modes
    query_ids = [q for q in dataset.qrels if q in dataset.queries]
    if max_queries is not None:
        query_ids = query_ids[:max_queries]
    runs: dict[str, Run] = {m: {} for m in MODES}
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    embed_ms: list[float] = []
    for qid in query_ids:
        text = dataset.queries[qid]
        t0 = time.perf_counter()
        dense: list[tuple[str, float]] = []
        if use_dense:
            vector = embedder.embed_query(text)
        t1 = time.perf_counter()
        dense_chunks: list[tuple[str, float]] = []
        if use_dense:
            dense_hits = index.store.query_where(vector, candidates, dense_where)
            dense_chunks = [(h.chunk.chunk_id, h.score) for h in dense_hits]
            dense = roll_up_scored(dense_chunks, bonus)
        t2 = time.perf_counter()
        kw_chunks = index.keyword.search(text, candidates)
        kw = roll_up_scored(kw_chunks, bonus)
        t3 = time.perf_counter()
        # Rolled up to documents, a ranking's length no longer says whether it was cut
        # short: no depth (every ranking counts as cut short, as at SciFact's scale).
        plan = weights(cfg, text, settings.embedding.languages)
        tr_chunks: list[tuple[str, float]] = []
        if translates(cfg, plan) and index.keyword.holds_other_than(plan.language):
            book = dictionary(settings.paths.assets_dir)
            tr_chunks = index.keyword.search_translated(text, book, candidates)
        langs: dict[str, str] = {}
        if language_aware(cfg, plan):
            langs = doc_languages(
                index.keyword, (c for c, _ in (*dense_chunks, *kw_chunks, *tr_chunks))
            )
        translated = roll_up_scored(tr_chunks, bonus)
        fused = fuse_hybrid(dense, kw, plan, cfg, None, langs, translated)
        hybrid = ranked(fused)
        t4 = time.perf_counter()
        if use_dense:
            embed_ms.append((t1 - t0) * 1000)
        runs["dense"][qid] = [d for d, _ in dense if d != qid]
        runs["keyword"][qid] = [d for d, _ in kw if d != qid]
        runs["hybrid"][qid] = [d for d in hybrid if d != qid]
        latency["dense"].append((t2 - t1) * 1000)
        latency["keyword"].append((t3 - t2) * 1000)
        latency["hybrid"].append((t4 - t1) * 1000)
    qrels = {q: dataset.qrels[q] for q in query_ids}
    per_query = {m: ndcg_per_query(runs[m], qrels) for m in modes}
    results = {
        m: ModeResult(score_run(runs[m], qrels), latency[m], bootstrap_ci(per_query[m]))
        for m in modes
    }
    by_group, group_gain = by_query_group(dataset, query_ids, runs, modes)
    hybrid_minus: dict[str, tuple[float, float, float]] = {}
    if "hybrid" in per_query:
        for m in (m for m in modes if m != "hybrid"):
            diff = [h - o for h, o in zip(per_query["hybrid"], per_query[m], strict=True)]
            hybrid_minus[m] = (sum(diff) / len(diff) if diff else 0.0, *bootstrap_ci(diff))
    return Report(
        dataset=dataset.name,
        queries=len(query_ids),
        documents=len(dataset.corpus),
        chunks=index.chunks,
        index_seconds=index.build_seconds,
        embed_query_ms_p50=statistics.median(embed_ms) if embed_ms else 0.0,
        modes=results,
        hybrid_minus=hybrid_minus,
        embedder=embedder.model_id,
        by_group=by_group,
        group_gain=group_gain,
    )


def by_query_group(
    dataset: Dataset, query_ids: Sequence[str], runs: Mapping[str, Run], modes: Sequence[str]
) -> tuple[
    dict[str, dict[str, tuple[int, float, float]]], dict[str, tuple[str, float, float, float]]
]:
    """:attr:`Report.by_group` and :attr:`Report.group_gain` of ``runs``."""
    members: dict[str, list[str]] = {}
    for qid in query_ids:
        lang = language(dataset.queries[qid])
        group = dataset.groups.get(qid) or lang
        members.setdefault(group, []).append(qid)
        if group != lang:
            members.setdefault(f"{lang}-*", []).append(qid)
    by_group: dict[str, dict[str, tuple[int, float, float]]] = {}
    group_gain: dict[str, tuple[str, float, float, float]] = {}
    if len([g for g in members if not g.endswith("-*")]) < 2:
        return by_group, group_gain
    singles = [m for m in modes if m != "hybrid"]
    for group in sorted(members):
        sub = {q: dataset.qrels[q] for q in members[group]}
        by_group[group] = {}
        for m in modes:
            scored = score_run(runs[m], sub)
            by_group[group][m] = (len(sub), scored["ndcg@10"], scored["recall@10"])
        if "hybrid" in modes and singles:
            better = max(singles, key=lambda m: by_group[group][m][1])
            diff = [
                h - o
                for h, o in zip(
                    ndcg_per_query(runs["hybrid"], sub),
                    ndcg_per_query(runs[better], sub),
                    strict=True,
                )
            ]
            delta = by_group[group]["hybrid"][1] - by_group[group][better][1]
            group_gain[group] = (better, delta, *bootstrap_ci(diff))
    return by_group, group_gain
