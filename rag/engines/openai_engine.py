"""``llm.backend: openai``: any OpenAI-compatible chat completions server.

Tested against vLLM's own server (``python -m vllm.entrypoints.openai.api_server``); the same
protocol is spoken by ``vllm serve``, TensorRT-LLM's ``trtllm-serve``, llama.cpp's server
and others. Talks plain HTTP with httpx (no SDK): streaming chat completions (Server-Sent
Events), ``reasoning_effort`` for gpt-oss, and only ``delta.content`` reaches the user:
``reasoning``/``reasoning_content`` (gpt-oss's analysis channel, which such servers return
beside the answer) is dropped. ``/v1/models`` tells the served model and, on vLLM, its
``max_model_len``, which caps the prompt budget.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from rag.config import LLMSettings
from rag.engines.remote import (
    RemoteEngine,
    chat_messages,
    check_model_name,
    short,
    stream_chunk,
)
from rag.errors import BadRequestError, ConfigError, EngineError
from rag.types import EngineEvent, Finished, GenerationRequest, HistoryTurn, TextDelta, Usage

log = logging.getLogger(__name__)


class OpenAIEngine(RemoteEngine):
    kind = "openai"

    @classmethod
    def start(cls, settings: LLMSettings) -> OpenAIEngine:
        """Build the client; no network yet (the first probe asks the server)."""
        if not settings.base_url:
            raise ConfigError(
                "llm.backend is openai but llm.base_url is not set. Set it to the server's "
                "address, e.g. http://127.0.0.1:8000/v1 (RAG_LLM__BASE_URL)."
            )
        check_model_name(settings)
        headers: dict[str, str] = {}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise ConfigError(
                    f"llm.api_key_env names {settings.api_key_env}, but that environment "
                    "variable is not set. Export the server's API key in it, or unset "
                    "llm.api_key_env for a server without keys."
                )
            headers["Authorization"] = f"Bearer {key}"
        engine = cls(settings, settings.base_url, headers)
        log.info("engine: %s", engine.describe())
        return engine

    async def _probe(self) -> None:
        listing = await self._get_json("/models")
        models = [m for m in listing.get("data") or [] if isinstance(m, dict)]
        if not models:
            raise EngineError(
                f"The model server at {self.base_url} serves no model. Load one there."
            )
        if self._settings.model == "auto":
            chosen = models[0]
            self._model = str(chosen.get("id"))
        else:
            found = [m for m in models if m.get("id") == self._settings.model]
            if not found:
                names = ", ".join(str(m.get("id")) for m in models)
                raise EngineError(
                    f"The model server at {self.base_url} does not serve "
                    f"{self._settings.model!r} (it serves: {short(names)}). Fix llm.model "
                    "or set it to auto."
                )
            chosen = found[0]
        max_len = chosen.get("max_model_len")
        self._server_max_len = max_len if isinstance(max_len, int) and max_len > 0 else None

    def _payload(
        self, request: GenerationRequest, history: Sequence[HistoryTurn], max_tokens: int
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": chat_messages(request, history),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": request.temperature,
        }
        if self._settings.seed is not None:
            payload["seed"] = self._settings.seed
        if self.family == "gpt-oss":
            payload["reasoning_effort"] = request.reasoning_effort
        return payload

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[EngineEvent, None]:
        if self._model == "auto":
            await self.unreachable_reason()  # learn the served model's name
        prompt_tokens = self._counter.count(self.family, request, history)
        room = self.max_model_len - prompt_tokens
        if room < 1:
            raise BadRequestError(
                f"The prompt has about {prompt_tokens} tokens, over the window of "
                f"{self.max_model_len}. Ask a shorter question or lower retrieval.top_k."
            )
        payload = self._payload(request, history, min(request.max_tokens, room))
        resp = await self._open_stream("/chat/completions", payload)
        usage: Usage | None = None
        finish = "stop"
        pieces = 0
        try:
            async for line in self._lines(resp):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = self._parse(data)
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"], usage)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    # Only the answer: reasoning / reasoning_content never reach a user.
                    text = delta.get("content")
                    if isinstance(text, str) and text:
                        pieces += 1
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        finally:
            await resp.aclose()
        yield Finished(
            usage or Usage(prompt_tokens=prompt_tokens, completion_tokens=pieces), finish
        )

    def _parse(self, data: str) -> dict[str, Any]:
        return stream_chunk(
            data,
            f"The model server at {self.base_url}",
            "Check that llm.base_url points at an OpenAI-compatible API (ending in /v1).",
        )


def _usage(raw: Any, previous: Usage | None) -> Usage | None:
    if not isinstance(raw, dict):
        return previous
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )
