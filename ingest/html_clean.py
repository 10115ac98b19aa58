"""One pass over a fetched HTML page with the standard library's parser: its links, its
canonical URL, its title, whether robots may index it, and the page without its boilerplate
(navigation, header, footer, sidebars, scripts, styles, forms), for ``rag-ingest crawl``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser

_SKIP = frozenset(
    {
        "nav",
        "header",
        "footer",
        "aside",
        "script",
        "style",
        "noscript",
        "form",
        "template",
        "svg",
        "iframe",
        "button",
        "select",
        "dialog",
    }
)
_SKIP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "menu", "menubar"})
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)


@dataclass
class Page:
    links: list[str] = field(default_factory=list)
    canonical: str = ""
    title: str = ""
    noindex: bool = False
    nofollow: bool = False
    html: str = ""
    """The page without boilerplate, still HTML (headings and tables kept for the parser)."""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.out: list[str] = []
        self.skipping: list[str] = []
        self.in_title = False
        self.title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "a" and values.get("href") and "nofollow" not in values.get("rel", ""):
            self.page.links.append(values["href"])
        elif tag == "link" and "canonical" in values.get("rel", "").lower().split():
            self.page.canonical = values.get("href", "")
        elif tag == "meta" and values.get("name", "").lower() == "robots":
            content = values.get("content", "").lower()
            self.page.noindex |= "noindex" in content or "none" in content
            self.page.nofollow |= "nofollow" in content or "none" in content
        elif tag == "title":
            self.in_title = True
        if self.skipping:
            if tag == self.skipping[-1] or (tag in _SKIP and tag not in _VOID):
                self.skipping.append(tag)
            return
        if tag in _SKIP or values.get("role", "").lower() in _SKIP_ROLES:
            if tag not in _VOID:
                self.skipping.append(tag)
            return
        self.out.append(self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if self.skipping:
            if tag in self.skipping:
                while self.skipping and self.skipping.pop() != tag:
                    pass
            return
        if tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if not self.skipping:
            self.out.append(html.escape(data, quote=False))


def read_page(text: str) -> Page:
    """Links (as written), canonical URL, title, robots directives and the cleaned page."""
    reader = _Reader()
    reader.feed(text)
    reader.close()
    page = reader.page
    page.title = " ".join("".join(reader.title).split())[:300]
    page.html = "".join(reader.out)
    return page
