"""``rag-ingest reindex``: rebuild the index with the configured embedding model.

A new collection is filled beside the active one (queries keep using the old one), from the
documents the manifest lists; only when every document that still exists is stored does one
manifest transaction switch the active-collection pointer. An interrupted reindex resumes
where it stopped (the target's name is kept in the manifest). The previous collection is
kept for servers that still have it open; older generations are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ingest.pipeline import FileResult, Ingestor, Target
from rag.config import Settings
from rag.errors import EmbedderMismatchError
from rag.index.manifest import PREVIOUS_KEY, REINDEX_KEY, Manifest
from rag.index.store import ChromaStore
from rag.seams import Embedder, IndexListener
from rag.state.shared import WriterLock


class Reindex:
    """Build the target collection, then :meth:`switch` (the caller checks the results),
    then :meth:`close`. The writer locks (the manifest's, and ``writer`` across machines with
    a shared state database) are held from start to switch; ``on_switch`` tells the other
    machines (it raises the store's version)."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        manifest: Manifest,
        listeners: Sequence[IndexListener] = (),
        *,
        writer: WriterLock | None = None,
        on_switch: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._manifest = manifest
        self._listeners = tuple(listeners)
        self._writer = writer
        self._on_switch = on_switch
        manifest.lock()
        if writer is not None:
            try:
                writer.acquire()
            except BaseException:
                manifest.unlock()
                raise
        base = settings.store.collection
        self.old = manifest.active(base)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.target = manifest.get_meta(REINDEX_KEY) or f"{base}-{stamp}"
        manifest.set_meta(REINDEX_KEY, self.target)
        self.documents = list(manifest.documents(self.old))
        try:
            store = self._open(embedder)
        except EmbedderMismatchError:
            # An interrupted reindex with another model: start that target afresh.
            ChromaStore(settings.store, embedder_id=None, collection=self.old).drop_collection(
                self.target
            )
            manifest.forget(self.target)
            store = self._open(embedder)
        self.store = store
        self.ingestor = Ingestor(
            settings, embedder, store, listeners=self._listeners, manifest=manifest
        )

    def _open(self, embedder: Embedder) -> ChromaStore:
        return ChromaStore(
            self._settings.store,
            embedder_id=embedder.model_id,
            dimension=lambda: embedder.dimension,
            collection=self.target,
        )

    def run(self) -> Iterator[FileResult]:
        # An e-mail's attachments come back with their message.
        targets = (
            Target(Path(d.path), Path(d.root) if d.root else None)
            for d in self.documents
            if not d.parent
        )
        return self.ingestor.run(targets)

    def switch(self) -> list[str]:
        """Make the target active; returns the collections dropped (older generations)."""
        old_ids = set(self._manifest.all_chunk_ids(self.old))
        new_ids = set(self._manifest.all_chunk_ids(self.target))
        previous = self._manifest.get_meta(PREVIOUS_KEY)
        self._manifest.switch(self.target, self.old)
        gone = sorted(old_ids - new_ids)
        if gone:
            for listener in self._listeners:
                listener.on_delete(gone)
        for listener in self._listeners:
            listener.commit()
        if self._on_switch is not None:
            self._on_switch()
        dropped = []
        if previous and previous not in {self.old, self.target}:
            self.store.drop_collection(previous)
            dropped.append(previous)
        return dropped

    def close(self) -> None:
        """Release the writer locks."""
        try:
            if self._writer is not None:
                self._writer.release()
        finally:
            self._manifest.unlock()
