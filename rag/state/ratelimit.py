"""Per-caller question budgets: the :class:`RateLimits` seam and its two token-bucket stores.

:class:`RateLimiter` keeps the buckets in memory: one process, one machine (the default with
the embedded SQLite state). :class:`SharedRateLimiter` keeps them in the state database, so
several replicas grant one rate between them (issue 25): one ``INSERT ... ON CONFLICT DO
UPDATE ... RETURNING`` per request, atomic in PostgreSQL and SQLite alike, no lock held
between requests. Measured in ``bench/ratelimit.py`` (docs/BENCHMARKS.md). ``take`` is
awaited on the event loop: the in-memory buckets need no lock, the shared ones run their
statement in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from rag.migrations import Migration
from rag.state.db import StateDB

MAX_TRACKED = 50_000


class RateLimits(Protocol):
    rate: float
    """Sustained questions per second per caller (0: unlimited)."""

    async def take(self, key: str) -> float:
        """Spend one question for ``key``: 0.0 when allowed, else seconds until one is free."""
        ...


class RateLimiter:
    """``rate_per_minute`` sustained with bursts of ``burst``; ``take`` says how long to wait."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str) -> float:
        return self.take_now(key)

    def take_now(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return wait


_REFILL = (
    "CASE WHEN rate_buckets.tokens + (:now - rate_buckets.updated) * :rate > :burst THEN :burst "
    "WHEN :now < rate_buckets.updated THEN rate_buckets.tokens "
    "ELSE rate_buckets.tokens + (:now - rate_buckets.updated) * :rate END"
)
# One statement: a new caller starts with a full bucket less this request; a known one is
# refilled for the time since its last request, then pays 1 if it has 1 (``granted``).
_TAKE = (
    "INSERT INTO rate_buckets (bucket, tokens, updated, granted) "
    "VALUES (:key, :burst - 1, :now, 1) "
    "ON CONFLICT (bucket) DO UPDATE SET "
    f"tokens = CASE WHEN {_REFILL} >= 1 THEN {_REFILL} - 1 ELSE {_REFILL} END, "
    f"granted = CASE WHEN {_REFILL} >= 1 THEN 1 ELSE 0 END, "
    "updated = CASE WHEN :now > rate_buckets.updated THEN :now ELSE rate_buckets.updated END "
    "RETURNING tokens, granted"
)

MIGRATIONS = [
    Migration(
        1,
        "rate_buckets",
        """
        CREATE TABLE IF NOT EXISTS rate_buckets (
            bucket  VARCHAR(64) PRIMARY KEY,
            tokens  DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL,
            granted INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS rate_buckets_updated ON rate_buckets (updated)
        """,
    ),
]


class SharedRateLimiter:
    """The same token buckets in the state database: every replica spends from one bucket
    per caller. Keys are stored as a SHA-256 (a caller's subject and address are not kept
    in clear). Buckets full again (idle for ``burst / rate`` seconds) are deleted now and
    then by whichever replica writes. The clock is the replica's wall clock: replicas are
    assumed to agree within a fraction of a second (NTP), and a clock behind the bucket's
    last update never refills it."""

    def __init__(
        self,
        db: StateDB,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.time,
        prune_every: int = 1000,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self._db = db
        self._clock = clock
        self._prune_every = prune_every
        self._takes = 0
        db.migrate("ratelimit", MIGRATIONS)

    async def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        return await asyncio.to_thread(self.take_now, key)

    def take_now(self, key: str) -> float:
        """Spend one token for ``key`` (in the database): 0.0 when allowed, else the wait."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        bucket = hashlib.sha256(key.encode("utf-8")).hexdigest()
        with self._db.write() as tx:
            [(tokens, granted)] = tx.rows(
                _TAKE, {"key": bucket, "burst": self.burst, "now": now, "rate": self.rate}
            )
            self._takes += 1
            if self._takes % self._prune_every == 0:
                tx.run(
                    "DELETE FROM rate_buckets WHERE updated < :cutoff",
                    {"cutoff": now - self.burst / self.rate},
                )
        if granted:
            return 0.0
        return (1.0 - float(tokens)) / self.rate


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))
