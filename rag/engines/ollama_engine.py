"""``llm.backend: ollama``: Ollama's native chat API (``POST /api/chat``, streaming NDJSON).

Why the native API and not Ollama's OpenAI-compatible one: only the native API takes
``options.num_ctx``. Ollama's default context is small (2-8K tokens depending on the
version) and it truncates a longer prompt *silently*, dropping the start of it, which here
is the rules and the first sources. So every request sets ``num_ctx`` to the context budget
(``llm.max_model_len``, capped by the model's own ``context_length`` from ``/api/show``),
always the same value, so Ollama does not reload the model between questions. A prompt that
does not fit, or a reply whose reported token counts filled the window, is logged as a
warning (counts only, never text).

For gpt-oss, ``think`` carries the reasoning effort (``low``/``medium``/``high``); the
``message.thinking`` field (the analysis channel) is dropped: only ``message.content`` is
streamed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from rag.config import OLLAMA_DEFAULT_URL, LLMSettings
from rag.engines.remote import (
    RemoteEngine,
    chat_messages,
    check_model_name,
    short,
    stream_chunk,
)
from rag.errors import BadRequestError, EngineError
from rag.types import EngineEvent, Finished, GenerationRequest, HistoryTurn, TextDelta, Usage

log = logging.getLogger(__name__)


def _same_model(listed: str, wanted: str) -> bool:
    """Ollama lists ``name:tag``; ``name`` alone means ``name:latest``."""
    if listed == wanted:
        return True
    return ":" not in wanted and listed == f"{wanted}:latest"


class OllamaEngine(RemoteEngine):
    kind = "ollama"

    @classmethod
    def start(cls, settings: LLMSettings) -> OllamaEngine:
        """Build the client; no network yet (the first probe asks the server)."""
        check_model_name(settings)
        engine = cls(settings, settings.base_url or OLLAMA_DEFAULT_URL, {})
        log.info("engine: %s", engine.describe())
        return engine

    @property
    def num_ctx(self) -> int:
        """The context Ollama is told to allocate: the whole budget."""
        return self.max_model_len

    def describe(self) -> str:
        return f"{super().describe()}, num_ctx {self.num_ctx}"

    async def _probe(self) -> None:
        tags = await self._get_json("/api/tags")
        names = [str(m.get("name")) for m in tags.get("models") or [] if isinstance(m, dict)]
        if not names:
            raise EngineError(
                f"Ollama at {self.base_url} has no model. Run `ollama pull gpt-oss:20b` there."
            )
        if self._settings.model == "auto":
            self._model = names[0]
        elif not any(_same_model(n, self._settings.model) for n in names):
            raise EngineError(
                f"Ollama at {self.base_url} has no model {self._settings.model!r} (it has: "
                f"{short(', '.join(names))}). Run `ollama pull {self._settings.model}` there "
                "or fix llm.model."
            )
        show = await self._post_json("/api/show", {"model": self._model})
        info = show.get("model_info") if isinstance(show, dict) else None
        lengths = [
            v
            for k, v in (info or {}).items()
            if k.endswith(".context_length") and isinstance(v, int) and v > 0
        ]
        self._server_max_len = min(lengths) if lengths else None

    def _payload(
        self, request: GenerationRequest, history: Sequence[HistoryTurn], max_tokens: int
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_ctx": self.num_ctx,
            "num_predict": max_tokens,
            "temperature": request.temperature,
        }
        if self._settings.seed is not None:
            options["seed"] = self._settings.seed
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": chat_messages(request, history),
            "stream": True,
            "options": options,
        }
        if self.family == "gpt-oss":
            payload["think"] = request.reasoning_effort
        return payload

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[EngineEvent, None]:
        if self._model == "auto":
            await self.unreachable_reason()  # learn the model's name
        prompt_tokens = self._counter.count(self.family, request, history)
        room = self.num_ctx - prompt_tokens
        if room < 1:
            log.warning(
                "ollama: prompt of ~%d tokens exceeds num_ctx=%d; refusing rather than let "
                "Ollama truncate it",
                prompt_tokens,
                self.num_ctx,
            )
            raise BadRequestError(
                f"The prompt has about {prompt_tokens} tokens, over Ollama's context of "
                f"{self.num_ctx} (num_ctx). Ask a shorter question, lower retrieval.top_k, "
                "or raise llm.max_model_len."
            )
        if prompt_tokens + request.max_tokens > self.num_ctx:
            log.warning(
                "ollama: prompt ~%d + answer %d tokens exceed num_ctx=%d; the answer is cut "
                "to %d tokens",
                prompt_tokens,
                request.max_tokens,
                self.num_ctx,
                room,
            )
        payload = self._payload(request, history, min(request.max_tokens, room))
        resp = await self._open_stream("/api/chat", payload)
        usage: Usage | None = None
        finish = "stop"
        pieces = 0
        try:
            async for line in self._lines(resp):
                if not line.strip():
                    continue
                chunk = self._parse(line)
                message = chunk.get("message") or {}
                # Only the answer: message.thinking (the analysis channel) is dropped.
                text = message.get("content") if isinstance(message, dict) else None
                if isinstance(text, str) and text:
                    pieces += 1
                    yield TextDelta(text)
                if chunk.get("done"):
                    finish = _finish_reason(chunk.get("done_reason"))
                    usage = self._usage(chunk)
                    break
        finally:
            await resp.aclose()
        yield Finished(
            usage or Usage(prompt_tokens=prompt_tokens, completion_tokens=pieces), finish
        )

    def _usage(self, chunk: dict[str, Any]) -> Usage:
        prompt = int(chunk.get("prompt_eval_count") or 0)
        completion = int(chunk.get("eval_count") or 0)
        if prompt + completion >= self.num_ctx:
            log.warning(
                "ollama: the reply filled the context (prompt %d + answer %d >= num_ctx=%d): "
                "the prompt may have been truncated; raise llm.max_model_len or lower "
                "retrieval.top_k",
                prompt,
                completion,
                self.num_ctx,
            )
        return Usage(prompt_tokens=prompt, completion_tokens=completion)

    def _parse(self, line: str) -> dict[str, Any]:
        return stream_chunk(
            line,
            f"Ollama at {self.base_url}",
            "Check that llm.base_url is Ollama's address (e.g. http://127.0.0.1:11434, no /v1).",
        )


def _finish_reason(reason: Any) -> str:
    """Ollama's ``done_reason`` in OpenAI's words (``length`` when num_predict was hit)."""
    return str(reason) if reason in ("stop", "length") else "stop"
