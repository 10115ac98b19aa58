"""The real VllmEngine and harmony parser on gpt-oss output with the faults real runs show.

No GPU here and the tiny random gpt-oss never writes harmony, so the completions are
replayed at the engine's seam: ``ScriptedLLM`` stands in for ``AsyncLLM`` and plays token
streams built from real o200k_harmony ids (tests/harmony_streams.py) in chunks, as vLLM's
DELTA outputs with ``stream_interval: 20`` arrive. Everything above it is real: the engine's
loop and sampling parameters, the harmony filter, the answer service, the HTTP API and
/metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from rag.answering import prompt
from rag.types import Finished, GenerationRequest, TextDelta
from tests.asgi import ready_client
from tests.harmony_streams import FAULTY, FINAL, streams

pytestmark = pytest.mark.usefixtures("assets")

QUESTION = "What is the guest Wi-Fi password?"


class ScriptedLLM:
    """The ``AsyncLLM`` seam: plays recorded completions in order, records each call."""

    def __init__(self, chunk: int = 20) -> None:
        self.scripts: list[tuple[list[int], str]] = []
        self.calls: list[tuple[list[int], Any, str]] = []
        self.chunk = chunk
        self.stats_logged = 0
        self.errored = False

    def play(self, ids: list[int], finish: str = "stop") -> None:
        self.scripts.append((ids, finish))

    def get_num_unfinished_requests(self) -> int:
        return 0

    async def do_log_stats(self) -> None:
        self.stats_logged += 1

    async def generate(self, prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]:
        self.calls.append((list(prompt["prompt_token_ids"]), params, request_id))
        ids, finish = self.scripts.pop(0)
        if len(ids) > params.max_tokens:
            ids, finish = ids[: params.max_tokens], "length"
        for at in range(0, len(ids), self.chunk):
            last = at + self.chunk >= len(ids)
            completion = SimpleNamespace(
                token_ids=ids[at : at + self.chunk],
                text="",
                finish_reason=finish if last else None,
            )
            yield SimpleNamespace(outputs=[completion], finished=last, num_cached_tokens=0)
            await asyncio.sleep(0)

    def shutdown(self) -> None:
        return None


@pytest.fixture
def codec() -> Any:
    from rag.engines.harmony import HarmonyCodec

    return HarmonyCodec(date=lambda: "2026-12-05")


def engine_for(codec: Any, llm: ScriptedLLM, **kwargs: Any) -> Any:
    from rag.engines.vllm_engine import HarmonyRenderer, VllmEngine

    return VllmEngine(
        llm, HarmonyRenderer(codec), name="gpt-oss-20b", family="gpt-oss", max_model_len=8192,
        **kwargs,
    )  # fmt: skip


def request(max_tokens: int = 400, temperature: float = 1.0) -> GenerationRequest:
    return GenerationRequest(
        request_id="q1",
        instructions="Answer from the sources.",
        context="Sources:\n<<<\n[1] Wi-Fi\nThe password is harbor-blue-42.\n>>>",
        question=QUESTION,
        max_tokens=max_tokens,
        temperature=temperature,
    )


async def run(engine: Any, req: GenerationRequest) -> tuple[str, Finished, int]:
    text, deltas, finished = "", 0, None
    async for event in engine.stream(req):
        if isinstance(event, TextDelta):
            text, deltas = text + event.text, deltas + 1
        else:
            finished = event
    assert isinstance(finished, Finished)
    return text, finished, deltas


@pytest.mark.parametrize("name", ["clean", *FAULTY])
async def test_faulty_completions_end_as_the_answer_or_a_reason(codec: Any, name: str) -> None:
    stream = streams(codec)[name]
    llm = ScriptedLLM()
    llm.play(stream.ids, stream.finish)
    engine = engine_for(codec, llm, top_p=1.0)
    before = engine.decode_faults()
    text, finished, _ = await run(engine, request())
    assert text == stream.shown
    assert finished.finish_reason == stream.finish
    assert finished.usage.completion_tokens == len(stream.ids)
    after = engine.decode_faults()
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == stream.faults


async def test_sampling_follows_the_request_and_the_models_guidance(codec: Any) -> None:
    llm = ScriptedLLM()
    llm.play(streams(codec)["clean"].ids)
    engine = engine_for(codec, llm, top_p=0.9)
    req = request(max_tokens=300, temperature=1.0)
    await run(engine, req)
    prompt, params, request_id = llm.calls[0]
    assert prompt == codec.render(req) and request_id == "q1"
    assert (params.temperature, params.top_p, params.max_tokens) == (1.0, 0.9, 300)
    assert sorted(params.stop_token_ids) == sorted(codec.stop_token_ids)


async def test_a_call_to_an_undeclared_tool_is_refused_and_the_model_answers(codec: Any) -> None:
    all_streams = streams(codec)
    call, answer = all_streams["tool_call"].ids, all_streams["clean"].ids
    llm = ScriptedLLM()
    llm.play(call)
    llm.play(answer)
    engine = engine_for(codec, llm)
    before = engine.decode_faults()["tool_calls_refused"]
    text, finished, _ = await run(engine, request(max_tokens=400))
    assert text == FINAL and finished.finish_reason == "stop"
    assert engine.decode_faults()["tool_calls_refused"] == before + 1
    (first, _, id1), (second, params2, id2) = llm.calls
    reply = codec.tool_refusal("functions.search", call)
    assert second == first + call + reply  # the whole first round is a cached prefix
    assert id1 != id2
    assert params2.max_tokens == 400 - len(call)  # one budget for both rounds
    assert finished.usage.completion_tokens == len(call) + len(answer)
    assert finished.usage.prompt_tokens == len(first)


async def test_a_second_tool_call_is_not_refused_again(codec: Any) -> None:
    call = streams(codec)["tool_call"].ids
    llm = ScriptedLLM()
    llm.play(call)
    llm.play(call)
    engine = engine_for(codec, llm)
    text, finished, _ = await run(engine, request())
    assert text == "" and finished.finish_reason == "stop" and len(llm.calls) == 2


async def test_no_refusal_round_without_room_in_the_window(codec: Any) -> None:
    from rag.engines.vllm_engine import HarmonyRenderer, VllmEngine

    call = streams(codec)["tool_call"].ids
    req = request()
    window = len(codec.render(req)) + len(call) + len(codec.tool_refusal("functions.search", call))
    llm = ScriptedLLM()
    llm.play(call)
    engine = VllmEngine(
        llm, HarmonyRenderer(codec), name="g", family="gpt-oss", max_model_len=window
    )
    text, finished, _ = await run(engine, req)
    assert text == "" and len(llm.calls) == 1 and finished.finish_reason == "stop"
    assert engine.decode_faults()["tool_calls_refused"] == 0


async def test_engine_stats_are_logged_on_an_interval_and_stop_with_the_engine(
    codec: Any,
) -> None:
    llm = ScriptedLLM()
    llm.play(streams(codec)["clean"].ids)
    engine = engine_for(codec, llm, log_stats_interval_s=0.02)
    await run(engine, request())
    for _ in range(100):
        if llm.stats_logged >= 2:
            break
        await asyncio.sleep(0.02)
    assert llm.stats_logged >= 2
    task = engine._stats_task
    engine.shutdown()
    await asyncio.sleep(0.05)
    assert task is not None and task.done()


# --- through the answer service and the HTTP API ---------------------------------------------


@pytest.fixture
async def api(sample_kb: Any, codec: Any) -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedLLM]]:
    from serving.app import create_app

    llm = ScriptedLLM()
    settings = sample_kb.model_copy(
        update={"llm": sample_kb.llm.model_copy(update={"max_tokens": 200, "temperature": 1.0})}
    )
    app = create_app(settings, engine=engine_for(codec, llm))
    async with ready_client(app) as client:
        yield client, llm


async def ask(client: httpx.AsyncClient, effort: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "knowledge-base",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if effort:
        body["reasoning_effort"] = effort
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_a_repaired_answer_reaches_the_client_and_metrics_count_the_fault(
    api: tuple[httpx.AsyncClient, ScriptedLLM], codec: Any
) -> None:
    client, llm = api
    llm.play(streams(codec)["header_junk"].ids)
    body = await ask(client)
    assert body["choices"][0]["message"]["content"].startswith(FINAL)
    metrics = (await client.get("/metrics")).text
    assert 'kb_engine_output_faults_total{kind="repaired_headers"} 1.0' in metrics
    assert 'kb_engine_output_faults_total{kind="malformed_tokens"} 0.0' in metrics


async def test_an_answer_cut_off_while_reasoning_says_what_to_change(
    api: tuple[httpx.AsyncClient, ScriptedLLM], codec: Any
) -> None:
    client, llm = api
    llm.play(streams(codec)["cut_in_analysis"].ids * 30, "stop")  # longer than any budget
    body = await ask(client, effort="high")
    params = llm.calls[-1][1]
    assert params.max_tokens == 200 * 4  # high effort: four times the low-effort budget
    answer = body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "length"  # the client learns it was cut
    cut = prompt.reasoning_cut_message(800, "high")
    assert "spent its whole budget of 800 tokens reasoning (effort: high)" in cut
    assert "lower reasoning_effort (medium or low)" in cut
    # The service's message first; then, since the model wrote no answer, the passage that
    # answers the question under a "could not verify" notice (never a decline after it).
    assert answer.startswith(cut)
    rest = answer[len(cut) :].strip()
    assert rest.startswith("I could not verify an answer in the sources. The closest passage:")
    assert "harbor-blue-42" in rest  # the quoted source row, not the model's reasoning
    metrics = (await client.get("/metrics")).text
    assert 'kb_engine_output_faults_total{kind="cut_in_reasoning"} 1.0' in metrics


async def test_the_prompt_is_rendered_once_and_those_ids_reach_the_engine(
    sample_kb: Any, codec: Any
) -> None:
    """The answer service renders the prompt in a thread to count it; the engine sends those
    very ids to vLLM instead of rendering the prompt again on the event loop."""
    from rag.engines.vllm_engine import HarmonyRenderer, VllmEngine
    from serving.app import create_app

    rendered: list[tuple[bool, list[int]]] = []  # (with sources, ids)

    class Counting(HarmonyRenderer):
        def render(self, request: GenerationRequest, history: Sequence[Any]) -> list[int]:
            ids = super().render(request, history)
            rendered.append((bool(request.context), ids))
            return ids

    llm = ScriptedLLM()
    engine = VllmEngine(
        llm, Counting(codec), name="gpt-oss-20b", family="gpt-oss", max_model_len=8192
    )
    app = create_app(sample_kb, engine=engine)
    async with ready_client(app) as client:
        llm.play(streams(codec)["clean"].ids)
        await ask(client)
    # Packing also renders the prompt without sources once, to measure its overhead.
    full = [ids for with_sources, ids in rendered if with_sources]
    assert len(full) == 1  # the sources fit: one rendering of the prompt, made to count it
    assert llm.calls[-1][0] == full[0]


async def test_effort_scales_the_budget_and_the_context_shrinks_to_fit(
    api: tuple[httpx.AsyncClient, ScriptedLLM], codec: Any
) -> None:
    client, llm = api
    for effort, scale in (("low", 1), ("medium", 2)):
        llm.play(streams(codec)["clean"].ids)
        await ask(client, effort=effort)
        prompt, params, _ = llm.calls[-1]
        assert params.max_tokens == 200 * scale
        assert len(prompt) + params.max_tokens <= 8192


def test_a_budget_that_leaves_no_room_for_sources_is_refused(make_settings: Any) -> None:
    from rag.answering.budget import MIN_PROMPT_TOKENS, answer_budget, checked_budget
    from rag.errors import BadRequestError

    llm = make_settings(llm={"max_tokens": 2048}).llm
    assert answer_budget(llm, "gpt-oss", "high") == 8192
    assert answer_budget(llm, "chat", "high") == 2048  # no reasoning channel, no scaling
    assert checked_budget(llm, "gpt-oss", "medium", 131072) == 4096
    with pytest.raises(BadRequestError, match="lower reasoning_effort") as refused:
        checked_budget(llm, "gpt-oss", "high", 8192)
    assert str(MIN_PROMPT_TOKENS) in refused.value.message
