"""The webhook channel (httpx): the ticket POSTed as JSON, the body signed with HMAC-SHA256.

Headers: ``Idempotency-Key`` (the hand-off id: a retry after a lost reply sends it again, and
the receiver drops the repeat), ``X-Rag-Timestamp`` (Unix seconds) and ``X-Rag-Signature:
sha256=<hex>`` over ``<timestamp>.<body>``: the receiver recomputes it with the shared key and
rejects an old timestamp (docs/API.md shows the check). The receiver's ticket id is read from
its JSON reply (``handoff.webhook.ticket_field``). Redirects are not followed: a moved
receiver is a configuration to fix, not an address to send tickets to unchecked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from rag.config import WebhookSettings
from rag.errors import DeliveryError
from rag.state.handoff import Handoff


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Rag-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _field(data: object, path: str) -> str | None:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    if isinstance(data, str | int) and not isinstance(data, bool) and str(data).strip():
        return str(data).strip()[:200]
    return None


class WebhookChannel:
    name = "webhook"

    def __init__(self, cfg: WebhookSettings, secret: bytes) -> None:
        if not cfg.url:
            raise ValueError("a webhook channel needs handoff.webhook.url")
        self._url = cfg.url
        self._secret = secret
        self._field = cfg.ticket_field
        self.timeout_s = cfg.timeout_s

    def send(self, handoff: Handoff) -> str | None:
        """POST the ticket; the receiver's ticket id, if its reply names one."""
        body = json.dumps(handoff.payload, ensure_ascii=False).encode("utf-8")
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": handoff.handoff_id,
            "X-Rag-Timestamp": stamp,
            "X-Rag-Signature": sign(self._secret, stamp, body),
            "User-Agent": "rag-handoff",
        }
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
                reply = client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"the webhook is unreachable ({type(exc).__name__})") from exc
        if reply.is_redirect:
            where = reply.headers.get("location", "?")
            raise DeliveryError(
                f"the webhook answered {reply.status_code}, a redirect to {where}: set "
                "handoff.webhook.url to the final address"
            )
        if not reply.is_success:
            raise DeliveryError(f"the webhook answered HTTP {reply.status_code}")
        try:
            data = reply.json()
        except ValueError:
            return None
        return _field(data, self._field)
