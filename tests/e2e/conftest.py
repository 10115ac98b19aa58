"""One real server process (``python -m serving.cli``) for all end-to-end tests: starting the
engine dominates their cost, so it is started once, with the widget configured."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serverproc import run_server
from tests.handoff_receivers import Receivers, handoff_env, receivers
from tests.servers import free_port

WIDGET_TOKEN = "e2e-widget-token-000001"
SSO_WIDGET_TOKEN = "e2e-widget-sso-token-01"


def chromium_path() -> str:
    found = os.environ.get("RAG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail(
            "Debian's chromium is not installed; `make test` installs it (scripts/setup.sh), "
            "or run: apt-get install -y chromium"
        )
    return found


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (no browser download), one for the
    end-to-end tests. Package scope, not session: Playwright's sync API keeps an event loop
    running on the main thread while it is open, and pytest-asyncio cannot run the async
    tests that follow (RuntimeError: Runner.run() cannot be called from a running event loop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@dataclass(frozen=True)
class Server:
    base: str
    port: int
    workdir: Path
    helpdesk: Receivers
    """Where its hand-offs go: a webhook receiver and an SMTP server, both running."""


@pytest.fixture(scope="session")
def e2e_stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def e2e_server(
    sample_kb: Any,
    tmp_path_factory: pytest.TempPathFactory,
    oidc_provider: Any,
    e2e_stack: contextlib.ExitStack,
) -> Iterator[Server]:
    """The service process the browser tests use: the sample knowledge base, the demo page,
    a widget token for anonymous visitors (groups: everyone) and one for signed-in users only
    (no groups of its own), with sign-in through the session's OpenID provider, and hand-offs
    to a real webhook receiver and SMTP server."""
    workdir = tmp_path_factory.mktemp("e2e-server")
    helpdesk = e2e_stack.enter_context(
        receivers(tmp_path_factory.mktemp("e2e-helpdesk"), free_port(), free_port())
    )
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        "RAG_WIDGET__DEMO_PAGE": "true",
        "RAG_WIDGET__TOKENS": (
            f"[{{token: {WIDGET_TOKEN}, name: e2e, origins: ['{origin}'], groups: [everyone]}}, "
            f"{{token: {SSO_WIDGET_TOKEN}, name: sso, origins: ['{origin}'], groups: []}}]"
        ),
        "RAG_AUTH__OIDC__ISSUER": oidc_provider.issuer,
        "RAG_AUTH__OIDC__AUDIENCE": "kb-service",
        "RAG_AUTH__OIDC__GROUP_MAP": '{"/staff": everyone}',
        **helpdesk.env(),
        **handoff_env(helpdesk),
    }
    with run_server(sample_kb.store.path, workdir, port, env) as base:
        yield Server(base, port, workdir, helpdesk)
