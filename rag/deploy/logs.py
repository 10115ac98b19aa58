"""Logging for the entry points: the service's own INFO lines, libraries' only from WARNING.

``rag-serve`` logs one line per request (the request middleware's; uvicorn's access log is
off) and ``rag-ingest`` prints its own progress: at INFO, what libraries say about
themselves (bm25s' progress, onnxruntime's graph notes, Chroma's, httpx's requests) is
noise: their records below WARNING are dropped. ``configure(verbose=True)`` keeps them.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = (
    "bm25s",
    "chromadb",
    "httpx",
    "httpcore",
    "jieba",
    "onnxruntime",
    "sentence_transformers",
    "transformers",
    "urllib3",
    "uvicorn.access",
)


def _not_noise(record: logging.LogRecord) -> bool:
    """False for a library's record below WARNING (bm25s sets its own logger to DEBUG when
    imported, so the loggers' levels alone cannot keep it quiet)."""
    if record.levelno >= logging.WARNING:
        return True
    return not any(record.name == n or record.name.startswith(n + ".") for n in QUIET)


def configure(level: int = logging.INFO, *, verbose: bool = False) -> None:
    """One stderr handler on the root logger at ``level`` (replacing any a library added,
    e.g. onnxruntime's quantizer calls ``basicConfig`` on import); records below WARNING from
    the libraries in ``QUIET`` are dropped unless ``verbose``."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    if not verbose:
        handler.addFilter(_not_noise)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
