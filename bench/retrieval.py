"""Retrieval benchmark at 100K chunks: hybrid search with a group filter, and HNSW recall.

    PYTHONPATH=. .venv/bin/python bench/retrieval.py [--chunks 100000] [--dim 512] [--workdir DIR]
        [--chroma HOST:PORT [--in-process-rebuild]]

``--chroma``: the store is a Chroma server (``chroma run``), as a replica of several sees it
(dense search over HTTP; the BM25 index local). Then also measured: a replica's catch-up
after another machine ingests one document (10 chunks): the store's ids read, the new chunks
fetched and analysed, the BM25 index rebuilt and published (``rag.services.catch_up``, what
the follower does when the store's version moves), and hybrid p99 while it runs.

Synthetic data generated here: 100K chunks in 1,000 topical clusters (``--dim`` unit vectors,
512 like the default USE model or 384 like all-MiniLM-L6-v2, near the cluster centre; ~50
words drawn mostly from the cluster's topic words), each chunk
readable by ``everyone`` (50%) or one of ten groups g0..g9 (5% each). The store is built once
in ``--workdir`` (Chroma with the configured HNSW settings, plus the BM25 index) and reused.

Reported, on queries near random cluster centres (query vectors given, so the latencies
exclude query embedding, which is measured separately with the configured real model):

- latency p50/p99 of hybrid, dense and keyword search for a wide caller (everyone + g3:
  ~55% of chunks; dense search over-fetches and drops) and a narrow one (g3 only: ~5%;
  exact search over the caller's ~5K vectors, read once from the store; that one-off read is
  reported too), and of Chroma's group filter on both callers for contrast;
- where the time goes in a hybrid search (dense, keyword, reading the hits, the rest);
- recall@10 of the dense results against exact search among the chunks the caller may read.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rag.config import load_settings
from rag.index.keyword import KeywordIndex
from rag.index.store import ChromaStore
from rag.retrieval.hybrid import Filters, Retriever, SearchStats
from rag.types import Chunk, Principal

DIM = 512  # --dim
CLUSTERS = 1000
GROUPS = [f"g{i}" for i in range(10)]


def make_data(
    n: int, seed: int = 11
) -> tuple[list[Chunk], np.ndarray, np.ndarray, list[list[str]]]:
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topic_words = [[f"t{c}w{j}" for j in range(40)] for c in range(CLUSTERS)]
    common = [f"common{j}" for j in range(2000)]
    cluster_of = rng.integers(0, CLUSTERS, size=n)
    vectors = centres[cluster_of] + rng.normal(scale=0.09, size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = []
    for i in range(n):
        c = int(cluster_of[i])
        words = [
            prng.choice(topic_words[c]) if prng.random() < 0.4 else prng.choice(common)
            for _ in range(50)
        ]
        groups = ("everyone",) if prng.random() < 0.5 else (prng.choice(GROUPS),)
        doc = f"doc{i // 10}"
        chunks.append(
            Chunk(
                f"{doc}:b:{i % 10}",
                doc,
                " ".join(words),
                f"/kb/{doc}.txt",
                doc,
                "",
                None,
                i % 10,
                groups,
                str(i),
            )
        )
    return chunks, vectors, centres, topic_words


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], object], runs: list[float]) -> object:
    started = time.perf_counter()
    out = fn()
    runs.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Hybrid retrieval at 100K chunks.")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-bench-retrieval"))
    parser.add_argument("--dim", type=int, default=DIM, help="vector size (USE 512, MiniLM 384)")
    parser.add_argument("--chroma", help="HOST:PORT of a Chroma server (a replica's store)")
    parser.add_argument(
        "--in-process-rebuild",
        action="store_true",
        help="rebuild BM25 in the searching process (before: the service now uses a worker)",
    )
    args = parser.parse_args()
    globals()["DIM"] = args.dim
    from rag.deploy.offline import OFFLINE_ENV

    os.environ.update(OFFLINE_ENV)
    settings = load_settings(
        "dev",
        environ={},
        overrides={
            "store": {
                "path": str(args.workdir / "chroma"),
                "collection": f"bench{args.chunks}-{args.dim}",
                **(
                    {"mode": "http", "host": args.chroma.split(":")[0]}
                    | {"port": int(args.chroma.split(":")[1]), "database": "bench"}
                    if args.chroma
                    else {}
                ),
            }
        },
    )
    chunks, vectors, centres, topic_words = make_data(args.chunks)
    store = ChromaStore(settings.store, embedder_id="synthetic", dimension=DIM)
    where = "server" if args.chroma else "embedded"
    keyword = KeywordIndex(
        args.workdir / "keyword" / f"{args.chunks}-{where}", isolate=not args.in_process_rebuild
    )
    if store.count() != len(chunks):
        started = time.perf_counter()
        for s in range(0, len(chunks), 5000):
            store.upsert(chunks[s : s + 5000], vectors[s : s + 5000].tolist())
        print(f"stored {len(chunks)} chunks in {time.perf_counter() - started:.0f} s")
    if len(keyword) != len(chunks) or keyword.unplaced():
        started = time.perf_counter()
        keyword.on_upsert(chunks)
        keyword.commit()
        print(f"BM25 index of {len(chunks)} chunks in {time.perf_counter() - started:.0f} s")
    cfg = settings.retrieval
    print(
        f"HNSW: ef_construction={settings.store.hnsw_ef_construction} "
        f"ef_search={settings.store.hnsw_ef_search} M={settings.store.hnsw_max_neighbors}; "
        f"candidates per ranker={cfg.candidates}; k=10"
    )
    retriever = Retriever(cfg, None, store, keyword)  # type: ignore[arg-type]
    forced = Retriever(
        cfg.model_copy(update={"overfetch_min_share": 1.0, "exact_max_chunks": 0}),
        None,  # type: ignore[arg-type]
        store,
        keyword,
    )
    rng = np.random.default_rng(5)
    prng = random.Random(5)
    wide = Principal("wide", frozenset({"everyone", "g3"}))
    narrow = Principal("narrow", frozenset({"g3"}))
    groups_arr = [c.groups[0] for c in chunks]
    masks = {p.subject: np.array([g in p.groups for g in groups_arr]) for p in (wide, narrow)}
    queries = []
    for _ in range(args.queries):
        c = int(rng.integers(0, CLUSTERS))
        v = centres[c] + rng.normal(scale=0.05, size=DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        text = " ".join(prng.sample(topic_words[c], 3))
        queries.append((text, v.tolist()))
    # The narrow caller's first search reads its ~5K vectors from the store (once per group
    # set and index generation).
    started = time.perf_counter()
    retriever.search(queries[0][0], narrow, 10, vector=queries[0][1])
    cold_ms = (time.perf_counter() - started) * 1000
    # Warm up (first queries load indexes into memory).
    for text, v in queries[:5]:
        retriever.search(text, wide, 10, vector=v)
        retriever.search(text, narrow, 10, vector=v)
    rows = []
    parts: dict[str, list[list[float]]] = {}
    for label, who, ret, mode in [
        ("hybrid  wide (over-fetch)", wide, retriever, "hybrid"),
        ("hybrid  narrow (exact)", narrow, retriever, "hybrid"),
        ("hybrid  narrow (Chroma filter)", narrow, forced, "hybrid"),
        ("dense   wide (over-fetch)", wide, retriever, "dense"),
        ("dense   wide (Chroma filter)", wide, forced, "dense"),
        ("dense   narrow (exact)", narrow, retriever, "dense"),
        ("dense   narrow (Chroma filter)", narrow, forced, "dense"),
        ("keyword wide", wide, retriever, "keyword"),
        ("keyword narrow", narrow, retriever, "keyword"),
    ]:
        runs: list[float] = []
        recalls: list[float] = []
        found: list[tuple[list[float], set[str]]] = []
        for text, v in queries:
            stats = SearchStats()
            hits = timed(
                lambda text=text, v=v, who=who, ret=ret, mode=mode, stats=stats: ret.search(
                    text, who, 10, vector=v, mode=mode, filters=Filters(), stats=stats
                ),
                runs,
            )
            if mode == "hybrid":
                split = [stats.dense_ms, stats.keyword_ms, stats.fetch_ms]
                parts.setdefault(label, []).append([*split, runs[-1] - sum(split)])
            assert all(any(g in who.groups for g in h.chunk.groups) for h in hits)  # type: ignore[attr-defined]
            found.append((v, {h.chunk.chunk_id for h in hits}))  # type: ignore[attr-defined]
        # Exact search after the timed loop: its 150 MB scan would evict the caches the
        # next timed search uses.
        if mode == "dense":
            for v, got in found:
                sims = vectors @ np.asarray(v, dtype=np.float32)
                sims[~masks[who.subject]] = -2
                exact = {chunks[i].chunk_id for i in np.argsort(-sims)[:10]}
                recalls.append(len(exact & got) / 10)
        recall = f"{statistics.mean(recalls):.3f}" if recalls else "-"
        rows.append((label, pct(runs, 0.5), pct(runs, 0.99), recall))
    print(
        f"\n{'search (k=10, excl. query embedding)':<36} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'recall@10':>10}"
    )
    for label, p50, p99, recall in rows:
        print(f"{label:<36} {p50:>8.1f} {p99:>8.1f} {recall:>10}")
    print(f"\nnarrow caller's first search (reads its vectors once): {cold_ms:.0f} ms")
    print(
        f"\n{'hybrid: median ms per part':<36} {'dense':>8} {'keyword':>8} {'read':>8} {'rest':>8}"
    )
    for label, values in parts.items():
        med = np.median(np.asarray(values), axis=0)
        print(f"{label:<36} " + " ".join(f"{x:>8.1f}" for x in med))
    from rag.index.embedding import create_embedder

    embedder = create_embedder(settings.embedding, settings.paths)
    embedder.embed_query("warm up")
    runs = []
    for text, _ in queries[:50]:
        timed(lambda text=text: embedder.embed_query(text), runs)
    print(
        f"\nquery embedding ({embedder.model_id}, CPU): p50 {pct(runs, 0.5):.1f} ms, "
        f"p99 {pct(runs, 0.99):.1f} ms"
    )
    if args.chroma:
        catch_up_figures(store, keyword, retriever, queries, wide)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def catch_up_figures(
    store: ChromaStore,
    keyword: KeywordIndex,
    retriever: Retriever,
    queries: list[tuple[str, list[float]]],
    who: Principal,
) -> None:
    """Another machine ingests one document; this replica catches up while it serves."""
    from rag.services import KnowledgeBase, catch_up

    rng = np.random.default_rng(11)
    doc = f"late-{int(time.time())}"
    new = [
        Chunk(f"{doc}:v:{i}", doc, f"zyxwlate{i} arrival notice {i}", "late.md", "Late", index=i)
        for i in range(10)
    ]
    vectors = rng.normal(size=(10, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert(new, vectors.tolist())
    kb = KnowledgeBase(None, store, keyword)  # type: ignore[arg-type]
    during: list[float] = []
    done = threading.Event()

    def serve() -> None:
        i = 0
        while not done.is_set():
            text, v = queries[i % len(queries)]
            timed(lambda t=text, v=v: retriever.search(t, who, 10, vector=v, mode="hybrid"), during)
            i += 1

    started = time.perf_counter()
    store.all_ids()
    read_ids = time.perf_counter() - started  # the catch-up's first step, alone
    server = threading.Thread(target=serve)
    server.start()
    started = time.perf_counter()
    added, removed = catch_up(kb)
    took = time.perf_counter() - started
    done.set()
    server.join()
    assert keyword.search("zyxwlate3", 3), "the new chunks are not searchable after catch-up"
    print(
        f"\ncatch-up after another machine's ingest ({added} chunks added, {removed} removed, "
        f"{len(keyword)} in the index): {took:.2f} s (reading every id alone: {read_ids:.2f} s; "
        f"the rest is fetching, analysing and rebuilding the BM25 index); hybrid during it: "
        f"p50 {pct(during, 0.5):.1f} ms, p99 {pct(during, 0.99):.1f} ms ({len(during)} searches)"
    )
    store.delete_ids([c.chunk_id for c in new])
    catch_up(kb)


if __name__ == "__main__":
    main()
