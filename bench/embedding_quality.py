"""Embedding backends compared on a BEIR collection: quality (nDCG@10, recall@10) and speed.

    .venv/bin/python bench/embedding_quality.py --dataset /work/shared/eval/cranfield \
        [--queries 100] [--distractors 600]

Embeds the documents relevant to the first ``--queries`` test queries plus
``--distractors`` other documents, with sentence-transformers (torch), ONNX fp32 and ONNX
int8, and prints nDCG@10 / recall@10 of exact cosine search per backend, the agreement of
each ONNX variant's top-10 with torch's, and chunks/s. The data sets are not in git.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))


def load(folder: Path, n_queries: int, distractors: int) -> tuple[Any, Any, Any]:
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, {})[did] = int(score)
    queries = {}
    for line in (folder / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["_id"] in qrels:
            queries[row["_id"]] = row["text"]
    chosen = dict(list(queries.items())[:n_queries])
    wanted = {d for q in chosen for d in qrels[q]}
    corpus = {}
    others = []
    for line in (folder / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        text = (row.get("title", "") + "\n" + row["text"]).strip()
        if row["_id"] in wanted:
            corpus[row["_id"]] = text
        else:
            others.append((row["_id"], text))
    for did, text in random.Random(0).sample(others, min(distractors, len(others))):
        corpus[did] = text
    return chosen, corpus, {q: qrels[q] for q in chosen}


def ndcg_recall(ranked: list[str], rels: dict[str, int]) -> tuple[float, float]:
    dcg = sum((2 ** rels.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rels.values(), reverse=True)[:10]
    idcg = sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
    recall = len(set(ranked[:10]) & set(rels)) / len(rels)
    return (dcg / idcg if idcg else 0.0), recall


def main() -> None:
    import numpy as np

    from rag.config import EmbeddingSettings, load_settings
    from rag.deploy.offline import apply_offline_env
    from rag.index.embedding import SentenceTransformerEmbedder
    from rag.index.embedding_onnx import OnnxEmbedder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--distractors", type=int, default=600)
    parser.add_argument(
        "--backends",
        default="torch,onnx fp32,onnx int8",
        help="comma-separated; overlap is against the first (onnx fp32 = torch's vectors)",
    )
    args = parser.parse_args()
    settings = load_settings("dev")
    apply_offline_env(settings, in_process_engine=False)
    queries, corpus, qrels = load(args.dataset, args.queries, args.distractors)
    ids, texts = list(corpus), list(corpus.values())
    print(f"{args.dataset.name}: {len(queries)} queries, {len(texts)} documents", flush=True)
    makers: dict[str, Any] = {
        "torch": lambda: SentenceTransformerEmbedder(EmbeddingSettings(backend="torch")),
        "onnx fp32": lambda: OnnxEmbedder(
            EmbeddingSettings(backend="onnx", onnx_precision="fp32"), settings.paths
        ),
        "onnx int8": lambda: OnnxEmbedder(
            EmbeddingSettings(backend="onnx", onnx_precision="int8"), settings.paths
        ),
    }
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    backends = {name: makers[name]() for name in chosen}
    first = chosen[0]
    tops: dict[str, list[list[str]]] = {}
    print(f"| backend | nDCG@10 | recall@10 | top-10 overlap with {first} | chunks/s |")
    print("|---|---|---|---|---|")
    for name, embedder in backends.items():
        embedder.embed_documents(texts[:8])  # load (and export) outside the timing
        started = time.perf_counter()
        docs = np.array(embedder.embed_documents(texts))
        speed = len(texts) / (time.perf_counter() - started)
        qvecs = np.array(embedder.embed_documents(list(queries.values())))
        order = np.argsort(-(qvecs @ docs.T), axis=1)[:, :10]
        tops[name] = [[ids[j] for j in row] for row in order]
        scores = [ndcg_recall(top, qrels[q]) for top, q in zip(tops[name], queries, strict=True)]
        ndcg = sum(s[0] for s in scores) / len(scores)
        recall = sum(s[1] for s in scores) / len(scores)
        overlap = sum(
            len(set(a) & set(b)) / 10 for a, b in zip(tops[name], tops[first], strict=True)
        ) / len(queries)
        print(f"| {name} | {ndcg:.4f} | {recall:.4f} | {overlap:.1%} | {speed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
