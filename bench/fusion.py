"""Fusion tuning on a BEIR dataset: choose on the train split, report on the test split.

    PYTHONPATH=. .venv/bin/python bench/fusion.py --dataset /work/shared/eval/scifact \
        --workdir /tmp/eval4

Reuses the scratch index that ``rag-ingest eval --workdir DIR`` built (same settings and
embedder: ``--profile test`` is torch fp32, ``--profile dev`` the shipped ONNX int8; built
here if missing, which embeds the whole corpus). The first run caches the chunk vectors
(read back from the scratch Chroma) and every query's vector in
``DIR/<dataset>-fusion-cache-<model>.npz``; later runs take seconds, so fusion settings can be
compared without embedding anything again.

Per query: dense = exact nearest chunks by the cached vectors (the HNSW index finds the same
ones, recall >= 0.99), keyword = the scratch BM25 index, both rolled up to documents by their
best chunk (:func:`rag.eval.beir.roll_up_scored`) and fused by :func:`rag.retrieval.hybrid.fuse`,
the code the service runs. For each family (RRF over k and weights; convex with min-max or
max scaling over weights) the setting with the best train nDCG@10 is reported with its test
figures: the test split is never used to choose.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag.config import Settings, load_settings
from rag.eval.beir import (
    Dataset,
    Index,
    Run,
    build_index,
    load_beir,
    roll_up_scored,
    score_run,
)
from rag.index.keyword import KeywordIndex
from rag.retrieval.hybrid import Fusion, fuse, ranked
from rag.seams import Embedder

Scored = list[tuple[str, float]]


def cached_vectors(
    path: Path,
    ids: list[str],
    data: Dataset,
    index_vectors: Callable[[Sequence[str]], dict[str, list[float]]],
    embed_query: Callable[[str], Sequence[float]],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The chunk vectors (read back from the store) and each question's vector as the
    service computes it (``embed_query``: e5 prefixes a question with "query: " and a
    passage with "passage: "). A cache written before questions were embedded as questions
    (no ``queries_as``) is rebuilt."""
    if path.is_file():
        z = np.load(path)
        if list(z["ids"]) == ids and "queries_as" in z.files:
            return z["X"], dict(zip(list(z["qids"]), z["Q"], strict=True))
    found = index_vectors(ids)
    x = np.asarray([found[i] for i in ids], dtype=np.float32)
    qids = list(data.queries)
    q = np.asarray([embed_query(data.queries[i]) for i in qids], dtype=np.float32)
    np.savez(
        path, ids=np.asarray(ids), X=x, qids=np.asarray(qids), Q=q, queries_as=np.asarray("query")
    )
    return x, dict(zip(qids, q, strict=True))


def scratch_vectors(
    data: Dataset, settings: Settings, embedder: Embedder, workdir: Path
) -> tuple[Index, list[str], np.ndarray, dict[str, np.ndarray]]:
    """The scratch index of ``data`` (built if missing), its chunk ids and the cached chunk
    and query vectors (:func:`cached_vectors`)."""
    index = build_index(data, settings, embedder, workdir)
    ids = sorted(index.store.all_ids())
    model = "".join(c if c.isalnum() else "-" for c in embedder.model_id)
    cache = workdir / f"{data.name}-fusion-cache-{model}.npz"
    x, qvec = cached_vectors(cache, ids, data, index.store.vectors, embedder.embed_query)
    return index, ids, x, qvec


def nearest(x: np.ndarray, query: np.ndarray, ids: list[str], n: int) -> Scored:
    """The ``n`` chunks nearest ``query`` by exact search, best first."""
    sims = x @ query
    top = np.argpartition(-sims, n)[:n] if n < len(sims) else np.arange(len(sims))
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(ids[i], float(sims[i])) for i in top]


def candidates_for(
    qids: list[str],
    data: Dataset,
    ids: list[str],
    x: np.ndarray,
    qvec: dict[str, np.ndarray],
    keyword: KeywordIndex,
    n: int,
) -> dict[str, tuple[Scored, Scored]]:
    out: dict[str, tuple[Scored, Scored]] = {}
    for qid in qids:
        dense = roll_up_scored(nearest(x, qvec[qid], ids, n), 0.0)
        kw = roll_up_scored(keyword.search(data.queries[qid], n), 0.0)
        out[qid] = ([(d, s) for d, s in dense if d != qid], [(d, s) for d, s in kw if d != qid])
    return out


def score(
    cands: dict[str, tuple[Scored, Scored]],
    qrels: dict[str, dict[str, int]],
    method: Fusion | str,
    wd: float,
    wk: float,
    k: float,
) -> dict[str, float]:
    run: Run = {}
    for qid, (dense, kw) in cands.items():
        if method == "dense":
            run[qid] = [d for d, _ in dense]
        elif method == "keyword":
            run[qid] = [d for d, _ in kw]
        else:
            fusion, _, scale = str(method).partition("-")
            run[qid] = ranked(
                fuse([(wd, dense), (wk, kw)], fusion, k, scale or "minmax")  # type: ignore[arg-type]
            )
    return score_run(run, {q: qrels[q] for q in cands})


def offline_model(profile: str) -> tuple[Settings, Embedder]:
    """The profile's settings and embedding model, with the no-network variables set."""
    from rag.deploy.offline import OFFLINE_ENV
    from rag.index.embedding import create_embedder

    os.environ.update(OFFLINE_ENV)
    settings = load_settings(profile)
    return settings, create_embedder(settings.embedding, settings.paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--profile", default="test")
    args = parser.parse_args()
    settings, embedder = offline_model(args.profile)
    test, train = load_beir(args.dataset, "test"), load_beir(args.dataset, "train")
    index, ids, x, qvec = scratch_vectors(test, settings, embedder, args.workdir)
    splits = {}
    for name, data in (("train", train), ("test", test)):
        qids = [q for q in data.qrels if q in data.queries]
        cands = candidates_for(qids, data, ids, x, qvec, index.keyword, args.candidates)
        splits[name] = (cands, data.qrels)

    def both(method: str, wd: float, wk: float, k: float) -> tuple[float, dict[str, float]]:
        train_ndcg = score(*splits["train"], method, wd, wk, k)["ndcg@10"]
        return train_ndcg, score(*splits["test"], method, wd, wk, k)

    cfg = settings.retrieval
    rows: list[tuple[str, float, dict[str, float]]] = [
        ("dense alone", *both("dense", 1, 0, 0)),
        ("keyword alone", *both("keyword", 0, 1, 0)),
    ]
    grid: dict[str, list[tuple[float, float, float]]] = {
        "rrf": [(1.0, wk, k) for k in (1, 5, 10, 20, 60) for wk in (0.5, 0.75, 1.0, 1.5, 2.0)],
        "convex-minmax": [(a, 1 - a, 0.0) for a in np.arange(0.30, 0.71, 0.05).round(2).tolist()],
        "convex-max": [(a, 1 - a, 0.0) for a in np.arange(0.30, 0.81, 0.05).round(2).tolist()],
    }
    for method, settings_list in grid.items():
        best = max(settings_list, key=lambda s: both(method, *s)[0])
        wd, wk, k = best
        label = f"{method} best on train (w_dense {wd:g}, w_kw {wk:g}" + (
            f", k {k:g})" if method == "rrf" else ")"
        )
        rows.append((label, *both(method, wd, wk, k)))
    rows.append(("rrf k=60, 1:1 (the default before convex)", *both("rrf", 1.0, 1.0, 60.0)))
    method = cfg.fusion + (f"-{cfg.fusion_scale}" if cfg.fusion == "convex" else "")
    configured = f"configured: {method} (w_dense {cfg.dense_weight:g}, w_kw {cfg.keyword_weight:g})"
    rows.append((configured, *both(method, cfg.dense_weight, cfg.keyword_weight, cfg.rrf_k)))
    n_train, n_test = len(splits["train"][0]), len(splits["test"][0])
    print(
        f"{test.name}: {len(ids)} chunks; train {n_train} queries (choose), "
        f"test {n_test} queries (report); {args.candidates} candidates per ranker"
    )
    cols = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
    print(f"{'setting':<52} {'train nDCG':>10} " + " ".join(f"{'test ' + c:>15}" for c in cols))
    for label, train_ndcg, m in rows:
        print(f"{label:<52} {train_ndcg:>10.4f} " + " ".join(f"{m[c]:>15.4f}" for c in cols))


if __name__ == "__main__":
    main()
