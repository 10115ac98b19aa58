"""``rag-ingest crawl URL...``: an intranet site into a local mirror the pipeline syncs.

One site per URL (its scheme, host and port): the start page, the site's ``sitemap.xml``
(or those robots.txt names) and every page already in the mirror are fetched, and same-site
links are followed, as robots.txt allows, at ``ingest.crawl.rate_per_s``. Pages are stored
without their boilerplate (``ingest/html_clean.py``), linked PDFs and office files as they
are, each with a ``.meta.json`` sidecar holding its address, title and access groups
(``ingest.crawl.group_rules`` by URL prefix), under ``<paths.data_dir>/crawl/<site>/``;
``rag-ingest sync`` of that folder then does the rest (incremental, crash-safe, deletions).

- Conditional requests (ETag, Last-Modified): an unchanged page costs one request, and its
  file is not rewritten, so the pipeline skips it unparsed; its links come from the state.
- A page that is gone (404, 410) or asks not to be indexed loses its file: the sync deletes
  it from the index. A server error or a timeout keeps the last good copy.
- Redirects are followed within the site (a loop, or one leaving the site, is reported),
  and a page's ``<link rel=canonical>`` on the same site names it: duplicates collapse.
- Over ``max_page_mb`` a page is skipped and reported; the run stops at ``max_pages`` or
  ``max_total_mb``. Only a run that went through everything removes files it did not see.
- Only httpx is imported here (the one HTTP client of the project).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import urllib.robotparser
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from ingest.html_clean import read_page
from rag.config import CrawlSettings
from rag.errors import ConfigError, StoreError, storage_failure

FetchStatus = Literal["fetched", "unchanged", "removed", "skipped", "failed"]
STATE_FILE = ".crawl-state.json"
_SITEMAP_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>", re.IGNORECASE)
_DOC_TYPES = {
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "text/csv": ".csv",
    "text/markdown": ".md",
    "text/plain": ".txt",
}
_DOC_SUFFIXES = frozenset({".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".md", ".txt"})


@dataclass(frozen=True, slots=True)
class FetchEvent:
    url: str
    status: FetchStatus
    reason: str = ""
    http_status: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"event": "fetch", **asdict(self)}


@dataclass
class _Known:
    """What the last runs learned about one requested URL."""

    key: str = ""
    """The address the content is stored under (after redirects and canonical)."""
    etag: str = ""
    last_modified: str = ""
    links: list[str] = field(default_factory=list)


def normalize(url: str, base: str = "") -> str | None:
    """An absolute http(s) address without its fragment, host lowercased, default port
    dropped; None for anything else (mailto:, javascript:, a malformed address)."""
    try:
        parts = urlsplit(urljoin(base, url.strip()) if base else url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port and port != {"http": 80, "https": 443}[parts.scheme]:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))


def site_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def mirror_folder(data_dir: Path, site: str) -> Path:
    parts = urlsplit(site)
    name = re.sub(r"[^A-Za-z0-9.-]", "_", f"{parts.scheme}_{parts.netloc}")
    return data_dir / "crawl" / name


def _write(path: Path, data: bytes) -> bool:
    """Write atomically; False (nothing touched) when the file already holds ``data``."""
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


class Crawler:
    """Crawls one site into its mirror folder; :meth:`run` yields a :class:`FetchEvent` per
    address. ``complete`` tells afterwards whether the run went through everything."""

    def __init__(
        self, start: str, settings: CrawlSettings, data_dir: Path, default_groups: list[str]
    ) -> None:
        url = normalize(start)
        if url is None:
            raise ConfigError(f"{start!r} is not an http(s) address. Give a site's address.")
        self.start = url
        self.site = site_of(url)
        self.settings = settings
        self.folder = mirror_folder(data_dir, self.site)
        self.default_groups = default_groups
        self.complete = False
        self.fetched_bytes = 0
        self._known: dict[str, _Known] = {}
        self._stored: dict[str, str] = {}  # key -> file name
        self._last_request = 0.0
        self._delay = 1 / settings.rate_per_s if settings.rate_per_s else 0.0
        self._robots = urllib.robotparser.RobotFileParser()

    # -- state ------------------------------------------------------------------------

    def _load_state(self) -> None:
        try:
            data = json.loads((self.folder / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        known = data.get("known", {}) if isinstance(data, dict) else {}
        stored = data.get("stored", {}) if isinstance(data, dict) else {}
        self._known = {
            url: _Known(**{k: v for k, v in value.items() if k in _Known.__dataclass_fields__})
            for url, value in known.items()
            if isinstance(value, dict)
        }
        self._stored = {k: v for k, v in stored.items() if (self.folder / v).is_file()}

    def _save_state(self) -> None:
        data = {
            "site": self.site,
            "known": {url: asdict(k) for url, k in self._known.items()},
            "stored": self._stored,
        }
        _write(self.folder / STATE_FILE, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    # -- HTTP -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.settings.user_agent}
        name = self.settings.auth_header_env
        if name:
            value = os.environ.get(name, "")
            if not value:
                raise ConfigError(
                    f"ingest.crawl.auth_header_env names {name}, which is not set. Export it "
                    "(e.g. 'Bearer <token>') or clear the setting."
                )
            headers["Authorization"] = value
        return headers

    def _pause(self) -> None:
        wait = self._last_request + self._delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _small_get(self, client: Any, url: str) -> tuple[int, bytes]:
        """robots.txt and sitemaps: the status and at most 10 MB of the body."""
        import httpx

        self._pause()
        try:
            with client.stream("GET", url, follow_redirects=True) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > 10_000_000:
                        break
                return resp.status_code, body
        except httpx.HTTPError:
            return 0, b""

    def _read_robots(self, client: Any) -> None:
        status, body = self._small_get(client, self.site + "/robots.txt")
        if status in {401, 403}:
            # robotparser would read this as "nothing may be fetched", and the run would then
            # remove every page: for an intranet it means the credentials are wrong.
            raise ConfigError(
                f"{self.site}/robots.txt answered HTTP {status}: the site wants credentials. "
                "Put them in an environment variable named by ingest.crawl.auth_header_env "
                "(its value is sent as the Authorization header). Nothing was changed."
            )
        if status == 200:
            self._robots.parse(body.decode("utf-8", "replace").splitlines())
        else:  # none (404), or unreachable: everything is allowed
            self._robots.parse([])
        delay = self._robots.crawl_delay(self.settings.user_agent)
        if delay:
            self._delay = max(self._delay, float(delay))

    def _sitemap_urls(self, client: Any) -> list[str]:
        maps = list(self._robots.site_maps() or []) or [self.site + "/sitemap.xml"]
        found: list[str] = []
        for _ in range(2):  # a sitemap index, then its sitemaps
            nested: list[str] = []
            for url in maps[:50]:
                address = normalize(url)
                if address is None or site_of(address) != self.site:
                    continue
                status, body = self._small_get(client, address)
                if status != 200:
                    continue
                locs = [m.group(1).decode("utf-8", "replace") for m in _SITEMAP_LOC.finditer(body)]
                if b"<sitemapindex" in body[:2000]:
                    nested += locs
                else:
                    found += locs
            maps = nested
            if not maps:
                break
        return [u for u in (normalize(x) for x in found) if u and site_of(u) == self.site]

    # -- the run ----------------------------------------------------------------------

    def run(self) -> Iterator[FetchEvent]:
        try:
            yield from self._run()
        except OSError as exc:  # the mirror's disk: full, read-only, gone
            mapped = storage_failure(exc, "crawl mirror", self.folder)
            raise mapped or StoreError(
                f"Writing the crawl mirror at {self.folder} failed ({type(exc).__name__}: "
                f"{exc}). Fix the cause, then run the same command again."
            ) from exc

    def _run(self) -> Iterator[FetchEvent]:
        import httpx

        self.folder.mkdir(parents=True, exist_ok=True)
        self._load_state()
        headers = self._headers()
        limits = self.settings
        seen_keys: set[str] = set()
        with httpx.Client(
            headers=headers, timeout=limits.timeout_s, max_redirects=10, trust_env=False
        ) as client:
            self._read_robots(client)
            queue = deque([self.start, *self._sitemap_urls(client), *self._known])
            queued = set(queue)
            fetched = 0
            stopped = False
            while queue:
                url = queue.popleft()
                if not self._robots.can_fetch(limits.user_agent, url):
                    yield FetchEvent(url, "skipped", "robots.txt disallows it")
                    continue
                if fetched >= limits.max_pages or self.fetched_bytes > limits.max_total_mb * 1e6:
                    stopped = True
                    yield FetchEvent(url, "skipped", "over ingest.crawl.max_pages/max_total_mb")
                    break
                fetched += 1
                event, links, key = self._fetch(client, url, seen_keys)
                if key:
                    seen_keys.add(key)
                yield event
                for link in links:
                    if link not in queued and site_of(link) == self.site:
                        queued.add(link)
                        queue.append(link)
                if fetched % 50 == 0:
                    self._save_state()
            self.complete = not stopped
            if self.complete:
                for key in [k for k in self._stored if k not in seen_keys]:
                    self._drop(key)
                    yield FetchEvent(key, "removed", "no longer reached on the site")
                self._drop_strays()
            self._save_state()

    def _fetch(self, client: Any, url: str, seen: set[str]) -> tuple[FetchEvent, list[str], str]:
        """Fetch one address: its event, the links to follow and the key it is stored under."""
        import httpx

        known = self._known.get(url, _Known())
        headers = {}
        if known.key and known.key in self._stored:
            if known.etag:
                headers["If-None-Match"] = known.etag
            if known.last_modified:
                headers["If-Modified-Since"] = known.last_modified
        self._pause()
        try:
            with client.stream("GET", url, headers=headers, follow_redirects=True) as resp:
                return self._response(url, resp, known, seen)
        except httpx.TooManyRedirects:
            return FetchEvent(url, "skipped", "redirect loop"), [], ""
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}; the last good copy stays"
            return FetchEvent(url, "failed", reason), known.links, known.key

    def _response(
        self, url: str, resp: Any, known: _Known, seen: set[str]
    ) -> tuple[FetchEvent, list[str], str]:
        status = resp.status_code
        final = normalize(str(resp.url)) or url
        if site_of(final) != self.site:
            return FetchEvent(url, "skipped", f"redirected off the site to {final}", status), [], ""
        if status == 304:
            return FetchEvent(url, "unchanged", "", status), known.links, known.key
        if status in {404, 410}:
            self._known.pop(url, None)
            gone = known.key or url
            if gone in self._stored and gone == url:
                self._drop(gone)
                return FetchEvent(url, "removed", f"HTTP {status}", status), [], ""
            return FetchEvent(url, "skipped", f"HTTP {status}", status), [], ""
        if status != 200:
            reason = f"HTTP {status}; the last good copy stays"
            return FetchEvent(url, "failed", reason, status), known.links, known.key
        kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        suffix = Path(urlsplit(final).path).suffix.lower()
        is_html = kind in {"text/html", "application/xhtml+xml"}
        if not is_html:
            suffix = suffix if suffix in _DOC_SUFFIXES else _DOC_TYPES.get(kind, "")
            if not suffix:
                return FetchEvent(url, "skipped", f"not a document ({kind or 'no type'})"), [], ""
        body = self._body(resp)
        if body is None:
            mb = self.settings.max_page_mb
            return (
                FetchEvent(url, "skipped", f"larger than {mb:g} MB (max_page_mb)", status),
                [],
                "",
            )
        record = _Known(
            key=final,
            etag=resp.headers.get("etag", ""),
            last_modified=resp.headers.get("last-modified", ""),
        )
        title = ""
        content = body
        if is_html:
            page = read_page(body.decode(resp.encoding or "utf-8", "replace"))
            canonical = normalize(page.canonical, final) if page.canonical else None
            if canonical and site_of(canonical) == self.site:
                record.key = canonical
            links = [u for u in (normalize(h, final) for h in page.links) if u]
            record.links = [] if page.nofollow else list(dict.fromkeys(links))
            title = page.title
            content = page.html.encode("utf-8")
            suffix = ".html"
            if page.noindex:
                self._known[url] = record
                if record.key in self._stored:
                    self._drop(record.key)
                    return FetchEvent(url, "removed", "the page asks not to be indexed"), [], ""
                return FetchEvent(url, "skipped", "noindex", status), record.links, ""
        self._known[url] = record
        if record.key in seen:
            return (
                FetchEvent(url, "skipped", f"the same page as {record.key}", status),
                record.links,
                "",
            )
        self._store(record.key, suffix, content, title)
        return FetchEvent(url, "fetched", "", status), record.links, record.key

    def _body(self, resp: Any) -> bytes | None:
        limit = self.settings.max_page_mb * 1e6
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            self.fetched_bytes += len(chunk)
            if len(body) > limit:
                return None
        return bytes(body)

    def _groups(self, url: str) -> list[str]:
        groups = [
            g for r in self.settings.group_rules if url.startswith(r.prefix) for g in r.groups
        ]
        return list(dict.fromkeys(groups or self.default_groups))

    def _store(self, key: str, suffix: str, content: bytes, title: str) -> None:
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + suffix
        old = self._stored.get(key)
        if old and old != name:
            self._drop(key)
        sidecar = {"url": key, "groups": self._groups(key)}
        if title:
            sidecar["title"] = title
        # The sidecar first: a file is never seen without its groups.
        _write(
            self.folder / (name + ".meta.json"), json.dumps(sidecar, ensure_ascii=False).encode()
        )
        _write(self.folder / name, content)
        self._stored[key] = name

    def _drop_strays(self) -> None:
        """Files of the mirror no page owns (a state file lost in a crash): gone, so the sync
        deletes their documents; the next run stores them again if they are still there."""
        owned = set(self._stored.values())
        for file in self.folder.iterdir():
            name = file.name
            if name.startswith(".") or name.endswith(".meta.json"):
                continue
            if name not in owned:
                file.unlink(missing_ok=True)
                file.with_name(name + ".meta.json").unlink(missing_ok=True)

    def _drop(self, key: str) -> None:
        name = self._stored.pop(key, None)
        if name:
            (self.folder / name).unlink(missing_ok=True)
            (self.folder / (name + ".meta.json")).unlink(missing_ok=True)
