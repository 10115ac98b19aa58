"""The OpenAI-compatible engine's protocol handling, against a recorded gpt-oss stream.

The random tiny gpt-oss that a real vLLM server runs in test_remote_engines.py never emits
a well-formed analysis channel, so the reasoning fields that gpt-oss servers return beside
the answer (``reasoning_content`` in older vLLM, ``reasoning`` in newer) are tested here on a
stream recorded in vLLM's format. Settings errors need no server at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.remote_servers import RecordedServer
from tests.servers import serve_app

RECORDED = (Path(__file__).parent / "data" / "openai_gpt_oss_chat.sse").read_text().splitlines()
MODEL = "openai/gpt-oss-20b"
ANSWER = "The shared print queue is **NW-Follow-Me** [1]."


def openai_llm(make_settings: Any, **llm: Any) -> Any:
    return make_settings(llm={"backend": "openai", "model": MODEL, **llm}).llm


async def test_only_the_final_answer_streams_and_the_key_is_sent(
    make_settings: Any, assets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.engines.openai_engine import OpenAIEngine
    from rag.types import Finished, GenerationRequest, TextDelta, Usage

    monkeypatch.setenv("TEST_GPT_OSS_KEY", "sk-test-123")
    server = RecordedServer(RECORDED, [MODEL], context_length=32768)
    async with serve_app(server.app()) as address:
        llm = openai_llm(
            make_settings,
            base_url=f"{address}/v1",
            api_key_env="TEST_GPT_OSS_KEY",
            max_model_len=131072,
        )
        assert "api key from $TEST_GPT_OSS_KEY" in llm.describe()
        assert "sk-test" not in llm.describe()
        engine = OpenAIEngine.start(llm)
        try:
            assert await engine.unreachable_reason() is None
            assert engine.max_model_len == 32768  # the server's max_model_len caps 128K
            assert engine.family == "gpt-oss"  # from the served name
            request = GenerationRequest("r", "Answer.", "[1] ...", "Queue?", 64, 0.0, "medium")
            events = [e async for e in engine.stream(request)]
            text = "".join(e.text for e in events if isinstance(e, TextDelta))
            assert text == ANSWER  # reasoning / reasoning_content dropped
            assert events[-1] == Finished(Usage(790, 57), "stop")
            sent = server.requests[-1]
            assert sent["reasoning_effort"] == "medium" and sent["stream"] is True
            assert sent["max_tokens"] == 64 and sent["model"] == MODEL
            assert server.headers[-1]["authorization"] == "Bearer sk-test-123"
        finally:
            await engine.close()


async def test_a_refused_key_is_not_retried(
    make_settings: Any, assets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.engines.openai_engine import OpenAIEngine
    from rag.errors import EngineError
    from rag.types import GenerationRequest

    monkeypatch.setenv("TEST_GPT_OSS_KEY", "wrong")
    server = RecordedServer(RECORDED, [MODEL])
    async with serve_app(server.app()) as address:
        llm = openai_llm(
            make_settings, base_url=f"{address}/v1", api_key_env="TEST_GPT_OSS_KEY", retries=3
        )
        engine = OpenAIEngine.start(llm)
        try:
            request = GenerationRequest("r", "Answer.", "", "Queue?", 8, 0.0)
            with pytest.raises(EngineError, match="API key"):
                [e async for e in engine.stream(request)]
            assert len(server.requests) == 1
        finally:
            await engine.close()


async def test_an_unknown_model_name_is_reported_with_what_the_server_serves(
    make_settings: Any, assets: Any
) -> None:
    from rag.engines.openai_engine import OpenAIEngine

    server = RecordedServer(RECORDED, [MODEL])
    async with serve_app(server.app()) as address:
        engine = OpenAIEngine.start(
            openai_llm(make_settings, base_url=f"{address}/v1", model="gpt-oss-120b")
        )
        try:
            reason = await engine.unreachable_reason()
            assert reason is not None and MODEL in reason and "llm.model" in reason
        finally:
            await engine.close()


def test_settings_errors_say_what_to_fix(make_settings: Any, assets: Any) -> None:
    from rag.engines.openai_engine import OpenAIEngine
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match=r"llm\.base_url"):
        OpenAIEngine.start(openai_llm(make_settings))
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        OpenAIEngine.start(
            openai_llm(make_settings, base_url="http://h/v1", api_key_env="NO_SUCH_KEY_VAR")
        )
    with pytest.raises(ConfigError, match="auto"):
        OpenAIEngine.start(
            openai_llm(make_settings, base_url="http://h/v1", model="builtin:smollm2-135m-instruct")
        )
    llm = openai_llm(make_settings, base_url="http://gpu-box:8000/v1")
    assert llm.describe() == (
        f"backend openai at http://gpu-box:8000/v1, model {MODEL}, family auto, no api key"
    )


async def check(*extra_env: tuple[str, str]) -> tuple[int, str]:
    """``rag-serve --check`` in a subprocess (asyncio, so the in-test server can answer)."""
    import asyncio
    import os
    import sys

    env = {**os.environ, "RAG_PROFILE": "test", **dict(extra_env)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "serving.cli",
        "--check",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode()


async def test_serve_check_shows_backend_and_address(assets: Any) -> None:
    from tests.servers import free_port

    server = RecordedServer(RECORDED, [MODEL], context_length=65536)
    async with serve_app(server.app()) as address:
        code, out = await check(
            ("RAG_LLM__BACKEND", "openai"),
            ("RAG_LLM__BASE_URL", f"{address}/v1"),
            ("RAG_LLM__MODEL", "auto"),
        )
    assert code == 0, out
    assert f"backend openai at {address}/v1" in out
    assert f"serves {MODEL}" in out and "budget 4096" in out  # test profile's 4096 < 65536

    down = f"http://127.0.0.1:{free_port()}"
    code, out = await check(
        ("RAG_LLM__BACKEND", "ollama"),
        ("RAG_LLM__BASE_URL", down),
        ("RAG_LLM__MODEL", "gpt-oss:20b"),
    )
    assert code == 6, out
    assert f"backend ollama at {down}" in out and "NOT reachable" in out

    code, out = await check()
    assert code == 0 and "backend vllm (in-process)" in out
