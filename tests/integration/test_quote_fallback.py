"""Generative mode: the model's answer streams once a sentence is verified; an answer with no
verified sentence is never shown: it becomes the source passage that best answers the question,
quoted and cited under a "could not verify" notice (context.quote_fallback), or a decline.

The real app, retriever and SmolLM2 engine; the engine's text is replaced at the engine seam
by a fixed reply, so each test knows what "the model" said: a non-answer, an invention, a
correct answer, nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.types import GenerationRequest, HistoryTurn, TextDelta
from tests.asgi import ready_client, sse

pytestmark = pytest.mark.slow


class Scripted:
    """The real engine (prompt, usage, finish), but the text it streams is ``reply``."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.reply = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[Any, None]:
        for word in self.reply.split(" ") if self.reply else []:
            yield TextDelta(word + " ")
        async with contextlib.aclosing(self._engine.stream(request, history)) as events:
            async for event in events:
                if not isinstance(event, TextDelta):
                    yield event


@pytest.fixture(scope="module")
async def world(
    sample_kb: Any, smol_engine: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Scripted]]:
    from serving.app import create_app

    engine = Scripted(smol_engine)
    settings = sample_kb.model_copy(
        update={"llm": sample_kb.llm.model_copy(update={"max_tokens": 4})}
    )
    async with ready_client(create_app(settings, engine=engine)) as client:
        yield client, engine


async def ask(world: tuple[httpx.AsyncClient, Scripted], question: str, reply: str) -> Any:
    client, engine = world
    engine.reply = reply
    resp = await client.post("/v1/ask", json={"question": question})
    assert resp.status_code == 200, resp.text
    return resp.json()


QUEUE = "A: All offices use one shared follow-me print queue called NW-Follow-Me."
UNVERIFIED = "I could not verify an answer in the sources. The closest passage:"


async def test_a_non_answer_becomes_the_answering_sentence_quoted_and_cited(world: Any) -> None:
    body = await ask(world, "What is the shared print queue called?", "The answer is:")
    n = next(c["n"] for c in body["citations"] if c["source"].endswith("faq-printing.txt"))
    # The model's text had nothing verified: it is not shown; the quote is, marked.
    assert body["answer"] == f'{UNVERIFIED}\n\n"{QUEUE}" [{n}]'
    assert body["quoted"] is True and body["unsupported"] == [] and not body["declined"]
    assert body["sentences"] == [
        {"text": UNVERIFIED, "citations": [], "supported": True},
        {"text": f'"{QUEUE}"', "citations": [n], "supported": True},
    ]
    assert [c["snippet"] for c in body["citations"]] == [QUEUE]


async def test_an_invention_is_never_shown(world: Any) -> None:
    body = await ask(world, "What is the shared print queue called?", "It is called PrintHub.")
    assert "PrintHub" not in body["answer"] and body["unsupported"] == []
    assert body["quoted"] is True and "NW-Follow-Me" in body["answer"]
    assert body["answer"].startswith(UNVERIFIED)


async def test_a_supported_answer_is_left_alone(world: Any) -> None:
    reply = "The shared print queue is called NW-Follow-Me."
    body = await ask(world, "What is the shared print queue called?", reply)
    assert body["answer"] == reply and body["quoted"] is False
    assert [Path(c["source"]).name for c in body["citations"]] == ["faq-printing.txt"]


async def test_a_wrong_number_beside_a_verified_sentence_is_shown_marked(world: Any) -> None:
    reply = "The shared print queue is called NW-Follow-Me. Jobs are held for 3 hours."
    body = await ask(world, "What is the shared print queue called?", reply)
    assert body["answer"] == reply and body["unsupported"] == ["Jobs are held for 3 hours."]


async def test_chinese_question_gets_a_chinese_notice_and_quote(world: Any) -> None:
    body = await ask(world, "一线城市出差住宿每晚的上限是多少？", "")
    assert body["quoted"] is True
    assert body["answer"].startswith("无法在资料中核实答案。最相关的原文：\n\n“")
    assert "650" in body["answer"] and "详见下表" not in body["answer"]
    assert body["citations"][0]["source"].endswith("finance-expense-policy-zh.md")


async def test_nothing_verified_and_nothing_to_quote_is_a_decline(world: Any) -> None:
    from rag.answering import prompt

    body = await ask(world, "What is the shared print queue called?", "")
    assert body["quoted"] is True  # control: the same question with an empty reply
    body = await ask(world, "Which printer model and firmware do the printers run?", "PX-9.")
    assert body["quoted"] is False and body["declined"] is True
    assert body["answer"] == prompt.DECLINE_MESSAGE and body["citations"] == []
    body = await ask(world, "打印机用的是什么固件版本？", "固件是PX-9。")
    assert body["declined"] is True and body["answer"].startswith("知识库中没有")


async def test_the_stream_is_held_until_verified_and_the_quote_counted(world: Any) -> None:
    client, engine = world
    engine.reply = "Sorry, I am not sure. Maybe 3 hours."
    events = await sse(client, {"question": "How long are print jobs held?", "stream": True})
    deltas = [d["text"] for e, d in events if e == "delta"]
    done = events[-1][1]
    assert done["quoted"] is True and "36 hours" in deltas[-1]
    assert not any("3 hours" in d or "Sorry" in d for d in deltas)  # never streamed
    assert done["answer"] == "".join(deltas).strip()
    metrics = (await client.get("/metrics")).text
    line = next(x for x in metrics.splitlines() if x.startswith("kb_answer_quotes_total"))
    assert float(line.split()[-1]) >= 1
    # A verified first sentence opens the stream: the rest arrives word by word.
    engine.reply = "Unreleased print jobs are held for 36 hours. They are then deleted."
    events = await sse(client, {"question": "How long are print jobs held?", "stream": True})
    deltas = [d["text"] for e, d in events if e == "delta"]
    assert len(deltas) >= 4 and "".join(deltas).strip() == engine.reply
    assert events[-1][1]["answer"] == engine.reply and events[-1][1]["quoted"] is False
