"""Bearer tokens from the company's OpenID provider (``auth.oidc``, issue 22): the only module
that verifies them (``jwt``, PyJWT; the provider's documents are fetched with the standard
library).

- **Discovery and keys.** ``<issuer>/.well-known/openid-configuration`` names the JWKS; both
  are fetched when the service starts (a provider that cannot be reached then is logged, and
  each sign-in meanwhile is a 503 naming the issuer, retried at most every 10 s), cached, and
  fetched again when a token names a key id the cache lacks (the provider rotated its keys),
  at most every ``auth.oidc.refresh_min_s``.
- **Checks**, by PyJWT: the signature with the published key of the token's ``kid``, the
  algorithm (one of ``auth.oidc.algorithms``, asymmetric only, and the key's own when it
  names one: never ``none``, never HMAC keyed with a public key), ``iss``, ``aud``, ``exp``,
  ``nbf`` and ``iat`` with ``leeway_s`` of clock skew. A failed check is a 401 that says which
  check failed, never echoing the token.
- **Who it is.** Groups come from ``groups_claim`` (a dotted path), renamed by ``group_map``;
  scopes from ``scope_map`` (claim values that grant ``ask``, ``ingest``, ``admin``,
  ``metrics``; ``*``: every signed-in user). The subject is ``user:<subject_claim>``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import jwt

from rag.config import OidcSettings
from rag.errors import AuthError, RagError
from rag.types import Principal

log = logging.getLogger(__name__)
Fetch = Callable[[str], Any]
_UNREACHABLE_RETRY_S = 10.0
_MAX_DOCUMENT = 1_000_000


class IdentityProviderError(RagError):
    """The identity provider cannot be reached, or answers nonsense (a 503)."""

    exit_code = 6
    http_status = 503
    code = "identity_provider_unavailable"


def fetch_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document (discovery, JWKS) from the provider."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read(_MAX_DOCUMENT))


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and len(value) > 20


def signed_by_provider(value: str) -> bool:
    """Whether a widget identity is a provider's token (an asymmetric signature), not the
    site's HS256 signed identity."""
    if not looks_like_jwt(value):
        return False
    try:
        return str(jwt.get_unverified_header(value).get("alg", "")) not in {"HS256", ""}
    except jwt.PyJWTError:
        return False


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path (``realm_access.roles``); None when absent."""
    found: Any = claims
    for part in path.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


def _values(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [str(v) for v in raw if isinstance(v, str | int)]
    return []


class OidcVerifier:
    """Verifies bearer tokens for one provider (thread-safe)."""

    def __init__(self, cfg: OidcSettings, fetch: Fetch = fetch_json) -> None:
        assert cfg.issuer and cfg.audience
        self._cfg = cfg
        self.issuer: str = cfg.issuer
        self._audience: str = cfg.audience
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at = -1e9
        self._failed: str | None = None
        self.refreshes = 0

    # -- the provider's documents --------------------------------------------------------

    def start(self) -> None:
        """Fetch discovery and keys now (at start-up); a failure is logged and kept."""
        try:
            self._refresh(force=True)
        except IdentityProviderError as exc:
            log.error("%s", exc.message)

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            since = time.monotonic() - self._fetched_at
            wait = _UNREACHABLE_RETRY_S if self._failed else self._cfg.refresh_min_s
            if not force and since < wait:
                if self._failed:
                    raise IdentityProviderError(self._failed)
                return
            self._fetched_at = time.monotonic()
            try:
                if self._jwks_uri is None:
                    self._jwks_uri = self._discover()
                keys = self._load_keys(self._fetch(self._jwks_uri))
            except IdentityProviderError as exc:
                self._failed = exc.message
                raise
            except (OSError, ValueError, urllib.error.URLError) as exc:
                self._failed = (
                    f"The identity provider {self.issuer} cannot be reached "
                    f"({type(exc).__name__}: {exc}). Sign-in with it fails until it answers; "
                    "API keys still work. Check auth.oidc.issuer and that this server can "
                    "reach it."
                )
                raise IdentityProviderError(self._failed) from exc
            self._keys, self._failed = keys, None
            self.refreshes += 1
            log.info("identity provider keys loaded: %d keys from %s", len(keys), self.issuer)

    def _discover(self) -> str:
        doc = self._fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if not isinstance(doc, dict) or doc.get("issuer") != self.issuer:
            named = doc.get("issuer") if isinstance(doc, dict) else None
            raise IdentityProviderError(
                f"The identity provider at {self.issuer} names itself {named!r}: set "
                "auth.oidc.issuer to exactly the issuer its discovery document gives."
            )
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or urlparse(uri).scheme not in {"https", "http"}:
            raise IdentityProviderError(
                f"The identity provider {self.issuer} publishes no jwks_uri: it cannot be used."
            )
        return uri

    def _load_keys(self, doc: Any) -> dict[str, jwt.PyJWK]:
        keys: dict[str, jwt.PyJWK] = {}
        for data in doc.get("keys", []) if isinstance(doc, dict) else []:
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(data)
            except jwt.PyJWTError:
                continue  # a key type this library cannot use: not ours to verify with
            keys[str(data.get("kid", ""))] = key
        return keys

    def _key(self, kid: str) -> jwt.PyJWK:
        if self._fetched_at < 0 or self._failed or kid not in self._keys:
            self._refresh(force=False)
        found = self._keys.get(kid)
        if found is None:
            raise AuthError(
                f"The token is signed with a key the identity provider {self.issuer} does not "
                f"publish (kid {kid[:64]!r}). Sign in again; if it persists, the token is "
                "not from this provider."
            )
        return found

    # -- tokens ----------------------------------------------------------------------------

    def principal(self, token: str) -> Principal:
        """The caller a token names, or an :class:`AuthError` saying which check failed."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("The bearer token is not a well-formed JWT.") from None
        alg = str(header.get("alg", ""))
        if alg not in self._cfg.algorithms:
            raise AuthError(
                f"The token is signed with algorithm {alg[:20]!r}, which this service does not "
                f"accept (auth.oidc.algorithms: {', '.join(self._cfg.algorithms)})."
            )
        key = self._key(str(header.get("kid", "")))
        if key.algorithm_name and key.algorithm_name != alg:
            raise AuthError(
                f"The token says {alg} but its key is for {key.algorithm_name}: refused."
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self.issuer,
                leeway=self._cfg.leeway_s,
                options={"require": ["exp", "iss", "aud", self._cfg.subject_claim]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("The token has expired: sign in again.") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(
                "The token is not valid yet (nbf or iat in the future): check the clocks of "
                "this server and the identity provider."
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthError(
                f"The token is for another application: its audience is not {self._audience}."
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"The token was not issued by {self.issuer}.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidSignatureError:
            raise AuthError(
                "The token's signature does not verify: it was altered, or not signed by the "
                "identity provider."
            ) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"The token is invalid ({type(exc).__name__}).") from None
        return self._who(claims)

    def _who(self, claims: dict[str, Any]) -> Principal:
        cfg = self._cfg
        raw = _values(claim(claims, cfg.groups_claim))
        groups = sorted({cfg.group_map.get(v, v) for v in raw})
        held = set(groups) | set(raw)
        scopes = frozenset(
            scope for scope, grants in cfg.scope_map.items() if "*" in grants or held & set(grants)
        )
        subject = str(claims.get(cfg.subject_claim, ""))[:200]
        return Principal(
            f"user:{subject}",
            frozenset(groups),
            anonymous=False,
            scopes=scopes,
            credential=f"oidc:{urlparse(self.issuer).netloc}",
        )


def build_verifier(cfg: OidcSettings, fetch: Fetch = fetch_json) -> OidcVerifier | None:
    return OidcVerifier(cfg, fetch) if cfg.issuer else None
