"""The outbox that delivers hand-offs: every replica runs :meth:`Outbox.run`, which takes due
deliveries from the state database (:class:`rag.state.handoff.HandoffStore`, one lease per
delivery) and sends them on their channel. A failed try is due again after a backoff that
doubles from ``handoff.retry_base_s`` up to ``retry_max_s`` (with jitter, so replicas and
tickets do not retry in step); after ``max_attempts`` the delivery is failed and shown as such
(an admin re-queues it). Nothing is held only in memory: a restart, or ``kill -9``, loses
nothing; a replica killed in the middle of a send leaves a lease that runs out
(``handoff.lease_extra_s`` past the channel's timeout), and the next try carries the same
idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rag.config import HandoffSettings
from rag.errors import ConfigError, DeliveryError
from rag.state.handoff import Handoff, HandoffStore, Reason

log = logging.getLogger(__name__)


class Channel(Protocol):
    name: str
    timeout_s: float

    def send(self, handoff: Handoff) -> str | None:
        """Deliver ``handoff`` (blocking); the receiver's ticket id, if it gives one. Raises
        :class:`rag.errors.DeliveryError` when the receiver is down or refuses it."""
        ...


def build_channels(cfg: HandoffSettings, environ: Mapping[str, str]) -> dict[str, Channel]:
    """The configured channels; a webhook without its signing key is a ConfigError."""
    channels: dict[str, Channel] = {}
    if not cfg.enabled:
        return channels
    if cfg.webhook.url:
        from rag.handoff.webhook import WebhookChannel

        if not cfg.webhook.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"handoff.webhook.url {cfg.webhook.url!r} is not an http(s) address. Set it "
                "to your ticketing system's inbound webhook."
            )
        secret = environ.get(cfg.webhook.secret_env, "")
        if not secret:
            raise ConfigError(
                f"handoff.webhook.url is set but {cfg.webhook.secret_env} is empty: hand-offs "
                "are signed with it. Set it to the key the receiver checks (e.g. `export "
                f"{cfg.webhook.secret_env}=$(openssl rand -hex 32)`), or unset the url."
            )
        channels["webhook"] = WebhookChannel(cfg.webhook, secret.encode("utf-8"))
    if cfg.email.to:
        from rag.handoff.mail import EmailChannel

        email = cfg.email
        user = environ.get(email.username_env or "", "") or None
        password = environ.get(email.password_env or "", "") or None
        if user and not email.starttls:
            raise ConfigError(
                "handoff.email has a login but starttls is off: the password would travel in "
                "clear. Turn handoff.email.starttls on."
            )
        channels["email"] = EmailChannel(email, user, password)
    return channels


class Outbox:
    def __init__(
        self,
        store: HandoffStore,
        channels: Mapping[str, Channel],
        cfg: HandoffSettings,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.cfg = cfg
        self._clock = clock
        self._jitter = jitter
        self._wake: asyncio.Event | None = None
        self.sent = 0
        """Deliveries this process made (successful tries)."""
        self.failed_tries = 0

    @property
    def available(self) -> bool:
        """Whether a hand-off can be made: at least one channel is configured."""
        return bool(self.channels)

    def backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: doubling, capped, with +-25% jitter."""
        delay = min(self.cfg.retry_max_s, self.cfg.retry_base_s * 2 ** max(0, attempt - 1))
        return float(delay * (0.75 + 0.5 * self._jitter()))

    def submit(
        self, owner: str, idem_key: str, reason: Reason, build: Callable[[str, float], Any]
    ) -> tuple[Handoff, bool]:
        """Queue a hand-off (blocking); ``build(handoff_id, created_at)`` makes its ticket.
        Returns it and whether it is new (a repeated idempotency key returns the first)."""
        handoff_id = "H-" + uuid.uuid4().hex[:16].upper()
        now = self._clock()
        payload = build(handoff_id, now)
        return self.store.create(
            handoff_id, owner, idem_key, reason, payload, sorted(self.channels), now=now
        )

    def deliver_due(self) -> int:
        """Try every due delivery once (blocking), in batches; the number tried."""
        tried = 0
        while True:
            batch = self._deliver_batch()
            tried += batch
            if not batch:
                return tried

    def _deliver_batch(self) -> int:
        tried = 0
        now = self._clock()
        for handoff_id, channel in self.store.due(now):
            sender = self.channels.get(channel)
            lease = (sender.timeout_s if sender else 0.0) + self.cfg.lease_extra_s
            attempt = self.store.claim(handoff_id, channel, now, lease)
            if attempt is None:
                continue  # another replica took it
            tried += 1
            if sender is None:
                self.store.failed_attempt(
                    handoff_id,
                    channel,
                    f"the {channel} channel is no longer configured; configure it and retry "
                    f"(POST /v1/handoffs/{handoff_id}/retry)",
                    None,
                )
                continue
            self._deliver(self.store.get(handoff_id), sender, attempt)
            now = self._clock()
        return tried

    def _deliver(self, handoff: Handoff, channel: Channel, attempt: int) -> None:
        try:
            ticket = channel.send(handoff)
        except Exception as exc:
            reason = exc.message if isinstance(exc, DeliveryError) else type(exc).__name__
            if not isinstance(exc, DeliveryError):
                log.exception("hand-off %s: %s channel failed", handoff.handoff_id, channel.name)
            delay = None if attempt >= self.cfg.max_attempts else self.backoff(attempt)
            next_at = None if delay is None else self._clock() + delay
            self.store.failed_attempt(handoff.handoff_id, channel.name, reason, next_at)
            self.failed_tries += 1
            log.warning(
                "hand-off %s: %s try %d failed (%s); %s",
                handoff.handoff_id,
                channel.name,
                attempt,
                reason,
                "giving up" if delay is None else f"retrying in {delay:.0f} s",
            )
            return
        self.store.delivered(handoff.handoff_id, channel.name, ticket, self._clock())
        self.sent += 1
        log.info("hand-off %s delivered by %s (try %d)", handoff.handoff_id, channel.name, attempt)

    def wake(self) -> None:
        """Deliver now rather than at the next poll (a hand-off was just queued)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Deliver what is due, every ``poll_interval_s`` or when woken, until cancelled. A
        failing state database is logged once, and retried at the next poll."""
        self._wake = asyncio.Event()
        failing = False
        while True:
            try:
                await asyncio.to_thread(self.deliver_due)
                if failing:
                    log.warning("the hand-off outbox works again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("the hand-off outbox failed (retrying): %r", exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval_s)
            self._wake.clear()

    async def settled(self, handoff_id: str, wait_s: float) -> Handoff:
        """The hand-off once every channel was tried at least once (or after ``wait_s``)."""
        deadline = time.monotonic() + wait_s
        while True:
            handoff = await asyncio.to_thread(self.store.get, handoff_id)
            now = self._clock()
            if all(d.tried(now) for d in handoff.deliveries) or time.monotonic() >= deadline:
                return handoff
            await asyncio.sleep(0.05)
