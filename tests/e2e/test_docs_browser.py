"""The API docs page renders in a real browser with every non-loopback request refused:
Swagger UI and the favicon come from the service itself (issue 27, finding 2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def offline_page(browser: Any) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page whose requests to anything but loopback are aborted (and recorded)."""
    context = browser.new_context()
    blocked: list[str] = []
    local: list[str] = []

    def route(handle: Any) -> None:
        url = handle.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost", "::1"):
            local.append(url)
            handle.continue_()
        else:
            blocked.append(url)
            handle.abort()

    context.route("**/*", route)
    yield context.new_page(), blocked, local
    context.close()


def test_swagger_ui_renders_from_the_service_alone(
    e2e_server: Server, offline_page: tuple[Any, list[str], list[str]]
) -> None:
    from playwright.sync_api import expect

    page, blocked, local = offline_page
    page.goto(f"{e2e_server.base}/docs")
    # Swagger UI drew the operations from /openapi.json: its script and styles loaded.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Private knowledge Q&A")
    expect(page.locator(".opblock-summary-path", has_text="/v1/ask").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock").count() > 5
    icon = page.evaluate("document.querySelector('link[rel*=icon]').href")
    assert urlsplit(icon).hostname == "127.0.0.1"
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in local)
    assert not blocked, blocked


def test_no_page_loads_a_cdn(e2e_server: Server) -> None:
    import httpx

    page = httpx.get(f"{e2e_server.base}/docs").text
    assert "cdn" not in page.lower() and "/docs/assets/swagger-ui.css" in page
    # ReDoc is not served: its bundle fetches its logo from Redocly's CDN.
    assert httpx.get(f"{e2e_server.base}/redoc").status_code == 404
