"""Conversations: history per ``conversation_id``, follow-up rewriting, a history budget.

- History lives in memory, per caller: a conversation id is only ever looked up together
  with the caller's subject, so one user cannot read another's history. Old conversations
  are evicted (least recently used) beyond ``max_conversations``.
- A follow-up ("and for contractors?", "那海外呢", "how long is it?") is rewritten into a
  standalone query for retrieval by prefixing the previous question(s): deterministic and
  cheap; the small CPU model rewrites unreliably. The model still sees the question as asked
  plus the trimmed history.
- History is trimmed to ``history_tokens`` (newest turns kept) and ``history_turns``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from rag.index.lexical import analyze
from rag.types import HistoryTurn

_FOLLOW_UP = re.compile(
    r"^(and|or|but|also|what about|how about|then|so)\b"
    r"|\b(it|its|it's|that|this|those|these|they|them|their|he|she|him|her|there|same|one)\b"
    r"|^(那|那么|还有|另外|它|他|她|这|那个|这个|其|该)",
    re.IGNORECASE,
)
MAX_QUERY_TERMS_FOR_FOLLOW_UP = 5


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on earlier turns (pronouns, "and ...", very short)."""
    if _FOLLOW_UP.search(question.strip()):
        return True
    return len(analyze(question)) <= 2


def standalone_query(question: str, history: Sequence[HistoryTurn]) -> str:
    """The query retrieval should use: the question, plus the last user question when the
    question is a follow-up."""
    previous = [t.text for t in history if t.role == "user"]
    if not previous or not is_follow_up(question):
        return question
    return f"{previous[-1]} {question}"


def trim_history(
    history: Sequence[HistoryTurn],
    count_tokens: Callable[[str], int],
    *,
    max_tokens: int,
    max_turns: int,
    per_turn_overhead: int = 8,
) -> list[HistoryTurn]:
    """The newest turns that fit ``max_tokens`` (and ``max_turns``), oldest first."""
    kept: list[HistoryTurn] = []
    used = 0
    for turn in reversed(history[-max_turns:] if max_turns else []):
        cost = count_tokens(turn.text) + per_turn_overhead
        if used + cost > max_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # A history that starts with an assistant turn lost its question: drop the orphan.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept


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
