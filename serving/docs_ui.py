"""The API docs pages, served with their assets by the service itself (no CDN).

FastAPI's ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a public CDN and the
favicon from FastAPI's site: blank on an air-gapped host, and a request leaving the machine.
The ``fastapi-offline`` package (PyPI) ships those files (Swagger UI 5, the favicon); this
module (its only user) serves them under ``/docs/assets`` and renders ``/docs`` with
FastAPI's own HTML helper pointing there. ReDoc is not served: even from local files its
bundle loads its logo from Redocly's CDN (the browser test caught it).
``server.public_docs: false`` leaves the page, its assets and ``/openapi.json`` out.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def assets_dir() -> Path:
    """The folder of Swagger UI's and the favicon's files (in the installed
    ``fastapi_offline`` package; found without importing it)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The fastapi-offline package (the API docs' assets) is not installed: run make setup."
        )
    return Path(spec.origin).parent / "static"


def install(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and its assets, all from this service. The app must be created
    with ``docs_url=None, redoc_url=None``."""
    folder = assets_dir()
    app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")
    title = app.title

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - API",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
