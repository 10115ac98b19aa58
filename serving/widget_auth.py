"""Widget tokens and signed user identities -> a :class:`Principal`.

A widget token is public (it sits in the page). It is bound to the page origins allowed to use
it and to the groups an anonymous visitor gets. A site that knows its users can pass a signed
identity: an HS256 JWT (``sub``, ``groups``, ``exp``) signed with a secret the site shares with
the service (held in an environment variable named by the token's config). The secret never
goes to the browser; the site's own back end signs the identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag.config import WidgetSettings, WidgetToken
from rag.errors import AuthError, ForbiddenError
from rag.types import Principal

CLOCK_SKEW_S = 60
MAX_IDENTITY_TTL_S = 24 * 3600


class OriginNotAllowedError(ForbiddenError):
    code = "origin_not_allowed"


class InvalidWidgetTokenError(ForbiddenError):
    code = "invalid_widget_token"


class InvalidIdentityError(AuthError):
    code = "invalid_identity"


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    groups: tuple[str, ...]
    expires_at: float


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def allowed_origins(settings: WidgetSettings) -> frozenset[str]:
    return frozenset(normalize_origin(o) for t in settings.tokens for o in t.origins)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_identity(
    secret: bytes, subject: str, groups: Sequence[str], ttl_s: int = 3600, now: float | None = None
) -> str:
    """An HS256 JWT for ``subject`` in ``groups``: what a site's back end hands its pages."""
    issued = int(time.time() if now is None else now)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": subject, "groups": list(groups), "iat": issued, "exp": issued + ttl_s}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def verify_identity(token: str, secret: bytes, now: float | None = None) -> Identity:
    """Check an HS256 JWT's signature and expiry; raise :class:`InvalidIdentityError`."""
    bad = InvalidIdentityError(
        "The signed user identity is invalid or expired. Reload the page to get a fresh one."
    )
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        raise bad
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        sig = _unb64(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise bad
    want = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(sig, want):
        raise bad
    return _claims(claims, time.time() if now is None else now, bad)


def _claims(claims: Any, now: float, bad: InvalidIdentityError) -> Identity:
    if not isinstance(claims, dict):
        raise bad
    sub, groups, exp = claims.get("sub"), claims.get("groups", []), claims.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(exp, int | float):
        raise bad
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise bad
    if exp < now - CLOCK_SKEW_S or exp > now + MAX_IDENTITY_TTL_S:
        raise bad
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW_S:
        raise bad
    return Identity(sub, tuple(groups), float(exp))


def find_token(settings: WidgetSettings, token: str) -> WidgetToken | None:
    for candidate in settings.tokens:
        if hmac.compare_digest(candidate.token.encode(), token.encode()):
            return candidate
    return None


def widget_principal(
    settings: WidgetSettings,
    token: str,
    origin: str | None,
    identity: str | None,
    environ: Mapping[str, str] | None = None,
) -> Principal:
    """Who a widget request speaks for, or an error that says what to fix."""
    found = find_token(settings, token)
    if found is None:
        raise InvalidWidgetTokenError(
            "This widget token is not known to the service. Check data-token in the page."
        )
    allowed = {normalize_origin(o) for o in found.origins}
    if origin is None or normalize_origin(origin) not in allowed:
        raise OriginNotAllowedError(
            "This widget is not allowed on this site. Ask the administrator to add the page's "
            "origin to the widget token's origins."
        )
    if not identity:
        return Principal(f"widget:{found.name}", frozenset(found.groups), anonymous=True)
    env = os.environ if environ is None else environ
    secret = env.get(found.identity_secret_env or "", "")
    if not secret:
        raise InvalidIdentityError(
            "This widget token does not accept signed identities (no identity secret is "
            "configured). Remove the identity callback or configure identity_secret_env."
        )
    who = verify_identity(identity, secret.encode())
    return Principal(f"user:{who.subject}", frozenset(who.groups) | set(found.groups), False)
