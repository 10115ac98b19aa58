"""The CPU demo's answer mode (``answer.mode: extractive``, configs/dev.yaml) through the real
app, retriever and engine process: quoted, cited source sentences and rows in the question's
language, or a decline; streamed as a few deltas; the same on the OpenAI-compatible route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client, sse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def client(sample_kb: Any, smol_engine: Any) -> AsyncIterator[httpx.AsyncClient]:
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={"answer": sample_kb.answer.model_copy(update={"mode": "extractive"})}
    )
    async with ready_client(create_app(settings, engine=smol_engine)) as c:
        yield c


async def ask(client: httpx.AsyncClient, question: str) -> Any:
    resp = await client.post("/v1/ask", json={"question": question})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_the_issues_questions_get_the_policys_facts(client: httpx.AsyncClient) -> None:
    body = await ask(client, "How many days of paid annual leave do full-time employees get?")
    assert body["answer"].startswith("The knowledge base says:") and "27 days" in body["answer"]
    assert body["usage"]["completion_tokens"] == 0  # no model call
    assert body["quoted"] is True and body["unsupported"] == [] and not body["declined"]
    cited = {Path(c["source"]).name for c in body["citations"]}
    assert cited == {"hr-leave-policy.docx"}
    body = await ask(client, "在一线城市出差时，住宿费用每晚上限是多少？")
    assert body["answer"].startswith("知识库中的相关内容：") and "650元" in body["answer"]
    assert "详见下表" not in body["answer"]
    body = await ask(client, "Can I bring my dog to the office?")
    assert body["declined"] is True and body["citations"] == [] and body["sentences"] == []
    body = await ask(client, "员工可以带狗来办公室吗？")
    assert body["declined"] is True and body["answer"].startswith("知识库中没有")


async def test_sentences_and_citations_agree_with_the_text(client: httpx.AsyncClient) -> None:
    body = await ask(client, "Who is the site manager of the Bergen office?")
    assert "Henrik Aasen" in body["answer"]
    known = {c["n"] for c in body["citations"]}
    lead, *quotes = body["sentences"]
    assert lead == {"text": "The knowledge base says:", "citations": [], "supported": True}
    for s in quotes:
        assert s["supported"] and s["citations"] and set(s["citations"]) <= known
        assert f"{s['text']} [{s['citations'][0]}]" in body["answer"]
    # A table row is quoted with its column names.
    assert "site_manager: Henrik Aasen" in body["answer"]


async def test_streams_as_a_few_deltas_and_the_openai_route_agrees(
    client: httpx.AsyncClient,
) -> None:
    question = "Which ticket code reactivates a suspended account?"
    events = await sse(client, {"question": question, "stream": True})
    names = [e for e, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and 2 <= names.count("delta") <= 4
    deltas = "".join(d["text"] for e, d in events if e == "delta")
    done = events[-1][1]
    assert done["answer"] == deltas.strip() and "PWD-911" in done["answer"]
    chat = {"model": "knowledge-base", "messages": [{"role": "user", "content": question}]}
    resp = await client.post("/v1/chat/completions", json=chat)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == done["answer"]
    text = ""
    async with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices", []):
                    text += choice["delta"].get("content") or ""
    assert text.strip() == done["answer"]
