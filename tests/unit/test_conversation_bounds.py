"""Conversation histories are bounded: count (LRU), turns per conversation, idle time."""

from __future__ import annotations

from rag.state.conversations import Conversations
from tests.clock import Clock


def test_only_the_newest_turns_are_kept() -> None:
    convs = Conversations(max_turns=4)
    for i in range(5):
        convs.append("ann", "c1", f"q{i}", f"a{i}")
    assert [t.text for t in convs.history("ann", "c1")] == ["q3", "a3", "q4", "a4"]
    assert convs.history("bob", "c1") == []  # another caller never sees it


def test_least_recently_used_conversations_go_first() -> None:
    convs = Conversations(max_conversations=2)
    convs.append("ann", "c1", "q", "a")
    convs.append("ann", "c2", "q", "a")
    convs.history("ann", "c1")  # c1 used: c2 is now the oldest
    convs.append("ann", "c3", "q", "a")
    assert len(convs) == 2
    assert convs.history("ann", "c2") == [] and convs.history("ann", "c1")


def test_idle_conversations_are_forgotten() -> None:
    clock = Clock()
    convs = Conversations(idle_seconds=60, clock=clock)
    convs.append("ann", "old", "q", "a")
    clock.now = 30
    convs.append("ann", "new", "q", "a")
    clock.now = 70  # "old" idle 70 s, "new" 40 s
    assert convs.history("ann", "old") == []
    assert convs.history("ann", "new")
    assert len(convs) == 1
