"""The service's one ingest pipeline: uploads and deletes through ``/v1/documents``.

One long-lived :class:`ingest.pipeline.Ingestor` (one parse pool, kept up between uploads)
runs on one thread of its own: its manifest connection belongs to that thread, and the work
is serialised there. Requests queue for it behind an asyncio lock; one that waits longer
than ``server.upload_wait_s`` gets a 409 that says to retry, never a crash. A ``rag-ingest``
run in another process still holds the index's writer lock: an upload meanwhile gets its
clear 409 (``IndexBusyError``) too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rag.errors import IndexBusyError
from rag.services import Services

if TYPE_CHECKING:
    from ingest.pipeline import Ingestor
    from ingest.targets import FileResult

T = TypeVar("T")
MAX_FILES_PER_UPLOAD = 20


class Uploads:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = asyncio.Lock()
        self._thread: ThreadPoolExecutor | None = None
        self._ingestor: Ingestor | None = None

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def add(self, paths: list[Path]) -> list[FileResult]:
        """Ingest saved files; one result per path, in order."""

        def run(ingestor: Ingestor) -> list[FileResult]:
            results = {r.path: r for r in ingestor.add(paths)}
            return [results[str(p)] for p in paths]

        return await self._run(run)

    async def delete(self, doc_id: str) -> FileResult:
        return await self._run(lambda ingestor: ingestor.delete(doc_id))

    async def _run(self, work: Callable[[Ingestor], T]) -> T:
        wait = self._services.settings.server.upload_wait_s
        try:
            async with asyncio.timeout(wait):
                await self._lock.acquire()
        except TimeoutError:
            raise IndexBusyError(
                f"Another upload is being indexed; this one waited {wait:g} s for it. Retry "
                "in a minute."
            ) from None
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uploads")
        future = asyncio.get_running_loop().run_in_executor(self._thread, self._call, work)
        try:
            # A client that leaves does not stop the pipeline midway: the lock is held
            # until the work on the thread is done.
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._lock.release()
            else:
                future.add_done_callback(lambda _: self._lock.release())

    def _call(self, work: Callable[[Ingestor], T]) -> T:
        if self._ingestor is None:
            from ingest.pipeline import build_ingestor

            kb = self._services.part(self._services.kb, "knowledge base")
            self._ingestor = build_ingestor(self._services.settings, kb, keep_workers=True)
        return work(self._ingestor)

    def _shut(self) -> None:
        if self._ingestor is not None:
            with contextlib.suppress(Exception):
                self._ingestor.close()
            self._ingestor = None

    async def close(self) -> None:
        """Stop the parse workers once the current upload (if any) is done; a later upload
        starts them again."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, self._shut)
            thread.shutdown(wait=False)
