"""Conversation histories: the :class:`ConversationStore` seam and its two stores.

:class:`StoredConversations` (the service's) keeps them in the state database, so replicas
share them and a restart keeps them (issue 25); :class:`Conversations` keeps them in memory
(one process: the library default and the tests of the bounds).
:mod:`rag.answering.answer` only sees the Protocol.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from rag.migrations import Migration
from rag.state.db import StateDB, Transaction
from rag.types import HistoryTurn


class ConversationStore(Protocol):
    """Earlier turns per (owner, conversation id), the owner being
    :attr:`rag.types.Principal.owner` (subject, credential and groups); another owner never
    sees them."""

    def history(self, subject: str, conversation_id: str) -> list[HistoryTurn]: ...

    def known(self, subject: str, conversation_id: str) -> bool: ...

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

    def known(self, subject: str, conversation_id: str) -> bool:
        """Whether this owner holds the conversation (and it has not expired)."""
        with self._lock:
            self._expire(self._clock())
            return (subject, conversation_id) in self._data

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


def _owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()


MIGRATIONS = [
    Migration(
        1,
        "conversation_turns",
        """
        CREATE TABLE IF NOT EXISTS conversation_turns (
            owner_sha       VARCHAR(64) NOT NULL,
            conversation_id VARCHAR(200) NOT NULL,
            seq             BIGINT NOT NULL,
            role            VARCHAR(16) NOT NULL,
            content         TEXT NOT NULL,
            at              DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (owner_sha, conversation_id, seq)
        );
        CREATE INDEX IF NOT EXISTS conversation_turns_at ON conversation_turns (at)
        """,
    ),
]


class StoredConversations:
    """Conversation histories in the state database (:class:`rag.state.db.StateDB`): every
    replica sees the same conversations, and they survive a restart.

    Rows are keyed by a SHA-256 of the owner (never the owner's groups in clear), the
    conversation id and a sequence number from the writer's clock in nanoseconds (two
    replicas appending to one conversation never collide on a counter). The same bounds as
    :class:`Conversations`: ``max_turns`` newest turns per conversation, and a conversation
    idle for ``idle_seconds`` is forgotten (its rows are deleted now and then, by whichever
    replica writes).
    """

    def __init__(
        self,
        db: StateDB,
        max_turns: int = 50,
        idle_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
        prune_every: int = 200,
    ) -> None:
        self._db = db
        self._max_turns = max_turns
        self._idle = idle_seconds
        self._clock = clock
        self._prune_every = prune_every
        self._writes = 0
        db.migrate("conversations", MIGRATIONS)

    def _last_used(self, tx: Transaction, owner: str, conversation_id: str) -> float | None:
        [(last,)] = tx.rows(
            "SELECT MAX(at) FROM conversation_turns WHERE owner_sha = :o AND conversation_id = :c",
            {"o": owner, "c": conversation_id},
        )
        return None if last is None else float(last)

    def history(self, subject: str, conversation_id: str) -> list[HistoryTurn]:
        owner = _owner_key(subject)
        with self._db.read() as tx:
            last = self._last_used(tx, owner, conversation_id)
            if last is None or self._clock() - last > self._idle:
                return []
            rows = tx.rows(
                "SELECT role, content FROM conversation_turns WHERE owner_sha = :o AND "
                "conversation_id = :c ORDER BY seq DESC LIMIT :n",
                {"o": owner, "c": conversation_id, "n": self._max_turns},
            )
        return [
            HistoryTurn("user" if role == "user" else "assistant", str(content))
            for role, content in reversed(rows)
        ]

    def known(self, subject: str, conversation_id: str) -> bool:
        with self._db.read() as tx:
            last = self._last_used(tx, _owner_key(subject), conversation_id)
        return last is not None and self._clock() - last <= self._idle

    def append(self, subject: str, conversation_id: str, question: str, answer: str) -> None:
        owner = _owner_key(subject)
        now = self._clock()
        seq = time.time_ns() * 2
        key = {"o": owner, "c": conversation_id}
        with self._db.write() as tx:
            last = self._last_used(tx, owner, conversation_id)
            if last is not None and now - last > self._idle:
                # An expired conversation starts again, as in memory.
                tx.run(
                    "DELETE FROM conversation_turns WHERE owner_sha = :o AND conversation_id = :c",
                    key,
                )
            tx.run(
                "INSERT INTO conversation_turns (owner_sha, conversation_id, seq, role, content, "
                "at) VALUES (:o, :c, :s, :r, :t, :at) ON CONFLICT DO NOTHING",
                [
                    {**key, "s": seq, "r": "user", "t": question, "at": now},
                    {**key, "s": seq + 1, "r": "assistant", "t": answer, "at": now},
                ],
            )
            tx.run(
                "DELETE FROM conversation_turns WHERE owner_sha = :o AND conversation_id = :c "
                "AND seq < (SELECT MIN(seq) FROM (SELECT seq FROM conversation_turns WHERE "
                "owner_sha = :o AND conversation_id = :c ORDER BY seq DESC LIMIT :n) AS newest)",
                {**key, "n": self._max_turns},
            )
            self._writes += 1
            if self._writes % self._prune_every == 0:
                self.prune(tx, now)

    def prune(self, tx: Transaction, now: float) -> int:
        """Forget every conversation idle for longer than ``idle_seconds``."""
        return tx.run(
            "DELETE FROM conversation_turns WHERE (owner_sha, conversation_id) IN (SELECT "
            "owner_sha, conversation_id FROM conversation_turns GROUP BY owner_sha, "
            "conversation_id HAVING MAX(at) < :cutoff)",
            {"cutoff": now - self._idle},
        )
