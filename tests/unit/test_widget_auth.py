"""Widget tokens are bound to origins and groups; signed identities are checked strictly."""

from __future__ import annotations

import base64
import json
import time

import pytest

from rag.config import WidgetSettings
from serving.widget_auth import (
    InvalidIdentityError,
    InvalidWidgetTokenError,
    OriginNotAllowedError,
    sign_identity,
    verify_identity,
    widget_principal,
)

SECRET = b"s3cret-shared-with-the-intranet-0001"  # HS256 wants >= 32 bytes
TOKEN = "public-widget-token-0001"


def settings() -> WidgetSettings:
    return WidgetSettings.model_validate(
        {
            "tokens": [
                {
                    "token": TOKEN,
                    "name": "intranet",
                    "origins": ["https://intranet.example.com/"],
                    "groups": ["everyone"],
                    "identity_secret_env": "KB_TEST_SECRET",
                },
                {"token": "other-token-without-secret", "origins": ["https://b.example"]},
            ]
        }
    )


ENV = {"KB_TEST_SECRET": SECRET.decode()}


def test_identity_round_trip() -> None:
    who = verify_identity(sign_identity(SECRET, "alice", ["hr", "everyone"]), SECRET)
    assert who.subject == "alice"
    assert who.groups == ("hr", "everyone")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.split(".")[0] + "." + _claims(sub="mallory") + "." + t.split(".")[2],
        lambda t: t.replace(".", "", 1),  # not three parts
        lambda t: "e30." + t.split(".", 1)[1],  # header {} without alg
        lambda t: "not a token",
    ],
)
def test_tampered_identities_are_refused(mangle: object) -> None:
    token = sign_identity(SECRET, "alice", ["hr"])
    with pytest.raises(InvalidIdentityError):
        verify_identity(mangle(token), SECRET)  # type: ignore[operator]


def _claims(**claims: object) -> str:
    body = {"sub": "alice", "groups": ["hr"], "exp": int(time.time()) + 60, **claims}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def test_expired_and_wrong_secret_are_refused() -> None:
    old = sign_identity(SECRET, "alice", ["hr"], ttl_s=60, now=time.time() - 3600)
    with pytest.raises(InvalidIdentityError):
        verify_identity(old, SECRET)
    with pytest.raises(InvalidIdentityError):
        verify_identity(
            sign_identity(b"another-secret-of-the-same-length!", "alice", ["hr"]), SECRET
        )
    far = sign_identity(SECRET, "alice", ["hr"], ttl_s=30 * 24 * 3600)
    with pytest.raises(InvalidIdentityError):
        verify_identity(far, SECRET)


def test_anonymous_visitor_gets_the_token_groups_only_from_its_origins() -> None:
    who = widget_principal(settings(), TOKEN, "https://INTRANET.example.com", None, ENV)
    assert who.anonymous and who.groups == {"everyone"}
    assert who.subject == "widget:intranet"
    with pytest.raises(OriginNotAllowedError):
        widget_principal(settings(), TOKEN, "https://evil.example", None, ENV)
    with pytest.raises(OriginNotAllowedError):
        widget_principal(settings(), TOKEN, None, None, ENV)
    with pytest.raises(InvalidWidgetTokenError):
        widget_principal(settings(), "guessed-token-xxxxxxxx", "https://intranet.example.com", None)


def test_signed_identity_adds_the_users_groups() -> None:
    ident = sign_identity(SECRET, "alice", ["hr"])
    who = widget_principal(settings(), TOKEN, "https://intranet.example.com", ident, ENV)
    assert not who.anonymous
    assert who.subject == "user:alice"
    assert who.groups == {"hr", "everyone"}
    with pytest.raises(InvalidIdentityError):  # the secret is not configured on the server
        widget_principal(settings(), TOKEN, "https://intranet.example.com", ident, {})
    with pytest.raises(InvalidIdentityError):  # this token takes no identities at all
        widget_principal(settings(), "other-token-without-secret", "https://b.example", ident, ENV)


def _token(header: dict[str, object], claims: dict[str, object], secret: bytes = SECRET) -> str:
    """A JWT built by hand, so the service's checks (not PyJWT's encoder) are what is tested."""
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{part(sig)}"


HS256 = {"alg": "HS256", "typ": "JWT"}


def _valid() -> dict[str, object]:
    return {"sub": "alice", "groups": ["hr"], "exp": int(time.time()) + 60, "aud": "kb-widget"}


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        (HS256, {**_valid(), "exp": float("nan")}),  # NaN compares false to every bound
        (HS256, {**_valid(), "exp": "tomorrow"}),
        ({"alg": "none", "typ": "JWT"}, _valid()),
        ({"alg": "HS512", "typ": "JWT"}, _valid()),
        (HS256, {k: v for k, v in _valid().items() if k != "aud"}),  # no audience
        (HS256, {**_valid(), "aud": "another-service"}),
        (HS256, {k: v for k, v in _valid().items() if k != "exp"}),  # never expires
        (HS256, {**_valid(), "nbf": int(time.time()) + 3600}),  # not valid yet
        (HS256, {**_valid(), "sub": ""}),
        (HS256, {**_valid(), "groups": "hr"}),
    ],
)
def test_malformed_claims_and_algorithms_are_refused(
    header: dict[str, object], claims: dict[str, object]
) -> None:
    with pytest.raises(InvalidIdentityError):
        verify_identity(_token(header, claims), SECRET)


def test_junk_signatures_are_refused() -> None:
    good = _token(HS256, _valid())
    head, body, _ = good.split(".")
    for sig in ["", "AAAA", "!!!not-base64!!!", good.split(".")[2][::-1]]:
        with pytest.raises(InvalidIdentityError):
            verify_identity(f"{head}.{body}.{sig}", SECRET)
    assert verify_identity(good, SECRET).subject == "alice"


def test_audience_and_issuer_come_from_the_token_config() -> None:
    theirs = sign_identity(SECRET, "alice", ["hr"], audience="intranet-kb", issuer="https://idp")
    assert verify_identity(theirs, SECRET, audience="intranet-kb", issuer="https://idp").groups
    with pytest.raises(InvalidIdentityError):
        verify_identity(theirs, SECRET)  # the default audience
    with pytest.raises(InvalidIdentityError):
        verify_identity(theirs, SECRET, audience="intranet-kb", issuer="https://other")
    no_issuer = sign_identity(SECRET, "alice", ["hr"], audience="intranet-kb")
    with pytest.raises(InvalidIdentityError):  # an issuer is configured: it is required
        verify_identity(no_issuer, SECRET, audience="intranet-kb", issuer="https://idp")
