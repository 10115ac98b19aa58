"""The order of a conversation's turns after the system rules, shared by every engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rag.types import HistoryTurn

Turn = tuple[Literal["user", "assistant"], str]


def question_text(context: str, question: str) -> str:
    return f"Question: {question}" if context else question


def conversation(context: str, question: str, history: Sequence[HistoryTurn] = ()) -> list[Turn]:
    """The user and assistant turns after the rules, in the order that keeps the long prefix:
    the sources first (one user message), then the earlier turns, then the question.

    A follow-up's prompt then starts with the previous prompt whole (same sources, earlier
    questions rendered the same way), so the engine's prefix cache serves it; with history
    before the sources every follow-up would prefill the sources again (bench/prefix_followups.py).
    """
    turns: list[Turn] = [("user", context)] if context else []
    for turn in history:
        text = question_text(context, turn.text) if turn.role == "user" else turn.text
        turns.append((turn.role, text))
    turns.append(("user", question_text(context, question)))
    return turns
