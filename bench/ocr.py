"""OCR benchmark (issue 23): character error rate per language and resolution on generated
scans, and retrieval of every scanned page's fact through ``/v1/retrieve``.

    .venv/bin/python bench/ocr.py [--pages 24] [--dpi 200 300]

The scans come from tests/scans.py (known English and Chinese text with a ruled table,
rendered to A4 at each resolution with blur, grain, specks and a rotation under one degree;
seeds apart from the tests'). For each language and resolution: CER (mean, p90, max; edit
distance over characters, whitespace ignored), Tesseract's mean page confidence, pages under
``ingest.ocr.min_confidence`` and seconds per page (one process, one thread). Then the
300 dpi set (as image-only PDFs of 4 pages and as PNG files) is ingested with the real
pipeline and each page's question is asked of ``/v1/retrieve`` (the app in-process, hybrid,
k=5): found@1 and found@5 count the right file and page with the answer in the passage.
Pages/s of the whole pipeline on a scanned corpus: ``bench/ingest.py --scanned``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

SEED = 7
VERBOSE = "--verbose" in sys.argv


def make_scanned_corpus(folder: Path, pages_per_language: int, dpi: int = 300) -> list[Any]:
    """Image-only PDFs of up to 4 pages and single-page PNGs, half each, per language; returns
    ``(page, file name, page number)`` for every page."""
    from tests.scans import render, save_image, save_pdf, scan_pages

    folder.mkdir(parents=True, exist_ok=True)
    placed: list[Any] = []
    for lang in ("en", "zh"):
        pages = scan_pages(pages_per_language, lang, seed=SEED)
        half = len(pages) // 2
        for start in range(0, half, 4):
            group = pages[start : min(start + 4, half)]
            name = f"{lang}-scan-{start // 4 + 1:03d}.pdf"
            images = [render(p, dpi, seed=SEED + start + i) for i, p in enumerate(group)]
            save_pdf(images, folder / name, dpi)
            placed += [(p, name, i + 1) for i, p in enumerate(group)]
        for i, page in enumerate(pages[half:]):
            name = f"{lang}-screenshot-{i + 1:03d}.png"
            save_image([render(page, dpi, seed=SEED + 100 + i)], folder / name, dpi)
            placed.append((page, name, 1))
    return placed


def error_rates(pages_per_language: int, resolutions: list[int]) -> None:
    from ingest.ocr import OcrOptions
    from ingest.parse import parse_file
    from tests.scans import cer, render, save_pdf, scan_pages

    options = OcrOptions()
    print(
        "| language | dpi | pages | CER mean | CER p90 | CER max | confidence | under floor "
        "| s/page |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rag-ocr-") as tmp:
        for lang in ("en", "zh"):
            pages = scan_pages(pages_per_language, lang, seed=SEED)
            for dpi in resolutions:
                rates: list[float] = []
                confidences: list[float] = []
                under = 0
                seconds = 0.0
                for i, page in enumerate(pages):
                    pdf = save_pdf([render(page, dpi, seed=SEED + i)], Path(tmp) / "p.pdf", dpi)
                    started = time.perf_counter()
                    doc = parse_file(pdf, pdf_strategy="text", ocr=options)
                    seconds += time.perf_counter() - started
                    under += len(doc.warnings)
                    read = "\n".join(e.text for e in doc.elements)
                    rates.append(cer(page.text, read))
                    confidences += [e.ocr_confidence or 0 for e in doc.elements[:1]]
                rates.sort()
                p90 = rates[min(len(rates) - 1, int(0.9 * len(rates)))]
                conf = statistics.fmean(confidences) if confidences else 0.0
                print(
                    f"| {lang} | {dpi} | {len(pages)} | {statistics.fmean(rates):.4f} | "
                    f"{p90:.4f} | {rates[-1]:.4f} | {conf:.1f} | {under} | "
                    f"{seconds / len(pages):.2f} |",
                    flush=True,
                )


async def _ask_all(settings: Any, placed: list[Any]) -> dict[str, list[int]]:
    import httpx

    from serving.app import create_app

    found: dict[str, list[int]] = {"en": [0, 0, 0], "zh": [0, 0, 0]}  # total, @1, @5
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(600):  # the knowledge base loads in the background
                probe = await client.post("/v1/retrieve", json={"query": "x", "k": 1})
                if probe.status_code != 503:
                    break
                await asyncio.sleep(0.1)
            for page, name, number in placed:
                resp = await client.post("/v1/retrieve", json={"query": page.question, "k": 5})
                if resp.status_code != 200:
                    raise SystemExit(f"/v1/retrieve: {resp.status_code} {resp.text}")
                ranks = [
                    rank
                    for rank, hit in enumerate(resp.json()["hits"], start=1)
                    if Path(hit["source"]).name == name
                    and hit["page"] == number
                    and page.answer.replace(" ", "") in hit["text"].replace(" ", "")
                ]
                if not ranks and VERBOSE:
                    top = [(Path(h["source"]).name, h["page"]) for h in resp.json()["hits"]]
                    right = [
                        h["text"]
                        for h in resp.json()["hits"]
                        if Path(h["source"]).name == name and h["page"] == number
                    ]
                    print(f"missed: {page.question} ({name} p{number}): top {top}; {right}")
                counts = found[page.lang]
                counts[0] += 1
                counts[1] += bool(ranks and ranks[0] == 1)
                counts[2] += bool(ranks)
    return found


def retrieval(pages_per_language: int) -> None:
    from ingest.pipeline import build_ingestor, discover
    from rag.config import load_settings
    from rag.services import build_knowledge_base

    with tempfile.TemporaryDirectory(prefix="rag-ocr-kb-") as tmp:
        work = Path(tmp)
        placed = make_scanned_corpus(work / "scans", pages_per_language)
        settings = load_settings(
            "dev",
            overrides={
                "paths": {"data_dir": str(work / "var")},
                "store": {"path": str(work / "chroma")},
                # /v1/retrieve needs no model: point the engine at nothing.
                "llm": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "auto"},
                "auth": {"rate_per_minute": 0},
            },
        )
        kb = build_knowledge_base(settings)
        started = time.perf_counter()
        results = list(build_ingestor(settings, kb).run(discover([work / "scans"])))
        seconds = time.perf_counter() - started
        ocr_pages = sum(r.ocr_pages for r in results)
        failed = [r for r in results if r.status == "failed"]
        print(
            f"\ningested {len(results)} files, {ocr_pages} pages by OCR in {seconds:.1f} s "
            f"({ocr_pages / seconds:.2f} pages/s), {len(failed)} failed",
            flush=True,
        )
        found = asyncio.run(_ask_all(settings, placed))
    print("\n| language | questions | found@1 | found@5 |")
    print("|---|---|---|---|")
    for lang, (total, top1, top5) in found.items():
        print(f"| {lang} | {total} | {top1 / total:.3f} | {top5 / total:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=24, help="pages per language")
    parser.add_argument("--dpi", type=int, nargs="+", default=[200, 300])
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--skip-cer", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print the questions missed")
    args = parser.parse_args()
    if not args.skip_cer:
        error_rates(args.pages, args.dpi)
    if not args.skip_retrieval:
        retrieval(args.pages)


if __name__ == "__main__":
    main()
