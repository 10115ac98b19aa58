"""The hand-off outbox, in the state database: a ticket for a person and one delivery per
channel (webhook, e-mail).

A hand-off is written once, with its deliveries, in one transaction; it is unique per caller
and idempotency key, so a retried request returns the first hand-off. A replica takes a due
delivery with a conditional update (a lease: ``lease_until``), so replicas sharing the
database never send one delivery at the same time; a replica killed while sending leaves a
lease that runs out, and the delivery is tried again (with the same idempotency key). What a
hand-off carries (the question and the transcript) is deleted with it after
``feedback.retention_days``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.errors import NotFoundError
from rag.migrations import Migration
from rag.state.db import StateDB

Status = Literal["pending", "delivered", "failed"]
Reason = Literal["declined", "unsupported", "thumbs_down", "other"]
REASONS: tuple[Reason, ...] = ("declined", "unsupported", "thumbs_down", "other")

MIGRATIONS = [
    Migration(
        1,
        "hand-offs and their deliveries",
        """CREATE TABLE IF NOT EXISTS handoffs (
            handoff_id  VARCHAR(40) PRIMARY KEY,
            owner       TEXT NOT NULL,
            idem_key    VARCHAR(200) NOT NULL,
            reason      VARCHAR(16) NOT NULL,
            created_at  DOUBLE PRECISION NOT NULL,
            payload     TEXT NOT NULL,
            UNIQUE (owner, idem_key)
        );
        CREATE INDEX IF NOT EXISTS handoffs_created ON handoffs (created_at);
        CREATE TABLE IF NOT EXISTS handoff_deliveries (
            handoff_id   VARCHAR(40) NOT NULL REFERENCES handoffs (handoff_id),
            channel      VARCHAR(16) NOT NULL,
            status       VARCHAR(12) NOT NULL,
            attempts     INTEGER NOT NULL,
            next_at      DOUBLE PRECISION NOT NULL,
            lease_until  DOUBLE PRECISION,
            last_error   TEXT,
            external_id  TEXT,
            delivered_at DOUBLE PRECISION,
            PRIMARY KEY (handoff_id, channel)
        );
        CREATE INDEX IF NOT EXISTS handoff_due ON handoff_deliveries (status, next_at)""",
    )
]


def overall(states: set[str]) -> Status:
    """A hand-off's state from its deliveries' states: ``delivered`` once any channel
    delivered it, ``failed`` when every channel gave up, else ``pending``."""
    if "delivered" in states:
        return "delivered"
    if states == {"failed"}:
        return "failed"
    return "pending"


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    status: Status
    attempts: int
    next_at: float
    last_error: str | None = None
    external_id: str | None = None
    delivered_at: float | None = None
    lease_until: float | None = None
    """Set while a replica is sending it (until the lease runs out)."""

    def tried(self, now: float) -> bool:
        """Whether it was tried and no try is under way (its outcome is known)."""
        sending = self.lease_until is not None and self.lease_until > now
        return self.status != "pending" or (self.attempts > 0 and not sending)


@dataclass(frozen=True, slots=True)
class Handoff:
    handoff_id: str
    owner: str
    reason: Reason
    created_at: float
    payload: dict[str, Any]
    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)

    @property
    def status(self) -> Status:
        return overall({d.status for d in self.deliveries})

    @property
    def ticket_id(self) -> str | None:
        """The receiver's ticket id (the webhook's reply), when one was given."""
        return next((d.external_id for d in self.deliveries if d.external_id), None)


@dataclass(frozen=True, slots=True)
class HandoffCounts:
    """Hand-offs created in a period, by reason and by status."""

    by_reason: dict[str, int]
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


_DELIVERY_COLUMNS = (
    "channel, status, attempts, next_at, last_error, external_id, delivered_at, lease_until, "
    "handoff_id"
)


class HandoffStore:
    def __init__(self, db: StateDB, *, retention_days: float | None = None) -> None:
        self.db = db
        db.migrate("handoff", MIGRATIONS)
        if retention_days is not None:
            cutoff = {"cutoff": time.time() - retention_days * 86400}
            old = "SELECT handoff_id FROM handoffs WHERE created_at < :cutoff"
            with db.write() as tx:
                tx.run(f"DELETE FROM handoff_deliveries WHERE handoff_id IN ({old})", cutoff)
                tx.run("DELETE FROM handoffs WHERE created_at < :cutoff", cutoff)

    def create(
        self,
        handoff_id: str,
        owner: str,
        idem_key: str,
        reason: Reason,
        payload: dict[str, Any],
        channels: Sequence[str],
        *,
        now: float | None = None,
    ) -> tuple[Handoff, bool]:
        """The hand-off, and whether it is new: a second request with the same ``owner``
        and ``idem_key`` gets the first one back (nothing is queued twice)."""
        now = time.time() if now is None else now
        with self.db.write() as tx:
            found = tx.rows(
                "SELECT handoff_id FROM handoffs WHERE owner = :owner AND idem_key = :key",
                {"owner": owner, "key": idem_key},
            )
            if not found:
                tx.run(
                    "INSERT INTO handoffs (handoff_id, owner, idem_key, reason, created_at, "
                    "payload) VALUES (:id, :owner, :key, :reason, :now, :payload)",
                    {
                        "id": handoff_id,
                        "owner": owner,
                        "key": idem_key,
                        "reason": reason,
                        "now": now,
                        "payload": json.dumps(payload, ensure_ascii=False),
                    },
                )
                tx.run(
                    "INSERT INTO handoff_deliveries (handoff_id, channel, status, attempts, "
                    "next_at) VALUES (:id, :channel, 'pending', 0, :now)",
                    [{"id": handoff_id, "channel": c, "now": now} for c in channels],
                )
        if found:
            return self.get(str(found[0][0])), False
        return self.get(handoff_id), True

    def get(self, handoff_id: str) -> Handoff:
        found = self.find([handoff_id])
        if not found:
            raise NotFoundError(
                f"No hand-off {handoff_id!r}. Use the handoff_id that POST /v1/handoff returned."
            )
        return found[0]

    def find(self, ids: Sequence[str]) -> list[Handoff]:
        if not ids:
            return []
        params = {f"i{n}": i for n, i in enumerate(ids)}
        marks = ", ".join(f":{k}" for k in params)
        with self.db.read() as tx:
            heads = tx.rows(
                "SELECT handoff_id, owner, reason, created_at, payload FROM handoffs "
                f"WHERE handoff_id IN ({marks}) ORDER BY created_at DESC",
                params,
            )
            rows = tx.rows(
                f"SELECT {_DELIVERY_COLUMNS} FROM handoff_deliveries "
                f"WHERE handoff_id IN ({marks}) ORDER BY channel",
                params,
            )
        deliveries: dict[str, list[Delivery]] = {}
        for r in rows:
            deliveries.setdefault(str(r[8]), []).append(_delivery(r))
        return [
            Handoff(
                str(h[0]),
                str(h[1]),
                h[2],
                float(h[3]),
                json.loads(h[4]),
                tuple(deliveries.get(str(h[0]), ())),
            )
            for h in heads
        ]

    def recent(
        self, *, status: Status | None = None, since: float = 0.0, limit: int = 100
    ) -> list[Handoff]:
        """The newest hand-offs (admin list), optionally only those with ``status``."""
        with self.db.read() as tx:
            ids = [
                str(r[0])
                for r in tx.rows(
                    "SELECT handoff_id FROM handoffs WHERE created_at >= :since "
                    "ORDER BY created_at DESC",
                    {"since": since},
                )
            ]
        found: list[Handoff] = []
        for start in range(0, len(ids), 200):
            batch = self.find(ids[start : start + 200])
            found.extend(h for h in batch if status is None or h.status == status)
            if len(found) >= limit:
                break
        return found[:limit]

    def due(self, now: float, limit: int = 20) -> list[tuple[str, str]]:
        """Deliveries that may be tried now: (handoff_id, channel), oldest first."""
        with self.db.read() as tx:
            rows = tx.rows(
                "SELECT handoff_id, channel FROM handoff_deliveries WHERE status = 'pending' "
                "AND next_at <= :now AND (lease_until IS NULL OR lease_until < :now) "
                "ORDER BY next_at LIMIT :limit",
                {"now": now, "limit": limit},
            )
        return [(str(r[0]), str(r[1])) for r in rows]

    def claim(self, handoff_id: str, channel: str, now: float, lease_s: float) -> int | None:
        """Take one delivery for ``lease_s`` seconds: its attempt number, or None when another
        replica took it first (or it is no longer due)."""
        with self.db.write() as tx:
            taken = tx.run(
                "UPDATE handoff_deliveries SET lease_until = :until, attempts = attempts + 1 "
                "WHERE handoff_id = :id AND channel = :channel AND status = 'pending' "
                "AND next_at <= :now AND (lease_until IS NULL OR lease_until < :now)",
                {"until": now + lease_s, "id": handoff_id, "channel": channel, "now": now},
            )
            if taken != 1:
                return None
            rows = tx.rows(
                "SELECT attempts FROM handoff_deliveries WHERE handoff_id = :id "
                "AND channel = :channel",
                {"id": handoff_id, "channel": channel},
            )
        return int(rows[0][0])

    def delivered(self, handoff_id: str, channel: str, external_id: str | None, now: float) -> None:
        with self.db.write() as tx:
            tx.run(
                "UPDATE handoff_deliveries SET status = 'delivered', lease_until = NULL, "
                "external_id = :ext, delivered_at = :now, last_error = NULL "
                "WHERE handoff_id = :id AND channel = :channel",
                {"ext": external_id, "now": now, "id": handoff_id, "channel": channel},
            )

    def failed_attempt(
        self, handoff_id: str, channel: str, error: str, next_at: float | None
    ) -> None:
        """Record a failed try: due again at ``next_at``, or failed for good (None)."""
        with self.db.write() as tx:
            tx.run(
                "UPDATE handoff_deliveries SET status = :status, lease_until = NULL, "
                "last_error = :error, next_at = :next WHERE handoff_id = :id "
                "AND channel = :channel",
                {
                    "status": "pending" if next_at is not None else "failed",
                    "error": error[:500],
                    "next": next_at if next_at is not None else 0.0,
                    "id": handoff_id,
                    "channel": channel,
                },
            )

    def requeue(self, handoff_id: str, now: float | None = None) -> Handoff:
        """Try a hand-off's failed deliveries again, from the first attempt."""
        self.get(handoff_id)
        with self.db.write() as tx:
            tx.run(
                "UPDATE handoff_deliveries SET status = 'pending', attempts = 0, "
                "next_at = :now, lease_until = NULL WHERE handoff_id = :id "
                "AND status = 'failed'",
                {"now": time.time() if now is None else now, "id": handoff_id},
            )
        return self.get(handoff_id)

    def counts(self, since: float = 0.0) -> HandoffCounts:
        """Hand-offs created since ``since``, by reason and by status."""
        with self.db.read() as tx:
            rows = tx.rows(
                "SELECT h.handoff_id, h.reason, d.status FROM handoffs h JOIN "
                "handoff_deliveries d ON d.handoff_id = h.handoff_id "
                "WHERE h.created_at >= :since",
                {"since": since},
            )
        reasons: dict[str, str] = {}
        states: dict[str, set[str]] = {}
        for handoff_id, reason, status in rows:
            reasons[handoff_id] = reason
            states.setdefault(handoff_id, set()).add(status)
        by_status: Counter[str] = Counter(overall(found) for found in states.values())
        return HandoffCounts(dict(Counter(reasons.values())), dict(by_status))


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(
        str(row[0]),
        row[1],
        int(row[2]),
        float(row[3]),
        row[4],
        row[5],
        None if row[6] is None else float(row[6]),
        None if row[7] is None else float(row[7]),
    )
