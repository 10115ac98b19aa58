"""Widget tokens and signed user identities -> a :class:`Principal` (with
:mod:`serving.oidc`, the only importers of ``jwt``, PyJWT).

A widget token is public (it sits in the page). It is bound to the page origins allowed to use
it and to the groups an anonymous visitor gets. A site that knows its users can pass a signed
identity: an HS256 JWT (``sub``, ``groups``, ``exp``, ``aud``: the token's
``identity_audience``; ``iss`` when the token names an ``identity_issuer``) signed with a
secret the site shares with the service (held in an environment variable named by the
token's config). The secret never goes to the browser; the site's own back end signs the
identity. PyJWT checks the signature (HS256 only: ``alg: none`` and other algorithms are
refused), ``exp`` (an integer, 60 s of clock skew), ``nbf``, ``aud`` and ``iss``; the service
adds its own cap: an identity may not live longer than 24 hours, and the groups it claims
must be the token's ``identity_groups`` (or its own ``groups``): one partner site's secret
cannot grant another site's groups (issue 19).

With ``auth.oidc`` the identity may instead be the identity provider's ID or access token
(issue 22): verified by :class:`serving.oidc.OidcVerifier`, its groups narrowed to the
token's ``identity_groups`` when it lists any.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from rag.config import DEFAULT_IDENTITY_AUDIENCE, WidgetSettings, WidgetToken
from rag.errors import AuthError, ForbiddenError
from rag.types import Principal
from serving.oidc import OidcVerifier, signed_by_provider

CLOCK_SKEW_S = 60
MAX_IDENTITY_TTL_S = 24 * 3600
DEFAULT_AUDIENCE = DEFAULT_IDENTITY_AUDIENCE


class OriginNotAllowedError(ForbiddenError):
    code = "origin_not_allowed"


class InvalidWidgetTokenError(ForbiddenError):
    code = "invalid_widget_token"


class InvalidIdentityError(AuthError):
    code = "invalid_identity"


class IdentityGroupsNotAllowedError(ForbiddenError):
    code = "identity_groups_not_allowed"


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    groups: tuple[str, ...]
    expires_at: float


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def allowed_origins(settings: WidgetSettings) -> frozenset[str]:
    return frozenset(normalize_origin(o) for t in settings.tokens for o in t.origins)


def sign_identity(
    secret: bytes,
    subject: str,
    groups: Sequence[str],
    ttl_s: int = 3600,
    now: float | None = None,
    *,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str | None = None,
) -> str:
    """An HS256 JWT for ``subject`` in ``groups``: what a site's back end hands its pages."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "groups": list(groups),
        "iat": issued,
        "exp": issued + ttl_s,
        "aud": audience,
    }
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_identity(
    token: str, secret: bytes, *, audience: str = DEFAULT_AUDIENCE, issuer: str | None = None
) -> Identity:
    """Check an HS256 JWT's signature, expiry, audience (and issuer); raise
    :class:`InvalidIdentityError`."""
    bad = InvalidIdentityError(
        "The signed user identity is invalid or expired. Reload the page to get a fresh one."
    )
    if len(token) > 8192:
        raise bad
    required = ["exp", "sub", "aud", *(["iss"] if issuer is not None else [])]
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=issuer,
            leeway=CLOCK_SKEW_S,
            options={"require": required},
        )
    except jwt.PyJWTError:
        raise bad from None
    sub, groups, exp = claims.get("sub"), claims.get("groups", []), claims["exp"]
    if not isinstance(sub, str) or not sub or exp > time.time() + MAX_IDENTITY_TTL_S:
        raise bad
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise bad
    return Identity(sub, tuple(groups), float(exp))


def find_token(settings: WidgetSettings, token: str) -> WidgetToken | None:
    for candidate in settings.tokens:
        if hmac.compare_digest(candidate.token.encode(), token.encode()):
            return candidate
    return None


def token_credential(found: WidgetToken) -> str:
    """Names one widget token (two tokens may share a ``name``)."""
    digest = hashlib.sha256(found.token.encode("utf-8")).hexdigest()[:8]
    return f"widget:{found.name}:{digest}"


def widget_principal(
    settings: WidgetSettings,
    token: str,
    origin: str | None,
    identity: str | None,
    environ: Mapping[str, str] | None = None,
    oidc: OidcVerifier | None = None,
) -> Principal:
    """Who a widget request speaks for, or an error that says what to fix. The identity is
    the site's HS256 signed identity, or (with ``auth.oidc``) the identity provider's ID or
    access token, which the site's identity callback hands the widget."""
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
        return Principal(
            f"widget:{found.name}",
            frozenset(found.groups),
            anonymous=True,
            credential=token_credential(found),
        )
    if oidc is not None and signed_by_provider(identity):
        return _provider_user(found, oidc.principal(identity))
    env = os.environ if environ is None else environ
    secret = env.get(found.identity_secret_env or "", "")
    if not secret:
        raise InvalidIdentityError(
            "This widget token does not accept signed identities (no identity secret is "
            "configured). Remove the identity callback or configure identity_secret_env."
        )
    who = verify_identity(
        identity,
        secret.encode(),
        audience=found.identity_audience,
        issuer=found.identity_issuer,
    )
    beyond = sorted(set(who.groups) - set(found.identity_groups) - set(found.groups))
    if beyond:
        raise IdentityGroupsNotAllowedError(
            f"Identities signed for this widget may not grant the group(s) {', '.join(beyond)}. "
            "Ask the administrator to list them in the widget token's identity_groups."
        )
    return Principal(
        f"user:{who.subject}",
        frozenset(who.groups) | set(found.groups),
        False,
        credential=token_credential(found),
    )


def _provider_user(found: WidgetToken, user: Principal) -> Principal:
    """A user signed in with the identity provider, through this widget: the directory's
    groups, narrowed to the token's ``identity_groups`` when it lists any (a site's widget
    reaches only the groups it is meant for), plus the token's own groups; the ``ask`` scope
    at most (the widget only asks)."""
    groups = set(user.groups)
    if found.identity_groups:
        groups &= set(found.identity_groups)
    return Principal(
        user.subject,
        frozenset(groups | set(found.groups)),
        False,
        scopes=user.scopes & {"ask"},
        credential=token_credential(found),
    )
