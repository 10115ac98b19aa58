"""Progress of an ingest run: files/s, chunks/s and ETA, for a rich bar or JSON lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ingest.pipeline import FileResult


@dataclass
class Rates:
    """Counts and rates over a run of ``total`` files."""

    total: int
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    chunks: int = 0
    pages: int = 0
    ocr_pages: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, result: FileResult) -> None:
        # An e-mail attachment is reported on its own line but is not one of the files.
        self.done += result.status != "deleted" and not result.parent
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status in {"added", "updated"}:
            self.chunks += result.chunks
            self.pages += result.pages
            self.ocr_pages += result.ocr_pages

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-6)

    @property
    def files_per_s(self) -> float:
        return self.done / self.elapsed

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.elapsed

    @property
    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return max(self.total - self.done, 0) / self.files_per_s

    def snapshot(self) -> dict[str, float | int | None]:
        eta = self.eta_s
        return {
            "done": self.done,
            "total": self.total,
            "files_per_s": round(self.files_per_s, 2),
            "chunks_per_s": round(self.chunks_per_s, 2),
            "eta_s": None if eta is None else round(eta, 1),
        }

    def summary(self) -> str:
        parts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items())) or "no files"
        return (
            f"{parts} in {self.elapsed:.1f} s ({self.files_per_s:.1f} files/s, "
            f"{self.chunks_per_s:.1f} chunks/s)"
        )
