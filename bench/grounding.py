"""Are the answers right, or do they say so? Per question language, on a knowledge base.

    PYTHONPATH=. .venv/bin/python -m bench.grounding [--profile dev] [--mode extractive]
        [--set sample|bilingual] [--split all|train|test] [--only COLUMN...] [--limit N]
        [--embedding-model builtin:all-minilm-l6-v2] [--retrieval-min-score 0.25]
        [--hide-source] [--temperature 1.0 --top-p 1.0]   # sampling (default 0: greedy)
        [--kv-cache-gib 1]   # a smaller CPU KV cache on a crowded machine

(with ``-m``: run as a script, ``bench/ingest.py`` would shadow the ``ingest`` package)

Ingests the knowledge base into a scratch store (each file in an access group of its own),
starts the profile's engine and asks every question through
:class:`rag.answering.answer.AnswerService`. ``--set sample``: examples/kb and
examples/questions.yaml. ``--set bilingual``: the held-out Chinese/English helpdesk set in
BEIR format (``--bilingual-dir``, default examples/eval/helpdesk-bilingual; queries carry their
``answers`` strings, in the document's language).

Per language of the question (Chinese when it has more Han characters than Latin words;
``--set bilingual``: per question language -> document language):

- facts right: answerable questions whose answer holds an expected string;
- declined: unanswerable questions declined (target: all), answerable ones declined;
- with quotes: answers that quote the sources (the extractive answer, or a generative
  answer's fallback), and how many of those quotes hold the fact;
- claims supported: answer sentences with a checked citation, of all claim sentences
  (sentences with a citation or marked unsupported; lead-ins and greetings are no claims);
- citation precision: citations of the question's own document, of all citations;
- **wrong fact shown as supported** (target 0): an answer, not declined and not marked
  "could not verify", with a supported (cited) sentence, none of whose supported sentences
  holds the expected fact (unanswerable questions: any such answer);
- answers in the question's language: of the text shown, and of the model's own text;
- ``--hide-source``: each answerable question is asked again by a caller who may not read
  its document (access groups), so the right answer is "not in the knowledge base":
  declined (target: all) and wrong facts shown.

Works on older commits too (no ``answer`` settings: pass no ``--mode``), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BILINGUAL = REPO / "examples" / "eval" / "helpdesk-bilingual"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]+")


def lang(text: str) -> str:
    han = len(_HAN.findall(text))
    return "zh" if han and han >= len(_LATIN.findall(text)) else "en"


def group(name: str) -> str:
    return "doc-" + re.sub(r"[^A-Za-z0-9_.:@-]", "-", Path(name).stem)


@dataclass
class Question:
    id: str
    text: str
    expect: list[str]
    sources: list[str]  # file names holding the answer ([] when unanswerable)
    group: str = ""  # the column it is counted in: the question's language, or a kind

    def __post_init__(self) -> None:
        self.group = self.group or lang(self.text)

    @property
    def answerable(self) -> bool:
        return bool(self.sources)


def sample_questions() -> tuple[Path, list[Question]]:
    data = yaml.safe_load((REPO / "examples" / "questions.yaml").read_text("utf-8"))
    return REPO / "examples" / "kb", [
        Question(q["id"], q["question"], q["expect"] or [], [q["source"]] if q["source"] else [])
        for q in data["questions"]
    ]


def bilingual_questions(folder: Path, split: str, tmp: Path) -> tuple[Path, list[Question]]:
    kb = tmp / "bilingual-kb"
    kb.mkdir()
    for line in (folder / "corpus.jsonl").read_text("utf-8").splitlines():
        doc = json.loads(line)
        (kb / f"{doc['_id']}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n", "utf-8")
    relevant: dict[str, list[str]] = defaultdict(list)
    for name in ("train", "test"):
        if split not in ("all", name):
            continue
        rows = (folder / "qrels" / f"{name}.tsv").read_text("utf-8").splitlines()[1:]
        for row in rows:
            qid, doc, _ = row.split("\t")
            relevant[qid].append(f"{doc}.md")
    out = []
    for line in (folder / "queries.jsonl").read_text("utf-8").splitlines():
        q = json.loads(line)
        if q["_id"] in relevant:
            meta = q["metadata"]
            out.append(
                Question(q["_id"], q["text"], meta["answers"], relevant[q["_id"]], kind(meta))
            )
    return kb, out


def kind(meta: dict[str, str]) -> str:
    """A bilingual query's column: question language -> document language."""
    return f"{meta['lang']}->{meta['doc_lang']}"


@dataclass
class Tally:
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, key: str, good: int | bool, total: int | bool = 1) -> None:
        self.counts[key][0] += int(good)
        self.counts[key][1] += int(total)

    def show(self, key: str) -> str:
        good, total = self.counts[key]
        return f"{good}/{total} = {good / total:.0%}" if total else "-"

    def count(self, key: str) -> str:
        return str(self.counts[key][0])


def judge(q: Question, done: Any, tally: Tally, notice: str | None, hidden: bool) -> bool:
    """Add one answer to ``tally`` (module docstring); whether it showed a wrong fact."""
    answer = done.answer
    text = answer.answer.lower()
    expect = [e.lower() for e in q.expect]
    answerable = q.answerable and not hidden
    unverified = bool(notice) and answer.answer.startswith(notice or "\0")
    sentences = list(done.sentences)
    cited = [s for s in sentences if s.citations]
    claims = [s for s in sentences if s.citations or not s.supported]
    shown_fact = not answer.declined and not unverified and bool(cited)
    holds = any(e in s.text.lower() for s in cited for e in expect)
    if hidden:
        tally.add("hidden declined", answer.declined)
        tally.add("hidden wrong shown", shown_fact)
        return shown_fact
    if not answerable:
        tally.add("unanswerable declined", answer.declined)
        tally.add("wrong shown", shown_fact, 0)
        return shown_fact
    right = not answer.declined and any(e in text for e in expect)
    tally.add("facts right", right)
    tally.add("answerable declined", answer.declined)
    tally.add("wrong shown", shown_fact and not holds, 0)
    wrong = shown_fact and not holds
    if answer.quoted:
        tally.add("quoted", 1, 0)
        tally.add("quote holds fact", any(e in text for e in expect), 0)
    tally.add("claims supported", len([s for s in claims if s.citations]), len(claims))
    files = {Path(s).name for s in q.sources}
    got = [Path(c.source).name for c in answer.citations]
    tally.add("citation precision", sum(1 for g in got if g in files), len(got))
    if not answer.declined:
        tally.add("language shown", lang(answer.answer) == lang(q.text))
    if answer.declined:
        model_text = ""
    elif hasattr(done, "withheld"):  # extractive answers have no model text
        model_text = done.withheld or ("" if answer.quoted else answer.answer)
    else:  # an older commit: the quote, if any, was added after the model's text
        model_text = " ".join(s.text for s in (sentences[:-1] if answer.quoted else sentences))
    if model_text.strip():
        tally.add("language model", lang(model_text) == lang(q.text))
    return wrong


async def run(args: argparse.Namespace) -> None:
    from ingest.pipeline import Ingestor
    from rag.answering.answer import AnswerService
    from rag.config import load_settings
    from rag.engines import start_engine
    from rag.services import build_knowledge_base, build_retriever
    from rag.types import Principal

    notice_of: Callable[[str], str] | None = None
    try:
        from rag.answering.wording import say

        notice_of = functools.partial(say, "unverified")
    except ImportError:  # an older commit: no "could not verify" notice
        pass

    tmp = Path(tempfile.mkdtemp(prefix="rag-grounding-"))
    if args.set == "sample":
        kb_dir, questions = sample_questions()
    else:
        kb_dir, questions = bilingual_questions(Path(args.bilingual_dir), args.split, tmp)
    if args.only:
        questions = [q for q in questions if q.group in args.only]
    if args.limit:
        questions = questions[: args.limit]
    files = sorted(p.name for p in kb_dir.iterdir() if p.is_file())
    overrides: dict[str, Any] = {
        "paths": {"assets_dir": str(REPO / "var" / "assets"), "data_dir": str(tmp)},
        "store": {"path": str(tmp / "chroma")},
        "ingest": {"group_rules": [{"pattern": f"*{f}", "groups": [group(f)]} for f in files]},
        "llm": {"temperature": args.temperature, "top_p": args.top_p}
        | ({"kv_cache_space_gib": args.kv_cache_gib} if args.kv_cache_gib else {}),
    }
    if args.mode:
        overrides["answer"] = {"mode": args.mode}
    if args.embedding_model:
        english = args.embedding_model == "builtin:all-minilm-l6-v2"
        overrides["embedding"] = {
            "model": args.embedding_model,
            "languages": ["en"] if english else ["en", "zh"],
        }
    if args.retrieval_min_score is not None:
        overrides["retrieval"] = {"min_score": args.retrieval_min_score}
    settings = load_settings(args.profile, environ={}, overrides=overrides)
    kb = build_knowledge_base(settings)
    assert kb.keyword is not None
    list(Ingestor(settings, kb.embedder, kb.store, listeners=[kb.keyword]).add([kb_dir]))
    engine = start_engine(settings)
    service = AnswerService(settings, build_retriever(settings, kb), engine)
    everyone = frozenset(group(f) for f in files)
    tallies: dict[str, Tally] = defaultdict(Tally)
    started = time.perf_counter()
    asked = 0
    stopped = ""
    # `timeout` (SIGTERM) ends the run with the figures so far instead of nothing.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        for i, q in enumerate(questions, 1):
            if i % 10 == 0:
                print(f"{i}/{len(questions)} questions", file=sys.stderr, flush=True)
            language = q.group
            notice = notice_of(q.text) if notice_of else None
            done = await service.ask_full(q.text, Principal("bench", everyone))
            if judge(q, done, tallies[language], notice, hidden=False) and args.show_wrong:
                print(f"WRONG [{language}] {q.text!r} -> {done.answer.answer!r}", flush=True)
            if args.hide_source and q.answerable:
                reader = Principal("bench", everyone - {group(s) for s in q.sources})
                done = await service.ask_full(q.text, reader)
                judge(q, done, tallies[language], notice, hidden=True)
            asked = i
    except (Exception, asyncio.CancelledError) as exc:  # killed or stopped: report the figures
        stopped = f" STOPPED after {asked} questions ({type(exc).__name__}: {exc})"
    finally:
        await engine.close()
    mode = getattr(getattr(settings, "answer", None), "mode", "generative (no answer.mode)")
    print(
        f"{len(questions)} questions ({args.set}, split {args.split}), profile {args.profile}, "
        f"mode {mode}, {time.perf_counter() - started:.0f} s, "
        f"load average {os.getloadavg()[0]:.1f}{stopped}\n"
    )
    langs = sorted(tallies)
    rows = [
        ("facts right", "show"),
        ("unanswerable declined", "show"),
        ("answerable declined", "show"),
        ("quoted", "count"),
        ("quote holds fact", "count"),
        ("claims supported", "show"),
        ("citation precision", "show"),
        ("wrong shown", "count"),
        ("language shown", "show"),
        ("language model", "show"),
    ]
    if args.hide_source:
        rows += [("hidden declined", "show"), ("hidden wrong shown", "count")]
    labels = {
        "quoted": "answers with quotes",
        "quote holds fact": "... whose text holds the fact",
        "wrong shown": "**wrong fact shown as supported**",
        "language shown": "answer in the question's language",
        "language model": "model's own text in the question's language",
        "hidden declined": "source hidden: declined",
        "hidden wrong shown": "source hidden: wrong fact shown as supported",
    }
    print("| | " + " | ".join(langs) + " |")
    print("|---|" + "---|" * len(langs))
    for key, how in rows:
        cells = [getattr(tallies[x], how)(key) for x in langs]
        print(f"| {labels.get(key, key)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description="Grounding and facts, per question language.")
    parser.add_argument("--profile", default="dev")
    parser.add_argument("--mode", choices=["generative", "extractive", "hybrid"], default=None)
    parser.add_argument("--set", choices=["sample", "bilingual"], default="sample")
    parser.add_argument(
        "--embedding-model", help="embedding.model (default: the profile's; MiniLM reads en only)"
    )
    parser.add_argument("--retrieval-min-score", type=float, help="retrieval.min_score")
    parser.add_argument("--show-wrong", action="store_true", help="print each wrong fact shown")
    parser.add_argument("--bilingual-dir", default=str(BILINGUAL))
    parser.add_argument("--split", choices=["all", "train", "test"], default="all")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--hide-source", action="store_true")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument(
        "--kv-cache-gib", type=float, default=0, help="CPU KV cache (default: the profile's)"
    )
    parser.add_argument(
        "--only", nargs="+", default=[], help="only these columns (en, zh; bilingual: zh->en...)"
    )
    args = parser.parse_args()
    from rag.deploy.offline import OFFLINE_ENV
    from rag.deploy.vocab import offline_tokenizer_env

    os.environ.update(OFFLINE_ENV)
    os.environ.update(offline_tokenizer_env(REPO / "var" / "assets"))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
