"""Many questions at once: the capacity limit never admits more answers than it has places,
the rate limiter never grants a token twice, and both run on the event loop thread only
(``serving.principal.asking`` is async), so they need no lock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx
import pytest

from rag.types import Finished, GenerationRequest, HistoryTurn, TextDelta, Usage
from serving.capacity import AnswerSlots
from tests.asgi import ready_client
from tests.servers import serve_app, until_ready

pytestmark = pytest.mark.slow

QUESTION = {"question": "What is the name of the shared print queue?"}


class Gate:
    """The engine seam: each answer waits until the gate opens; counts answers inside."""

    family = "chat"
    name = "gate"
    healthy = True
    max_model_len = 4096

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.inside = 0
        self.most = 0

    def count_prompt_tokens(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> int:
        return len(request.context) // 4 + 50

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[Any, None]:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.open.wait()
            yield TextDelta("The shared print queue is NW-Follow-Me [1].")
            yield Finished(Usage(100, 9))
        finally:
            self.inside -= 1

    async def close(self) -> None:
        return None


class Threads:
    """Records the thread of every call it passes on."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def mark(self) -> None:
        self.seen.add(threading.get_ident())


class RecordingLimiter(Threads):
    """The rate-limit seam (:class:`rag.state.ratelimit.RateLimits`) around the real one."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner
        self.rate = inner.rate

    async def take(self, key: str) -> float:
        self.mark()
        wait: float = await self._inner.take(key)
        return wait


class RecordingSlots(AnswerSlots):
    def __init__(self, limit: int, threads: Threads) -> None:
        super().__init__(limit)
        self.threads = threads

    def check(self) -> None:
        self.threads.mark()
        super().check()


async def wait_for(predicate: Any, seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_capacity_never_admits_more_than_its_places(sample_kb: Any) -> None:
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={
            "server": sample_kb.server.model_copy(update={"max_concurrent_answers": 3}),
            "auth": sample_kb.auth.model_copy(update={"rate_per_minute": 0}),
        }
    )
    gate = Gate()
    app = create_app(settings, engine=gate)
    threads = Threads()
    app.state.http.slots = RecordingSlots(3, threads)
    async with ready_client(app) as client:
        loop_thread = threading.get_ident()
        asks = [asyncio.create_task(client.post("/v1/ask", json=QUESTION)) for _ in range(16)]
        await wait_for(lambda: sum(t.done() for t in asks) == 13 and gate.inside == 3)
        refused = [t.result() for t in asks if t.done()]
        assert {r.status_code for r in refused} == {503}
        assert {r.json()["error"]["code"] for r in refused} == {"busy"}
        gate.open.set()
        answered = await asyncio.gather(*asks)
    assert sorted(r.status_code for r in answered) == [200] * 3 + [503] * 13
    assert gate.most == 3
    assert threads.seen == {loop_thread}


async def test_invalid_questions_never_hold_an_answer_place(sample_kb: Any) -> None:
    """Issue 19, finding 6: capacity was reserved before the model name, question length and
    message checks, so eight requests naming an unknown model gave everyone else 503."""
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={
            "server": sample_kb.server.model_copy(update={"max_concurrent_answers": 2}),
            "auth": sample_kb.auth.model_copy(update={"rate_per_minute": 0}),
        }
    )
    gate = Gate()
    app = create_app(settings, engine=gate)
    long_question = "x" * (settings.server.max_question_chars + 1)
    invalid = [
        (
            "/v1/chat/completions",
            {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        ),
        (
            "/v1/chat/completions",
            {
                "model": "no-such-model",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
        ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "no question"}]}),
        ("/v1/ask", {"question": long_question}),
        ("/v1/ask", {"question": long_question, "stream": True}),
        ("/v1/ask", {"question": "   "}),
    ] * 2
    async with ready_client(app) as client:
        slots = app.state.http.slots
        for path, body in invalid:
            resp = await client.post(path, json=body)
            assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text)
        assert (slots.reserved, slots.in_flight) == (0, 0)
        asks = [asyncio.create_task(client.post("/v1/ask", json=QUESTION)) for _ in range(2)]
        await wait_for(lambda: gate.inside == 2)  # both admitted: no place was held
        gate.open.set()
        answered = await asyncio.gather(*asks)
    assert [r.status_code for r in answered] == [200, 200]
    assert (slots.reserved, slots.in_flight) == (0, 0)


async def test_rate_limit_tokens_are_never_spent_twice(sample_kb: Any) -> None:
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={"auth": sample_kb.auth.model_copy(update={"rate_per_minute": 0.01, "burst": 5})}
    )
    gate = Gate()
    gate.open.set()
    app = create_app(settings, engine=gate)
    limiter = RecordingLimiter(app.state.rag.limiter)
    app.state.rag.limiter = limiter
    async with ready_client(app) as client:
        loop_thread = threading.get_ident()
        answers = await asyncio.gather(*(client.post("/v1/ask", json=QUESTION) for _ in range(40)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 5 + [429] * 35
    assert all(r.headers["retry-after"] for r in answers if r.status_code == 429)
    assert limiter.seen == {loop_thread}


async def test_a_server_under_concurrent_load_keeps_its_limits(sample_kb: Any) -> None:
    """The same through a real server and real connections."""
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={
            "server": sample_kb.server.model_copy(update={"max_concurrent_answers": 2}),
            "auth": sample_kb.auth.model_copy(update={"rate_per_minute": 0.01, "burst": 6}),
        }
    )
    gate = Gate()
    limits = httpx.Limits(max_connections=20)
    async with (
        serve_app(create_app(settings, engine=gate)) as base,
        httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client,
    ):
        await until_ready(client)
        asks = [asyncio.create_task(client.post("/v1/ask", json=QUESTION)) for _ in range(12)]
        await wait_for(lambda: sum(t.done() for t in asks) == 10 and gate.inside == 2)
        gate.open.set()
        answers = await asyncio.gather(*asks)
    codes = sorted(r.status_code for r in answers)
    # 6 tokens: 2 answered, 4 found the places taken; the other 6 had no token left.
    assert codes == [200] * 2 + [429] * 6 + [503] * 4, codes
    assert gate.most == 2
