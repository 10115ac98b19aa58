"""Crawl timings (issue 23): ``rag-ingest crawl`` against the generated intranet site of the
tests (tests/intranet_site.py: 250 pages with boilerplate, a sitemap-only page, a
PDF, an HR page, a huge page, a redirect loop), served by tests/site_server.py.

    .venv/bin/python bench/crawl.py [--rate 0]

Prints, for a first crawl, an unchanged re-crawl and a re-crawl after one page changed and
one was removed: the wall time of the whole command (fetch + sync, process start and model
load included), the fetch phase alone, the requests the site saw, and the sync's results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))


def main() -> None:
    from tests.intranet_site import TOKEN, page_html, running_site

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", default="0", help="ingest.crawl.rate_per_s (0: no pause)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-crawl-") as tmp, running_site(Path(tmp)) as site:
        root = Path(tmp)
        env = {
            **os.environ,
            "RAG_PROFILE": "dev",
            "RAG_PATHS__DATA_DIR": str(root / "var"),
            "RAG_STORE__PATH": str(root / "chroma"),
            "RAG_INGEST__CRAWL__RATE_PER_S": args.rate,
            "RAG_INGEST__CRAWL__MAX_PAGE_MB": "1",
            "RAG_INGEST__CRAWL__AUTH_HEADER_ENV": "INTRANET_AUTH",
            "INTRANET_AUTH": f"Bearer {TOKEN}",
        }
        print("| run | wall s | fetch s | requests | 200 | 304 | 404 | sync results |")
        print("|---|---|---|---|---|---|---|---|")
        for name in ("first crawl", "unchanged re-crawl", "1 changed, 1 removed"):
            if name.startswith("1 changed"):
                (site.folder / "pages/page-010.html").write_text(page_html(10, " New text."))
                (site.folder / "pages/page-020.html").unlink()
            site.log.write_text("")
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "ingest.cli", "crawl", site.base + "/", "--json"],
                capture_output=True,
                text=True,
                env=env,
                cwd=REPO,
                check=False,
            )
            wall = time.perf_counter() - started
            lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
            crawled = next(e for e in lines if e["event"] == "crawled")
            files = Counter(e["status"] for e in lines if e["event"] == "file")
            codes = Counter(str(status) for _, status in site.requests())
            print(
                f"| {name} | {wall:.1f} | {crawled['seconds']:.1f} | {sum(codes.values())} | "
                f"{codes['200']} | {codes['304']} | {codes['404']} | {dict(files)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
