"""Server-Sent Events with keep-alive comments, and aborting work when the client leaves.

- :func:`event_stream` is the one way the service streams (``/v1/ask`` and chat
  completions): while no event is ready for ``server.sse_keepalive_s`` it sends the comment
  ``: keep-alive``, which every SSE client ignores and which keeps proxies and load
  balancers from cutting a connection that is silent during a long prefill (a 128K-token
  prompt takes tens of seconds before its first token). The events are produced by one task,
  so the answer generator runs in one task from start to end; when the client goes away
  that task is cancelled, which aborts the engine request.
- :func:`answer_events` runs one answer within the capacity limit and ends a failed one
  with its error, for both streams to render in their own format.
- :func:`until_disconnected` gives non-streaming answers the same abort (vLLM's
  ``with_cancellation``): the answer runs beside a watcher of the connection, and whichever
  ends first cancels the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from rag.answering.answer import AnswerEvent
from rag.errors import RagError
from serving.capacity import AnswerSlots

log = logging.getLogger(__name__)
T = TypeVar("T")
KEEPALIVE = ": keep-alive\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ClientDisconnectedError(RagError):
    """The client closed the connection before its answer was ready (nobody reads this)."""

    http_status = 499
    code = "client_closed_request"


def sse(event: str, data: Mapping[str, Any]) -> str:
    """One named event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_data(data: Mapping[str, Any] | str) -> str:
    """One unnamed event (OpenAI's format): JSON, or a literal such as ``[DONE]``."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n"


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_END = object()


async def with_keepalive(events: AsyncGenerator[str, None], every_s: float) -> AsyncIterator[str]:
    """``events``, with :data:`KEEPALIVE` whenever none is ready for ``every_s`` seconds
    (0: never). Closing this iterator cancels the task producing ``events``."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    await queue.put(event)
        except Exception as exc:
            await queue.put(_Failed(exc))
            return
        await queue.put(_END)

    producer = asyncio.create_task(produce())
    getter: asyncio.Future[object] | None = None
    try:
        while True:
            if getter is None:
                getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=every_s if every_s > 0 else None)
            if not done:
                yield KEEPALIVE
                continue
            item, getter = getter.result(), None
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield str(item)
    finally:
        if getter is not None:
            getter.cancel()
        producer.cancel()
        # Wait for the producer's clean-up (the engine abort, closing an upstream stream)
        # without passing on our own cancellation: anyio re-delivers it at every await, and
        # each one reaching the producer would break its clean-up off midway.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({producer})


def event_stream(events: AsyncGenerator[str, None], keepalive_s: float) -> StreamingResponse:
    """The response for a stream of SSE-formatted ``events``."""
    return StreamingResponse(
        with_keepalive(events, keepalive_s), media_type="text/event-stream", headers=HEADERS
    )


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``, or :class:`ClientDisconnectedError` once the client has left
    (``work`` is then cancelled: an answer aborts its engine request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # nothing when it is done
        # Let the answer's own clean-up (the engine abort) finish, without passing on a
        # cancellation of our own (see with_keepalive).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({watcher, task})
    if task.cancelled():
        raise ClientDisconnectedError("The client closed the connection; the answer stopped.")
    return task.result()


async def answer_events(
    slots: AnswerSlots, stream: AsyncGenerator[AnswerEvent, None]
) -> AsyncGenerator[AnswerEvent | RagError, None]:
    """One answer's events, holding a place in ``slots`` while it runs. The response has
    started, so a failure cannot become an HTTP status: it ends the events as the error
    (an unexpected one logged, and shown without its details)."""
    try:
        with slots:
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    yield event
    except RagError as exc:
        yield exc
    except Exception:
        log.exception("answer stream failed")
        yield RagError("The answer failed. Retry in a moment.")
