"""A real OpenID provider process for the tests (issue 22), on 127.0.0.1.

Its keys and tokens come from ``joserfc`` (a JOSE implementation of its own, not the PyJWT
the service verifies with), served by uvicorn: discovery
(``/.well-known/openid-configuration``), the JWKS, and a token endpoint for the resource
owner password grant (what a test can drive without a browser; the authorization-code flow
is the site's business). Like a provider's admin console it can rotate its signing key
(``POST /admin/rotate``) and issue tokens with a set lifetime, a later ``nbf`` or another
``iss`` (misconfigured clients and clocks). ``GET /admin/stats`` counts JWKS fetches.

    python -m tests.oidc_provider --port 8123 --users users.json

Registered as a pytest plugin in ``tests/conftest.py``: ``oidc_provider`` (one per session).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import OWN_GROUP, stop_group
from tests.servers import free_port

CLIENTS = ("kb-service", "other-app")
USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-pw", "groups": ["/staff", "engineering"], "email": "alice@x"},
    "bob": {
        "password": "bob-pw",
        "groups": ["/staff", "cn=HR,ou=Groups,dc=example,dc=com"],
        "email": "bob@x",
    },
    "carol": {"password": "carol-pw", "groups": [], "email": "carol@x"},
}


def create_app(issuer: str, users: dict[str, dict[str, Any]]) -> Any:
    from joserfc import jwt
    from joserfc.jwk import ECKey, KeySet, RSAKey
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def rsa() -> Any:
        return RSAKey.generate_key(
            2048, parameters={"kid": f"rsa-{uuid.uuid4().hex[:8]}", "alg": "RS256", "use": "sig"}
        )

    state: dict[str, Any] = {
        "rsa": rsa(),
        "ec": ECKey.generate_key("P-256", parameters={"kid": "ec-1", "alg": "ES256", "use": "sig"}),
        "jwks_fetches": 0,
    }

    async def discovery(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": issuer,
                "jwks_uri": f"{issuer}/jwks",
                "token_endpoint": f"{issuer}/token",
                "grant_types_supported": ["password"],
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def jwks(_: Request) -> JSONResponse:
        state["jwks_fetches"] += 1
        keys = KeySet([state["rsa"], state["ec"]])
        return JSONResponse(keys.as_dict(private=False))

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        client, user = str(form.get("client_id", "")), users.get(str(form.get("username")))
        if form.get("grant_type") != "password" or client not in CLIENTS:
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if user is None or user["password"] != form.get("password"):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        lifetime = int(str(form.get("lifetime", "300")))
        claims = {
            "iss": str(form.get("issuer") or issuer),
            "sub": str(form.get("username")),
            "aud": client,
            "iat": now,
            "nbf": now + int(str(form.get("not_before_in", "0"))),
            "exp": now + lifetime,
            "email": user["email"],
            "groups": user["groups"],
            "realm_access": {"roles": user["groups"]},
        }
        key = state["ec"] if form.get("alg") == "ES256" else state["rsa"]
        header = {"alg": key.get("alg"), "kid": key.kid, "typ": "JWT"}
        signed = jwt.encode(header, claims, key)
        return JSONResponse(
            {
                "id_token": signed,
                "access_token": signed,
                "token_type": "Bearer",
                "expires_in": lifetime,
            }
        )

    async def rotate(_: Request) -> JSONResponse:
        old = state["rsa"].kid
        state["rsa"] = rsa()  # the old key is no longer published
        return JSONResponse({"retired": old, "current": state["rsa"].kid})

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse({"jwks_fetches": state["jwks_fetches"], "kid": state["rsa"].kid})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/token", token, methods=["POST"]),
            Route("/admin/rotate", rotate, methods=["POST"]),
            Route("/admin/stats", stats),
        ]
    )


@dataclass
class OidcProvider:
    issuer: str
    proc: subprocess.Popen[bytes]

    def token(self, user: str, **options: Any) -> str:
        """An ID token for ``user`` (their password is known here), from the real endpoint."""
        form = {
            "grant_type": "password",
            "client_id": options.pop("client_id", "kb-service"),
            "username": user,
            "password": USERS[user]["password"],
            **{k: str(v) for k, v in options.items()},
        }
        resp = httpx.post(f"{self.issuer}/token", data=form, timeout=10)
        assert resp.status_code == 200, resp.text
        value: str = resp.json()["id_token"]
        return value

    def jwks(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.issuer}/jwks", timeout=10).json()
        return result

    def rotate(self) -> dict[str, str]:
        result: dict[str, str] = httpx.post(f"{self.issuer}/admin/rotate", timeout=10).json()
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.issuer}/admin/stats", timeout=10).json()
        return result


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    folder = tmp_path_factory.mktemp("oidc")
    port = free_port()
    log = (folder / "provider.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.oidc_provider", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **OWN_GROUP,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).is_success:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            output = (folder / "provider.log").read_text()
            pytest.fail(f"the OpenID provider did not start:\n{output}")
        time.sleep(0.1)
    try:
        yield OidcProvider(issuer, proc)
    finally:
        stop_group(proc)
        log.close()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="A test OpenID provider on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", type=Path, help="JSON: {user: {password, groups, email}}")
    args = parser.parse_args()
    users = json.loads(args.users.read_text()) if args.users else USERS
    issuer = f"http://127.0.0.1:{args.port}"
    uvicorn.run(create_app(issuer, users), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
