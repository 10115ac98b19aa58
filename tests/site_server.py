"""An intranet web site for the crawl tests, as a real HTTP server process:

    python tests/site_server.py PORT FOLDER LOG [TOKEN]

Serves FOLDER's files (HTML as text/html) with an ETag (the bytes' sha256) and a
Last-Modified (the file's mtime), answering If-None-Match / If-Modified-Since with 304;
missing files are 404. ``/loop-a`` and ``/loop-b`` redirect to each other; ``/moved``
redirects (301) to ``/pages/page-003.html``. With TOKEN, every request needs
``Authorization: Bearer TOKEN`` (401 otherwise). Each request is logged to LOG as
``METHOD PATH STATUS``.
"""

from __future__ import annotations

import hashlib
import sys
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".pdf": "application/pdf",
}
REDIRECTS = {"/loop-a": "/loop-b", "/loop-b": "/loop-a", "/moved": "/pages/page-003.html"}


def main() -> None:
    port, folder, log = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else ""
    out = log.open("a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _done(self, status: int) -> None:
            out.write(f"{self.command} {self.path} {status}\n")
            out.flush()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if token and self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self._done(401)
            if path in REDIRECTS:
                self.send_response(301 if path == "/moved" else 302)
                self.send_header("Location", REDIRECTS[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self._done(301)
            file = (folder / path.lstrip("/")).resolve()
            if path.endswith("/"):
                file = file / "index.html"
            if not file.is_relative_to(folder.resolve()) or not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self._done(404)
            body = file.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            modified = formatdate(int(file.stat().st_mtime), usegmt=True)
            since = self.headers.get("If-Modified-Since")
            fresh = self.headers.get("If-None-Match") == etag
            if not fresh and since and not self.headers.get("If-None-Match"):
                try:
                    fresh = int(file.stat().st_mtime) <= parsedate_to_datetime(since).timestamp()
                except (TypeError, ValueError):
                    fresh = False
            if fresh:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return self._done(304)
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(file.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            self.end_headers()
            self.wfile.write(body)
            return self._done(200)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
