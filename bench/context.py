"""Context packing benchmark: time to pack ~120K tokens, and prefix-cache reuse by ordering.

    PYTHONPATH=. .venv/bin/python bench/context.py [--questions 240] [--budget 32768]

1. Packing: a synthetic knowledge base of ~160K o200k_harmony tokens (40 documents x 10
   chunks); pack a 120K-token context around 8 hits (token counting, selection, expansion
   to neighbours/sections/documents, harmony rendering with the exact count). Cold (token
   counts not cached) and warm.
2. Prefix reuse: a stream of related questions (topics drift; consecutive questions share
   most of their hits, ranked differently). Each prompt is rendered with harmony and fed to
   a simulation of vLLM's prefix cache: 16-token blocks, each hashed together with its
   prefix's hash; a prompt reuses its leading blocks already cached. Reported: the share of
   prompt tokens reused, canonical order vs score order.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.answering.context import Packer
from rag.answering.prompt import INSTRUCTIONS, render_sources
from rag.config import ContextSettings
from rag.engines.harmony import HarmonyCodec
from rag.types import Chunk, GenerationRequest, Hit

BLOCK = 16
WORDS = [
    "pressure",
    "wing",
    "flow",
    "boundary",
    "layer",
    "heat",
    "transfer",
    "Mach",
    "shock",
    "nozzle",
    "turbulent",
    "laminar",
    "drag",
    "lift",
    "vortex",
    "supersonic",
    "subsonic",
    "panel",
    "thermal",
    "stress",
    "buckling",
    "plate",
    "cylinder",
    "airfoil",
    "wake",
    "jet",
    "compressible",
    "viscous",
    "inviscid",
    "separation",
    "transition",
    "Reynolds",
]


class Docs:
    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.by_doc: dict[str, list[Chunk]] = {}
        for c in chunks:
            self.by_doc.setdefault(c.doc_id, []).append(c)

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        return list(self.by_doc.get(doc_id, []))


def corpus(docs: int, per_doc: int, words: int, seed: int = 1) -> list[Chunk]:
    rng = random.Random(seed)
    out = []
    for d in range(docs):
        for i in range(per_doc):
            text = " ".join(
                rng.choice(WORDS) if rng.random() < 0.85 else str(rng.randint(0, 10**6))
                for _ in range(words)
            )
            out.append(
                Chunk(
                    f"doc{d:03d}:h:{i}",
                    f"doc{d:03d}",
                    text,
                    f"/kb/report-{d:03d}.txt",
                    f"Report {d}",
                    f"Part {i // 3}",
                    None,
                    i,
                    ("everyone",),
                    f"{d}-{i}",
                )
            )
    return out


def request(question: str, context: str) -> GenerationRequest:
    return GenerationRequest("b", INSTRUCTIONS, context, question, 2048, 0.0)


def bench_packing(codec: HarmonyCodec, chunks: list[Chunk], budget: int) -> None:
    docs = Docs(chunks)
    rng = random.Random(3)
    hits = [Hit(c, 1.0 / (i + 1)) for i, c in enumerate(rng.sample(chunks, 30))]
    cfg = ContextSettings(expand="document", expand_hits=30)
    cold: list[float] = []
    warm: list[float] = []
    render: list[float] = []
    for trial in range(6):
        packer = Packer(cfg, lambda t: len(codec.encode_plain(t)))
        for timings in (cold, warm):
            started = time.perf_counter()
            packed = packer.pack(hits, budget, documents=docs)
            mid = time.perf_counter()
            ids = codec.render(request("What is the drag?", render_sources(packed.sources)))
            timings.append((time.perf_counter() - started) * 1000)
            render.append((time.perf_counter() - mid) * 1000)
        assert len(ids) <= budget + 400, len(ids)
        if trial == 0:
            print(
                f"packed {len(packed.chosen)} chunks into {len(packed.sources)} sources, "
                f"{packed.tokens} source tokens, prompt {len(ids)} tokens (budget {budget})"
            )
    print(
        f"pack + render 120K: cold (token counts not cached) median "
        f"{statistics.median(cold):.0f} ms; warm median {statistics.median(warm):.0f} ms "
        f"(of which the exact harmony render: median {statistics.median(render):.0f} ms)"
    )


class PrefixCache:
    """vLLM-style prefix caching: full 16-token blocks keyed by the hash of their prefix."""

    def __init__(self) -> None:
        self.blocks: set[bytes] = set()

    def feed(self, ids: Sequence[int]) -> int:
        parent = b""
        reused = 0
        hit = True
        for start in range(0, len(ids) - len(ids) % BLOCK, BLOCK):
            block = ids[start : start + BLOCK]
            parent = hashlib.blake2b(
                parent + b"".join(t.to_bytes(4, "little") for t in block), digest_size=16
            ).digest()
            if hit and parent in self.blocks:
                reused += BLOCK
            else:
                hit = False
                self.blocks.add(parent)
        return reused


def question_stream(chunks: list[Chunk], n: int, seed: int = 5) -> list[list[Hit]]:
    """Related questions: a topic (4 documents) drifts by one document every few questions;
    each question's 8 hits come from the topic's documents, in a random ranking."""
    rng = random.Random(seed)
    docs = sorted({c.doc_id for c in chunks})
    by_doc = Docs(chunks).by_doc
    topic = rng.sample(docs, 4)
    stream = []
    for q in range(n):
        if q % 4 == 3:
            topic[rng.randrange(4)] = rng.choice(docs)
        pool = [c for d in topic for c in by_doc[d][:4]]
        picked = rng.sample(pool, 8)
        stream.append([Hit(c, rng.random()) for c in picked])
    return stream


def bench_prefix(codec: HarmonyCodec, chunks: list[Chunk], questions: int, budget: int) -> None:
    stream = question_stream(chunks, questions)
    docs = Docs(chunks)
    print(f"\nprefix-cache reuse over {questions} related questions, {budget}-token context:")
    print(f"{'order':<10} {'expand':<11} {'prompt tokens':>14} {'reused':>10} {'share':>7}")
    for expand in ("none", "neighbours", "document"):
        for order in ("canonical", "score"):
            cfg = ContextSettings(order=order, expand=expand, expand_hits=2)
            packer = Packer(cfg, lambda t: len(codec.encode_plain(t)))
            cache = PrefixCache()
            total = reused = 0
            for i, hits in enumerate(stream):
                ranked = sorted(hits, key=lambda h: -h.score)
                packed = packer.pack(ranked, budget, documents=docs)
                ids = codec.render(request(f"Question {i}?", render_sources(packed.sources)))
                total += len(ids)
                reused += cache.feed(ids)
            print(f"{order:<10} {expand:<11} {total:>14} {reused:>10} {reused / total:>7.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=240)
    parser.add_argument("--budget", type=int, default=16384)
    args = parser.parse_args()
    import os

    from rag.deploy.offline import OFFLINE_ENV
    from rag.deploy.vocab import offline_tokenizer_env

    os.environ.update(OFFLINE_ENV)
    os.environ.update(offline_tokenizer_env(Path("var/assets")))
    codec = HarmonyCodec()
    chunks = corpus(40, 10, 300)
    total = sum(len(codec.encode_plain(c.text)) for c in chunks)
    print(f"corpus: {len(chunks)} chunks, {total} o200k_harmony tokens")
    bench_packing(codec, chunks, 120_000)
    bench_prefix(codec, chunks, args.questions, args.budget)


if __name__ == "__main__":
    main()
