"""The audit log: an append-only, hash-chained record of who did what (issue 22).

One row per action: ``ask``, ``retrieve``, ``upload``, ``delete``, ``key_create``,
``key_revoke``, ``login_failure`` (a 401) and ``denied`` (a 403): the caller (a key id, a
widget user, ``cli:user@host``; never a secret), their groups, the route, the HTTP status,
the documents touched, a target (the key an admin created or revoked) and a short reason
(an error code). The question is stored only with ``audit.store_text`` (off by default);
answer text never.

Tamper evidence: each row carries the SHA-256 of its own fields and of the row before it
(``prev``), so changing, inserting or deleting a row breaks the chain at that point, and
:meth:`AuditLog.verify` (``rag-ingest audit --verify``) says where; the newest row's
position is kept apart (the ``head``), so removing the last rows shows too. Appends are serialized
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction advisory lock), so replicas sharing
one database extend one chain. Retention: rows older than ``audit.retention_days`` are
deleted, and the hash of the last one deleted is kept as the chain's new anchor (what the
first remaining row must point to). What it cannot show: someone with write access to the
database who rewrites every row after the one they changed, or the whole table; copy the
log out (``rag-ingest audit --json``) to a system they cannot write to for that.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.migrations import Migration
from rag.state.db import StateDB, Transaction

ACTIONS = (
    "ask",
    "retrieve",
    "upload",
    "delete",
    "key_create",
    "key_revoke",
    "login_failure",
    "denied",
)
GENESIS = "0" * 64
_LOCK = zlib.crc32(b"rag audit chain")
_ANCHOR = "anchor"
_HEAD = "head"
_COLUMNS = (
    "seq",
    "at_us",
    "action",
    "caller",
    "groups",
    "route",
    "status",
    "doc_ids",
    "target",
    "reason",
    "text",
    "prev",
    "hash",
)
_MAX_FIELD = 500
_MAX_TEXT = 4000
_PRUNE_EVERY_S = 3600.0

MIGRATIONS = [
    Migration(
        1,
        "audit_log, audit_state",
        """
        CREATE TABLE IF NOT EXISTS audit_log (
            seq     BIGINT PRIMARY KEY,
            at_us   BIGINT NOT NULL,
            action  VARCHAR(32) NOT NULL,
            caller  VARCHAR(500) NOT NULL,
            groups  TEXT NOT NULL,
            route   VARCHAR(500) NOT NULL,
            status  INTEGER NOT NULL,
            doc_ids TEXT NOT NULL,
            target  VARCHAR(500) NOT NULL,
            reason  VARCHAR(500) NOT NULL,
            text    TEXT,
            prev    CHAR(64) NOT NULL,
            hash    CHAR(64) NOT NULL
        );
        CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at_us);
        CREATE INDEX IF NOT EXISTS audit_log_caller ON audit_log (caller, at_us);
        CREATE TABLE IF NOT EXISTS audit_state (
            key   VARCHAR(64) PRIMARY KEY,
            value TEXT NOT NULL
        )
        """,
    ),
]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at_us: int
    action: str
    caller: str
    groups: tuple[str, ...]
    route: str
    status: int
    doc_ids: tuple[str, ...]
    target: str
    reason: str
    text: str | None
    prev: str
    hash: str

    @property
    def at(self) -> float:
        return self.at_us / 1e6

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["groups"], out["doc_ids"] = list(self.groups), list(self.doc_ids)
        out["at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.at)) + (
            f".{self.at_us % 1_000_000:06d}Z"
        )
        return out


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int
    first_seq: int | None = None
    """The first row kept (older ones were deleted by retention)."""
    broken_at: int | None = None
    """The first row whose hash or link does not hold."""
    reason: str = ""


def record_hash(prev: str, fields: Sequence[Any]) -> str:
    """SHA-256 over the previous hash and a row's fields (canonical JSON)."""
    body = json.dumps([prev, *fields], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _fields(r: AuditRecord) -> list[Any]:
    return [
        r.seq,
        r.at_us,
        r.action,
        r.caller,
        list(r.groups),
        r.route,
        r.status,
        list(r.doc_ids),
        r.target,
        r.reason,
        r.text,
    ]


def _clip(value: str, limit: int = _MAX_FIELD) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _row(row: Sequence[Any]) -> AuditRecord:
    return AuditRecord(
        seq=int(row[0]),
        at_us=int(row[1]),
        action=str(row[2]),
        caller=str(row[3]),
        groups=tuple(json.loads(row[4])),
        route=str(row[5]),
        status=int(row[6]),
        doc_ids=tuple(json.loads(row[7])),
        target=str(row[8]),
        reason=str(row[9]),
        text=None if row[10] is None else str(row[10]),
        prev=str(row[11]).strip(),
        hash=str(row[12]).strip(),
    )


class AuditLog:
    """The audit log in the state database (shared by replicas when that is a server)."""

    def __init__(
        self,
        db: StateDB,
        *,
        store_text: bool = False,
        retention_days: float = 365.0,
        clock: Any = time.time,
    ) -> None:
        self._db = db
        self.store_text = store_text
        self._retention_s = retention_days * 86400
        self._clock = clock
        self._pruned_at = 0.0
        db.migrate("audit", MIGRATIONS)

    def append(
        self,
        action: str,
        *,
        caller: str,
        groups: Sequence[str] = (),
        route: str = "",
        status: int = 200,
        doc_ids: Sequence[str] = (),
        target: str = "",
        reason: str = "",
        text: str | None = None,
    ) -> AuditRecord:
        """Add one record at the end of the chain (and apply retention, at most hourly)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        now = self._clock()
        with self._db.write() as tx:
            if self._db.dialect == "postgresql":
                tx.rows("SELECT pg_advisory_xact_lock(:k)", {"k": _LOCK})
            if now - self._pruned_at >= _PRUNE_EVERY_S:
                self._prune(tx, now)
                self._pruned_at = now
            at_seq, prev = self._mark(tx, _HEAD) or self._mark(tx, _ANCHOR) or (0, GENESIS)
            seq = at_seq + 1
            draft = AuditRecord(
                seq=seq,
                at_us=int(now * 1e6),
                action=action,
                caller=_clip(caller),
                groups=tuple(sorted(_clip(g, 200) for g in groups)),
                route=_clip(route),
                status=int(status),
                doc_ids=tuple(sorted({_clip(d, 200) for d in doc_ids})),
                target=_clip(target),
                reason=_clip(reason),
                text=_clip(text, _MAX_TEXT) if (text is not None and self.store_text) else None,
                prev=prev,
                hash="",
            )
            digest = record_hash(prev, _fields(draft))
            values = {c: getattr(draft, c) for c in _COLUMNS}
            values.update(
                groups=json.dumps(list(draft.groups), ensure_ascii=False),
                doc_ids=json.dumps(list(draft.doc_ids), ensure_ascii=False),
                hash=digest,
            )
            tx.run(
                f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _COLUMNS)})",
                values,
            )
            self._set_mark(tx, _HEAD, seq, digest)
        return AuditRecord(**{**asdict(draft), "hash": digest})

    @staticmethod
    def _mark(tx: Transaction, key: str) -> tuple[int, str] | None:
        """A position in the chain (seq and hash): the ``anchor`` (the last row retention
        deleted: where the chain starts) or the ``head`` (the last row appended)."""
        rows = tx.rows("SELECT value FROM audit_state WHERE key = :k", {"k": key})
        if not rows:
            return None
        seq, _, digest = str(rows[0][0]).partition(":")
        return int(seq), digest

    @staticmethod
    def _set_mark(tx: Transaction, key: str, seq: int, digest: str) -> None:
        tx.run(
            "INSERT INTO audit_state (key, value) VALUES (:k, :v) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            {"k": key, "v": f"{seq}:{digest}"},
        )

    def _prune(self, tx: Transaction, now: float) -> int:
        """Delete rows past retention; the last one deleted becomes the anchor."""
        cutoff = int((now - self._retention_s) * 1e6)
        last = tx.rows(
            "SELECT seq, hash FROM audit_log WHERE at_us < :c ORDER BY seq DESC LIMIT 1",
            {"c": cutoff},
        )
        if not last:
            return 0
        seq, digest = int(last[0][0]), str(last[0][1]).strip()
        deleted = tx.run("DELETE FROM audit_log WHERE seq <= :s", {"s": seq})
        self._set_mark(tx, _ANCHOR, seq, digest)
        return deleted

    def prune(self) -> int:
        """Apply retention now; the number of rows deleted."""
        with self._db.write() as tx:
            if self._db.dialect == "postgresql":
                tx.rows("SELECT pg_advisory_xact_lock(:k)", {"k": _LOCK})
            self._pruned_at = self._clock()
            return self._prune(tx, self._pruned_at)

    def records(
        self,
        *,
        since: float | None = None,
        caller: str | None = None,
        action: str | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """The newest ``limit`` records matching, oldest first. ``caller``: exactly, or a
        user through any credential (``alice`` matches ``alice via widget:intranet``)."""
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {"n": limit}
        if since is not None:
            where.append("at_us >= :since")
            params["since"] = int(since * 1e6)
        if caller is not None:  # a key, or a user through whatever vouched for them
            where.append("(caller = :caller OR substr(caller, 1, :n_via) = :via)")
            params.update(caller=caller, via=f"{caller} via ", n_via=len(caller) + 5)
        if action is not None:
            where.append("action = :action")
            params["action"] = action
        with self._db.read() as tx:
            rows = tx.rows(
                f"SELECT {', '.join(_COLUMNS)} FROM audit_log WHERE {' AND '.join(where)} "
                "ORDER BY seq DESC LIMIT :n",
                params,
            )
        return [_row(r) for r in reversed(rows)]

    def _walk(self, batch: int = 2000) -> Iterator[AuditRecord]:
        after = 0
        while True:
            with self._db.read() as tx:
                rows = tx.rows(
                    f"SELECT {', '.join(_COLUMNS)} FROM audit_log WHERE seq > :a "
                    "ORDER BY seq LIMIT :n",
                    {"a": after, "n": batch},
                )
            if not rows:
                return
            for row in rows:
                record = _row(row)
                after = record.seq
                yield record

    def verify(self) -> Verification:
        """Walk the chain from its anchor: every row's hash recomputed, every link checked,
        no sequence number missing."""
        with self._db.read() as tx:
            at_seq, prev = self._mark(tx, _ANCHOR) or (0, GENESIS)
            head = self._mark(tx, _HEAD)
        checked, first, expected_seq = 0, None, at_seq + 1
        for record in self._walk():
            first = record.seq if first is None else first
            if record.seq != expected_seq:
                return Verification(
                    False,
                    checked,
                    first,
                    record.seq,
                    f"rows {expected_seq}..{record.seq - 1} are missing",
                )
            if record.prev != prev:
                return Verification(
                    False, checked, first, record.seq, "it does not point to the row before it"
                )
            if record_hash(record.prev, _fields(record)) != record.hash:
                return Verification(
                    False, checked, first, record.seq, "its fields do not match its hash"
                )
            prev, expected_seq = record.hash, record.seq + 1
            checked += 1
        if head is not None and head != (expected_seq - 1, prev):
            return Verification(
                False,
                checked,
                first,
                head[0],
                f"the newest records are missing (the log ends at {expected_seq - 1}, "
                f"its head says {head[0]})",
            )
        return Verification(True, checked, first)
