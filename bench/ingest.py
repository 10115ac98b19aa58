"""Ingest benchmark: this pipeline vs a naive LangChain pipeline, on a generated corpus.

    .venv/bin/python bench/ingest.py [--scale 1.0] [--model builtin:all-minilm-l6-v2]
        [--backend onnx|torch] [--precision int8]

One run prints, side by side: documents/s, pages/s, chunks/s and peak RSS of

- **ours**: ``rag-ingest``'s pipeline (parse pool, batched embedding, batched Chroma
  writes, manifest) with the configured embedder (the bilingual USE model by default;
  ``--model`` for another), first on the fresh corpus, then again over the unchanged corpus;
- **naive**: the obvious LangChain code: ``UnstructuredFileLoader`` per file into one list,
  ``RecursiveCharacterTextSplitter(1000, 200)``, ``HuggingFaceEmbeddings`` (the same
  all-MiniLM-L6-v2), ``Chroma.from_documents``.

Each pipeline runs in its own child process (so peak RSS is its own; ours adds its largest
parse worker), starting from a cold process: model loading is part of the time for both.
CPU seconds (process + workers) are printed too: on a shared machine wall time mostly
measures the neighbours.
``--scale 1`` is 300 documents and >= 1,500 pages; smaller scales for a quick look.
``--scanned N``: instead, a scanned corpus of N pages per language (image-only PDFs and PNG
screenshots from bench/ocr.py, every page read by OCR), ours only (the naive pipeline has no
OCR set up); pages/s is then OCR pages per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and its name would hide the
# ``ingest`` package: put the repository there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))


class _Usage:
    """Peak RSS and CPU seconds of this process and its workers, sampled twice a second.

    ``getrusage(RUSAGE_CHILDREN)`` would miss the parse workers: the pool is shut down
    without waiting, so they are never reaped by this process."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._me = psutil.Process()
        self._cpu: dict[int, float] = {}
        self._rss: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                cpu = proc.cpu_times()
                rss = proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
            self._cpu[proc.pid] = cpu.user + cpu.system
            self._rss[proc.pid] = max(self._rss.get(proc.pid, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def done(self) -> dict[str, float]:
        """Peak RSS (main process, largest worker) and CPU seconds (process + workers)."""
        self._stop.set()
        self._thread.join()
        self._sample()
        me = self._me.pid
        workers = [v for pid, v in self._rss.items() if pid != me]
        return {
            "rss_main_mb": round(self._rss.get(me, 0.0), 1),
            "rss_worker_mb": round(max(workers, default=0.0), 1),
            "cpu_s": round(sum(self._cpu.values()), 1),
        }


def _timed(fn: Any, totals: dict[str, float], name: str) -> Any:
    """``fn`` that adds its wall time to ``totals[name]`` (where the time goes)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def run_ours(
    corpus: Path,
    store: Path,
    model: str | None,
    backend: str | None,
    precision: str | None,
    workers: int,
) -> dict[str, Any]:
    from ingest.pipeline import Ingestor, discover
    from rag.config import load_settings
    from rag.deploy.offline import apply_offline_env
    from rag.index.embedding import create_embedder
    from rag.index.store import ChromaStore

    usage = _Usage()
    started = time.perf_counter()
    settings = load_settings(
        "dev",
        overrides={
            "store": {"path": str(store)},
            "embedding": {
                k: v
                for k, v in {
                    "model": model,
                    "backend": backend,
                    "onnx_precision": precision,
                }.items()
                if v
            },
            "ingest": {"workers": workers},
        },
    )
    apply_offline_env(settings, in_process_engine=False)
    embedder = create_embedder(settings.embedding, settings.paths)
    chroma = ChromaStore(
        settings.store, embedder_id=embedder.model_id, dimension=lambda: embedder.dimension
    )
    phases: dict[str, float] = {}
    embedder.embed_documents = _timed(embedder.embed_documents, phases, "embed")
    chroma.upsert = _timed(chroma.upsert, phases, "store")
    ingestor = Ingestor(settings, embedder, chroma)
    counts: dict[str, int] = {}
    chunks = pages = ocr_pages = 0
    for result in ingestor.run(discover([corpus])):
        counts[result.status] = counts.get(result.status, 0) + 1
        chunks += result.chunks if result.status in {"added", "updated"} else 0
        pages += result.pages
        ocr_pages += result.ocr_pages
    seconds = time.perf_counter() - started
    phases = {k: round(v, 1) for k, v in phases.items()}
    return {
        "seconds": seconds,
        "chunks": chunks,
        "statuses": counts,
        "phases": phases,
        "embedder": embedder.model_id,
        "ocr_pages": ocr_pages,
        **usage.done(),
    }


def run_naive(corpus: Path, store: Path) -> dict[str, Any]:
    import warnings

    from rag.config import load_settings
    from rag.deploy.offline import apply_offline_env
    from rag.index.embedding import builtin_minilm_dir

    apply_offline_env(load_settings("dev"), in_process_engine=False)
    warnings.simplefilter("ignore")
    usage = _Usage()
    started = time.perf_counter()
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import UnstructuredFileLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    phases: dict[str, float] = {}
    mark = time.perf_counter()
    docs = []
    failed = 0
    for path in sorted(corpus.iterdir()):
        try:
            docs += UnstructuredFileLoader(str(path)).load()
        except Exception:
            failed += 1
    phases["parse"] = time.perf_counter() - mark
    mark = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents(docs)
    phases["split"] = time.perf_counter() - mark
    embeddings = HuggingFaceEmbeddings(model=str(builtin_minilm_dir()))
    # Timing only (a pydantic model: set the wrapper past its field checks).
    object.__setattr__(
        embeddings, "embed_documents", _timed(embeddings.embed_documents, phases, "embed")
    )
    mark = time.perf_counter()
    Chroma.from_documents(chunks, embeddings, persist_directory=str(store))
    phases["store"] = time.perf_counter() - mark - phases.get("embed", 0.0)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "chunks": len(chunks),
        "failed": failed,
        "phases": {k: round(v, 1) for k, v in phases.items()},
        **usage.done(),
    }


def _child(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _row(name: str, docs: int, pages: int, r: dict[str, Any]) -> str:
    s = r["seconds"]
    rss = r["rss_main_mb"] + r["rss_worker_mb"]
    return (
        f"| {name:<24} | {s:8.1f} | {r['cpu_s']:7.1f} | {docs / s:7.2f} | {pages / s:8.2f} | "
        f"{r['chunks'] / s:8.1f} | {r['chunks']:6d} | {rss:8.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 300 docs, 1,500+ pages")
    parser.add_argument("--model", help="default: the configured embedding.model")
    parser.add_argument(
        "--backend", choices=["onnx", "torch"], help="default: the configured embedding.backend"
    )
    parser.add_argument(
        "--precision", choices=["fp32", "int8"], help="default: embedding.onnx_precision"
    )
    parser.add_argument("--workers", type=int, default=0, help="parse processes (0 = cores)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--scanned", type=int, default=0, help="N scanned pages per language instead (OCR)"
    )
    parser.add_argument("--child", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "ours":
        result = run_ours(
            args.corpus, args.store, args.model, args.backend, args.precision, args.workers
        )
        print(json.dumps(result))
        return
    if args.child == "naive":
        print(json.dumps(run_naive(args.corpus, args.store)))
        return

    from bench.corpus import CorpusInfo, make_corpus

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        work = Path(tmp)
        if args.scanned:
            from bench.ocr import make_scanned_corpus

            placed = make_scanned_corpus(work / "corpus", args.scanned)
            files = list((work / "corpus").iterdir())
            info = CorpusInfo(len(files), len(placed), sum(f.stat().st_size for f in files))
            args.skip_naive = True
        else:
            info = make_corpus(work / "corpus", args.scale)
        print(
            f"corpus: {info.documents} documents, {info.pages} pages, "
            f"{info.bytes / 1e6:.1f} MB; {os.cpu_count()} CPUs; "
            + (
                f"scanned {args.scanned} pages per language"
                if args.scanned
                else f"scale {args.scale}"
            ),
            flush=True,
        )
        ours_args = ["--model", args.model] if args.model else []
        ours_args += ["--backend", args.backend] if args.backend else []
        ours_args += ["--precision", args.precision] if args.precision else []
        ours_args += ["--workers", str(args.workers), "--corpus", str(work / "corpus")]
        ours_args += ["--store", str(work / "ours")]
        first = _child(["--child", "ours", *ours_args])
        print(f"ours, first run: {json.dumps(first)}", flush=True)
        second = _child(["--child", "ours", *ours_args])
        print(f"ours, second run: {json.dumps(second)}", flush=True)
        naive = None
        if not args.skip_naive:
            naive_args = ["--corpus", str(work / "corpus"), "--store", str(work / "naive")]
            naive = _child(["--child", "naive", *naive_args])
            print(f"naive: {json.dumps(naive)}", flush=True)

    header = (
        "| pipeline                 |  seconds |   CPU s |  docs/s |  pages/s | chunks/s |"
        " chunks |  RSS MB |"
    )
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    docs, pages = info.documents, info.pages
    print(_row(f"ours ({first['embedder']})", docs, pages, first))
    print(_row("ours, unchanged re-run", docs, pages, second))
    if naive is not None:
        print(_row("naive LangChain", docs, pages, naive))
        print()
        ratio = naive["seconds"] / first["seconds"]
        cpu_ratio = naive["cpu_s"] / first["cpu_s"]
        print(f"throughput ratio (docs/s, ours / naive): {ratio:.2f}x")
        print(f"CPU-time ratio (naive / ours; robust on a shared machine): {cpu_ratio:.2f}x")
    print(f"unchanged re-run speed-up: {first['seconds'] / second['seconds']:.0f}x")
    if first.get("ocr_pages"):
        per_s = first["ocr_pages"] / first["seconds"]
        print(f"pages read by OCR: {first['ocr_pages']} ({per_s:.2f}/s)")
    print()
    print("where the time goes (wall s; ours parses in worker processes, embeds in a thread):")
    print(f"  ours:  {first.get('phases')}")
    if naive is not None:
        print(f"  naive: {naive.get('phases')}")


if __name__ == "__main__":
    main()
