"""Real OpenAI clients (the official ``openai`` package and LangChain's ``ChatOpenAI``) talk to
a real server process; ``/metrics`` parses with prometheus-client's own parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

QUESTION = "What is the name of the shared print queue?"


@pytest.fixture(scope="module")
def client(e2e_server: Server) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{e2e_server.base}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_knowledge_base(client: Any) -> None:
    assert [m.id for m in client.models.list().data] == ["knowledge-base"]


def test_openai_sdk_non_streaming(client: Any) -> None:
    done = client.chat.completions.create(
        model="knowledge-base", messages=[{"role": "user", "content": QUESTION}]
    )
    assert done.object == "chat.completion"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content.strip()
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens > 0
    extra = done.model_extra or {}
    sources = {Path(c["source"]).name for c in extra["citations"]}
    assert "faq-printing.txt" in sources
    assert len(extra["answer_id"]) == 32


def test_openai_sdk_streaming_with_usage(client: Any) -> None:
    stream = client.chat.completions.create(
        model="knowledge-base",
        messages=[
            {"role": "system", "content": "Ignored: the service's own rules apply."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! Ask me about the office."},
            {"role": "user", "content": QUESTION},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    assert (finals[0].model_extra or {})["citations"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_openai_errors_are_openai_shaped(client: Any) -> None:
    import openai

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )
    assert "knowledge-base" in str(missing.value)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="knowledge-base", messages=[{"role": "assistant", "content": "no question"}]
        )


def test_langchain_chat_openai(e2e_server: Server) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{e2e_server.base}/v1", api_key="unused", model="knowledge-base", max_retries=0
    )
    reply = llm.invoke(QUESTION)
    assert isinstance(reply.content, str) and reply.content.strip()
    streamed = "".join(str(part.content) for part in llm.stream(QUESTION))
    assert streamed.strip()


def test_metrics_parse_and_count_answers(e2e_server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(2):  # the second time, the prompt comes from the prefix cache
        httpx.post(f"{e2e_server.base}/v1/ask", json={"question": QUESTION}, timeout=120)
    text = httpx.get(f"{e2e_server.base}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    answered = sum(
        s.value
        for s in families["kb_answers"].samples
        if s.name == "kb_answers_total" and s.labels["outcome"] == "answered"
    )
    assert answered >= 1
    requests = [
        s
        for s in families["kb_http_requests"].samples
        if s.name == "kb_http_requests_total" and s.labels["route"] == "/v1/ask"
    ]
    assert requests and requests[0].labels["status"] == "200"
    assert families["kb_ready"].samples[0].value == 1
    assert families["kb_store_chunks"].samples[0].value > 0
    assert "kb_time_to_first_token_seconds" in families
    assert families["kb_prompt_cached_tokens"].samples[0].value > 0
    assert 0 < families["kb_prefix_cache_hit_ratio"].samples[0].value < 1
    assert families["kb_index_documents"].samples[0].value >= 11  # the sample KB
    assert (
        families["kb_index_chunks"].samples[0].value == families["kb_store_chunks"].samples[0].value
    )
    assert families["kb_index_failed"].samples[0].value == 0
    assert QUESTION not in text  # no question text in metrics
