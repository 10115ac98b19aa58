"""``llm.backend: openai`` against vLLM's own OpenAI-compatible server (real processes).

Two servers start once per session, in parallel (``tests/vllm_servers.py``): the tiny
random gpt-oss (harmony inside the server) and SmolLM2-135M (its ChatML template). Faults
(500s, a slow server, a server that goes away and comes back) are injected by a small proxy
in front of the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.remote_servers import FaultyProxy, VllmServer
from tests.servers import free_port, serve_app
from tests.vllm_servers import SMOL_NAME, TINY_NAME

pytestmark = pytest.mark.slow

QUESTION = "What is the name of the shared print queue?"


def remote(settings: Any, **llm: Any) -> Any:
    """``settings`` (the sample knowledge base) with the engine pointed at a server."""
    from rag.config import LLMSettings

    data = settings.llm.model_dump()
    data.update({"backend": "openai", "retry_backoff_s": 0.05, **llm})
    return settings.model_copy(update={"llm": LLMSettings.model_validate(data)})


@contextlib.asynccontextmanager
async def service(settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app (owning its engine, as in production) and an in-process client."""
    from serving.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as c:
            for _ in range(600):
                if app.state.rag.status != "loading":
                    break
                await asyncio.sleep(0.05)
            yield c, app.state.rag


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@contextlib.asynccontextmanager
async def proxy_to(server: VllmServer, port: int | None = None) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(f"http://127.0.0.1:{server.port}")
    try:
        async with serve_app(proxy.app(), port) as address:
            proxy.address = address
            yield proxy
    finally:
        await proxy.aclose()


async def test_gpt_oss_server_answers_streaming_and_not(
    sample_kb: Any, tiny_server: VllmServer
) -> None:
    async with proxy_to(tiny_server) as proxy:
        settings = remote(
            sample_kb,
            base_url=f"{proxy.address}/v1",
            model=TINY_NAME,
            max_model_len=131072,
            max_tokens=24,
        )
        async with service(settings) as (client, state):
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["model"] == TINY_NAME
            # The server's max_model_len (8192) caps the configured 128K budget.
            assert state.engine.family == "gpt-oss"
            assert state.engine.max_model_len == tiny_server.max_model_len

            before = await tiny_server.metric("vllm:request_success_total")
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["answer"].strip() and not body["declined"]
            assert body["usage"]["prompt_tokens"] > 0  # the server's own count
            assert 0 < body["usage"]["completion_tokens"] <= 24
            assert await tiny_server.metric("vllm:request_success_total") == before + 1
            sent = proxy.bodies[-1]
            assert sent["model"] == TINY_NAME and sent["stream"] is True
            assert sent["reasoning_effort"] == "low"
            assert sent["messages"][0]["role"] == "system"
            assert QUESTION in sent["messages"][-1]["content"]

            resp = await client.post("/v1/ask", json={"question": QUESTION, "stream": True})
            assert resp.status_code == 200
            events = sse(resp.text)
            names = [name for name, _ in events]
            assert names[0] == "citations" and names[-1] == "done"
            assert "delta" in names and "error" not in names
            streamed = "".join(data["text"] for name, data in events if name == "delta")
            assert events[-1][1]["answer"] == streamed.strip()


async def test_local_budget_matches_what_the_gpt_oss_server_counts(
    tiny_server: VllmServer, make_settings: Any
) -> None:
    """The o200k_harmony count (plus its margin) covers the server's prompt, tightly."""
    from rag.engines.openai_engine import OpenAIEngine
    from rag.types import Finished, GenerationRequest

    settings = make_settings(
        llm={"backend": "openai", "base_url": tiny_server.base_url, "model": "auto"}
    )
    engine = OpenAIEngine.start(settings.llm)
    try:
        assert await engine.unreachable_reason() is None
        assert engine.name == TINY_NAME  # model: auto takes the served one
        for context in ("", "[1] The print queue is PRN-3.\n" * 200):
            request = GenerationRequest("r", "Answer from the sources.", context, "Q?", 4, 0.0)
            events = [e async for e in engine.stream(request)]
            served = next(e for e in events if isinstance(e, Finished)).usage.prompt_tokens
            local = engine.count_prompt_tokens(request)
            assert served <= local <= served + 48, (served, local)
    finally:
        await engine.close()


async def test_openai_compatible_route_through_a_remote_server(
    sample_kb: Any, smol_server: VllmServer
) -> None:
    """The service's own OpenAI-compatible route, answered by a remote vLLM server."""
    settings = remote(sample_kb, base_url=smol_server.base_url, model=SMOL_NAME)
    chat = {"model": "knowledge-base", "messages": [{"role": "user", "content": QUESTION}]}
    async with service(settings) as (client, _):
        assert (await client.get("/readyz")).status_code == 200
        resp = await client.post("/v1/chat/completions", json=chat)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["choices"][0]["message"]["content"].strip()
        assert body["usage"]["completion_tokens"] > 0
        assert any("faq-printing" in c["source"] for c in body["citations"])
        streamed = await client.post("/v1/chat/completions", json={**chat, "stream": True})
        chunks = [
            json.loads(line[6:])
            for line in streamed.text.splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text.strip() and streamed.text.rstrip().endswith("data: [DONE]")


async def test_smollm2_server_gives_the_in_process_answer(
    sample_kb: Any, smol_server: VllmServer, smol_engine: Any
) -> None:
    """Same model, same chat template, greedy: remote and in-process answers agree."""
    from rag.answering.answer import AnswerService
    from rag.services import build_knowledge_base, build_retriever

    settings = remote(sample_kb, base_url=smol_server.base_url, model=SMOL_NAME)
    async with service(settings) as (client, state):
        assert (await client.get("/readyz")).status_code == 200
        assert state.engine.family == "chat"
        resp = await client.post("/v1/ask", json={"question": QUESTION})
        assert resp.status_code == 200, resp.text
        remote_answer = resp.json()
    from rag.types import Principal

    kb = build_knowledge_base(sample_kb)
    retriever = build_retriever(sample_kb, kb)
    anyone = Principal("anonymous", frozenset(sample_kb.retrieval.anonymous_groups))
    local = await AnswerService(sample_kb, retriever, smol_engine).ask(QUESTION, anyone)
    assert remote_answer["answer"] == local.answer
    assert [c["doc_id"] for c in remote_answer["citations"]] == [c.doc_id for c in local.citations]


async def test_client_disconnect_aborts_the_servers_request(
    sample_kb: Any, tiny_server: VllmServer
) -> None:
    """The client hangs up mid-answer: the service closes its upstream stream at once (seen
    by a relaying proxy) and the server stops generating."""
    from serving.app import create_app

    generated = "vllm:generation_tokens_total"
    async with proxy_to(tiny_server) as proxy:
        settings = remote(
            sample_kb,
            base_url=f"{proxy.address}/v1",
            model=TINY_NAME,
            max_tokens=4000,
            max_model_len=8192,
        )
        async with (
            serve_app(create_app(settings)) as address,
            httpx.AsyncClient(base_url=address, timeout=60) as client,
        ):
            assert (await wait_ready(client, 60)).status_code == 200
            before = await tiny_server.metric(generated)
            payload = {"question": QUESTION, "stream": True}
            async with client.stream("POST", "/v1/ask", json=payload) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if line.startswith("event: citations"):
                        break
                # vLLM holds back gpt-oss text that does not parse as harmony (random
                # weights never do): wait for its first chunk to reach the service instead.
                for _ in range(300):
                    if proxy.relayed:
                        break
                    await asyncio.sleep(0.1)
                assert proxy.relayed and not proxy.closed_early
            # Leaving the block hung up mid-answer.
            for _ in range(100):
                if proxy.closed_early:
                    break
                await asyncio.sleep(0.05)
            assert proxy.closed_early == 1
    # The server aborted the request rather than generate 4000 tokens.
    assert await wait_for(tiny_server, running=0, seconds=30)
    assert await tiny_server.metric(generated) - before < 3000


async def wait_for(server: VllmServer, *, running: int, seconds: float) -> bool:
    for _ in range(int(seconds / 0.1)):
        if await server.metric("vllm:num_requests_running") == running:
            return True
        await asyncio.sleep(0.1)
    return False


async def wait_ready(client: httpx.AsyncClient, seconds: float = 10) -> httpx.Response:
    for _ in range(int(seconds / 0.1)):
        ready = await client.get("/readyz")
        if ready.status_code == 200:
            break
        await asyncio.sleep(0.1)
    return ready


async def test_lost_server_gives_a_clear_503_and_recovers_by_itself(
    sample_kb: Any, tiny_server: VllmServer
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    settings = remote(
        sample_kb,
        base_url=f"http://{address}/v1",
        model=TINY_NAME,
        max_tokens=8,
        retries=1,
        connect_timeout_s=2,
    )
    async with service(settings) as (client, _):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unreachable"
        assert address in ready.json()["detail"]
        for stream in (False, True):
            resp = await client.post("/v1/ask", json={"question": QUESTION, "stream": stream})
            assert resp.status_code == 503
            assert resp.headers["retry-after"]
            error = resp.json()["error"]
            assert error["code"] == "engine_unavailable"
            assert address in error["message"] and "llm.base_url" in error["message"]

        async with proxy_to(tiny_server, port):  # the server comes (back) up
            assert (await wait_ready(client)).status_code == 200
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text

        # Lost while the service runs: the next question fails clearly, readiness follows.
        resp = await client.post("/v1/ask", json={"question": QUESTION})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "engine_unavailable"
        assert (await client.get("/readyz")).json()["status"] == "unreachable"

        async with proxy_to(tiny_server, port):
            assert (await wait_ready(client)).status_code == 200
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text


async def test_5xx_is_retried_with_backoff_4xx_never(
    sample_kb: Any, tiny_server: VllmServer
) -> None:
    async with proxy_to(tiny_server) as proxy:
        settings = remote(
            sample_kb,
            base_url=f"{proxy.address}/v1",
            model=TINY_NAME,
            max_tokens=8,
            retries=2,
        )
        async with service(settings) as (client, _):
            assert (await wait_ready(client)).status_code == 200

            proxy.fail_next, proxy.posts = 2, 0  # two 500s, then the real server
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text
            assert proxy.posts == 3

            proxy.fail_next, proxy.posts = 10, 0  # still failing after every retry
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "engine_unavailable"
            assert "500" in resp.json()["error"]["message"]
            assert proxy.posts == 3
            streamed = await client.post("/v1/ask", json={"question": QUESTION, "stream": True})
            name, data = sse(streamed.text)[-1]
            assert (name, data["code"]) == ("error", "engine_unavailable")

            proxy.fail_next = 0  # recovered
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text

            proxy.fail_next, proxy.fail_status, proxy.posts = 5, 400, 0
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 422
            assert resp.json()["error"]["code"] == "bad_request"
            assert proxy.posts == 1  # a 4xx is never retried
            proxy.fail_next = 0


async def test_slow_server_times_out_clearly(sample_kb: Any, tiny_server: VllmServer) -> None:
    async with proxy_to(tiny_server) as proxy:
        settings = remote(
            sample_kb,
            base_url=f"{proxy.address}/v1",
            model=TINY_NAME,
            max_tokens=8,
            timeout_s=1.5,
        )
        async with service(settings) as (client, _):
            assert (await wait_ready(client)).status_code == 200
            proxy.delay_s, proxy.posts = 4.0, 0
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 504
            error = resp.json()["error"]
            assert error["code"] == "engine_timeout" and "llm.timeout_s" in error["message"]
            assert proxy.posts == 1  # a slow server is not hammered with retries
            proxy.delay_s = 0
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text
