"""Hybrid mode (``answer.mode: hybrid``): the model writes, nothing of it streams until the
end, and its answer is shown only when it has a verified sentence and no unsupported one;
otherwise the extractive answer is, and the model's text is withheld.

The real app, retriever and SmolLM2 engine; the engine's text is replaced at the engine seam
by a fixed reply (tests/integration/test_quote_fallback.py ``Scripted``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client, sse
from tests.integration.test_quote_fallback import Scripted

pytestmark = pytest.mark.slow

QUESTION = "How long are print jobs held?"
RIGHT = "Unreleased print jobs are held for 36 hours."


@pytest.fixture(scope="module")
async def world(
    sample_kb: Any, smol_engine: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Scripted]]:
    from serving.app import create_app

    engine = Scripted(smol_engine)
    settings = sample_kb.model_copy(
        update={
            "llm": sample_kb.llm.model_copy(update={"max_tokens": 4}),
            "answer": sample_kb.answer.model_copy(update={"mode": "hybrid"}),
        }
    )
    async with ready_client(create_app(settings, engine=engine)) as client:
        yield client, engine


async def test_a_fully_verified_answer_is_the_models_own(world: Any) -> None:
    client, engine = world
    engine.reply = RIGHT
    events = await sse(client, {"question": QUESTION, "stream": True})
    deltas = [d["text"] for e, d in events if e == "delta"]
    done = events[-1][1]
    assert "".join(deltas).strip() == RIGHT and len(deltas) == 1  # held, then shown whole
    assert done["answer"] == RIGHT and done["quoted"] is False and done["unsupported"] == []
    assert any(c["source"].endswith("faq-printing.txt") for c in done["citations"])


async def test_one_unsupported_claim_replaces_the_answer_with_the_sources(world: Any) -> None:
    client, engine = world
    engine.reply = f"{RIGHT} They are deleted after 3 days."
    events = await sse(client, {"question": QUESTION, "stream": True})
    deltas = [d["text"] for e, d in events if e == "delta"]
    done = events[-1][1]
    assert not any("3 days" in d for d in deltas)  # never streamed
    assert done["answer"] == "".join(deltas).strip()
    assert done["answer"].startswith("The knowledge base says:") and "36 hours" in done["answer"]
    assert done["quoted"] is True and done["unsupported"] == [] and not done["declined"]


async def test_an_invented_answer_to_an_unanswerable_question_is_a_decline(world: Any) -> None:
    client, engine = world
    engine.reply = "The printers run firmware PX-9."
    resp = await client.post(
        "/v1/ask", json={"question": "Which printer model and firmware do the printers run?"}
    )
    body = resp.json()
    assert body["declined"] is True and "PX-9" not in body["answer"]
    assert body["citations"] == []
