"""Back-pressure: at most ``server.max_concurrent_answers`` answers in flight; beyond that a
question gets 503 with ``Retry-After`` at once instead of queueing without bound.

A question is admitted (:meth:`AnswerSlots.check`, in the request's dependencies) before its
answer starts (``with slots:``, inside the handler or the streaming body). The admission
reserves a place at once: otherwise a burst of streaming requests all pass the check before
any of their answers has started, and the limit does not hold. A reservation whose answer
does not start within ``lease_s`` (the request was refused afterwards, or the client left
before the stream began) lapses.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from rag.errors import EngineError


class BusyError(EngineError):
    code = "busy"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The service is answering {limit} questions already. Retry in a few seconds."
        )


class AnswerSlots:
    """Counts answers in flight. Used on the event loop thread only (the admission check in
    the async ``serving.principal.asking``, the answers in the handlers and streams), so it
    needs no lock."""

    def __init__(
        self, limit: int, *, lease_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lease = lease_s
        self._clock = clock
        self._reserved: deque[float] = deque()

    @property
    def reserved(self) -> int:
        """Questions admitted whose answers have not started yet (live reservations)."""
        self._lapse(self._clock())
        return len(self._reserved)

    def _lapse(self, now: float) -> None:
        while self._reserved and now - self._reserved[0] > self._lease:
            self._reserved.popleft()

    def check(self) -> None:
        """Admit one more answer, or raise :class:`BusyError` when all places are taken."""
        now = self._clock()
        self._lapse(now)
        if self.in_flight + len(self._reserved) >= self.limit:
            raise BusyError(self.limit)
        self._reserved.append(now)

    def __enter__(self) -> AnswerSlots:
        if self._reserved:
            self._reserved.popleft()
        self.in_flight += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
