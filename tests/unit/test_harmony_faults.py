"""Real gpt-oss output is not always valid harmony: recorded-style token streams with the
faults seen in practice (tests/harmony_streams.py) replayed through the real parser.

Each stream is fed as vLLM delivers it (one token at a time, and in chunks of 20 as with
``stream_interval: 20``); the visible text, the fault counters and the tool call must come
out the same either way, the text already streamed is never taken back, and nothing of the
analysis channel is ever shown.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harmony_streams import ANALYSIS, FAULTY, streams

pytestmark = pytest.mark.usefixtures("assets")


@pytest.fixture(scope="module")
def codec() -> Any:
    from rag.engines.harmony import HarmonyCodec

    return HarmonyCodec(date=lambda: "2026-12-05")


def replay(codec: Any, ids: list[int], chunk: int, truncated: bool) -> tuple[Any, str, list[str]]:
    out_filter = codec.final_filter()
    pieces = [out_filter.feed(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    pieces.append(out_filter.finish(truncated))
    return out_filter, "".join(pieces), [p for p in pieces if p]


@pytest.mark.parametrize("chunk", [1, 20])
@pytest.mark.parametrize("name", ["clean", *FAULTY, "tool_call", "browser_call"])
def test_faulty_streams_degrade_to_the_answer(codec: Any, name: str, chunk: int) -> None:
    stream = streams(codec)[name]
    before = codec.faults.as_dict()
    out_filter, shown, pieces = replay(codec, stream.ids, chunk, stream.finish == "length")
    after = codec.faults.as_dict()
    assert shown == stream.shown
    assert out_filter.final_text == stream.shown
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == stream.faults
    assert out_filter.tool_call == stream.tool_call
    assert out_filter.cut_in_reasoning == (stream.finish == "length")
    for fragment in ("harbor-blue-42. Answer", "The user asks", "<|", "assistant"):
        assert fragment not in shown  # the analysis and harmony's markup never show
    if chunk == 1 and name in {"clean", "stray_end", "markup_in_final", "preamble"}:
        assert len(pieces) > 3  # streamed as it came, not at the end


def test_text_streamed_before_a_fault_stays_and_the_rest_follows(codec: Any) -> None:
    stream = streams(codec)["markup_in_final"]
    out_filter = codec.final_filter()
    start = codec.encode_harmony("<|start|>")[0]
    at = len(stream.ids) - 1 - stream.ids[::-1].index(start)  # the stray one, in the answer
    before = out_filter.feed(stream.ids[:at])
    assert before and stream.shown.startswith(before)
    rest = out_filter.feed(stream.ids[at:]) + out_filter.finish(False)
    assert before + rest == stream.shown
    assert out_filter.skipped == 2


def test_recovery_never_shows_reasoning(codec: Any) -> None:
    stream = streams(codec)["analysis_without_message"]
    out_filter, shown, _ = replay(codec, stream.ids, 1, truncated=False)
    assert shown == "" and out_filter.recovered == ""
    assert ANALYSIS[:20] not in out_filter.final_text


def test_a_tool_refusal_is_valid_harmony_that_reopens_the_assistant_turn(codec: Any) -> None:
    from openai_harmony import Role

    stream = streams(codec)["tool_call"]
    reply = codec.tool_refusal("functions.search", stream.ids)
    text = codec.decode(reply)
    assert text.startswith("<|start|>functions.search")
    assert "to=assistant" in text and "no tools are available" in text
    assert text.endswith("<|start|>assistant")
    # Completion + reply + the model's next answer parse as one valid assistant turn.
    answer = codec.encode_harmony("<|channel|>final<|message|>From the sources: 42 [1].<|return|>")
    messages = codec._enc.parse_messages_from_completion_tokens(
        stream.ids + reply + answer, Role.ASSISTANT
    )
    roles = [(str(m.author.role), m.channel, m.recipient) for m in messages]
    assert roles[1][2] == "functions.search" and roles[2][2] == "assistant"
    assert messages[-1].channel == "final"
    # A completion without its <|call|> (cut by the stop token handling) gets one.
    call = codec.encode_harmony("<|call|>")
    assert codec.tool_refusal("functions.search", stream.ids[:-1])[: len(call)] == call
    assert codec.tool_refusal("functions.search", stream.ids)[: len(call)] != call
