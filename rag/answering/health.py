"""How the engine has been doing, for ``/readyz`` and ``/metrics``.

A *failure* is an engine request that raised while answering: not a client that went away
(that aborts the request on purpose) and not a prompt the caller made too long. The service
stays up after a failure. ``/readyz`` then reports ``degraded`` (HTTP 200: the service still
takes questions, and taking it out of a load balancer would stop the very traffic that shows
it has recovered) with the failure count and the last error; the next answer the engine
completes clears the state. An engine that stopped for good (``Engine.healthy`` false) is
``failed`` (503) instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class EngineHealth:
    failures: int = 0
    """Engine requests that failed since start-up."""
    consecutive: int = 0
    """Failures since the last engine request that completed."""
    last_error: str | None = None
    last_error_at: float | None = None
    """Unix time of the last failure."""

    def failed(self, message: str) -> None:
        self.failures += 1
        self.consecutive += 1
        self.last_error = message
        self.last_error_at = time.time()

    def succeeded(self) -> None:
        self.consecutive = 0

    @property
    def degraded(self) -> bool:
        return self.consecutive > 0

    def describe(self) -> str:
        """What ``/readyz`` says while degraded."""
        return (
            f"The last {self.consecutive} answer(s) failed in the engine: {self.last_error} "
            "The service keeps taking questions and recovers by itself on the next answer "
            "that completes; if failures continue, check the service log and restart it."
        )
