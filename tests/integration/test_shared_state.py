"""The state several replicas share (issue 25), on a real PostgreSQL server and on the SQLite
default: conversations, rate limits, keys, feedback, the store's version and the writer lock.

Two :class:`StateDB` objects on one URL stand for two replicas: nothing is shared between
them but the database.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from rag.errors import IndexBusyError, StoreError
from rag.migrations import Migration
from rag.state.apikeys import KeyStore
from rag.state.conversations import StoredConversations
from rag.state.db import StateDB
from rag.state.feedback import FeedbackStore
from rag.state.ratelimit import SharedRateLimiter
from rag.state.shared import IndexVersions, VersionListener, WriterLock
from rag.types import Chunk, HistoryTurn
from tests.procs import OWN_GROUP


@pytest.fixture
def replicas(state_url: str) -> Iterator[tuple[StateDB, StateDB]]:
    one, two = StateDB(state_url), StateDB(state_url)
    yield one, two
    one.close()
    two.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_conversation_continues_on_another_replica_and_after_a_restart(
    replicas: tuple[StateDB, StateDB], state_url: str
) -> None:
    one, two = (StoredConversations(db, max_turns=4) for db in replicas)
    one.append("alice|key:1|hr", "c1", "How many leave days?", "25 days [1].")
    assert two.known("alice|key:1|hr", "c1")
    assert two.history("alice|key:1|hr", "c1") == [
        HistoryTurn("user", "How many leave days?"),
        HistoryTurn("assistant", "25 days [1]."),
    ]
    two.append("alice|key:1|hr", "c1", "And for part-time staff?", "Pro rata [2].")
    # Another owner (same subject, other groups) sees nothing, even with the same id.
    assert not one.known("alice|key:1|everyone", "c1")
    assert one.history("alice|key:1|everyone", "c1") == []
    # Only the newest max_turns turns are kept, in order.
    one.append("alice|key:1|hr", "c1", "Third?", "Third answer.")
    restarted = StateDB(state_url)
    try:
        turns = StoredConversations(restarted, max_turns=4).history("alice|key:1|hr", "c1")
    finally:
        restarted.close()
    assert [t.text for t in turns] == [
        "And for part-time staff?",
        "Pro rata [2].",
        "Third?",
        "Third answer.",
    ]


def test_an_idle_conversation_is_forgotten(replicas: tuple[StateDB, StateDB]) -> None:
    clock = Clock()
    convs = StoredConversations(replicas[0], idle_seconds=60, clock=clock, prune_every=1)
    convs.append("bob", "old", "q", "a")
    clock.now += 61
    assert not convs.known("bob", "old") and convs.history("bob", "old") == []
    convs.append("bob", "old", "q2", "a2")  # starts again; the write also prunes
    assert [t.text for t in convs.history("bob", "old")] == ["q2", "a2"]
    with replicas[1].read() as tx:
        [(rows,)] = tx.rows("SELECT COUNT(*) FROM conversation_turns")
    assert rows == 2


def test_the_rate_limit_holds_across_replicas(replicas: tuple[StateDB, StateDB]) -> None:
    clock = Clock()
    one, two = (SharedRateLimiter(db, 60, burst=3, clock=clock) for db in replicas)
    granted = [one.take_now("alice"), two.take_now("alice"), one.take_now("alice")]
    assert granted == [0.0, 0.0, 0.0]
    wait = two.take_now("alice")
    assert wait == pytest.approx(1.0, abs=0.01)  # 60/min: one token a second
    assert one.take_now("bob") == 0.0  # buckets are per caller
    clock.now += 1.0
    assert two.take_now("alice") == 0.0 and one.take_now("alice") > 0
    clock.now -= 30  # a replica whose clock is behind never refills a bucket
    assert one.take_now("alice") > 0


def test_concurrent_requests_never_overspend(state_url: str) -> None:
    """Eight threads on their own connections race for one bucket of ten: exactly ten win."""
    limiters = [SharedRateLimiter(StateDB(state_url), 1, burst=10) for _ in range(8)]
    granted: list[float] = []
    barrier = threading.Barrier(8)

    def hammer(limiter: SharedRateLimiter) -> None:
        barrier.wait()
        for _ in range(5):
            granted.append(limiter.take_now("mallory"))

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 40 and granted.count(0.0) == 10


def test_a_key_revoked_through_one_replica_is_refused_by_the_other(
    replicas: tuple[StateDB, StateDB],
) -> None:
    one, two = (KeyStore(db) for db in replicas)
    key, secret = one.create("ci", ["ask"], ["everyone"])
    assert two.verify(secret) is not None
    two.revoke(key.key_id)
    assert one.verify(secret) is None and two.verify(secret) is None


def test_feedback_recorded_on_one_replica_is_rated_on_the_other(
    replicas: tuple[StateDB, StateDB],
) -> None:
    one, two = (FeedbackStore(db) for db in replicas)
    one.record_answer("a1", "alice", declined=False, doc_ids=["d1"], latency_ms=3.0)
    two.add("a1", "alice", "down", "outdated")
    [record] = one.feedback("a1")
    assert (record.rating, record.comment) == ("down", "outdated")


def test_replicas_starting_together_migrate_once(state_url: str) -> None:
    """Six replicas start at once: each migration step runs once (SQLite: ``BEGIN
    IMMEDIATE``; PostgreSQL: the advisory lock)."""
    counted: list[int] = []
    steps = [
        Migration(1, "t", "CREATE TABLE t (a INTEGER NOT NULL)"),
        Migration(2, "count", lambda db: counted.append(db.run("INSERT INTO t VALUES (1)"))),
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        db = StateDB(state_url)
        try:
            barrier.wait()
            db.migrate("demo", steps)
        except BaseException as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and counted == [1]


def test_the_store_version_moves_only_when_a_run_changed_something(
    replicas: tuple[StateDB, StateDB],
) -> None:
    writer, reader = IndexVersions(replicas[0]), IndexVersions(replicas[1])
    listener = VersionListener(writer, "chroma://h:1/t/d")
    assert reader.read("chroma://h:1/t/d") == 0
    listener.commit()  # a run that changed nothing
    assert reader.read("chroma://h:1/t/d") == 0
    listener.on_upsert([Chunk("c1", "d1", "text", "a.md", "A")])
    listener.commit()
    listener.on_delete(["c1"])
    listener.commit()
    assert reader.read("chroma://h:1/t/d") == 2
    assert reader.read("chroma://other:1/t/d") == 0


def test_one_writer_across_machines_and_a_killed_one_frees_the_lock(pg_url: str) -> None:
    one, two = StateDB(pg_url), StateDB(pg_url)
    first = WriterLock(one, "chroma://h:1/t/d", "rag-ingest on host-a (pid 1)")
    first.acquire()
    second = WriterLock(two, "chroma://h:1/t/d", "rag-ingest on host-b (pid 2)")
    with pytest.raises(IndexBusyError, match="rag-ingest on host-a"):
        second.acquire()
    WriterLock(two, "chroma://h:1/t/other", "x").acquire()  # another store is not blocked
    first.release()
    second.acquire()
    second.release()
    # A writer killed with SIGKILL: the server drops its connection and with it the lock.
    script = (
        "import sys, time\n"
        "from rag.state.db import StateDB\n"
        "from rag.state.shared import WriterLock\n"
        "WriterLock(StateDB(sys.argv[1]), 'chroma://h:1/t/d', 'doomed').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, pg_url], stdout=subprocess.PIPE, text=True, **OWN_GROUP
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match="doomed"):
            WriterLock(one, "chroma://h:1/t/d", "me").acquire()
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                WriterLock(one, "chroma://h:1/t/d", "me").acquire()
                break
            except IndexBusyError:
                assert time.monotonic() < deadline, "the killed writer's lock was never freed"
                time.sleep(0.1)
    finally:
        proc.kill()
        one.close()
        two.close()


def test_an_unreachable_server_fails_fast_with_what_to_check() -> None:
    from tests.servers import free_port

    db = StateDB(f"postgresql+psycopg://rag@127.0.0.1:{free_port()}/rag")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"127\.0\.0\.1") as caught:
        KeyStore(db)
    assert time.monotonic() - started < 10
    assert "state.url" in caught.value.message or "reachable" in caught.value.message
    db.close()
