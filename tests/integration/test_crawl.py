"""`rag-ingest crawl` against a real HTTP server process (tests/site_server.py) serving a
generated intranet site of 250+ pages: same-site links and sitemap.xml, robots.txt, an auth
header from the environment, boilerplate stripped, a linked PDF, access groups by URL
prefix, a redirect loop, a redirect and a canonical duplicate, a huge page and a link off the
site; then an unchanged re-crawl (one conditional request per page, nothing parsed) and a
changed and a removed page."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client
from tests.conftest import REPO
from tests.ingest_cli import cli, cli_env, events
from tests.intranet_site import PAGES, TOKEN, Site, code_of, page_html, running_site

pytestmark = pytest.mark.slow

BOILERPLATE = ("NAVTOKEN", "BANNERTOKEN", "FOOTTOKEN")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("site")) as served:
        yield served


def crawl_env(site: Site, settings: Any, token: str = TOKEN) -> dict[str, str]:
    """The settings every crawl of the test site runs with (``cli``'s extra environment)."""
    return {
        "RAG_PATHS__DATA_DIR": str(settings.paths.data_dir),
        "RAG_INGEST__CRAWL__RATE_PER_S": "0",
        "RAG_INGEST__CRAWL__MAX_PAGE_MB": "1",
        "RAG_INGEST__CRAWL__AUTH_HEADER_ENV": "INTRANET_AUTH",
        "RAG_INGEST__CRAWL__GROUP_RULES": f'[{{prefix: "{site.base}/hr/", groups: [hr]}}]',
        "INTRANET_AUTH": f"Bearer {token}",
    }


def crawl(site: Site, settings: Any, token: str = TOKEN) -> tuple[Any, list[dict[str, Any]]]:
    done = cli(
        Path(settings.store.path),
        "crawl",
        site.base + "/",
        "--json",
        **crawl_env(site, settings, token),
    )
    return done, events(done)


@pytest.fixture(scope="module")
def first(site: Site, make_settings: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    settings = make_settings()
    done, lines = crawl(site, settings)
    assert done.returncode == 0, done.stderr[-3000:]
    return settings, done, lines


def _fetches(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["url"]: e for e in lines if e["event"] == "fetch"}


def test_the_first_crawl_follows_the_site_as_robots_allows(
    site: Site, first: tuple[Any, Any, list[dict[str, Any]]]
) -> None:
    _, _, lines = first
    fetches = _fetches(lines)
    base = site.base
    statuses = Counter(fetches[f"{base}/pages/page-{n:03d}.html"]["status"] for n in range(PAGES))
    assert statuses == {"fetched": PAGES - 2, "skipped": 2}  # 3 and 5 came first by other links
    assert fetches[f"{base}/pages/orphan.html"]["status"] == "fetched"  # from sitemap.xml
    assert fetches[f"{base}/files/guide.pdf"]["status"] == "fetched"
    assert fetches[f"{base}/private/secret.html"] == {
        "event": "fetch",
        "url": f"{base}/private/secret.html",
        "status": "skipped",
        "reason": "robots.txt disallows it",
        "http_status": 0,
    }
    assert not any(path.startswith("/private/") for path, _ in site.requests())
    assert fetches[f"{base}/loop-a"]["reason"] == "redirect loop"
    assert fetches[f"{base}/pages/huge.html"]["reason"] == "larger than 1 MB (max_page_mb)"
    # /moved redirects to page 3 and page 5's ?ref=nav copy names the plain address canonical.
    assert (
        "the same page as" in fetches[f"{base}/moved"]["reason"]
        or "the same page as" in (fetches[f"{base}/pages/page-003.html"]["reason"])
    )
    assert not any("example.invalid" in url for url in fetches)
    crawled = next(e for e in lines if e["event"] == "crawled")
    assert crawled["complete"] is True
    files = [e for e in lines if e["event"] == "file"]
    added = Counter(e["status"] for e in files)
    assert added == {"added": PAGES + 4}  # the pages, orphan, home, HR page, the PDF
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["added"] == PAGES + 4


def test_pages_are_stored_without_boilerplate_with_their_address_and_groups(
    site: Site, first: tuple[Any, Any, list[dict[str, Any]]]
) -> None:
    _, _, lines = first
    folder = Path(next(e for e in lines if e["event"] == "crawled")["folder"])
    sidecars = [json.loads(p.read_text()) for p in folder.glob("*.meta.json")]
    by_url = {s["url"]: s for s in sidecars}
    assert by_url[f"{site.base}/hr/leave.html"]["groups"] == ["hr"]
    assert by_url[f"{site.base}/pages/page-007.html"] == {
        "url": f"{site.base}/pages/page-007.html",
        "groups": ["everyone"],
        "title": "Topic 7",
    }
    assert f"{site.base}/pages/page-005.html" in by_url
    assert not any("ref=nav" in url for url in by_url)
    for page in folder.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not any(token in text for token in BOILERPLATE), page


async def _retrieve(client: httpx.AsyncClient, query: str, **extra: Any) -> list[dict[str, Any]]:
    resp = await client.post("/v1/retrieve", json={"query": query, "k": 3, **extra})
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, Any]] = resp.json()["hits"]
    return hits


async def test_recrawls_cost_one_request_per_page_and_follow_changes(
    site: Site, first: tuple[Any, Any, list[dict[str, Any]]], smol_engine: Any
) -> None:
    from serving.app import create_app

    settings, _, _ = first
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as client:
        hits = await _retrieve(client, f"internal code {code_of(123)}", mode="keyword")
        assert hits[0]["url"] == f"{site.base}/pages/page-123.html"
        assert code_of(123) in hits[0]["text"]
        assert not await _retrieve(client, "NAVTOKEN FOOTTOKEN BANNERTOKEN", mode="keyword")
        assert not any("HRLEAVE" in h["text"] for h in await _retrieve(client, "HRLEAVE-4471"))

    # Unchanged: one conditional request per known page, every answer 304, nothing parsed.
    site.log.write_text("", encoding="utf-8")
    done, lines = crawl(site, settings)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = Counter(p for p, _ in site.requests() if p.startswith("/pages/page-"))
    assert len(pages) == PAGES + 1  # and the ?ref=nav address of page 5
    assert pages.pop("/pages/page-003.html") == 2  # directly, and as /moved's target
    assert set(pages.values()) == {1}
    assert {s for p, s in site.requests() if p.startswith("/pages/page-")} == {304}
    assert Counter(e["status"] for e in lines if e["event"] == "file") == {"unchanged": PAGES + 4}

    # One page changed, one removed (404): one update, one deletion.
    (site.folder / "pages" / "page-010.html").write_text(
        page_html(10, " The new escalation code is ESCAL-31337."), encoding="utf-8"
    )
    (site.folder / "pages" / "page-020.html").unlink()
    done, lines = crawl(site, settings)
    assert done.returncode == 0, done.stderr[-3000:]
    fetches = _fetches(lines)
    assert fetches[f"{site.base}/pages/page-010.html"]["status"] == "fetched"
    assert fetches[f"{site.base}/pages/page-020.html"]["status"] == "removed"
    files = Counter(e["status"] for e in lines if e["event"] == "file")
    assert files == {"unchanged": PAGES + 2, "updated": 1, "deleted": 1}
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as client:
        hits = await _retrieve(client, "escalation code ESCAL-31337", mode="keyword")
        assert hits[0]["url"] == f"{site.base}/pages/page-010.html"
        gone = await _retrieve(client, code_of(20), mode="keyword")
        assert not any(code_of(20) in h["text"] for h in gone)


def test_a_wrong_token_stops_the_crawl_and_changes_nothing(
    site: Site, first: tuple[Any, Any, list[dict[str, Any]]]
) -> None:
    settings, _, lines = first
    folder = Path(next(e for e in lines if e["event"] == "crawled")["folder"])
    before = sorted(p.name for p in folder.iterdir())
    done, lines = crawl(site, settings, token="wrong")
    assert done.returncode == 2
    error = lines[-1]
    assert error["event"] == "error" and "robots.txt answered HTTP 401" in error["message"]
    assert "ingest.crawl.auth_header_env" in error["message"]
    assert sorted(p.name for p in folder.iterdir()) == before
    stats = cli(
        Path(settings.store.path),
        "stats",
        "--json",
        RAG_PATHS__DATA_DIR=str(settings.paths.data_dir),
    )
    assert json.loads(stats.stdout.splitlines()[-1])["documents"] == PAGES + 3  # 020 removed


def test_the_rate_and_the_page_limit_hold(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.crawl import Crawler
    from rag.config import CrawlSettings

    monkeypatch.setenv("INTRANET_AUTH", f"Bearer {TOKEN}")
    limits = CrawlSettings(rate_per_s=20, max_pages=10, auth_header_env="INTRANET_AUTH")
    crawler = Crawler(site.base + "/", limits, tmp_path, ["everyone"])
    started = time.monotonic()
    seen = list(crawler.run())
    elapsed = time.monotonic() - started
    assert elapsed >= 11 * (1 / 20)  # robots.txt, sitemap.xml and 10 pages, 50 ms apart
    unasked = {"robots.txt disallows it", "over ingest.crawl.max_pages/max_total_mb"}
    assert len([e for e in seen if e.reason not in unasked]) == 10
    assert seen[-1].reason == "over ingest.crawl.max_pages/max_total_mb"
    assert crawler.complete is False  # an incomplete run removes nothing it did not see


def test_killed_mid_crawl_the_next_run_leaves_every_page_exactly_once(
    site: Site, make_settings: Any
) -> None:
    settings = make_settings()
    env = cli_env(Path(settings.store.path), **crawl_env(site, settings))
    for wait in (1.0, 5.0):  # during the fetches, then (likely) during the sync
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "crawl", site.base + "/", "--json"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(wait)
        proc.kill()
        proc.wait(timeout=30)
    done, lines = crawl(site, settings)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(
        cli(
            Path(settings.store.path),
            "stats",
            "--json",
            RAG_PATHS__DATA_DIR=str(settings.paths.data_dir),
        ).stdout
    )
    on_site = len(list((site.folder / "pages").glob("page-*.html"))) + 4  # home, orphan, HR, PDF
    assert stats["documents"] == on_site and stats["unfinished"] == 0
    assert stats["store_chunks"] == stats["chunks"]  # no orphans, no doubles
    folder = Path(next(e for e in lines if e["event"] == "crawled")["folder"])
    assert (
        len(
            [
                p
                for p in folder.glob("*")
                if not p.name.startswith(".") and not p.name.endswith(".meta.json")
            ]
        )
        == on_site
    )
