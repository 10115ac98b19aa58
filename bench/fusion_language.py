"""Language-aware fusion tuning: per question language, the (dense, keyword) weights, the
cross-language cosine factor and the weight of the translated question's BM25, chosen on the
train split; every query group reported on test.

    RAG_EMBEDDING__MODEL=builtin:use-multilingual-v3 RAG_EMBEDDING__LANGUAGES="[en, zh]" \\
    PYTHONPATH=. .venv/bin/python bench/fusion_language.py \\
        --dataset examples/eval/helpdesk-bilingual --workdir /tmp/evalbi --profile dev

Uses the scratch index and vector cache of ``bench/fusion.py`` (built if missing). Per query:
dense = exact nearest chunks by cached vectors, keyword = the scratch BM25 index, translated =
the same index searched with the question translated word by word
(:mod:`rag.index.dictionary`), rolled up to documents and fused by
:func:`rag.retrieval.hybrid.fuse_hybrid` (the service's code), with each document's language
from the BM25 index (:meth:`KeywordIndex.languages`). For each question language, the
setting (dense share 0.3..0.8, the rest keyword; cross 0.9..1.3; translated 0 = off or
0.75..2) is chosen that loses least to the better single ranker in that language's worst
query group (``kind``; settings within ``--tolerance`` of the best count as equal), then has
the best mean gain over the groups; the test split is never used to choose. ``--extra`` adds a
dataset: its train split tunes, or without one (cmrc2018-trial) every third test question.
Prints test nDCG@10 / recall@10 per query group (``kind``, else the question's language) for
dense, keyword, the configured fusion and the chosen one.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.fusion import Scored, nearest, offline_model, scratch_vectors
from rag.config import RetrievalSettings
from rag.eval.beir import Dataset, Run, doc_languages, load_beir, roll_up_scored, score_run
from rag.index.dictionary import dictionary
from rag.index.keyword import KeywordIndex
from rag.index.lexical import language
from rag.retrieval.hybrid import Weights, fuse_hybrid, ranked, weights

Candidates = dict[str, tuple[Scored, Scored, dict[str, str], Scored]]


def candidates_for(
    qids: list[str],
    data: Dataset,
    ids: list[str],
    x: np.ndarray,
    qvec: dict[str, np.ndarray],
    keyword: KeywordIndex,
    n: int,
) -> Candidates:
    out: Candidates = {}
    book = dictionary()
    for qid in qids:
        dense_chunks = nearest(x, qvec[qid], ids, n)
        kw_chunks = keyword.search(data.queries[qid], n)
        tr_chunks = keyword.search_translated(data.queries[qid], book, n)
        langs = doc_languages(keyword, (c for c, _ in dense_chunks + kw_chunks + tr_chunks))
        out[qid] = (
            roll_up_scored(dense_chunks, 0.0),
            roll_up_scored(kw_chunks, 0.0),
            langs,
            roll_up_scored(tr_chunks, 0.0),
        )
    return out


def run_for(cands: Candidates, mode: str, plans: dict[str, Weights], cfg: RetrievalSettings) -> Run:
    run: Run = {}
    for qid, (dense, kw, langs, tr) in cands.items():
        if mode == "dense":
            run[qid] = [d for d, _ in dense]
        elif mode == "keyword":
            run[qid] = [d for d, _ in kw]
        else:
            run[qid] = ranked(fuse_hybrid(dense, kw, plans[qid], cfg, None, langs, tr))
    return run


@dataclass
class Split:
    """Questions of one or more datasets (ids prefixed with the dataset's name)."""

    cands: Candidates = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    group: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, data: Dataset, qids: list[str], cands: Candidates) -> None:
        for q in qids:
            key = f"{name}/{q}"
            self.cands[key] = cands[q]
            self.qrels[key] = data.qrels[q]
            self.text[key] = data.queries[q]
            kind = data.groups.get(q) or language(data.queries[q])
            self.group[key] = f"{name}:{kind}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="with train and test qrels")
    parser.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="another dataset: its train split tunes (without one, every third test question)",
    )
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--profile", default="dev")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.001,
        help="worst-group gains this close to the best count as equal (then the mean decides)",
    )
    args = parser.parse_args()
    settings, embedder = offline_model(args.profile)
    cfg = settings.retrieval
    reads = frozenset(settings.embedding.languages)
    train, test = Split(), Split()
    for folder in [args.dataset, *args.extra]:
        data = load_beir(folder, "test")
        index, ids, x, qvec = scratch_vectors(data, settings, embedder, args.workdir)
        parts: list[tuple[Split, Dataset, list[str]]] = []
        if folder == args.dataset or (folder / "qrels" / "train.tsv").is_file():
            tuning = load_beir(folder, "train")
            parts.append((train, tuning, [q for q in tuning.qrels if q in tuning.queries]))
            parts.append((test, data, [q for q in data.qrels if q in data.queries]))
        else:
            qids = [q for q in data.qrels if q in data.queries]
            parts.append((train, data, qids[0::3]))
            parts.append((test, data, [q for i, q in enumerate(qids) if i % 3]))
        for split, source, qids in parts:
            cands = candidates_for(qids, source, ids, x, qvec, index.keyword, args.candidates)
            split.add(data.name, source, qids, cands)

    def ndcg(
        split: Split, qids: list[str], plans: dict[str, Weights], mode: str = "hybrid"
    ) -> float:
        run = run_for({q: split.cands[q] for q in qids}, mode, plans, cfg)
        return score_run(run, {q: split.qrels[q] for q in qids})["ndcg@10"]

    Pick = tuple[float, float, float]

    def plans_for(split: Split, qids: list[str], pick: dict[str, Pick]) -> dict[str, Weights]:
        out = {}
        for q in qids:
            lang = language(split.text[q])
            if lang in pick:
                wd, cross, translated = pick[lang]
                out[q] = Weights(wd, 1 - wd, cross, lang, reads, translated)
            else:
                out[q] = weights(cfg, split.text[q], reads)
        return out

    chosen: dict[str, Pick] = {}
    crosses = [0.9, 1.0, 1.1, 1.2, 1.3]
    translations = [0.0, 0.75, 1.0, 1.25, 1.5, 2.0]
    dense_shares = np.arange(0.3, 0.81, 0.05).round(2).tolist()
    for lang in sorted({language(t) for t in train.text.values()}):
        qids = [q for q in train.cands if language(train.text[q]) == lang]
        kinds = {
            g: [q for q in qids if train.group[q] == g] for g in {train.group[q] for q in qids}
        }
        best_part = {
            g: max(ndcg(train, qs, {}, "dense"), ndcg(train, qs, {}, "keyword"))
            for g, qs in kinds.items()
        }

        def objective(
            g: Pick,
            lang: str = lang,
            kinds: dict[str, list[str]] = kinds,
            best_part: dict[str, float] = best_part,
        ) -> tuple[float, ...]:
            """Each group's gain over its better single ranker, worst first."""
            plans = plans_for(train, [q for qs in kinds.values() for q in qs], {lang: g})
            return tuple(sorted(ndcg(train, qs, plans) - best_part[k] for k, qs in kinds.items()))

        scored = {g: objective(g) for g in itertools.product(dense_shares, crosses, translations)}
        # The worst group decides; settings within --tolerance of the best worst group are
        # equal (a question or two on a small train set), and of those the best mean wins.
        floor = max(gains[0] for gains in scored.values()) - args.tolerance
        best = max(
            (g for g, gains in scored.items() if gains[0] >= floor),
            key=lambda g: float(np.mean(scored[g])),
        )
        chosen[lang] = best
        gains = objective(best)
        print(
            f"{lang}: {len(qids)} train questions in {len(kinds)} groups; chosen dense "
            f"{best[0]:g} keyword {1 - best[0]:g} cross {best[1]:g} translated {best[2]:g}: "
            f"each group minus its better single ranker, worst first: "
            f"{', '.join(f'{g:+.4f}' for g in gains)}"
        )

    groups: dict[str, list[str]] = {}
    for q in test.cands:
        groups.setdefault(test.group[q], []).append(q)
    print(f"test: nDCG@10 / recall@10 per query group ({args.candidates} candidates per ranker)")
    modes = ("dense", "keyword", "configured", "chosen")
    print(f"{'group':<32} {'n':>4} " + " ".join(f"{m:>17}" for m in modes))
    for group, qids in sorted(groups.items()):
        cells = []
        for mode in modes:
            pick = chosen if mode == "chosen" else {}
            plans = plans_for(test, qids, pick)
            run = run_for(
                {q: test.cands[q] for q in qids},
                "hybrid" if mode in ("configured", "chosen") else mode,
                plans,
                cfg,
            )
            m = score_run(run, {q: test.qrels[q] for q in qids})
            cells.append(f"{m['ndcg@10']:.4f} / {m['recall@10']:.4f}")
        print(f"{group:<32} {len(qids):>4} " + " ".join(f"{c:>17}" for c in cells))


if __name__ == "__main__":
    main()
