"""The widget in a real headless Chromium (Debian's, driven by Playwright) against a real
server process: open, ask, stream, cite, open the source, rate, reload, keyboard, phone
width, Chinese UI (with visible, named rating icons), a refused origin, no HTML
injection, and an expired sign-in refreshed through the site's identity callback. Screenshots go to
``test-artifacts/``."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts"
QUESTION = "What is the name of the shared print queue?"
DECLINED = "What is the capital of Mongolia?"
ROOT = "document.querySelector('[data-kb-widget]').shadowRoot"


@pytest.fixture(scope="module")
def server(e2e_server: Server) -> tuple[str, Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    return e2e_server.base, e2e_server.workdir


def answer_stream(done: dict[str, Any]) -> str:
    """The SSE body /v1/ask sends for ``done``: its citations, its text as one delta, done."""
    return (
        f"event: citations\ndata: {json.dumps({'citations': done['citations']})}\n\n"
        f"event: delta\ndata: {json.dumps({'text': done['answer']})}\n\n"
        f"event: done\ndata: {json.dumps(done)}\n\n"
    )


def serve_answer(page: Any, done: dict[str, Any]) -> None:
    """The page's /v1/ask answers with ``done`` (the widget's rendering under test)."""
    body = answer_stream(done)
    page.route(
        "**/v1/ask",
        lambda route: route.fulfill(
            status=200, headers={"content-type": "text/event-stream"}, body=body
        ),
    )


def open_widget(page: Any) -> None:
    from playwright.sync_api import expect

    page.locator(".kbw-launcher").click()
    expect(page.locator(".kbw-panel")).to_be_visible()


def test_ask_stream_cite_rate_and_reload(server: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    base, workdir = server
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{base}/widget/demo")
    open_widget(page)
    # The host page's `button { background: hotpink }` does not reach inside the widget.
    send = page.locator(".kbw-form button")
    assert send.evaluate("b => getComputedStyle(b).backgroundColor") != "rgb(255, 105, 180)"
    page.screenshot(path=str(ARTIFACTS / "widget-desktop.png"))

    page.evaluate(
        f"""() => {{
        const root = {ROOT};
        window.__lengths = new Set();
        new MutationObserver(() => {{
            const a = [...root.querySelectorAll('.kbw-answer')].pop();
            const body = a && a.querySelector('.kbw-body');
            if (body && !a.querySelector('.kbw-actions'))
                window.__lengths.add(body.textContent.length);
        }}).observe(root.querySelector('.kbw-log'),
                    {{subtree: true, childList: true, characterData: true}});
        }}"""
    )
    page.locator(".kbw-form textarea").fill(QUESTION)
    page.keyboard.press("Enter")
    answer = page.locator(".kbw-answer").last
    expect(answer.locator(".kbw-actions")).to_be_visible(timeout=120_000)
    partial = page.evaluate("[...window.__lengths].filter(n => n > 0).length")
    assert partial >= 2, "the answer did not stream in pieces"
    answer_text = answer.locator(".kbw-body").inner_text()
    assert answer_text.strip()

    sources = answer.locator(".kbw-sources button")
    assert sources.count() >= 1
    titles = [sources.nth(i).inner_text() for i in range(sources.count())]
    assert any("print" in t.lower() for t in titles), titles
    sources.first.click()
    viewer = page.locator(".kbw-viewer")
    expect(viewer.locator("h3")).to_be_visible()
    expect(viewer.locator(".kbw-passage.kbw-hl")).to_have_count(1)
    page.keyboard.press("Escape")  # Esc leaves the source view first, not the widget
    expect(viewer).to_be_hidden()
    expect(page.locator(".kbw-panel")).to_be_visible()

    answer.locator(".kbw-rate-down").click()
    page.locator(".kbw-comment input").fill("e2e: too vague")
    page.locator(".kbw-comment button").click()
    expect(answer.locator("[role=status]")).to_have_text("Thanks for the feedback.")
    with sqlite3.connect(workdir / "state.sqlite3") as db:
        rows = db.execute("SELECT rating, comment FROM feedback").fetchall()
    assert rows == [("down", "e2e: too vague")]

    # A follow-up in the same conversation: the widget sends its conversation id.
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data or "{}")) if r.url.endswith("/v1/ask") else None
        ),
    )
    page.locator(".kbw-form textarea").fill("And who should I contact about it?")
    page.keyboard.press("Enter")
    expect(page.locator(".kbw-answer").nth(1).locator(".kbw-actions")).to_be_visible(
        timeout=120_000
    )
    assert sent and sent[-1]["conversation_id"]
    conversation = page.evaluate(
        "Object.values(sessionStorage).map(JSON.parse).find(s => s.messages).conversationId"
    )
    assert conversation == sent[-1]["conversation_id"]

    page.reload()
    expect(page.locator(".kbw-panel")).to_be_visible()  # it stays open across the reload
    expect(page.locator(".kbw-user").first).to_have_text(QUESTION)
    assert page.locator(".kbw-answer .kbw-body").first.inner_text() == answer_text
    expect(page.locator(".kbw-answer")).to_have_count(2)
    expect(page.locator(".kbw-rate-down").first).to_have_attribute("aria-pressed", "true")


def test_keyboard_focus_trap_and_escape(server: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    page.goto(f"{base}/widget/demo")
    page.locator(".kbw-launcher").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".kbw-panel")).to_be_visible()
    assert page.locator(".kbw-panel").get_attribute("role") == "dialog"
    for _ in range(12):
        page.keyboard.press("Tab")
        inside = page.evaluate(f"{ROOT}.activeElement?.closest('.kbw-panel') != null")
        assert inside, "focus left the open panel"
    page.keyboard.press("Escape")
    expect(page.locator(".kbw-panel")).to_be_hidden()
    assert page.evaluate(f"{ROOT}.activeElement?.className") == "kbw-launcher"


def test_phone_width_and_chinese(server: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    base, _ = server
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{base}/widget/demo?lang=zh")
    open_widget(page)
    box = page.locator(".kbw-panel").bounding_box()
    assert box is not None and box["width"] >= 385 and box["height"] >= 800
    assert page.locator(".kbw-head h2").inner_text() == "咨询服务台"
    assert page.locator(".kbw-suggest button").first.inner_text() == "公司的报销系统叫什么名字？"
    page.locator(".kbw-suggest button").first.click()
    answer = page.locator(".kbw-answer").last
    expect(answer.locator(".kbw-actions")).to_be_visible(timeout=120_000)
    # The rating buttons are drawn icons with accessible names, not emoji (Debian's chromium
    # has no emoji font: emoji showed as empty boxes).
    assert_icon_button(answer.locator(".kbw-rate-up"), "有帮助")
    assert_icon_button(answer.locator(".kbw-rate-down"), "没有帮助")
    page.screenshot(path=str(ARTIFACTS / "widget-phone.png"))


def assert_icon_button(button: Any, label: str) -> None:
    """``button`` is named ``label`` and shows a visible, drawn icon."""
    from PIL import Image
    from playwright.sync_api import expect

    expect(button).to_be_visible()
    assert button.get_attribute("aria-label") == label
    assert button.get_attribute("title") == label
    assert button.inner_text().strip() == ""  # no emoji or other text glyph
    icon = button.locator("svg")
    assert icon.get_attribute("aria-hidden") == "true"
    box = icon.bounding_box()
    assert box is not None and box["width"] >= 12 and box["height"] >= 12, box
    # Rendered: the icon's strokes differ clearly from the button's background.
    shot = Image.open(io.BytesIO(icon.screenshot())).convert("L")
    pixels = list(shot.getdata())
    background = sorted(pixels)[len(pixels) // 2]
    drawn = sum(1 for p in pixels if abs(p - background) > 80)
    assert drawn >= 15, f"the {label} icon drew {drawn} pixels"


def test_refused_origin_is_explained(server: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    page.goto(base.replace("127.0.0.1", "localhost") + "/widget/demo")  # another origin
    open_widget(page)
    page.locator(".kbw-form textarea").fill(QUESTION)
    page.keyboard.press("Enter")
    expect(page.locator(".kbw-error")).to_contain_text("not allowed on this site")


def test_model_and_document_html_is_shown_as_text(server: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    evil = '<img src=x onerror="window.__pwned=1"> **bold** [1] <script>window.__pwned=2</script>'
    done = {"answer_id": "x", "answer": evil, "citations": [], "declined": False}
    serve_answer(page, done)
    page.goto(f"{base}/widget/demo")
    open_widget(page)
    page.locator(".kbw-form textarea").fill("anything")
    page.keyboard.press("Enter")
    answer = page.locator(".kbw-answer").last
    expect(answer).to_contain_text("<img src=x")
    assert answer.locator("img, script").count() == 0
    assert answer.locator("strong").inner_text() == "bold"
    assert page.evaluate("window.__pwned") is None


def test_a_cited_web_page_opens_its_original_and_only_web_addresses_link(
    server: tuple[str, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    cited = [
        {
            "n": 1,
            "doc_id": "web",
            "title": "VPN guide",
            "source": "crawl/x.html",
            "page": None,
            "section": "",
            "chunk_id": "web:1",
            "snippet": "VPN",
            "url": "https://intranet.example/vpn",
        },
        {
            "n": 2,
            "doc_id": "bad",
            "title": "Odd link",
            "source": "crawl/y.html",
            "page": None,
            "section": "",
            "chunk_id": "bad:1",
            "snippet": "x",
            "url": "javascript:alert(1)",
        },
    ]
    done = {"answer_id": "x", "answer": "See [1] and [2].", "citations": cited, "declined": False}
    serve_answer(page, done)
    source = {
        "doc_id": "web",
        "title": "VPN guide",
        "source": "crawl/x.html",
        "passages": [{"chunk_id": "web:1", "section": "", "page": None, "text": "VPN"}],
    }
    page.route(
        "**/v1/documents/*/source",
        lambda route: route.fulfill(
            status=200, headers={"content-type": "application/json"}, body=json.dumps(source)
        ),
    )
    page.goto(f"{base}/widget/demo")
    open_widget(page)
    page.locator(".kbw-form textarea").fill("vpn?")
    page.keyboard.press("Enter")
    answer = page.locator(".kbw-answer").last
    expect(answer.locator(".kbw-sources button")).to_have_count(2)
    viewer = page.locator(".kbw-viewer")
    answer.locator(".kbw-sources button").first.click()
    link = viewer.locator("a.kbw-open")
    expect(link).to_have_attribute("href", "https://intranet.example/vpn")
    expect(link).to_have_attribute("target", "_blank")
    assert "noopener" in (link.get_attribute("rel") or "")
    page.keyboard.press("Escape")
    answer.locator(".kbw-sources button").nth(1).click()
    expect(viewer.locator("h3")).to_be_visible()
    assert viewer.locator("a").count() == 0  # a javascript: address is never a link


def test_inline_mode_mounts_into_the_page(server: tuple[str, Path], browser: Any) -> None:
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    page.goto(f"{base}/widget/demo")
    token = page.locator("script[data-token]").get_attribute("data-token")
    page.evaluate(
        """([token, base]) => {
            const box = document.createElement('div');
            box.id = 'kb-inline';
            box.style.height = '500px';
            document.querySelector('main').appendChild(box);
            window.KBWidget.mount({token, base, mode: 'inline', target: '#kb-inline',
                                   title: 'IT help', color: '#0a7d38'});
        }""",
        [token, base],
    )
    inline = page.locator("#kb-inline .kbw-panel")
    expect(inline).to_be_visible()
    assert inline.get_attribute("role") == "region"
    assert page.locator("#kb-inline .kbw-head h2").inner_text() == "IT help"
    colour = page.locator("#kb-inline .kbw-head").evaluate(
        "n => getComputedStyle(n).backgroundColor"
    )
    assert colour == "rgb(10, 125, 56)"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("abort", "Can't reach the knowledge service"),
        ("429", "Try again in 7 seconds"),
        ("503", "The service is starting up"),
    ],
)
def test_service_trouble_is_explained(
    server: tuple[str, Path], browser: Any, reply: str, message: str
) -> None:
    from playwright.sync_api import expect

    base, _ = server

    def handle(route: Any) -> None:
        if reply == "abort":
            route.abort("connectionrefused")
            return
        error = {"error": {"code": "x", "message": "busy"}}
        route.fulfill(
            status=int(reply),
            headers={"content-type": "application/json", "retry-after": "7"},
            body=json.dumps(error),
        )

    page = browser.new_context().new_page()
    page.route("**/v1/ask", handle)
    page.goto(f"{base}/widget/demo")
    open_widget(page)
    page.locator(".kbw-form textarea").fill("anything")
    page.keyboard.press("Enter")
    expect(page.locator(".kbw-error")).to_contain_text(message)
    expect(page.locator(".kbw-form button")).to_be_enabled()  # the user can retry


def test_an_expired_sign_in_is_refreshed_through_the_identity_callback(
    server: tuple[str, Path], browser: Any
) -> None:
    """Single sign-on: the site's callback hands the widget its identity provider's token.
    When the service answers 401 (the token expired), the widget calls the callback again
    with ``{refresh: true}`` and retries once with the fresh token."""
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    done = {"answer_id": "x", "answer": "Signed in again.", "citations": [], "declined": False}
    body = answer_stream(done)
    sent: list[str | None] = []

    def reply(route: Any) -> None:
        identity = route.request.headers.get("x-widget-identity")
        sent.append(identity)
        if identity == "expired-provider-token":
            error = {"error": {"code": "unauthorized", "message": "The token has expired."}}
            route.fulfill(
                status=401,
                headers={"content-type": "application/json", "www-authenticate": "Bearer"},
                body=json.dumps(error),
            )
        else:
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)

    page.route("**/v1/ask", reply)
    page.goto(f"{base}/widget/demo")
    token = page.locator("script[data-token]").get_attribute("data-token")
    page.evaluate(
        """([token, base]) => {
            window.__refresh = [];
            const box = document.createElement('div');
            box.id = 'kb-sso';
            box.style.height = '500px';
            document.querySelector('main').appendChild(box);
            window.KBWidget.mount({token, base, mode: 'inline', target: '#kb-sso',
                identity: async (o) => {
                    window.__refresh.push(Boolean(o && o.refresh));
                    return o && o.refresh ? 'fresh-provider-token' : 'expired-provider-token';
                }});
        }""",
        [token, base],
    )
    page.locator("#kb-sso .kbw-form textarea").fill("Am I signed in?")
    page.locator("#kb-sso .kbw-form textarea").press("Enter")
    expect(page.locator("#kb-sso .kbw-answer").last).to_contain_text("Signed in again.")
    assert sent == ["expired-provider-token", "fresh-provider-token"]
    assert page.evaluate("window.__refresh") == [False, True]
    assert page.locator("#kb-sso .kbw-error").count() == 0


def test_signed_in_users_get_their_groups_answers_in_the_browser(
    server: tuple[str, Path], browser: Any, oidc_provider: Any
) -> None:
    """The real provider's tokens, through the site's identity callback, on a widget token
    that grants nothing by itself: alice (/staff -> everyone) gets a cited answer from the
    knowledge base; carol (no groups) gets none of its documents."""
    from playwright.sync_api import expect

    from tests.e2e.conftest import SSO_WIDGET_TOKEN

    base, _ = server
    for user, cited in (("alice", True), ("carol", False)):
        page = browser.new_context().new_page()
        page.goto(f"{base}/widget/demo")
        page.evaluate(
            """([token, base, id]) => {
                const box = document.createElement('div');
                box.id = 'kb-sso';
                box.style.height = '500px';
                document.querySelector('main').appendChild(box);
                window.KBWidget.mount({token, base, mode: 'inline', target: '#kb-sso',
                                       identity: async () => id});
            }""",
            [SSO_WIDGET_TOKEN, base, oidc_provider.token(user)],
        )
        page.locator("#kb-sso .kbw-form textarea").fill(QUESTION)
        page.locator("#kb-sso .kbw-form textarea").press("Enter")
        answer = page.locator("#kb-sso .kbw-answer").last
        expect(answer.locator(".kbw-actions")).to_be_visible(timeout=120_000)
        assert page.locator("#kb-sso .kbw-error").count() == 0, user
        assert (answer.locator(".kbw-sources button").count() >= 1) is cited, user


def test_a_declined_answer_is_handed_to_a_person_and_the_ticket_shown(
    e2e_server: Server, browser: Any
) -> None:
    """'Ask a person' under a declined answer: the hand-off reaches the helpdesk's webhook
    (with the question and the transcript) and the widget shows the ticket it returned; a
    good answer offers no hand-off until it is thumbed down."""
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    page.goto(f"{e2e_server.base}/widget/demo")
    open_widget(page)
    page.locator(".kbw-form textarea").fill(DECLINED)
    page.keyboard.press("Enter")
    answer = page.locator(".kbw-answer").last
    expect(answer).to_have_class(re.compile("kbw-declined"), timeout=120_000)
    answer.locator(".kbw-handoff").click()
    answer.locator(".kbw-handoff-form textarea").fill("e2e: I need this for a trip")
    answer.locator(".kbw-handoff-form input").fill("e2e@example.com")
    answer.locator(".kbw-handoff-form button").click()
    status = answer.locator(".kbw-handoff-status")
    expect(status).to_have_text(re.compile(r"Sent to the helpdesk: ticket HD-\d+\."))
    ticket = status.inner_text().split("ticket ")[1].rstrip(".")
    [post] = [p for p in e2e_server.helpdesk.posts() if p["ticket"] == ticket]
    assert post["valid"] and post["body"]["question"] == DECLINED
    assert post["body"]["reason"] == "declined"
    assert post["body"]["comment"] == "e2e: I need this for a trip"
    assert post["body"]["transcript"][0] == {"role": "user", "text": DECLINED}
    page.screenshot(path=str(ARTIFACTS / "widget-handoff.png"))

    page.reload()  # what became of the hand-off stays with the answer
    expect(page.locator(".kbw-handoff-status")).to_have_text(status.inner_text())

    page.locator(".kbw-form textarea").fill(QUESTION)
    page.keyboard.press("Enter")
    good = page.locator(".kbw-answer").last
    expect(good.locator(".kbw-actions")).to_be_visible(timeout=120_000)
    assert "kbw-declined" not in (good.get_attribute("class") or "")
    expect(good.locator(".kbw-handoff")).to_have_count(0)
    good.locator(".kbw-rate-down").click()
    good.locator(".kbw-comment button").click()
    expect(good.locator(".kbw-handoff")).to_be_visible()


def test_a_curated_answer_shows_who_curated_it_and_opens_without_a_document(
    e2e_server: Server, browser: Any
) -> None:
    import httpx
    from playwright.sync_api import expect

    question = "How do I borrow the office projector?"
    made = httpx.post(
        f"{e2e_server.base}/v1/curated",
        json={
            "question": question,
            "answer": "Ask reception for the projector; it goes back by 6 pm.",
            "groups": ["everyone"],
            "owner": "facilities@example.com",
        },
    )
    assert made.status_code == 200, made.text
    page = browser.new_context().new_page()
    page.goto(f"{e2e_server.base}/widget/demo")
    open_widget(page)
    page.locator(".kbw-form textarea").fill(question)
    page.keyboard.press("Enter")
    answer = page.locator(".kbw-answer").last
    expect(answer.locator(".kbw-actions")).to_be_visible(timeout=60_000)
    expect(answer.locator(".kbw-body")).to_contain_text("Ask reception for the projector")
    source = answer.locator(".kbw-sources button")
    expect(source).to_have_count(1)
    expect(source).to_contain_text("Curated by facilities@example.com")
    source.click()
    viewer = page.locator(".kbw-viewer")
    expect(viewer.locator(".kbw-meta")).to_contain_text("Curated by facilities@example.com")
    expect(viewer.locator(".kbw-passage")).to_contain_text("goes back by 6 pm")
    expect(viewer.locator("[role=alert]")).to_have_count(0)


def test_a_cached_answer_is_marked_as_answered_before(
    server: tuple[str, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    base, _ = server
    page = browser.new_context().new_page()
    done = {
        "answer_id": "x",
        "answer": "Use the Follow-Me queue.",
        "citations": [],
        "declined": False,
        "cached": True,
        "origin": "cache",
    }
    serve_answer(page, done)
    page.goto(f"{base}/widget/demo")
    open_widget(page)
    page.locator(".kbw-form textarea").fill("print queue?")
    page.keyboard.press("Enter")
    expect(page.locator(".kbw-answer .kbw-cached")).to_have_text(re.compile("Answered before"))
