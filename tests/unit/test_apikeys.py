"""API keys are stored hashed, verified in constant time, scoped, and revocable; the rate
limiter is a token bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import load_settings
from rag.errors import BadRequestError, ConfigError, NotFoundError
from rag.state.apikeys import KeyStore
from rag.state.ratelimit import RateLimiter, retry_after
from tests.statedb import sqlite_state


def test_create_verify_revoke(tmp_path: Path) -> None:
    store = KeyStore(sqlite_state(tmp_path / "keys.sqlite3"))
    key, secret = store.create("helpdesk bot", ["ask", "ask"], ["everyone", "it"])
    assert secret.startswith("kb_") and key.scopes == ("ask",)
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("keys.sqlite3*"))  # with the WAL
    assert key.key_id.encode() in stored
    assert secret.split("_", 2)[2] not in stored.decode("latin-1")  # only the hash is stored
    found = store.verify(secret)
    assert found is not None and found.groups == ("everyone", "it")
    assert store.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    for junk in ["", "kb_", "kb_x_", "Bearer x", "kb_" + key.key_id, "x" * 500]:
        assert store.verify(junk) is None
    assert store.active_count() == 1
    store.revoke(key.key_id)
    assert store.verify(secret) is None and store.active_count() == 0
    assert [k.active for k in store.list()] == [False]
    with pytest.raises(NotFoundError):
        store.revoke(key.key_id)


def test_bad_scopes_and_groups(tmp_path: Path) -> None:
    store = KeyStore(sqlite_state(tmp_path / "keys.sqlite3"))
    with pytest.raises(BadRequestError, match="root"):
        store.create("x", ["root"], ["everyone"])
    with pytest.raises(BadRequestError):
        store.create("x", ["ask"], [])


def test_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_minute=60, burst=2, clock=lambda: now[0])
    assert limiter.take_now("a") == 0 and limiter.take_now("a") == 0
    wait = limiter.take_now("a")
    assert wait == pytest.approx(1.0) and retry_after(wait) == 1
    assert limiter.take_now("b") == 0  # buckets are per caller
    now[0] += 1.0
    assert limiter.take_now("a") == 0
    assert RateLimiter(0, 1).take_now("a") == 0  # 0 per minute: unlimited


def test_auth_can_be_off_only_in_dev_and_test() -> None:
    assert not load_settings("dev", environ={}).auth.required
    assert load_settings("gpu-20b", environ={}).auth.required
    with pytest.raises(ConfigError, match="allow_keyless"):
        load_settings("gpu-20b", environ={"RAG_AUTH__REQUIRED": "false"})


def test_answer_slots_refuse_beyond_the_limit() -> None:
    from serving.capacity import AnswerSlots, BusyError

    slots = AnswerSlots(2)
    with slots, slots:
        with pytest.raises(BusyError) as busy:
            slots.check()
        assert busy.value.http_status == 503
    slots.check()  # released on exit
    assert slots.in_flight == 0
