"""gpt-oss completions as token ids, clean and with the faults real output shows.

Each stream is what vLLM hands the service after ``<|start|>assistant``: real o200k_harmony
token ids (the real encoder, special tokens as their single ids), stop token included. The
faults are injected at token level, copying what was reported from real gpt-oss runs:

- ``stray_end``: ``<|end|>`` twice ("Unexpected token 200007 while expecting start token
  200006", vllm-project/vllm#22519);
- ``text_before_start``: ordinary tokens where ``<|start|>`` belongs ("Unexpected token
  12606 while expecting start token 200006", vllm-project/vllm#22515, openai/harmony#60);
- ``tokens_after_return``: tokens after ``<|return|>`` (an ``ignore_eos`` request, the
  ``vllm_rbln`` patch of ``HarmonyParser.process_chunk`` citing vllm-project/vllm#59254);
- ``markup_in_final``: ``<|start|>`` and ``<|channel|>`` inside the answer text;
- ``header_junk``: stray words in the final message's header ("unexpected tokens remaining
  in message header", openai/harmony#38, vllm-project/vllm#23567 and #51977);
- ``constrain_in_header``: ``<|constrain|>response`` where the recipient goes (openai/harmony#60);
- ``final_without_message``: a final header never closed by ``<|message|>``, the text after it
  (vLLM 0.33 recovers it on flush);
- ``analysis_without_message``: the same in the analysis channel (must never be shown);
- ``preamble``: a commentary message without a recipient before the answer (vLLM shows it);
- ``tool_call`` / ``browser_call``: calls to tools nobody declared;
- ``cut_in_analysis``: the budget ends while reasoning (finish reason ``length``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANALYSIS = (
    "The user asks for the guest Wi-Fi password. Source [1] says the password is "
    "harbor-blue-42. Answer briefly and cite [1]."
)
FINAL = "The guest Wi-Fi password is harbor-blue-42 [1]."
PREAMBLE = "Let me look that up in the sources."


@dataclass(frozen=True)
class Stream:
    name: str
    ids: list[int]
    shown: str
    """The text the user must see (streamed plus recovered)."""
    finish: str = "stop"
    faults: dict[str, int] = field(default_factory=dict)
    """The DecodeFaults counters this stream adds."""
    tool_call: str | None = None


def _ids(codec: Any, text: str) -> list[int]:
    return list(codec.encode_harmony(text))


def clean_text(final: str = FINAL, analysis: str = ANALYSIS) -> str:
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{final}<|return|>"
    )


def streams(codec: Any) -> dict[str, Stream]:
    """Every stream by name (the codec is rag.engines.harmony.HarmonyCodec)."""
    enc = lambda text: _ids(codec, text)  # noqa: E731
    end, start = enc("<|end|>"), enc("<|start|>")
    clean = enc(clean_text())
    first_end = clean.index(end[0])
    answer_at = len(enc(clean_text(final=""))) - 1  # where the final text begins
    half = answer_at + (len(clean) - 1 - answer_at) // 2

    def insert(at: int, tokens: list[int]) -> list[int]:
        return clean[:at] + tokens + clean[at:]

    out = [
        Stream("clean", clean, FINAL),
        Stream(
            "stray_end",
            insert(first_end + 1, end),
            FINAL,
            faults={"malformed_tokens": 1},
        ),
        Stream(
            "text_before_start",
            insert(first_end + 1, enc("commentary")),
            FINAL,
            faults={"malformed_tokens": len(enc("commentary"))},
        ),
        Stream(
            "tokens_after_return",
            clean + enc(" and more") + enc("<|return|>"),
            FINAL,
            faults={"malformed_tokens": len(enc(" and more")) + 1},
        ),
        Stream(
            "markup_in_final",
            insert(half, start + enc("<|channel|>")),
            FINAL,
            faults={"malformed_tokens": 2},
        ),
        Stream(
            "header_junk",
            enc(
                f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant"
                f"<|channel|>final answer text json<|message|>{FINAL}<|return|>"
            ),
            FINAL,
            faults={"repaired_headers": 1},
        ),
        Stream(
            "constrain_in_header",
            enc(
                f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant"
                f"<|channel|>final <|constrain|>response<|message|>{FINAL}<|return|>"
            ),
            FINAL,
        ),
        Stream(
            "final_without_message",
            enc(
                f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant"
                f"<|channel|>final {FINAL}<|return|>"
            ),
            FINAL,
            faults={"recovered_answers": 1},
        ),
        Stream(
            "analysis_without_message",
            enc(f"<|channel|>analysis {ANALYSIS}<|return|>"),
            "",
        ),
        Stream(
            "preamble",
            enc(
                f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant"
                f"<|channel|>commentary<|message|>{PREAMBLE}<|end|>"
                f"<|start|>assistant<|channel|>final<|message|>{FINAL}<|return|>"
            ),
            f"{PREAMBLE}\n\n{FINAL}",
        ),
        Stream(
            "tool_call",
            enc(
                f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant"
                "<|channel|>commentary to=functions.search <|constrain|>json<|message|>"
                '{"query": "guest wifi"}<|call|>'
            ),
            "",
            tool_call="functions.search",
        ),
        Stream(
            "browser_call",
            enc(
                f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant "
                'to=browser.search<|channel|>commentary<|message|>{"query": "wifi"}<|call|>'
            ),
            "",
            tool_call="browser.search",
        ),
        Stream(
            "cut_in_analysis",
            enc(f"<|channel|>analysis<|message|>{ANALYSIS}"),
            "",
            finish="length",
            faults={"cut_in_reasoning": 1},
        ),
    ]
    return {s.name: s for s in out}


FAULTY = [
    "stray_end",
    "text_before_start",
    "tokens_after_return",
    "markup_in_final",
    "header_junk",
    "constrain_in_header",
    "final_without_message",
    "analysis_without_message",
    "preamble",
    "cut_in_analysis",
]
