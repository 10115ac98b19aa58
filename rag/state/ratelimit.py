"""Per-caller question budgets: the :class:`RateLimits` seam and its in-memory token buckets.

In memory today: each process grants the full rate. Limits shared by several replicas (the
state database or Redis, issue 25) plug in behind the same Protocol. ``take`` is called on
the event loop only (``serving.principal.asking`` is async), so the buckets need no lock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

MAX_TRACKED = 50_000


class RateLimits(Protocol):
    rate: float
    """Sustained questions per second per caller (0: unlimited)."""

    def take(self, key: str) -> float:
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

    def take(self, key: str) -> float:
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


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))
