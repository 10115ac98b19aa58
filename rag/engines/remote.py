"""What the remote engines (an OpenAI-compatible server, Ollama) share.

- **Prompt budgets are counted here**, with the local o200k_harmony tokenizer, so the 128K
  packing works as with the in-process engine: gpt-oss prompts are rendered with harmony
  (as the server will render them) plus a small margin for the server's own system message;
  other models are estimated from the messages' o200k tokens plus per-message overhead.
- **Requests are retried** with exponential backoff when the connection fails or the server
  answers 5xx, never on 4xx (the same request would fail again) and never once the answer
  has started streaming.
- **Reachability** is probed on demand (``/readyz``, each question) and cached briefly; a
  failed request marks the server down, so the next question gets a fast, clear 503 until a
  probe finds it back.
- **Cancellation**: the answer stream owns the HTTP response and closes it in ``finally``, so
  a consumer that goes away (client disconnect) closes the upstream connection, which makes
  vLLM/Ollama abort the generation.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from rag.answering.prompt import conversation
from rag.config import LLMSettings
from rag.engines.harmony import HarmonyCodec
from rag.errors import (
    BadRequestError,
    ConfigError,
    EngineError,
    EngineTimeoutError,
    EngineUnavailableError,
)
from rag.types import GenerationRequest, HistoryTurn

log = logging.getLogger(__name__)

HARMONY_SERVER_MARGIN = 32
"""Tokens added to a harmony-rendered count: the server writes its own system message
(identity, knowledge cutoff, date), a little longer than ours."""
CHAT_MESSAGE_OVERHEAD = 8
"""Tokens per message for role markers of a chat template (ChatML uses 4-5)."""
UP_TTL_S = 5.0
"""How long a successful probe is trusted."""
DOWN_RETRY_S = 1.0
"""How often a server known to be down is probed again (at most)."""
_GPT_OSS_NAME = re.compile(r"gpt[-_]?oss", re.IGNORECASE)
_ERROR_TEXT_LIMIT = 300


def family_for(settings: LLMSettings, model_name: str) -> str:
    """``gpt-oss`` or ``chat``: the setting, or guessed from the served model's name."""
    if settings.family != "auto":
        return settings.family
    return "gpt-oss" if _GPT_OSS_NAME.search(model_name) else "chat"


def chat_messages(
    request: GenerationRequest, history: Sequence[HistoryTurn]
) -> list[dict[str, str]]:
    """Rules as the system message (gpt-oss servers make it the developer message), then the
    sources, the earlier turns and the question (rag.answering.prompt.conversation: a
    follow-up's prompt starts with the previous one, so the server's prefix cache serves it)."""
    messages = [{"role": "system", "content": request.instructions}]
    messages += [
        {"role": role, "content": text}
        for role, text in conversation(request.context, request.question, history)
    ]
    return messages


def check_model_name(settings: LLMSettings) -> None:
    if settings.model.startswith("builtin:"):
        raise ConfigError(
            f"llm.model is {settings.model!r}, a built-in model of the in-process engine. "
            f"With llm.backend: {settings.backend} set it to the name the server serves the "
            "model under (e.g. gpt-oss:20b, openai/gpt-oss-120b), or to auto."
        )


def short(text: str) -> str:
    """A server's error text, cut to a length fit for an error message."""
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "..."


def stream_chunk(data: str, server: str, fix: str) -> dict[str, Any]:
    """One JSON object of a model server's stream, or an EngineError: ``server`` names it
    ("Ollama at ..."), ``fix`` says what to check when the stream is not JSON at all."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise EngineError(f"{server} sent a malformed stream. {fix}") from exc
    if not isinstance(chunk, dict):
        raise EngineError(f"{server} sent a malformed stream.")
    if "error" in chunk:
        err = chunk["error"]
        message = err.get("message", "") if isinstance(err, dict) else str(err)
        raise EngineError(
            f"{server} failed mid-answer ({short(str(message))}). Retry; if it persists, "
            "check the server's log."
        )
    return chunk


@functools.cache
def _codec() -> HarmonyCodec:
    """Loaded once per process (the encoding takes a moment), on first use."""
    return HarmonyCodec()


class PromptCounter:
    """Counts prompt tokens with the local o200k_harmony tokenizer."""

    def __init__(self) -> None:
        self._codec = _codec()

    def count(
        self, family: str, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> int:
        if family == "gpt-oss":
            return len(self._codec.render(request, history)) + HARMONY_SERVER_MARGIN
        messages = chat_messages(request, history)
        text_tokens = sum(len(self._codec.encode_plain(m["content"])) for m in messages)
        return text_tokens + CHAT_MESSAGE_OVERHEAD * (len(messages) + 1)

    def count_text(self, text: str) -> int:
        return len(self._codec.encode_plain(text))


class RemoteEngine:
    """Base of the remote engines: the HTTP client, retries, reachability, the budget."""

    kind = "remote"

    def __init__(self, settings: LLMSettings, base_url: str, headers: dict[str, str]) -> None:
        self._settings = settings
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        )
        self._counter = PromptCounter()
        self._model = settings.model
        self._server_max_len: int | None = None
        self._down: str | None = None
        self._checked_at = float("-inf")
        self._probe_lock = asyncio.Lock()
        self._closed = False

    # -- the Engine protocol ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._model

    @property
    def family(self) -> str:
        return family_for(self._settings, self._model)

    @property
    def max_model_len(self) -> int:
        """The configured window, capped by what the server reports when it reports one."""
        if self._server_max_len is None:
            return self._settings.max_model_len
        return min(self._settings.max_model_len, self._server_max_len)

    @property
    def healthy(self) -> bool:
        return not self._closed

    def count_prompt_tokens(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> int:
        return self._counter.count(self.family, request, history)

    def count_text_tokens(self, text: str) -> int:
        """Tokens of ``text`` as ordinary text (o200k_harmony: the local budget tokenizer)."""
        return self._counter.count_text(text)

    async def close(self) -> None:
        self._closed = True
        await self._client.aclose()

    # -- reachability ----------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.kind} server at {self.base_url}, model {self._model}"

    async def unreachable_reason(self) -> str | None:
        """None when the server answers; else a message naming its address and the fix."""
        ttl = UP_TTL_S if self._down is None else DOWN_RETRY_S
        if time.monotonic() - self._checked_at < ttl:
            return self._down
        async with self._probe_lock:
            if time.monotonic() - self._checked_at < ttl:
                return self._down
            try:
                await self._probe()
            except EngineError as exc:
                self._mark_down(exc.message)
            except httpx.HTTPError as exc:
                self._mark_down(self._unreachable_message(exc))
            else:
                if self._down is not None:
                    log.info("model server at %s is back", self.base_url)
                self._down = None
            self._checked_at = time.monotonic()
        return self._down

    async def _probe(self) -> None:
        """Ask the server what it serves (raises httpx.HTTPError or EngineError)."""
        raise NotImplementedError

    def _mark_down(self, message: str) -> None:
        if self._down is None:
            log.warning("model server at %s is unreachable", self.base_url)
        self._down = message
        self._checked_at = time.monotonic()

    def _unreachable_message(self, exc: Exception) -> str:
        return (
            f"The model server ({self.kind}) at {self.base_url} is not reachable "
            f"({type(exc).__name__}). Start it or fix llm.base_url; the service reconnects "
            "by itself when it answers again."
        )

    # -- requests --------------------------------------------------------------------------

    async def _get_json(self, path: str) -> Any:
        resp = await self._client.get(path, timeout=self._settings.connect_timeout_s)
        self._raise_for_status(resp.status_code, resp.text)
        return resp.json()

    async def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        resp = await self._client.post(path, json=payload, timeout=self._settings.connect_timeout_s)
        self._raise_for_status(resp.status_code, resp.text)
        return resp.json()

    def _raise_for_status(self, status: int, text: str) -> None:
        if status < 400:
            return
        if status in (401, 403):
            raise EngineError(
                f"The model server at {self.base_url} refused the request ({status}): "
                "check the API key (llm.api_key_env names the variable holding it)."
            )
        if status == 404:
            raise EngineError(
                f"The model server at {self.base_url} does not know this route or model "
                f"({status}: {short(text)}). Check llm.base_url and llm.model."
            )
        if status >= 500:
            raise EngineUnavailableError(
                f"The model server at {self.base_url} failed ({status}: {short(text)}). "
                "Retry in a moment; if it persists, check the server's log."
            )
        raise BadRequestError(
            f"The model server at {self.base_url} rejected the request ({status}: "
            f"{short(text)}). Ask a shorter question, or lower retrieval.top_k or "
            "llm.max_model_len to fit the server."
        )

    async def _open_stream(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """POST and return the streaming response once its status is 2xx, retrying
        connection errors and 5xx with exponential backoff."""
        delay = self._settings.retry_backoff_s
        attempts = self._settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                request = self._client.build_request("POST", path, json=payload)
                resp = await self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if not isinstance(exc, httpx.ConnectTimeout):
                    raise self._timeout_error(exc) from exc  # slow, not gone: no retry
                error: EngineError = EngineUnavailableError(self._unreachable_message(exc))
                cause: BaseException = exc
            except httpx.TransportError as exc:  # refused, reset, closed before answering
                error, cause = EngineUnavailableError(self._unreachable_message(exc)), exc
            except httpx.HTTPError as exc:
                raise EngineError(
                    f"Talking to the model server at {self.base_url} failed "
                    f"({type(exc).__name__}). Check llm.base_url."
                ) from exc
            else:
                if resp.status_code < 400:
                    self._down = None
                    return resp
                try:
                    body = (await resp.aread()).decode("utf-8", "replace")
                finally:
                    await resp.aclose()
                try:
                    self._raise_for_status(resp.status_code, body)
                except EngineUnavailableError as exc:  # 5xx: retry
                    error, cause = exc, exc
                # 4xx propagates from _raise_for_status: never retried.
            if attempt < attempts:
                log.warning(
                    "model server at %s: attempt %d/%d failed (%s); retrying in %.1f s",
                    self.base_url,
                    attempt,
                    attempts,
                    type(cause).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
        if isinstance(cause, httpx.HTTPError):
            self._mark_down(error.message)
        raise error from cause

    def _timeout_error(self, exc: httpx.HTTPError) -> EngineError:
        return EngineTimeoutError(
            f"The model server at {self.base_url} did not answer within "
            f"{self._settings.timeout_s:g} s ({type(exc).__name__}). It may be overloaded: "
            "retry later, or raise llm.timeout_s."
        )

    async def _lines(self, resp: httpx.Response) -> AsyncIterator[str]:
        """The response's lines; transport failures mid-answer become engine errors."""
        try:
            async for line in resp.aiter_lines():
                yield line
        except httpx.TimeoutException as exc:
            raise self._timeout_error(exc) from exc
        except httpx.HTTPError as exc:
            raise EngineError(
                f"The connection to the model server at {self.base_url} broke mid-answer "
                f"({type(exc).__name__}). Retry the question."
            ) from exc
