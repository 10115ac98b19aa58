"""The helpdesk widget's routes: the script, a demo host page, and CORS for widget origins.

The bundle is built from ``serving/widget/src`` by ``make widget`` (esbuild) and committed as
``serving/widget/dist/widget.js``, so the service needs no Node.js at run time.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse

from rag.config import Settings
from rag.errors import NotFoundError
from serving.apidocs import route_error
from serving.deps import SettingsDep
from serving.widget_auth import allowed_origins, normalize_origin

WIDGET_DIR = Path(__file__).resolve().parent / "widget"
BUNDLE = WIDGET_DIR / "dist" / "widget.js"
DEMO_PAGE = WIDGET_DIR / "demo.html"
CORS_PATHS = ("/v1/ask", "/v1/feedback", "/v1/documents/")
CORS_HEADERS = "content-type, x-widget-token, x-widget-identity, x-request-id"
DEMO_QUESTIONS = {
    "en": [
        "What is the name of the shared print queue?",
        "How many days of annual leave do employees get?",
        "What is the guest Wi-Fi network called?",
    ],
    "zh": ["公司的报销系统叫什么名字？", "费用发生后多少天内必须提交报销申请？"],
}


router = APIRouter(tags=["widget"])


@router.get(
    "/widget.js",
    summary="The embeddable widget script (one tag: see /widget/demo).",
    response_class=FileResponse,
    response_description="The widget bundle (plain JS, about 10 KB gzipped).",
    responses={
        200: {
            "content": {
                "text/javascript": {
                    "example": "/* kb-widget 9553 bytes gzipped */ (() => { ... })();"
                }
            }
        }
    },
)
async def widget_js() -> FileResponse:
    """Embed the helpdesk widget on an intranet page with one tag:
    `<script src="https://kb.example.com/widget.js" data-token="<widget token>"
    async></script>`. The token must allow the page's origin (`widget.tokens`)."""
    return FileResponse(
        BUNDLE,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get(
    "/widget/demo",
    summary="A fake intranet page with the widget on it.",
    response_class=HTMLResponse,
    response_description="An HTML page with the widget on it.",
    responses={
        200: {"content": {"text/html": {"example": "<!doctype html><html>...</html>"}}},
        404: route_error(
            404,
            "not_found",
            "The widget demo page is off. Set widget.demo_page: true and configure a "
            "widget token (see configs/dev.yaml).",
            "The demo page is off (widget.demo_page), or no widget token is configured.",
        ),
    },
)
async def widget_demo(
    settings: SettingsDep,
    lang: Annotated[str, Query(description="en, or zh for the Chinese UI.")] = "en",
) -> HTMLResponse:
    """Try the widget without an intranet: `make demo` prints this page's address."""
    if not settings.widget.demo_page or not settings.widget.tokens:
        raise NotFoundError(
            "The widget demo page is off. Set widget.demo_page: true and configure a "
            "widget token (see configs/dev.yaml)."
        )
    token = settings.widget.tokens[0].token
    page = DEMO_PAGE.read_text(encoding="utf-8")
    page = page.replace("{{TOKEN}}", html.escape(token, quote=True))
    code = "zh" if lang.startswith("zh") else "en"
    page = page.replace("{{LANG}}", code)
    suggestions = json.dumps(DEMO_QUESTIONS[code], ensure_ascii=False)
    page = page.replace("{{SUGGESTIONS}}", html.escape(suggestions, quote=True))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def install_cors(app: FastAPI, settings: Settings) -> None:
    """CORS for the widget's API calls, from the widget tokens' origins only.

    A preflight on a widget route always succeeds (it reveals nothing), so that a page on a
    wrong origin receives the service's clear 403 instead of an opaque network error; a real
    response carries ``Access-Control-Allow-Origin`` only for allowed origins, and for 401/403
    error bodies.
    """
    origins = allowed_origins(settings.widget)

    @app.middleware("http")
    async def widget_cors(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        origin = request.headers.get("origin")
        if origin is None or not request.url.path.startswith(CORS_PATHS):
            return await call_next(request)
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            return Response(
                status_code=204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": CORS_HEADERS,
                    "Access-Control-Max-Age": "600",
                },
            )
        response = await call_next(request)
        if normalize_origin(origin) in origins or response.status_code in (401, 403):
            response.headers.update(cors)
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
        return response
