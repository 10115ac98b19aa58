"""What a parse worker does with one file: check its bytes, parse it, plan its chunks.

Runs in a worker process of the pool (or in-process with ``ingest.workers: 1``); takes and
returns small picklable values, and turns every failure into a message, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ingest.chunk import ChunkPlan, plan_chunks
from ingest.guard import check_file, shown
from ingest.parse import parse_file
from rag.embedding import count_tokens_with
from rag.errors import RagError


@dataclass(frozen=True, slots=True)
class ParseJob:
    path: str
    pdf_strategy: str
    chunk_tokens: int
    chunk_overlap: int
    max_unzipped_mb: float
    max_zip_ratio: float
    tokenizer_json: str | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    title: str = ""
    pages: int = 0
    plans: list[ChunkPlan] = field(default_factory=list)
    error: str | None = None


def prepare(job: ParseJob, count_tokens: Callable[[str], int] | None = None) -> Parsed:
    """Check, parse and plan one file; errors come back as ``Parsed.error``."""
    path = Path(job.path)
    try:
        check_file(path, max_unzipped_mb=job.max_unzipped_mb, max_zip_ratio=job.max_zip_ratio)
        doc = parse_file(path, pdf_strategy=job.pdf_strategy)
        if count_tokens is None:
            if job.tokenizer_json is None:
                raise RuntimeError("no token counter")
            count_tokens = partial(count_tokens_with, job.tokenizer_json)
        plans = plan_chunks(doc, count_tokens, job.chunk_tokens, job.chunk_overlap)
    except RagError as exc:
        return Parsed(error=exc.message)
    except (MemoryError, RecursionError) as exc:
        return Parsed(
            error=f"{shown(path.name)}: too large or too deeply nested to parse "
            f"({type(exc).__name__}). Split or simplify it, then add it again."
        )
    except Exception as exc:
        return Parsed(
            error=f"{shown(path.name)}: the parser failed ({type(exc).__name__}). Check that "
            "the file opens in its usual application, re-save it, and add it again."
        )
    if not plans:
        return Parsed(
            error=f"{shown(path.name)}: no text to index. Export it with a text layer "
            "(or enable OCR for scans) and add it again."
        )
    return Parsed(doc.title, doc.pages, plans)
