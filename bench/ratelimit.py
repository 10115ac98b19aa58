"""What a shared rate limit (issue 25) and an audit record (issue 22) cost per request: in
memory, SQLite, PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/ratelimit.py [--requests 3000] [--threads 8]

Each request is one ``take`` for one of 200 callers (the in-memory limiter: a dict; the
shared one: one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` in its own transaction).
PostgreSQL is a real server the bench starts on 127.0.0.1 (Debian's package, as the tests
do), so the figures include a loopback round trip but no network: add your network's
round trip for a database on another machine. Printed: per-request p50/p99 in
microseconds one at a time, and requests per second with ``--threads`` threads at once
(each replica's worker threads), plus the pool size SQLAlchemy gives each replica.

The audit append (``AuditLog.append``: read the chain's head, insert, move the head, in one
transaction serialized across writers) is measured the same way on both databases.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rag.state.audit import AuditLog
from rag.state.db import StateDB
from rag.state.ratelimit import RateLimiter, SharedRateLimiter
from tests.postgres_server import running_postgres

CALLERS = 200


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_at_a_time(take: Callable[[str], float], n: int) -> list[float]:
    runs = []
    for i in range(n):
        started = time.perf_counter()
        take(f"caller-{i % CALLERS}")
        runs.append((time.perf_counter() - started) * 1e6)
    return runs


def concurrent(take: Callable[[str], float], n: int, threads: int) -> float:
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(n // threads):
            take(f"caller-{(i * threads + t) % CALLERS}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (n // threads * threads) / (time.perf_counter() - started)


def report(label: str, take: Callable[[str], float], n: int, threads: int) -> None:
    one_at_a_time(take, 200)  # warm up: connections, statement caches
    runs = one_at_a_time(take, n)
    rate = concurrent(take, n, threads)
    print(
        f"{label:<24} p50 {statistics.median(runs):8.1f} us  p99 {pct(runs, 0.99):8.1f} us  "
        f"{rate:9.0f} takes/s with {threads} threads"
    )


def appender(db: StateDB) -> Callable[[str], float]:
    log = AuditLog(db)

    def append(who: str) -> float:
        log.append("ask", caller=who, groups=["everyone"], route="POST /v1/ask", doc_ids=["d1"])
        return 0.0

    return append


def main() -> None:
    parser = argparse.ArgumentParser(description="The cost of a shared rate limit.")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    # A rate nobody reaches here: every take does the full statement and is granted.
    rate, burst = 1e9, 10**9
    report("in memory", RateLimiter(rate, burst).take_now, args.requests, args.threads)
    with tempfile.TemporaryDirectory() as folder:
        db = StateDB(f"sqlite:///{Path(folder) / 'state.sqlite3'}")
        report(
            "SQLite (one machine)",
            SharedRateLimiter(db, rate, burst).take_now,
            args.requests,
            args.threads,
        )
        report("SQLite audit append", appender(db), args.requests, args.threads)
        db.close()
    with running_postgres() as server:
        db = StateDB(server.create_database())
        report(
            "PostgreSQL (loopback)",
            SharedRateLimiter(db, rate, burst).take_now,
            args.requests,
            args.threads,
        )
        report("PostgreSQL audit append", appender(db), args.requests, args.threads)
        assert AuditLog(db).verify().ok  # 8 threads at once still extend one chain
        db.close()


if __name__ == "__main__":
    main()
