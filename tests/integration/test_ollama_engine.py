"""``llm.backend: ollama`` against a recorded Ollama ``/api/chat`` stream.

Ollama cannot be installed on this machine, so the server here replays an NDJSON answer
written from Ollama's documented format (gpt-oss with ``think``: ``message.thinking``
chunks, then ``message.content`` chunks, then a ``done`` line with the token counts). The
engine, the service and the HTTP in between are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.remote_servers import RecordedServer
from tests.servers import free_port, serve_app

DATA = Path(__file__).parent / "data"
RECORDED = (DATA / "ollama_gpt_oss_chat.ndjson").read_text(encoding="utf-8").splitlines()
ANSWER = "The shared print queue is **NW-Follow-Me** [1]."
QUESTION = "What is the name of the shared print queue?"


def ollama_settings(settings: Any, address: str, **llm: Any) -> Any:
    from rag.config import LLMSettings

    data = settings.llm.model_dump()
    data.update({"backend": "ollama", "base_url": address, "model": "gpt-oss:20b", **llm})
    return settings.model_copy(update={"llm": LLMSettings.model_validate(data)})


@contextlib.asynccontextmanager
async def ollama(**kwargs: Any) -> AsyncIterator[tuple[RecordedServer, str]]:
    server = RecordedServer(list(kwargs.pop("lines", RECORDED)), ["gpt-oss:20b"], **kwargs)
    async with serve_app(server.app()) as address:
        yield server, address


@contextlib.asynccontextmanager
async def service(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    from serving.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            for _ in range(600):
                if app.state.rag.status != "loading":
                    break
                await asyncio.sleep(0.05)
            yield c


async def test_answers_with_the_final_text_only_and_sets_num_ctx(sample_kb: Any) -> None:
    async with ollama() as (server, address):
        settings = ollama_settings(sample_kb, address, max_model_len=16384, max_tokens=200)
        async with service(settings) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            resp = await client.post("/v1/ask", json={"question": QUESTION})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["answer"] == ANSWER
            assert "SECRET-REASONING" not in resp.text  # message.thinking never leaks
            assert body["usage"] == {"prompt_tokens": 812, "completion_tokens": 57}
            assert "faq-printing" in body["citations"][0]["source"]

            sent = server.requests[-1]
            assert sent["model"] == "gpt-oss:20b" and sent["stream"] is True
            assert sent["think"] == "low"  # gpt-oss reasoning effort
            assert sent["options"]["num_ctx"] == 16384  # the whole budget, every time
            assert sent["options"]["num_predict"] == 200
            assert sent["messages"][0]["role"] == "system"
            assert QUESTION in sent["messages"][-1]["content"]

            resp = await client.post("/v1/ask", json={"question": QUESTION, "stream": True})
            deltas = [
                json.loads(block.split("\ndata: ", 1)[1])["text"]
                for block in resp.text.split("\n\n")
                if block.startswith("event: delta\n")
            ]
            assert "".join(deltas) == ANSWER
            assert "SECRET-REASONING" not in resp.text
            assert "event: done" in resp.text


async def test_num_ctx_is_capped_by_the_models_context_length(make_settings: Any) -> None:
    from rag.engines.ollama_engine import OllamaEngine

    async with ollama(context_length=8192) as (_, address):
        settings = make_settings(
            llm={"backend": "ollama", "base_url": address, "model": "gpt-oss:20b"}
        )
        settings = ollama_settings(settings, address, max_model_len=131072)
        engine = OllamaEngine.start(settings.llm)
        try:
            assert await engine.unreachable_reason() is None
            assert engine.num_ctx == 8192 == engine.max_model_len
            assert "num_ctx 8192" in engine.describe()
        finally:
            await engine.close()


async def test_prompts_beyond_num_ctx_are_refused_or_warned(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from rag.engines.ollama_engine import OllamaEngine
    from rag.errors import BadRequestError
    from rag.types import Finished, GenerationRequest, TextDelta

    done = json.loads(RECORDED[-1])
    done.update(prompt_eval_count=3000, eval_count=1096)  # filled a 4096 window
    lines = [*RECORDED[:-1], json.dumps(done)]
    async with ollama(lines=lines) as (server, address):
        settings = ollama_settings(make_settings(), address, max_model_len=4096)
        engine = OllamaEngine.start(settings.llm)
        try:
            context = "[1] The print queue is called NW-Follow-Me.\n" * 250
            request = GenerationRequest("r", "Answer.", context, QUESTION, 2000, 0.0)
            prompt = engine.count_prompt_tokens(request)
            assert 2096 < prompt < 4096  # fits alone, not with the 2000-token answer
            with caplog.at_level(logging.WARNING, logger="rag.engines.ollama_engine"):
                events = [e async for e in engine.stream(request)]
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == ANSWER
            assert isinstance(events[-1], Finished)
            assert server.requests[-1]["options"]["num_predict"] == 4096 - prompt
            warnings = [r.getMessage() for r in caplog.records]
            assert any("exceed num_ctx=4096" in w for w in warnings)
            assert any("filled the context" in w for w in warnings)
            assert not any("NW-Follow-Me" in w for w in warnings)  # counts, never text

            too_long = GenerationRequest("r", "Answer.", context * 2, QUESTION, 10, 0.0)
            sent = len(server.requests)
            with pytest.raises(BadRequestError, match="num_ctx"):
                [e async for e in engine.stream(too_long)]
            assert len(server.requests) == sent  # refused before Ollama truncates it
        finally:
            await engine.close()


async def test_closing_the_answer_closes_the_ollama_stream(make_settings: Any) -> None:
    from rag.engines.ollama_engine import OllamaEngine
    from rag.types import GenerationRequest, TextDelta

    async with ollama(lines=RECORDED[3:5], repeat=True, line_delay_s=0.02) as (server, address):
        engine = OllamaEngine.start(ollama_settings(make_settings(), address).llm)
        try:
            request = GenerationRequest("r", "Answer.", "", QUESTION, 10_000, 0.0)
            stream = engine.stream(request)
            pieces = [await anext(stream) for _ in range(5)]
            assert all(isinstance(p, TextDelta) for p in pieces)
            await stream.aclose()  # what a client disconnect does to the answer stream
            for _ in range(100):
                if server.closed_early:
                    break
                await asyncio.sleep(0.02)
            assert server.closed_early == 1 and server.completed == 0
        finally:
            await engine.close()


async def test_missing_model_down_server_and_mid_stream_error(sample_kb: Any) -> None:
    async with ollama() as (_, address):
        settings = ollama_settings(sample_kb, address, model="gpt-oss:120b")
        async with service(settings) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "ollama pull gpt-oss:120b" in ready.json()["detail"]

    address = f"http://127.0.0.1:{free_port()}"
    async with service(ollama_settings(sample_kb, address, retries=0)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unreachable"
        assert address in ready.json()["detail"]
        resp = await client.post("/v1/ask", json={"question": QUESTION})
        assert resp.status_code == 503 and address in resp.json()["error"]["message"]

    broken = [*RECORDED[3:5], json.dumps({"error": "model runner has unexpectedly stopped"})]
    async with (
        ollama(lines=broken) as (_, address),
        service(ollama_settings(sample_kb, address)) as client,
    ):
        resp = await client.post("/v1/ask", json={"question": QUESTION, "stream": True})
        assert resp.status_code == 200
        last = resp.text.strip().split("\n\n")[-1]
        assert last.startswith("event: error")
        error = json.loads(last.split("data: ", 1)[1])
        assert error["code"] == "engine_error" and "unexpectedly stopped" in error["message"]
