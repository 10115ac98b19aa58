"""The generated intranet web site of the crawl tests and bench/crawl.py: 250 topic pages
with navigation, header and footer, a page only the sitemap lists, a PDF, an HR page, a
1.5 MB page, a robots-disallowed page, a redirect loop, a redirect, a canonical duplicate
and a link off the site, served by tests/site_server.py as a real HTTP server process that
requires a bearer token.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import KB_DIR, REPO
from tests.servers import free_port

PAGES = 250
TOKEN = "s3cret-intranet"
BOILERPLATE = ("NAVTOKEN", "BANNERTOKEN", "FOOTTOKEN")


def code_of(n: int) -> str:
    return f"TOPIC{n:03d}-{(n * 7919) % 100000:05d}"


def page_html(n: int, extra: str = "") -> str:
    links = [f"/pages/page-{(n + 1) % PAGES:03d}.html", f"/pages/page-{(n * 7) % PAGES:03d}.html"]
    canonical = '<link rel="canonical" href="/pages/page-005.html">' if n == 5 else ""
    return (
        f"<!doctype html><html><head><title>Topic {n}</title>{canonical}</head><body>"
        '<nav><a href="/">Home</a> <a href="/pages/page-000.html">Index</a> NAVTOKEN</nav>'
        "<header>Intranet BANNERTOKEN</header>"
        f"<main><h1>Topic {n}</h1><p>The internal code for topic {n} is {code_of(n)}. "
        f"Ask the service desk about topic {n} if the code does not work.{extra}</p>"
        + "".join(f'<a href="{link}">more</a> ' for link in links)
        + "</main><footer>Footer FOOTTOKEN 2026</footer></body></html>"
    )


def build_site(folder: Path, port: int) -> None:
    (folder / "pages").mkdir(parents=True)
    for n in range(PAGES):
        (folder / "pages" / f"page-{n:03d}.html").write_text(page_html(n), encoding="utf-8")
    (folder / "pages" / "orphan.html").write_text(
        "<html><head><title>Orphan</title></head><body><p>Only the sitemap links the "
        "orphan page: its code is ORPHAN-55120.</p></body></html>",
        encoding="utf-8",
    )
    (folder / "pages" / "huge.html").write_text(
        "<html><body><p>" + "huge page text " * 100_000 + "</p></body></html>", encoding="utf-8"
    )
    (folder / "private").mkdir()
    (folder / "private" / "secret.html").write_text("<p>PRIVATE-9 salaries</p>", encoding="utf-8")
    (folder / "hr").mkdir()
    (folder / "hr" / "leave.html").write_text(
        "<html><head><title>Leave</title></head><body><main><p>Parental leave code "
        "HRLEAVE-4471 is for the HR team only.</p></main></body></html>",
        encoding="utf-8",
    )
    (folder / "files").mkdir()
    shutil.copy(KB_DIR / "facilities-office-guide.pdf", folder / "files" / "guide.pdf")
    index_links = [
        "/pages/page-000.html",
        "/pages/page-005.html?ref=nav",
        "/pages/huge.html",
        "/private/secret.html",
        "/hr/leave.html",
        "/files/guide.pdf",
        "/loop-a",
        "/moved",
        "http://example.invalid/outside.html",
        "mailto:desk@example.invalid",
    ]
    (folder / "index.html").write_text(
        "<html><head><title>Intranet</title></head><body><main><h1>Intranet home</h1><p>"
        "Welcome to the intranet home page of the service desk.</p>"
        + "".join(f'<a href="{link}">link</a> ' for link in index_links)
        + "</main></body></html>",
        encoding="utf-8",
    )
    (folder / "robots.txt").write_text(
        f"User-agent: *\nDisallow: /private/\nSitemap: http://127.0.0.1:{port}/sitemap.xml\n",
        encoding="utf-8",
    )
    (folder / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>http://127.0.0.1:{port}/pages/orphan.html</loc></url></urlset>",
        encoding="utf-8",
    )


@dataclass
class Site:
    base: str
    folder: Path
    log: Path

    def requests(self) -> list[tuple[str, int]]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [(ln.split()[1], int(ln.split()[2])) for ln in lines]


@contextlib.contextmanager
def running_site(root: Path) -> Iterator[Site]:
    """Build the site under ``root`` and serve it until the block ends."""
    port = free_port()
    build_site(root / "www", port)
    log = root / "requests.log"
    log.touch()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "site_server.py"),
            str(port),
            str(root / "www"),
            str(log),
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield Site(f"http://127.0.0.1:{port}", root / "www", log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
