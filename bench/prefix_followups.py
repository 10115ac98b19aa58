"""Prefix-cache reuse on follow-up questions: sources before history vs history first.

    PYTHONPATH=. .venv/bin/python bench/prefix_followups.py [--source-tokens 6000] [--turns 4]

The real CPU vLLM engine (prefix caching on) with the tiny random gpt-oss and the real
o200k_harmony tokenizer: a conversation of ``--turns`` questions over the same sources
(what whole-KB mode or a stable retrieval gives), each prompt rendered

- as before this change: system, developer, the earlier turns, then one user message with
  the sources and the question;
- as now (rag.engines.harmony, rag.answering.prompt.conversation): system, developer, the
  sources, the earlier turns, the question.

Each prompt is sent to the engine (one generated token) and vLLM's own count of prompt
tokens served from its prefix cache (``RequestOutput.num_cached_tokens``) is printed per
follow-up, with the share of the prompt it covers. The cache is reset between the layouts.
Random weights: only the token counts mean anything, not the text.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUESTIONS = [
    "What is the guest Wi-Fi password?",
    "And how often is it changed?",
    "Who do I ask if it does not work?",
    "Does the same apply to the VPN?",
    "Can visitors use the VPN too?",
    "Where is that written down?",
]
ANSWER = "According to the sources, it is described in [1]; see the guide for details."


def sources_block(tokens: int, codec: object) -> str:
    """The sample knowledge base's text, numbered as the service numbers sources, repeated
    to about ``tokens`` o200k tokens."""
    from rag.answering.prompt import SOURCES_CLOSE, SOURCES_OPEN

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "examples" / "kb").glob("*.md"))]
    blocks: list[str] = []
    n = 0
    while len(codec.encode_plain("\n\n".join(blocks))) < tokens:  # type: ignore[attr-defined]
        n += 1
        blocks.append(f"[{n}] {texts[n % len(texts)]}")
    return SOURCES_OPEN + "\n\n".join(blocks) + SOURCES_CLOSE


def history_first(codec: object, request: object, history: list[object]) -> list[int]:
    """The layout before this change (rag/engines/harmony.py at 1317a3b)."""
    from openai_harmony import (
        Conversation,
        DeveloperContent,
        Message,
        ReasoningEffort,
        Role,
        SystemContent,
    )

    system = SystemContent.new().with_model_identity("You are a knowledge assistant.")
    system = system.with_reasoning_effort(ReasoningEffort.LOW).with_conversation_start_date(
        "2026-12-05"
    )
    messages = [
        Message.from_role_and_content(Role.SYSTEM, system),
        Message.from_role_and_content(
            Role.DEVELOPER,
            DeveloperContent.new().with_instructions(request.instructions),  # type: ignore[attr-defined]
        ),
    ]
    for turn in history:
        if turn.role == "assistant":  # type: ignore[attr-defined]
            messages.append(
                Message.from_role_and_content(Role.ASSISTANT, turn.text).with_channel("final")  # type: ignore[attr-defined]
            )
        else:
            messages.append(Message.from_role_and_content(Role.USER, turn.text))  # type: ignore[attr-defined]
    text = f"{request.context}\n\nQuestion: {request.question}"  # type: ignore[attr-defined]
    messages.append(Message.from_role_and_content(Role.USER, text))
    return list(
        codec._enc.render_conversation_for_completion(  # type: ignore[attr-defined]
            Conversation.from_messages(messages), Role.ASSISTANT
        )
    )


async def run(args: argparse.Namespace) -> None:
    from vllm import SamplingParams

    from rag.answering.prompt import INSTRUCTIONS
    from rag.config import load_settings
    from rag.deploy.assets import ensure_assets
    from rag.deploy.modelprep import build_tiny_gptoss
    from rag.engines.harmony import HarmonyCodec
    from rag.engines.vllm_engine import VllmEngine, prompt_input
    from rag.types import GenerationRequest, HistoryTurn

    assets = ensure_assets(REPO / "var" / "assets")
    model = build_tiny_gptoss(
        REPO / "var" / "assets" / "test-models" / "tiny-gptoss", assets.vocab_file
    )
    tmp = Path(tempfile.mkdtemp(prefix="rag-prefix-"))
    settings = load_settings(
        "test",
        environ={},
        overrides={
            "paths": {"assets_dir": str(REPO / "var" / "assets"), "data_dir": str(tmp)},
            "llm": {
                "model": str(model),
                "max_model_len": args.source_tokens + 4096,
                "enable_prefix_caching": True,
                "kv_cache_space_gib": 2,
            },
        },
    )
    engine = VllmEngine.start(settings.llm, model)
    codec = HarmonyCodec(date=lambda: "2026-12-05")
    context = sources_block(args.source_tokens, codec)
    params = SamplingParams(max_tokens=1, temperature=0.0)
    try:
        for layout in ("history first (before)", "sources first (now)"):
            await engine._engine.reset_prefix_cache()
            history: list[HistoryTurn] = []
            print(f"== {layout}")
            served = total = 0
            for turn, question in enumerate(QUESTIONS[: args.turns]):
                request = GenerationRequest(
                    request_id=f"{layout[:7]}-{turn}",
                    instructions=INSTRUCTIONS,
                    context=context,
                    question=question,
                    max_tokens=1,
                    temperature=0.0,
                )
                if layout.startswith("history"):
                    ids = history_first(codec, request, history)
                else:
                    ids = codec.render(request, history)
                cached = 0
                async for output in engine._engine.generate(
                    prompt_input(ids), params, request.request_id
                ):
                    cached = max(cached, int(output.num_cached_tokens or 0))
                kind = "first question" if turn == 0 else f"follow-up {turn}"
                print(f"  {kind:<15} prompt {len(ids):>6} tokens, {cached:>6} from the prefix "
                      f"cache ({cached / len(ids):.0%})")  # fmt: skip
                if turn:
                    served, total = served + cached, total + len(ids)
                history += [HistoryTurn("user", question), HistoryTurn("assistant", ANSWER)]
            share = served / total
            print(f"  follow-ups: {served} of {total} prompt tokens from the cache ({share:.0%})")
    finally:
        await engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-tokens", type=int, default=6000)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from rag.deploy.offline import OFFLINE_ENV
    from rag.deploy.vocab import offline_tokenizer_env

    os.environ.update(OFFLINE_ENV)
    os.environ.update(offline_tokenizer_env(REPO / "var" / "assets"))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
