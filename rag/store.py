"""Chroma vector store (the only importer of ``chromadb``), embedded or over HTTP.

- Vectors are always passed explicitly: Chroma's default embedding function downloads a
  model, so no call here ever gives it text to embed.
- Telemetry is off.
- HNSW parameters are set when the collection is created (Chroma's defaults give poor recall
  and cannot be fixed afterwards); the collection records which embedding model filled it,
  and opening it with another model is an :class:`EmbedderMismatchError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag.config import StoreSettings
from rag.errors import EmbedderMismatchError, StoreError
from rag.types import Chunk, Hit

MAX_BATCH = 5000
_GROUP_SEP = "|"
ACL_PREFIX = "acl:"


def _client(settings: StoreSettings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if settings.mode == "http":
            return chromadb.HttpClient(
                host=settings.host, port=settings.port, settings=chroma_settings
            )
        settings.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.path), settings=chroma_settings)
    except Exception as exc:
        where = (
            f"{settings.host}:{settings.port}" if settings.mode == "http" else str(settings.path)
        )
        raise StoreError(
            f"Cannot open the Chroma store at {where} ({type(exc).__name__}: {exc}). "
            "Check the path is writable (or the server is running) and retry."
        ) from exc


def groups_field(groups: Sequence[str]) -> str:
    """Groups as one delimited string, so a containment filter can match a single group."""
    return _GROUP_SEP + _GROUP_SEP.join(groups) + _GROUP_SEP


def _metadata(chunk: Chunk, file_hash: str) -> dict[str, str | int | float | bool]:
    meta: dict[str, str | int | float | bool] = {
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "title": chunk.title,
        "section": chunk.section,
        "index": chunk.index,
        "groups": groups_field(chunk.groups),
        "content_hash": chunk.content_hash,
        "file_hash": file_hash,
    }
    if chunk.page is not None:
        meta["page"] = chunk.page
    # One boolean key per group, so a Chroma ``where`` can select by group (the delimited
    # ``groups`` string cannot be matched by substring in Chroma's metadata filters).
    for group in chunk.groups:
        meta[acl_key(group)] = True
    return meta


def acl_key(group: str) -> str:
    """The metadata key that marks a chunk readable by ``group``."""
    return ACL_PREFIX + group


def acl_where(groups: Sequence[str]) -> dict[str, Any]:
    """A Chroma ``where`` matching chunks readable by any of ``groups`` (non-empty)."""
    clauses: list[dict[str, Any]] = [{acl_key(g): True} for g in sorted(groups)]
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _chunk_from(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    groups = tuple(g for g in str(meta.get("groups", "")).split(_GROUP_SEP) if g)
    page = meta.get("page")
    return Chunk(
        chunk_id=chunk_id,
        doc_id=str(meta.get("doc_id", "")),
        text=text,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        page=int(page) if isinstance(page, int) else None,
        index=int(meta.get("index", 0)),
        groups=groups,
        content_hash=str(meta.get("content_hash", "")),
    )


class ChromaStore:
    """One Chroma collection holding the chunks of one embedding model."""

    def __init__(self, settings: StoreSettings, *, embedder_id: str, dimension: int) -> None:
        self._settings = settings
        self._client = _client(settings)
        self._collection = self._open(embedder_id, dimension)

    def _open(self, embedder_id: str, dimension: int) -> Any:
        name = self._settings.collection
        try:
            existing = {c.name for c in self._client.list_collections()}
            if name in existing:
                collection = self._client.get_collection(name, embedding_function=None)
            else:
                collection = self._client.create_collection(
                    name,
                    configuration={
                        "hnsw": {
                            "space": "cosine",
                            "ef_construction": self._settings.hnsw_ef_construction,
                            "ef_search": self._settings.hnsw_ef_search,
                            "max_neighbors": self._settings.hnsw_max_neighbors,
                        }
                    },
                    metadata={"embedder": embedder_id, "dimension": dimension},
                    embedding_function=None,
                )
        except Exception as exc:
            raise StoreError(
                f"Cannot open collection {name!r} ({type(exc).__name__}: {exc}). "
                "Check the store path and permissions."
            ) from exc
        built_with = (collection.metadata or {}).get("embedder")
        if built_with and built_with != embedder_id:
            raise EmbedderMismatchError(
                f"Collection {name!r} was built with embedding model {built_with!r}, but the "
                f"configured model is {embedder_id!r}. Set embedding.model back, or rebuild "
                "the index with the new model (rag-ingest reindex)."
            )
        return collection

    def upsert(
        self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]], file_hash: str = ""
    ) -> None:
        for start in range(0, len(chunks), MAX_BATCH):
            part = chunks[start : start + MAX_BATCH]
            try:
                self._collection.upsert(
                    ids=[c.chunk_id for c in part],
                    embeddings=[list(v) for v in vectors[start : start + MAX_BATCH]],
                    documents=[c.text for c in part],
                    metadatas=[_metadata(c, file_hash) for c in part],
                )
            except Exception as exc:
                raise StoreError(
                    f"Writing to the store failed ({type(exc).__name__}: {exc}). "
                    "Check free disk space and permissions, then run the ingest again."
                ) from exc

    def file_hash(self, doc_id: str) -> str | None:
        """The file hash stored with a document's chunks, or None when it is not indexed."""
        got = self._collection.get(where={"doc_id": doc_id}, limit=1, include=["metadatas"])
        metas = got.get("metadatas") or []
        return str(metas[0].get("file_hash", "")) if metas else None

    def chunk_ids(self, doc_id: str) -> list[str]:
        got = self._collection.get(where={"doc_id": doc_id}, include=[])
        return [str(i) for i in got.get("ids") or []]

    def delete_ids(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            self._collection.delete(ids=list(ids[start : start + MAX_BATCH]))

    def delete_document(self, doc_id: str) -> None:
        self._collection.delete(where={"doc_id": doc_id})

    def query(self, vector: Sequence[float], k: int) -> list[Hit]:
        try:
            res = self._collection.query(
                query_embeddings=[list(vector)],
                n_results=k,
                include=["documents", "metadatas", "distances"],
            )
        except Exception as exc:
            raise StoreError(
                f"Searching the store failed ({type(exc).__name__}: {exc}). "
                "Check the store is readable; run rag-ingest to (re)build it."
            ) from exc
        ids = (res.get("ids") or [[]])[0]
        docs = (res.get("documents") or [[]])[0]
        metas = (res.get("metadatas") or [[]])[0]
        dists = (res.get("distances") or [[]])[0]
        return [
            Hit(_chunk_from(str(i), str(d or ""), dict(m or {})), 1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def count(self) -> int:
        return int(self._collection.count())

    # -- retrieval (issue 4): filtered search and chunk look-ups ------------------------------

    def query_where(
        self, vector: Sequence[float], k: int, where: dict[str, Any] | None
    ) -> list[Hit]:
        """Nearest chunks among those matching ``where`` (Chroma filters before ranking)."""
        if k < 1:
            return []
        try:
            res = self._collection.query(
                query_embeddings=[list(vector)],
                n_results=k,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        except Exception as exc:
            raise StoreError(
                f"Searching the store failed ({type(exc).__name__}: {exc}). "
                "Check the store is readable; run rag-ingest to (re)build it."
            ) from exc
        ids = (res.get("ids") or [[]])[0]
        docs = (res.get("documents") or [[]])[0]
        metas = (res.get("metadatas") or [[]])[0]
        dists = (res.get("distances") or [[]])[0]
        return [
            Hit(_chunk_from(str(i), str(d or ""), dict(m or {})), 1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def _get(self, **kwargs: Any) -> list[Chunk]:
        try:
            got = self._collection.get(include=["documents", "metadatas"], **kwargs)
        except Exception as exc:
            raise StoreError(
                f"Reading from the store failed ({type(exc).__name__}: {exc}). "
                "Check the store is readable."
            ) from exc
        return [
            _chunk_from(str(i), str(d or ""), dict(m or {}))
            for i, d, m in zip(
                got.get("ids") or [],
                got.get("documents") or [],
                got.get("metadatas") or [],
                strict=True,
            )
        ]

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the order asked (unknown ids are left out)."""
        found: dict[str, Chunk] = {}
        for start in range(0, len(ids), MAX_BATCH):
            for chunk in self._get(ids=list(ids[start : start + MAX_BATCH])):
                found[chunk.chunk_id] = chunk
        return [found[i] for i in ids if i in found]

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        """All chunks of one document, in document order."""
        return sorted(self._get(where={"doc_id": doc_id}), key=lambda c: c.index)

    def chunks_where(self, where: dict[str, Any] | None, limit: int | None = None) -> list[Chunk]:
        """Chunks matching ``where`` (all when None), up to ``limit``."""
        return self._get(where=where, limit=limit)

    def all_ids(self) -> list[str]:
        """Every chunk id in the collection (for reconciling secondary indexes)."""
        ids: list[str] = []
        total = self.count()
        for offset in range(0, total, MAX_BATCH):
            got = self._collection.get(include=[], limit=MAX_BATCH, offset=offset)
            ids.extend(str(i) for i in got.get("ids") or [])
        return ids
