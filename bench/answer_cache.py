"""Answer cache benchmark (issue 24): the threshold chosen on data, false hits, hit rates,
and latency with and without the cache on a replayed question stream.

    PYTHONPATH=. .venv/bin/python bench/answer_cache.py [--workdir DIR] [--pairs-only]
        [--mode extractive|generative] [--limit N] [--json FILE]

Data: ``examples/eval/answer-cache/`` (``pairs.jsonl``: labelled question pairs, ``train``
and ``test`` splits; ``stream.jsonl``: 300 questions as a helpdesk receives them, with
``same_as`` links between questions of one meaning) over the bilingual helpdesk corpus
``examples/eval/helpdesk-bilingual/corpus.jsonl``.

1. **Pairs.** Each pair goes through the real matcher (:mod:`rag.answering.matching`): the
   cosine of the two questions' embeddings (the knowledge base's embedder, ``embed_query``)
   and the conflict guards, whose "distinctive word" test reads a BM25 index of the corpus
   (chunked as ``rag-ingest eval`` chunks it, ``cache.distinctive_share``). The threshold is
   the lowest one with zero false hits on ``train`` (just above the best-scoring ``train``
   miss the guards let through), never below ``--floor`` (0.75: under it a paraphrase is
   judged by the guards alone, which were not made for that). Reported on ``test``: false
   hits (must be 0) and the hit rate of the pairs that should hit, per kind and language.
2. **Replay.** The corpus is ingested as documents (the real pipeline) and the stream is
   asked in order through the real answer service and the CPU engine (SmolLM2-135M), once
   without the cache and once with it (an empty state database, the chosen threshold):
   latency p50/p95 of every question, of the hits and of the others, the hit rate, and the
   wrong hits (a question answered from the cached answer of another meaning, by
   ``same_as``; must be 0). ``--mode extractive`` (the CPU profiles' answer mode: quoted
   sources, no model call) is the default; ``generative`` asks the model (slow on CPU: use
   ``--limit``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and bench/ingest.py would hide
# the ingest package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.seams import Embedder
DATA = REPO / "examples" / "eval" / "answer-cache"
CORPUS = REPO / "examples" / "eval" / "helpdesk-bilingual"
GROUPS = ["everyone"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def settings_for(workdir: Path, **sections: dict[str, Any]) -> Settings:
    from rag.config import load_settings

    base: dict[str, Any] = {
        "paths": {"assets_dir": str(REPO / "var" / "assets"), "data_dir": str(workdir)},
        "store": {"path": str(workdir / "chroma")},
        "cache": {"enabled": True},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return load_settings("test", overrides=base, environ={})


# -- pairs -------------------------------------------------------------------------------------


def score_pairs(
    pairs: Sequence[dict[str, Any]], embedder: Embedder, distinctive: Callable[[str], bool]
) -> list[dict[str, Any]]:
    """Per pair: its cosine, the guards' reason (None: nothing says they differ) and whether
    the normalized texts are equal (always a match)."""
    from rag.answering.matching import conflicts, cosine, normalize

    texts = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    vectors = {t: embedder.embed_query(t) for t in texts}
    return [
        {
            **p,
            "cosine": cosine(vectors[p["a"]], vectors[p["b"]]),
            "reason": conflicts(p["a"], p["b"], distinctive=distinctive),
            "equal": normalize(p["a"]) == normalize(p["b"]),
        }
        for p in pairs
    ]


def matched(row: dict[str, Any], threshold: float) -> bool:
    return bool(row["equal"]) or (row["reason"] is None and row["cosine"] >= threshold)


def choose_threshold(train: Sequence[dict[str, Any]], floor: float) -> float:
    """The lowest threshold with zero false hits on ``train``: just above the best cosine of
    a miss the guards let through (rounded up to 0.005), never below ``floor``."""
    passing = [r["cosine"] for r in train if r["expect"] == "miss" and r["reason"] is None]
    if any(r["equal"] for r in train if r["expect"] == "miss"):
        raise SystemExit("a miss pair has equal normalized texts: the set is inconsistent")
    top = max(passing, default=0.0)
    return max(floor, (int(top * 200) + 1) / 200)


def report_pairs(rows: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    by: dict[tuple[str, str], list[bool]] = defaultdict(list)
    false_hits = []
    for r in rows:
        got = matched(r, threshold)
        by[(r["kind"], r["lang"])].append(got)
        if got and r["expect"] == "miss":
            false_hits.append(r["id"])
    should = [r for r in rows if r["expect"] == "hit"]
    hit = sum(matched(r, threshold) for r in should)
    return {
        "pairs": len(rows),
        "false_hits": false_hits,
        "hits": hit,
        "should_hit": len(should),
        "hit_rate": hit / len(should) if should else 0.0,
        "by_kind_lang": {f"{k}/{lang}": [sum(v), len(v)] for (k, lang), v in sorted(by.items())},
    }


def pairs_phase(workdir: Path, floor: float) -> tuple[float, dict[str, Any]]:
    from rag.answering.cache import distinctive_for
    from rag.eval.beir import build_index, load_beir
    from rag.services import build_embedder

    settings = settings_for(workdir)
    embedder = build_embedder(settings)
    index = build_index(load_beir(CORPUS, "test"), settings, embedder, workdir, embed=False)
    distinctive = distinctive_for(index.keyword, GROUPS, settings.cache.distinctive_share)
    started = time.perf_counter()
    rows = score_pairs(read_jsonl(DATA / "pairs.jsonl"), embedder, distinctive)
    scored_s = time.perf_counter() - started
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    threshold = choose_threshold(train, floor)
    result: dict[str, Any] = {
        "threshold": threshold,
        "distinctive_share": settings.cache.distinctive_share,
        "train": report_pairs(train, threshold),
        "test": report_pairs(test, threshold),
        "scoring_s": round(scored_s, 1),
        "reasons": dict(Counter((r["reason"] or "none").split(":")[0] for r in rows)),
    }
    print(f"threshold chosen on train: {threshold:.3f} (floor {floor})")
    for split in ("train", "test"):
        rep = result[split]
        print(
            f"{split}: {rep['pairs']} pairs, false hits {len(rep['false_hits'])} "
            f"{rep['false_hits']}, hits {rep['hits']}/{rep['should_hit']} "
            f"({rep['hit_rate']:.0%})"
        )
    print("test by kind/language (matched / pairs):")
    for key, (got, n) in result["test"]["by_kind_lang"].items():
        print(f"  {key:22s} {got:3d} / {n}")
    stream = read_jsonl(DATA / "stream.jsonl")
    result["stream_matching"] = stream_matching(stream, embedder, distinctive, threshold)
    return threshold, result


# -- the stream, matcher only -------------------------------------------------------------------


def stream_matching(
    stream: Sequence[dict[str, Any]],
    embedder: Embedder,
    distinctive: Callable[[str], bool],
    threshold: float,
) -> dict[str, Any]:
    """The stream through the matcher alone, as if every earlier question's answer were
    cached (none declined): hits, wrong hits (another meaning, by ``same_as``) and the
    repeats a perfect cache would serve."""
    from rag.answering.matching import best_match
    from rag.index.lexical import language

    seen: list[tuple[str, list[float], str, str]] = []
    hits = wrong = 0
    for q in stream:
        vector = embedder.embed_query(q["question"])
        meaning, lang = q["same_as"] or q["id"], language(q["question"])
        same = [s for s in seen if s[3] == lang]
        found = best_match(
            q["question"],
            vector,
            [(s[0], s[1]) for s in same],
            threshold=threshold,
            distinctive=distinctive,
        )
        if found is not None:
            hits += 1
            if same[found[0]][2] != meaning:
                wrong += 1
                print(f"  wrong: {q['question']!r} <- {same[found[0]][0]!r}")
        seen.append((q["question"], vector, meaning, lang))
    perfect = sum(1 for q in stream if q["same_as"])
    print(
        f"stream, matcher only (every earlier question cached): hits {hits} of {perfect} "
        f"repeats ({hits / perfect:.0%}), wrong hits {wrong}"
    )
    return {"hits": hits, "repeats": perfect, "wrong_hits": wrong}


# -- replay ------------------------------------------------------------------------------------


def ingest_corpus(settings: Settings, folder: Path) -> None:
    """The corpus as Markdown documents through the real ingest pipeline (once)."""
    from ingest.pipeline import Ingestor
    from rag.services import build_knowledge_base

    done = folder / ".ingested"
    if done.is_file():
        return
    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for doc in read_jsonl(CORPUS / "corpus.jsonl"):
        (docs / f"{doc['_id']}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n", "utf-8")
    kb = build_knowledge_base(settings)
    results = list(Ingestor(settings, kb.embedder, kb.store, listeners=kb.listeners).add([docs]))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"ingest failed: {failed}")
    kb.store.close()
    done.write_text("ok", encoding="utf-8")


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def replay(
    settings: Settings, stream: Sequence[dict[str, Any]], engine: Any, cached: bool
) -> dict[str, Any]:
    from rag.answering.answer import AnswerService
    from rag.answering.cache import cacheable
    from rag.answering.matching import normalize
    from rag.services import build_answer_cache, build_knowledge_base, build_retriever, open_state
    from rag.types import Principal

    kb = build_knowledge_base(settings)
    retriever = build_retriever(settings, kb)
    db = open_state(settings)
    cache = build_answer_cache(settings, db, kb) if cached else None
    if cache is not None:
        cache.store.clear()
    service = AnswerService(settings, retriever, engine, cache=cache)
    meaning_of = {normalize(q["question"]): q["same_as"] or q["id"] for q in stream}
    latencies: list[float] = []
    hit_ms: list[float] = []
    other_ms: list[float] = []
    hits = wrong = 0
    outcomes: Counter[str] = Counter()
    first_meanings: dict[str, str] = {}
    for q in stream:
        principal = Principal("bench", frozenset(q["groups"]))
        started = time.perf_counter()
        done = await service.ask_full(q["question"], principal)
        ms = (time.perf_counter() - started) * 1000
        latencies.append(ms)
        outcomes["declined" if done.answer.declined else done.answer.origin] += 1
        if not done.answer.declined and not cacheable(done.answer) and not hit_or_not(done):
            outcomes["not cacheable"] += 1
        meaning = q["same_as"] or q["id"]
        if done.answer.origin == "cache":
            hits += 1
            hit_ms.append(ms)
            # Which question's answer was served: the entry keeps the normalized question.
            source = _served_from(cache, q["question"], principal, meaning_of)
            if source is not None and source != meaning:
                wrong += 1
                print(f"  wrong hit: {q['id']} {q['question']!r} <- meaning {source}")
        else:
            other_ms.append(ms)
        first_meanings.setdefault(meaning, q["id"])
    db.close()
    kb.store.close()
    return {
        "questions": len(stream),
        "hits": hits,
        "hit_rate": hits / len(stream),
        "wrong_hits": wrong,
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
        "hit_p50_ms": round(statistics.median(hit_ms), 1) if hit_ms else None,
        "miss_p50_ms": round(statistics.median(other_ms), 1) if other_ms else None,
        "lookups": dict(cache.lookups) if cache is not None else {},
        "answers": dict(outcomes),
    }


def hit_or_not(done: Any) -> bool:
    return bool(done.answer.origin == "cache")


def _served_from(
    cache: Any, question: str, principal: Any, meaning_of: dict[str, str]
) -> str | None:
    """The meaning of the cached question that served ``question`` (the most recently hit
    entry of the caller's scope)."""
    entries = cache.store.candidates(cache.scope(principal.groups), 10_000)
    served = max(
        (e for e in entries if e.last_hit_at is not None),
        key=lambda e: e.last_hit_at,
        default=None,
    )
    return None if served is None else meaning_of.get(served.question)


def replay_phase(workdir: Path, threshold: float, mode: str, limit: int | None) -> dict[str, Any]:
    from rag.engines import start_engine

    settings = settings_for(
        workdir,
        cache={"threshold": threshold},
        answer={"mode": mode},
        llm={"max_tokens": 200, "max_model_len": 8192},
        context={"max_tokens": 2048},
    )
    ingest_corpus(settings, workdir)
    stream = read_jsonl(DATA / "stream.jsonl")[:limit]
    perfect = sum(1 for q in stream if q["same_as"])
    engine: Any = start_engine(settings)

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        # One event loop for both: vLLM binds its output handler to the loop that first
        # uses it.
        return (
            await replay(settings, stream, engine, cached=False),
            await replay(settings, stream, engine, cached=True),
        )

    try:
        without, with_cache = asyncio.run(both())
    finally:
        engine.shutdown()
    result = {"mode": mode, "perfect_hits": perfect, "without": without, "with": with_cache}
    print(f"replay: {len(stream)} questions, answer.mode {mode}; a perfect cache: {perfect} hits")
    for name, r in (("without cache", without), ("with cache", with_cache)):
        print(
            f"  {name:13s} p50 {r['p50_ms']:8.1f} ms  p95 {r['p95_ms']:8.1f} ms  hits "
            f"{r['hits']:3d} ({r['hit_rate']:.0%})  wrong hits {r['wrong_hits']}  "
            f"hit p50 {r['hit_p50_ms']} ms  other p50 {r['miss_p50_ms']} ms"
        )
        print(f"    answers: {r['answers']}  lookups: {r['lookups']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="kept between runs")
    parser.add_argument("--pairs-only", action="store_true", help="skip the replay")
    parser.add_argument("--floor", type=float, default=0.75, help="lowest threshold allowed")
    parser.add_argument("--mode", choices=["extractive", "generative"], default="extractive")
    parser.add_argument("--limit", type=int, default=None, help="replay the first N questions")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-answer-cache-"))
    workdir.mkdir(parents=True, exist_ok=True)
    threshold, pairs = pairs_phase(workdir, args.floor)
    result: dict[str, Any] = {"pairs": pairs}
    if not args.pairs_only:
        result["replay"] = replay_phase(workdir, threshold, args.mode, args.limit)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False), "utf-8")


if __name__ == "__main__":
    main()
