"""Back-pressure: at most ``server.max_concurrent_answers`` answers in flight; beyond that a
question gets 503 with ``Retry-After`` at once instead of queueing without bound."""

from __future__ import annotations

from types import TracebackType

from rag.errors import EngineError


class BusyError(EngineError):
    code = "busy"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The service is answering {limit} questions already. Retry in a few seconds."
        )


class AnswerSlots:
    """Counts answers in flight (all on the event loop thread: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def check(self) -> None:
        if self.in_flight >= self.limit:
            raise BusyError(self.limit)

    def __enter__(self) -> AnswerSlots:
        self.in_flight += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
