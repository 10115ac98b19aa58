"""Grounding on the sample knowledge base with the CPU default model (SmolLM2-135M).

    PYTHONPATH=. .venv/bin/python -m bench.grounding [--questions 40] [--profile test]
        [--temperature 1.0 --top-p 1.0]      # sampling as gpt-oss's guidance asks (0: greedy)

(with ``-m``: run as a script, ``bench/ingest.py`` would shadow the ``ingest`` package)

Ingests examples/kb into a scratch store, asks the first N questions of
examples/questions.yaml through :class:`rag.answering.answer.AnswerService` and reports, before and
after the sentence-level check (rag/answering/grounding.py):

- supported sentences: before = sentences whose own ``[n]`` marker names a source that
  supports them; after = sentences some given source supports (citation attached);
- citation precision: cited sources that come from the question's expected file (answerable
  questions); before = the model's valid ``[n]`` markers, legacy = the previous term-overlap
  guess (bench/legacy_citations.py), after = the checked citations;
- facts right: the answer contains an expected string; counted for the model's own text and
  for the whole answer, which may end with a quoted source sentence (the quote fallback:
  no model sentence supported, see rag/answering/grounding.py). Sentence support counts the model's
  sentences only; the quotes are reported on their own line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _precision(cited: list[str], expected: str) -> tuple[int, int]:
    return sum(1 for c in cited if Path(c).name == expected), len(cited)


async def run(args: argparse.Namespace) -> None:
    from bench.legacy_citations import select as legacy_select
    from ingest.pipeline import Ingestor
    from rag.answering.answer import AnswerService
    from rag.answering.grounding import support
    from rag.config import load_settings
    from rag.engines import start_engine
    from rag.services import build_knowledge_base, build_retriever
    from rag.types import Principal

    tmp = Path(tempfile.mkdtemp(prefix="rag-grounding-"))
    settings = load_settings(
        args.profile,
        environ={},
        overrides={
            "paths": {"assets_dir": str(REPO / "var" / "assets"), "data_dir": str(tmp)},
            "store": {"path": str(tmp / "chroma")},
            "llm": {"temperature": args.temperature, "top_p": args.top_p},
        },
    )
    kb = build_knowledge_base(settings)
    assert kb.keyword is not None
    list(
        Ingestor(settings, kb.embedder, kb.store, listeners=[kb.keyword]).add(
            [REPO / "examples" / "kb"]
        )
    )
    engine = start_engine(settings)
    service = AnswerService(settings, build_retriever(settings, kb), engine)
    who = Principal("bench", frozenset(settings.retrieval.anonymous_groups))
    questions = yaml.safe_load((REPO / "examples" / "questions.yaml").read_text())["questions"]
    questions = questions[: args.questions]
    totals: dict[str, list[int]] = {
        k: [0, 0] for k in ("support_before", "support_after", "p_before", "p_legacy", "p_after")
    }
    facts = facts_model = declined = quoted = quote_facts = 0
    started = time.perf_counter()
    try:
        for q in questions:
            done = await service.ask_full(q["question"], who)
            answer = done.answer
            declined += answer.declined
            if answer.declined:
                continue
            sentences = done.sentences
            if answer.quoted:
                quoted += 1
                sentences = sentences[:-1]  # the service's quote, not the model's
            model_text = " ".join(s.text for s in sentences).lower()
            expect = [e.lower() for e in q["expect"] or []]
            facts += any(e in answer.answer.lower() for e in expect)
            facts_model += any(e in model_text for e in expect)
            quote_facts += answer.quoted and any(
                e in done.sentences[-1].text.lower() for e in expect
            )
            sources = {s.n: s for s in done.sources}
            for s in sentences:
                totals["support_after"][0] += s.supported
                totals["support_after"][1] += 1
                own = [n for n in s.model_citations if n in sources]
                ok = any(
                    support(s.text, sources[n].hit.chunk.text) >= settings.context.min_support
                    for n in own
                )
                totals["support_before"][0] += ok
                totals["support_before"][1] += 1
            if not q.get("answerable") or not q.get("source"):
                continue
            model_cited = [
                sources[n].hit.chunk.source
                for s in sentences
                for n in s.model_citations
                if n in sources
            ]
            legacy = [c.source for c in legacy_select(answer.answer, list(sources.values()))]
            after = [c.source for c in answer.citations]
            for key, cited in (("p_before", model_cited), ("p_legacy", legacy), ("p_after", after)):
                good, total = _precision(cited, q["source"])
                totals[key][0] += good
                totals[key][1] += total
    finally:
        await engine.close()

    def share(key: str) -> str:
        good, total = totals[key]
        return f"{good}/{total} = {good / total:.0%}" if total else "0/0"

    print(f"{len(questions)} questions, {declined} declined, {time.perf_counter() - started:.0f} s")
    print(f"facts right (expected string), model's text: {facts_model}")
    print(f"facts right (expected string), whole answer: {facts}")
    print(f"answers with a quoted source sentence:      {quoted} ({quote_facts} quote the fact)")
    print(f"sentences supported, model's own [n]:      {share('support_before')}")
    print(f"sentences supported, after the check:     {share('support_after')}")
    print(f"citation precision, model's own [n]:      {share('p_before')}")
    print(f"citation precision, legacy overlap guess: {share('p_legacy')}")
    print(f"citation precision, after the check:      {share('p_after')}")
    print(f"load average: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Grounding on the sample knowledge base.")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--profile", default="test")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    args = parser.parse_args()
    from rag.deploy.offline import OFFLINE_ENV
    from rag.deploy.vocab import offline_tokenizer_env

    os.environ.update(OFFLINE_ENV)
    os.environ.update(offline_tokenizer_env(REPO / "var" / "assets"))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
