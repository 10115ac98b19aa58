"""The hand-off outbox over a real state database (SQLite, and PostgreSQL as replicas share
it): replicas sending at once send each delivery once, failed tries back off and give up after
``max_attempts``, an admin's retry starts over, a repeated idempotency key queues nothing, and
a missing signing key or a login without STARTTLS is refused at start. Channels are the
seam's stand-ins (rag/handoff/outbox.py ``Channel``); the real ones are tested against real
receivers in test_handoff.py."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from rag.config import HandoffSettings
from rag.errors import ConfigError, DeliveryError
from rag.handoff.outbox import Outbox, build_channels
from rag.state.db import StateDB
from rag.state.handoff import Handoff, HandoffStore


class Recorder:
    """A channel that records what it sends (slowly, so replicas overlap)."""

    name = "webhook"
    timeout_s = 5.0

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def send(self, handoff: Handoff) -> str | None:
        time.sleep(0.01)
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                raise DeliveryError("the webhook answered HTTP 503")
            self.sent.append(handoff.handoff_id)
            return f"T-{len(self.sent)}"


def settings(**values: Any) -> HandoffSettings:
    return HandoffSettings.model_validate(
        {"retry_base_s": 10, "retry_max_s": 40, "max_attempts": 3, **values}
    )


def queue(outbox: Outbox, n: int) -> list[str]:
    made = []
    for i in range(n):
        handoff, new = outbox.submit(
            "alice", f"key-{i}", "declined", lambda hid, at, i=i: {"question": f"q{i}"}
        )
        assert new
        made.append(handoff.handoff_id)
    return made


def test_two_replicas_sending_at_once_send_each_delivery_once(state_url: str) -> None:
    dbs = [StateDB(state_url), StateDB(state_url)]
    channel = Recorder()
    outboxes = [Outbox(HandoffStore(db), {"webhook": channel}, settings()) for db in dbs]
    made = queue(outboxes[0], 30)
    threads = [threading.Thread(target=o.deliver_due) for o in outboxes for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(channel.sent) == Counter(made)  # every one, once
    store = HandoffStore(dbs[1])
    assert {h.status for h in store.find(made)} == {"delivered"}
    assert store.counts().by_status == {"delivered": 30}
    for db in dbs:
        db.close()


def test_failed_tries_back_off_then_give_up_and_an_admin_retry_starts_over(
    tmp_path: Any,
) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    now = [1000.0]
    channel = Recorder(fail=5)
    outbox = Outbox(
        HandoffStore(db), {"webhook": channel}, settings(), clock=lambda: now[0], jitter=lambda: 0.5
    )
    [hid] = queue(outbox, 1)
    delays = []
    for _ in range(3):
        assert outbox.deliver_due() == 1
        assert outbox.deliver_due() == 0  # not due again before its backoff
        [delivery] = outbox.store.get(hid).deliveries
        delays.append(delivery.next_at - now[0])
        now[0] = max(now[0], delivery.next_at)
    assert delays[:2] == [10.0, 20.0]  # doubling from retry_base_s (jitter 0.5: none)
    handoff = outbox.store.get(hid)
    assert handoff.status == "failed" and handoff.deliveries[0].attempts == 3
    assert handoff.deliveries[0].last_error == "the webhook answered HTTP 503"
    assert outbox.deliver_due() == 0  # failed for good: no more tries

    outbox.store.requeue(hid, now=now[0])
    assert outbox.deliver_due() == 1  # the 4th failure in all
    now[0] += 10
    assert outbox.deliver_due() == 1  # the 5th
    now[0] += 20
    assert outbox.deliver_due() == 1
    handoff = outbox.store.get(hid)
    assert handoff.status == "delivered" and handoff.ticket_id == "T-1"
    assert channel.sent == [hid]
    assert outbox.backoff(20) == 40.0  # capped at retry_max_s
    db.close()


def test_a_repeated_idempotency_key_returns_the_first_handoff(tmp_path: Any) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    outbox = Outbox(HandoffStore(db), {"webhook": Recorder()}, settings())
    first, new = outbox.submit("alice", "answer:1", "declined", lambda h, t: {"question": "a"})
    again, repeat = outbox.submit("alice", "answer:1", "declined", lambda h, t: {"question": "b"})
    other, new_for_bob = outbox.submit("bob", "answer:1", "other", lambda h, t: {"question": "c"})
    assert new and not repeat and new_for_bob
    assert again.handoff_id == first.handoff_id and again.payload == {"question": "a"}
    assert other.handoff_id != first.handoff_id
    assert len(outbox.store.recent()) == 2
    db.close()


def test_a_channel_removed_from_the_configuration_fails_its_deliveries_with_what_to_do(
    tmp_path: Any,
) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    [hid] = queue(Outbox(HandoffStore(db), {"webhook": Recorder()}, settings()), 1)
    without = Outbox(HandoffStore(db), {}, settings())
    assert without.deliver_due() == 1
    [delivery] = without.store.get(hid).deliveries
    assert delivery.status == "failed"
    assert "no longer configured" in (delivery.last_error or "")
    db.close()


def test_unsafe_or_incomplete_channel_settings_are_refused_at_start() -> None:
    webhook = settings(webhook={"url": "https://tickets.example/hook"})
    with pytest.raises(ConfigError, match="KB_HANDOFF_WEBHOOK_SECRET"):
        build_channels(webhook, {})
    assert set(build_channels(webhook, {"KB_HANDOFF_WEBHOOK_SECRET": "s"})) == {"webhook"}
    with pytest.raises(ConfigError, match="not an http"):
        build_channels(settings(webhook={"url": "ftp://x"}), {"KB_HANDOFF_WEBHOOK_SECRET": "s"})
    clear = settings(email={"to": ["hd@example.com"], "starttls": False})
    with pytest.raises(ConfigError, match="starttls"):
        build_channels(clear, {"KB_HANDOFF_SMTP_USER": "u", "KB_HANDOFF_SMTP_PASSWORD": "p"})
    assert set(build_channels(clear, {})) == {"email"}  # no login: a local relay
    assert build_channels(settings(enabled=False, email={"to": ["hd@example.com"]}), {}) == {}
