"""Conversations: history per ``conversation_id``, follow-up rewriting, a history budget.

- History is kept per caller by a :class:`rag.state.conversations.ConversationStore`: a
  conversation id is only ever looked up together with the caller's subject, so one user
  cannot read another's history.
- A follow-up ("and for contractors?", "那海外呢", "how long is it?") is rewritten into a
  standalone query for retrieval by prefixing the previous question(s): deterministic and
  cheap; the small CPU model rewrites unreliably. The model still sees the question as asked
  plus the trimmed history.
- History is trimmed to ``history_tokens`` (newest turns kept) and ``history_turns``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.index.lexical import analyze
from rag.types import HistoryTurn

_FOLLOW_UP = re.compile(
    r"^(and|or|but|also|what about|how about|then|so)\b"
    r"|\b(it|its|it's|that|this|those|these|they|them|their|he|she|him|her|there|same|one)\b"
    r"|^(那|那么|还有|另外|它|他|她|这|那个|这个|其|该)",
    re.IGNORECASE,
)


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
