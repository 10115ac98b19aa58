"""Incremental ingest against a real Chroma and the real embedder: the manifest, the
IndexListener seam, sync and delete, access groups, and reindex with another model."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rag.types import Chunk

pytestmark = pytest.mark.usefixtures("assets")


class Recorder:
    """An IndexListener that records what it hears (a fake at the seam)."""

    def __init__(self) -> None:
        self.upserted: dict[str, Chunk] = {}
        self.events: list[tuple[str, Any]] = []

    def on_upsert(self, chunks: Sequence[Chunk]) -> None:
        self.events.append(("upsert", [c.chunk_id for c in chunks]))
        self.upserted.update({c.chunk_id: c for c in chunks})

    def on_delete(self, chunk_ids: Sequence[str]) -> None:
        self.events.append(("delete", list(chunk_ids)))
        for cid in chunk_ids:
            self.upserted.pop(cid, None)

    def commit(self) -> None:
        self.events.append(("commit", None))


class Renamed:
    """The real embedder under another model id (an Embedder seam stand-in for a new model)."""

    def __init__(self, inner: Any, model_id: str) -> None:
        self._inner = inner
        self.model_id = model_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture(scope="module")
def embedder(make_settings: Any) -> Any:
    from rag.index.embedding import create_embedder

    embedder = create_embedder(make_settings().embedding)
    assert embedder.dimension == 512
    return embedder


def open_kb(settings: Any, embedder: Any, listeners: Sequence[Any] = ()) -> Any:
    from ingest.pipeline import Ingestor
    from rag.index.store import ChromaStore

    store = ChromaStore(settings.store, embedder_id=embedder.model_id, dimension=512)
    return Ingestor(settings, embedder, store, listeners=listeners)


def consistent(ingestor: Any) -> dict[str, int]:
    """The store holds exactly the manifest's chunks: per document, once."""
    manifest, store = ingestor.manifest, ingestor._store
    ids = store.all_ids()
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(manifest.all_chunk_ids(store.name))
    assert manifest.open_work(store.name) == 0
    owners = store.doc_ids_of(ids)
    per_doc: dict[str, int] = {}
    for cid in ids:
        per_doc[owners[cid]] = per_doc.get(owners[cid], 0) + 1
    for doc in manifest.documents(store.name):
        assert per_doc.get(doc.doc_id) == doc.chunks
    return per_doc


def test_listener_hears_every_change_and_sync_deletes_gone_files(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "a.md").write_text("# Badges\n\nThe badge office is room 101.\n")
    (root / "b.md").write_text("# Parking\n\nVisitor parking is level -2.\n")
    settings = make_settings()
    rec = Recorder()
    ingestor = open_kb(settings, embedder, [rec])

    first = {Path(r.path).name: r for r in ingestor.sync(root)}
    assert {n: r.status for n, r in first.items()} == {"a.md": "added", "b.md": "added"}
    assert [e[0] for e in rec.events] == ["upsert", "upsert", "commit"]
    assert all(c.groups == ("everyone",) and c.language == "en" for c in rec.upserted.values())
    assert all(c.ingested_at.startswith("20") for c in rec.upserted.values())
    old_a = set(ingestor.manifest.chunk_ids(ingestor._store.name, first["a.md"].doc_id))

    rec.events.clear()
    (root / "a.md").write_text("# Badges\n\nThe badge office moved to room 202.\n")
    (root / "b.md").unlink()
    (root / "c.md").write_text("# Canteen\n\nThe canteen opens at 11:30.\n")
    second = {Path(r.path).name: r.status for r in ingestor.sync(root)}
    assert second == {"a.md": "updated", "c.md": "added", "b.md": "deleted"}
    deleted = {cid for kind, ids in rec.events if kind == "delete" for cid in ids}
    assert old_a <= deleted
    assert rec.events[-1] == ("commit", None)
    per_doc = consistent(ingestor)
    assert sorted(rec.upserted) == sorted(ingestor._store.all_ids())
    assert len(per_doc) == 2

    third = {Path(r.path).name: r.status for r in ingestor.sync(root)}
    assert third == {"a.md": "unchanged", "c.md": "unchanged"}

    gone = ingestor.delete(str(root / "c.md"))
    assert gone.status == "deleted" and gone.chunks == 1
    assert ingestor.manifest.stats(ingestor._store.name)["documents"] == 1
    consistent(ingestor)


def test_groups_from_rules_and_sidecars_travel_with_every_chunk(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    (root / "hr").mkdir(parents=True)
    (root / "hr" / "pay.md").write_text("# Pay\n\nSalaries are paid on the 25th.\n")
    (root / "board.md").write_text("# Board\n\nThe board meets quarterly.\n")
    sidecar = root / "board.md.meta.json"
    sidecar.write_text(json.dumps({"groups": ["board"], "title": "Board minutes"}))
    (root / "open.md").write_text("# Lobby\n\nThe lobby opens at 06:45.\n")
    settings = make_settings(
        ingest={"default_groups": ["staff"], "group_rules": [{"pattern": "hr/*", "groups": ["hr"]}]}
    )
    rec = Recorder()
    ingestor = open_kb(settings, embedder, [rec])
    results = {Path(r.path).name: r.status for r in ingestor.add([root])}
    assert results == {"pay.md": "added", "board.md": "added", "open.md": "added"}  # no sidecar
    stored = {h.chunk.source: h.chunk for h in ingestor._store.query(embedder.embed_query("x"), 9)}
    groups = {Path(s).name: c.groups for s, c in stored.items()}
    assert groups == {"pay.md": ("hr",), "board.md": ("board",), "open.md": ("staff",)}
    assert stored[f"{root.name}/board.md"].title == "Board minutes"  # under its folder

    sidecar.write_text(json.dumps({"groups": ["board", "exec"]}))
    again = {Path(r.path).name: r.status for r in ingestor.add([root])}
    assert again == {"pay.md": "unchanged", "board.md": "updated", "open.md": "unchanged"}
    board = [c for c in rec.upserted.values() if c.source.endswith("board.md")]
    assert board and all(c.groups == ("board", "exec") for c in board)
    consistent(ingestor)


def test_another_model_is_refused_and_reindex_switches_when_complete(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    from ingest.reindex import Reindex
    from rag.errors import EmbedderMismatchError, IndexBusyError
    from rag.index.manifest import Manifest, active_collection
    from rag.index.store import ChromaStore

    root = tmp_path / "kb"
    root.mkdir()
    for name in ("a", "b"):
        (root / f"{name}.md").write_text(f"# Doc {name}\n\nFact number {name} is here.\n")
    settings = make_settings()
    ingestor = open_kb(settings, embedder)
    assert {r.status for r in ingestor.add([root])} == {"added"}
    ingestor.manifest.close()

    new_model = Renamed(embedder, "builtin:use-multilingual-v3@v2")
    with pytest.raises(EmbedderMismatchError, match="rag-ingest reindex"):
        ChromaStore(settings.store, embedder_id=new_model.model_id, dimension=512)
    # A running server's store (live, no collection named) follows the switch, no restart.
    serving = ChromaStore(settings.store, embedder_id=None, live=True)

    rec = Recorder()
    with Manifest(settings.store.manifest_path()) as manifest:
        job = Reindex(settings, new_model, manifest, listeners=[rec])
        other = Manifest(settings.store.manifest_path())
        with other, pytest.raises(IndexBusyError):  # the writer lock is held until close()
            other.lock()
        assert job.old == "knowledge" and job.target != job.old
        results = list(job.run())
        assert [r.status for r in results] == ["added", "added"]
        # Built but not switched: queries still go to the old collection.
        assert active_collection(settings.store) == "knowledge"
        time.sleep(0.3)  # past the watch's interval
        assert serving.count() == 2 and serving.name == "knowledge"
        job.switch()
        job.close()
    assert active_collection(settings.store) == job.target
    time.sleep(0.3)
    assert serving.count() == 2 and serving.name == job.target
    serving.close()
    store = ChromaStore(settings.store, embedder_id=new_model.model_id, dimension=512)
    assert store.name == job.target and store.count() == 2
    with Manifest(settings.store.manifest_path()) as manifest:
        assert manifest.stats(job.target)["documents"] == 2
        assert manifest.stats("knowledge")["documents"] == 0
    assert rec.events[-1] == ("commit", None)


def test_a_process_pool_parses_the_same_chunks_as_in_process(
    make_settings: Any, embedder: Any
) -> None:
    from ingest.work import ParseJob, prepare
    from rag.index.embedding import token_counter
    from tests.conftest import KB_DIR

    settings = make_settings(ingest={"workers": 2})
    cfg = settings.ingest
    files = [KB_DIR / "it-wifi-and-vpn.md", KB_DIR / "hr-leave-policy.docx"]
    inline = []
    for path in files:
        job = ParseJob(
            str(path),
            cfg.pdf_strategy,
            cfg.chunk_tokens,
            cfg.chunk_overlap,
            cfg.max_unzipped_mb,
            cfg.max_zip_ratio,
            token_counter(settings.embedding),
        )
        inline += [(p.text, p.section) for p in prepare(job).plans]
    rec = Recorder()
    ingestor = open_kb(settings, embedder, [rec])
    assert {r.status for r in ingestor.add(files)} == {"added"}
    pooled = [(c.text, c.section) for c in rec.upserted.values()]
    assert sorted(pooled) == sorted(inline) and len(inline) > 2


def test_listeners_commit_even_when_a_run_fails(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    class Exploding(Recorder):
        def on_upsert(self, chunks: Sequence[Chunk]) -> None:
            super().on_upsert(chunks)
            if len(self.upserted) > 1:
                raise RuntimeError("keyword index full")

    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.md").write_text(f"# {name}\n\nNote {name}.\n")
    rec = Exploding()
    ingestor = open_kb(make_settings(ingest={"embed_batch_chunks": 1}), embedder, [rec])
    with pytest.raises(RuntimeError, match="keyword index full"):
        list(ingestor.add([tmp_path]))
    assert rec.events[-1] == ("commit", None)
    assert [e[0] for e in rec.events].count("upsert") == 2
    # The store write of b was committed before the listener failed: nothing is lost.
    assert ingestor.manifest.stats(ingestor._store.name)["documents"] == 2
    consistent(ingestor)
