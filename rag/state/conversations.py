"""Conversation histories: the :class:`ConversationStore` seam and its in-memory store.

In memory today (one process; a restart forgets open conversations). A store in the state
database, shared by replicas and surviving restarts, plugs in behind the same Protocol
(issue 25); :mod:`rag.answering.answer` only sees the Protocol.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from rag.types import HistoryTurn


class ConversationStore(Protocol):
    """Earlier turns per (caller subject, conversation id); another caller never sees them."""

    def history(self, subject: str, conversation_id: str) -> list[HistoryTurn]: ...

    def append(self, subject: str, conversation_id: str, question: str, answer: str) -> None: ...


class Conversations:
    """In-memory conversation histories keyed by (subject, conversation id).

    Bounded three ways, so memory cannot grow with traffic: at most ``max_conversations``
    (least recently used go first), ``max_turns`` turns each (only the newest are ever sent
    to the model), and a conversation idle for ``idle_seconds`` is forgotten.
    """

    def __init__(
        self,
        max_conversations: int = 10_000,
        max_turns: int = 50,
        idle_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_conversations
        self._max_turns = max_turns
        self._idle = idle_seconds
        self._clock = clock
        self._data: OrderedDict[tuple[str, str], tuple[float, list[HistoryTurn]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def _expire(self, now: float) -> None:
        while self._data:
            used, _ = next(iter(self._data.values()))
            if now - used <= self._idle:
                return
            self._data.popitem(last=False)

    def history(self, subject: str, conversation_id: str) -> list[HistoryTurn]:
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._data.get((subject, conversation_id))
            if entry is None:
                return []
            self._data[(subject, conversation_id)] = (now, entry[1])
            self._data.move_to_end((subject, conversation_id))
            return list(entry[1])

    def append(self, subject: str, conversation_id: str, question: str, answer: str) -> None:
        with self._lock:
            now = self._clock()
            self._expire(now)
            key = (subject, conversation_id)
            turns = self._data.get(key, (now, []))[1]
            turns += [HistoryTurn("user", question), HistoryTurn("assistant", answer)]
            del turns[: max(0, len(turns) - self._max_turns)]
            self._data[key] = (now, turns)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)
