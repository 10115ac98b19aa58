"""Chroma vector store (the only importer of ``chromadb``), embedded or over HTTP.

- Vectors are always passed explicitly: Chroma's default embedding function downloads a
  model, so no call here ever gives it text to embed.
- Telemetry is off.
- ``store.mode: http`` talks to a Chroma server (``chroma run``) in ``store.tenant`` /
  ``store.database``, with an optional auth header whose token comes from the environment.
- Live reads (``live=True``, the running service): an embedded Chroma client keeps each
  collection's HNSW index in memory and never sees what another process (``rag-ingest``)
  added or deleted: dense search misses new chunks and a filtered search over them fails
  with "Error finding id". The store watches the manifest's write counter
  (:class:`rag.index.manifest.ManifestWatch`, read at most every 0.25 s) and reopens its
  client when it moved (~50 ms), so another writer's commit is searchable within a second.
  A Chroma server (``store.mode: http``) serves every client the same index: nothing to do.
- HNSW parameters are set when the collection is created (Chroma's defaults give poor recall
  and cannot be fixed afterwards); the collection records which embedding model filled it,
  and opening it with another model is an :class:`EmbedderMismatchError`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from rag.config import StoreSettings
from rag.errors import (
    ConfigError,
    EmbedderMismatchError,
    NoCollectionError,
    StoreError,
    how_to_run,
    storage_failure,
)
from rag.index.manifest import shown_source
from rag.types import Chunk, Hit

log = logging.getLogger(__name__)

MAX_BATCH = 5000
_GROUP_SEP = "|"
ACL_PREFIX = "acl:"


def auth_headers(
    settings: StoreSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The auth header for a Chroma server: the token comes from the environment variable
    named by ``store.auth_token_env`` (never from YAML); none when that is null."""
    if settings.auth_token_env is None:
        return {}
    env = os.environ if environ is None else environ
    token = env.get(settings.auth_token_env, "").strip()
    if not token:
        raise ConfigError(
            f"store.auth_token_env names {settings.auth_token_env}, but that variable is not "
            "set. Export the Chroma token in it, or set store.auth_token_env to null."
        )
    header = settings.auth_header
    if header.lower() == "authorization" and " " not in token:
        token = f"Bearer {token}"
    return {header: token}


def _server_client(settings: StoreSettings, chroma_settings: Any) -> Any:
    """An HTTP client for ``store.tenant``/``store.database``; a missing database is created
    (a new knowledge base starts empty), a missing tenant is an error for the server's admin."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from chromadb.errors import NotFoundError

    headers = auth_headers(settings)
    where = f"{'https' if settings.ssl else 'http'}://{settings.host}:{settings.port}"
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ssl": settings.ssl,
        "headers": headers,
        "settings": chroma_settings,
    }
    try:
        return chromadb.HttpClient(**common, tenant=settings.tenant, database=settings.database)
    except NotFoundError as exc:
        if "tenant" in str(exc).lower():
            raise StoreError(
                f"The Chroma server at {where} has no tenant {settings.tenant!r}. Create it "
                "there (chromadb AdminClient.create_tenant) or set store.tenant."
            ) from exc
    admin = chromadb.AdminClient(
        ChromaSettings(
            anonymized_telemetry=False,
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=settings.host,
            chroma_server_http_port=settings.port,
            chroma_server_ssl_enabled=settings.ssl,
            chroma_server_headers=headers or None,
        )
    )
    admin.create_database(settings.database, tenant=settings.tenant)
    log.info("created Chroma database %s in tenant %s", settings.database, settings.tenant)
    return chromadb.HttpClient(**common, tenant=settings.tenant, database=settings.database)


def _client(settings: StoreSettings, *, fresh: bool = False) -> Any:
    """A Chroma client; ``fresh`` opens a new embedded instance (HNSW indexes read again from
    disk) instead of the one chromadb shares per path inside a process."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    if fresh and settings.mode != "http":
        # chromadb caches one System per path; dropping our entry (without stopping it:
        # collections opened from it keep working until released) makes the next client
        # load the store as it is on disk now.
        SharedSystemClient._identifier_to_system.pop(str(settings.path), None)

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if settings.mode == "http":
            return _server_client(settings, chroma_settings)
        settings.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.path), settings=chroma_settings)
    except (StoreError, ConfigError):
        raise
    except Exception as exc:
        if settings.mode != "http":
            # chromadb caches a System for the path before it has started; one that failed
            # (a read-only or missing store) would be handed to every later client in this
            # process, each failing on its missing bindings. Drop it so the next try starts
            # afresh.
            SharedSystemClient._identifier_to_system.pop(str(settings.path), None)
        if settings.mode == "http":
            raise StoreError(
                f"Cannot reach the Chroma server at {settings.host}:{settings.port} "
                f"(tenant {settings.tenant!r}, database {settings.database!r}; "
                f"{type(exc).__name__}: {exc}). Check the server is running (chroma run), "
                "store.host/port/ssl and the auth token, then retry."
            ) from exc
        raise storage_failure(exc, "vector store", settings.path) or StoreError(
            f"Cannot open the Chroma store at {settings.path} ({type(exc).__name__}: {exc}). "
            "Check the path is writable and retry."
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
    for key in ("language", "ingested_at", "url", "sheet", "parent"):
        value = getattr(chunk, key)
        if value:
            meta[key] = value
    # One boolean key per group, so a Chroma ``where`` can select by group (the delimited
    # ``groups`` string cannot be matched by substring in Chroma's metadata filters).
    if chunk.ocr_confidence is not None:
        meta["ocr"] = True
        meta["ocr_confidence"] = round(chunk.ocr_confidence, 1)
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
    ocr = meta.get("ocr_confidence")
    return Chunk(
        chunk_id=chunk_id,
        doc_id=str(meta.get("doc_id", "")),
        text=text,
        source=shown_source(str(meta.get("source", ""))),  # older indexes: absolute paths
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        page=int(page) if isinstance(page, int) else None,
        index=int(meta.get("index", 0)),
        groups=groups,
        content_hash=str(meta.get("content_hash", "")),
        language=str(meta.get("language", "")),
        ingested_at=str(meta.get("ingested_at", "")),
        url=str(meta.get("url", "")),
        sheet=str(meta.get("sheet", "")),
        parent=str(meta.get("parent", "")),
        ocr_confidence=float(ocr) if isinstance(ocr, int | float) else None,
    )


class ChromaStore:
    """One Chroma collection holding the chunks of one embedding model.

    ``collection`` defaults to the active one: the manifest's pointer (set by
    ``rag-ingest reindex``) or else ``store.collection``. With ``embedder_id=None`` the
    collection is opened as it is (no model check, never created): for list, stats, delete.
    """

    def __init__(
        self,
        settings: StoreSettings,
        *,
        embedder_id: str | None,
        dimension: int | Callable[[], int] = 0,
        collection: str | None = None,
        live: bool = False,
    ) -> None:
        from rag.index.manifest import ManifestWatch, active_collection

        self._settings = settings
        self._watch = (
            ManifestWatch(settings.manifest_path()) if live and settings.mode != "http" else None
        )
        self._reopen = threading.Lock()
        # Live on the manifest file, without a collection named: follow the active pointer
        # (a reindex switched it) each time another writer's change reopens the store.
        self._follow = self._watch is not None and collection is None
        self._client = _client(settings)
        self.name = collection or active_collection(settings)
        self._current = self._open(self.name, embedder_id, dimension)

    @property
    def _collection(self) -> Any:
        """The open collection; in live mode reopened when another writer changed the index."""
        if self._watch is not None and self._watch.changed():
            self.refresh()
        return self._current

    def refresh(self, collection: str | None = None) -> None:
        """Open the collection again from disk (another process wrote to it); with
        ``collection``, that one (another machine's reindex switched the active one)."""
        if collection is None and self._follow:
            from rag.index.manifest import active_collection

            try:
                collection = active_collection(self._settings)
            except StoreError as exc:
                log.warning("active collection unreadable (%s): keeping %s", exc.code, self.name)
        name = collection or self.name
        with self._reopen:
            try:
                client = _client(self._settings, fresh=True)
                current = client.get_collection(name, embedding_function=None)
            except Exception as exc:
                log.warning(
                    "store changed on disk but could not be reopened (%s); serving the "
                    "version already open",
                    type(exc).__name__,
                )
                return
            if name != self.name:
                log.info("store switched from collection %s to %s", self.name, name)
            self._client, self._current, self.name = client, current, name
            log.info("store reopened: another writer changed collection %s", self.name)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def _open(self, name: str, embedder_id: str | None, dimension: int | Callable[[], int]) -> Any:
        try:
            existing = set(self.collection_names())
            if name in existing:
                collection = self._client.get_collection(name, embedding_function=None)
            elif embedder_id is None:
                raise NoCollectionError(
                    f"The index has no collection {name!r} yet. Add documents first "
                    f"({how_to_run('rag-ingest add PATH')})."
                )
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
                    metadata={
                        "embedder": embedder_id,
                        # a callable: the model is loaded only when a collection is created
                        "dimension": dimension if isinstance(dimension, int) else dimension(),
                    },
                    embedding_function=None,
                )
        except StoreError:
            raise
        except Exception as exc:
            raise self._failure(exc) or StoreError(
                f"Cannot open collection {name!r} ({type(exc).__name__}: {exc}). "
                "Check the store path and permissions."
            ) from exc
        if embedder_id is None:
            return collection
        built_with = (collection.metadata or {}).get("embedder")
        if built_with and built_with != embedder_id:
            raise EmbedderMismatchError(
                f"Collection {name!r} was built with embedding model {built_with!r}, but the "
                f"configured model is {embedder_id!r}. Set the embedding settings back, or "
                f"rebuild the index with the new model: {how_to_run('rag-ingest reindex')} "
                "(queries keep using "
                "the old collection until the new one is complete)."
            )
        return collection

    def upsert(
        self,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        file_hash: str | Mapping[str, str] = "",
    ) -> None:
        """Write chunks in batches of at most 5,000; ``file_hash`` is one hash, or a hash
        per ``doc_id`` when the chunks come from several documents."""

        def hash_of(chunk: Chunk) -> str:
            if isinstance(file_hash, str):
                return file_hash
            return file_hash.get(chunk.doc_id, "")

        for start in range(0, len(chunks), MAX_BATCH):
            part = chunks[start : start + MAX_BATCH]
            self._write(
                "Writing to",
                "the ingest",
                partial(
                    self._collection.upsert,
                    ids=[c.chunk_id for c in part],
                    embeddings=[list(v) for v in vectors[start : start + MAX_BATCH]],
                    documents=[c.text for c in part],
                    metadatas=[_metadata(c, hash_of(c)) for c in part],
                ),
            )

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
            self._delete(ids=list(ids[start : start + MAX_BATCH]))

    def delete_document(self, doc_id: str) -> None:
        self._delete(where={"doc_id": doc_id})

    def _delete(self, **which: Any) -> None:
        self._write("Deleting from", "the command", lambda: self._collection.delete(**which))

    def _write(self, action: str, rerun: str, call: Callable[[], object]) -> None:
        """``call`` (a write to the collection), its failure as the typed error."""
        try:
            call()
        except Exception as exc:
            raise self._failure(exc) or StoreError(
                f"{action} the store failed ({type(exc).__name__}: {exc}). "
                f"Check free disk space and permissions, then run {rerun} again."
            ) from exc

    def _failure(self, exc: Exception) -> StoreError | None:
        """A full disk or read-only files, as the typed error that says what to do."""
        cfg = self._settings
        where = cfg.path if cfg.mode != "http" else f"the Chroma server {cfg.host}:{cfg.port}"
        return storage_failure(exc, "vector store", where)

    def query(self, vector: Sequence[float], k: int) -> list[Hit]:
        return self.query_where(vector, k, None)

    def count(self) -> int:
        return int(self._collection.count())

    @property
    def embedder_id(self) -> str:
        """The embedding model this collection was built with."""
        return str((self._collection.metadata or {}).get("embedder", ""))

    def all_ids(self) -> list[str]:
        """Every chunk id in the collection (consistency checks; paged)."""
        ids: list[str] = []
        offset = 0
        while True:
            got = self._collection.get(include=[], limit=MAX_BATCH, offset=offset)
            page = [str(i) for i in got.get("ids") or []]
            ids += page
            if len(page) < MAX_BATCH:
                return ids
            offset += MAX_BATCH

    def doc_ids_of(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        """chunk id -> doc id for the given ids that exist."""
        found: dict[str, str] = {}
        for start in range(0, len(chunk_ids), MAX_BATCH):
            got = self._collection.get(
                ids=list(chunk_ids[start : start + MAX_BATCH]), include=["metadatas"]
            )
            for cid, meta in zip(got.get("ids") or [], got.get("metadatas") or [], strict=True):
                found[str(cid)] = str((meta or {}).get("doc_id", ""))
        return found

    def collection_names(self) -> list[str]:
        return [c.name for c in self._client.list_collections()]

    def drop_collection(self, name: str) -> None:
        """Delete another collection (never the one this store has open)."""
        if name == self.name:
            raise StoreError(f"Refusing to drop the open collection {name!r}.")
        if name in self.collection_names():
            self._client.delete_collection(name)

    # -- retrieval (issue 4): filtered search and chunk look-ups ------------------------------

    def query_where(
        self, vector: Sequence[float], k: int, where: dict[str, Any] | None, *, text: bool = True
    ) -> list[Hit]:
        """Nearest chunks among those matching ``where`` (Chroma filters before ranking);
        ``text=False`` leaves the chunk texts empty (cheaper: read them for the final hits)."""
        if k < 1:
            return []
        include = ["documents", "metadatas", "distances"] if text else ["metadatas", "distances"]
        res = self._search(
            query_embeddings=[list(vector)], n_results=k, where=where, include=include
        )
        ids = (res.get("ids") or [[]])[0]
        docs = (res.get("documents") or [[""] * len(ids)])[0]
        metas = (res.get("metadatas") or [[]])[0]
        dists = (res.get("distances") or [[]])[0]
        return [
            Hit(_chunk_from(str(i), str(d or ""), dict(m or {})), 1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def _search(self, **query: Any) -> Any:
        try:
            return self._collection.query(**query)
        except Exception as first:
            if self._watch is None:
                raise self._search_failure(first) from first
            # Another writer's change not picked up yet ("Error finding id"): reopen, retry.
            self.refresh()
            try:
                return self._current.query(**query)
            except Exception as exc:
                raise self._search_failure(exc) from exc

    def _search_failure(self, exc: Exception) -> StoreError:
        cfg = self._settings
        where = cfg.path if cfg.mode != "http" else f"the Chroma server {cfg.host}:{cfg.port}"
        return self._failure(exc) or StoreError(
            f"Searching the store at {where} failed ({type(exc).__name__}: {exc}). Retry; "
            "if it keeps failing, check the store is readable (and the Chroma server is "
            "running, in http mode), then restart the service."
        )

    def query_ids(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        """Nearest chunk ids with cosine similarity, nothing else read (the cheapest query)."""
        if k < 1:
            return []
        res = self._search(query_embeddings=[list(vector)], n_results=k, include=["distances"])
        ids = (res.get("ids") or [[]])[0]
        dists = (res.get("distances") or [[]])[0]
        return [(str(i), 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]

    def _get(self, *, text: bool = True, **kwargs: Any) -> list[Chunk]:
        include = ["documents", "metadatas"] if text else ["metadatas"]
        try:
            got = self._collection.get(include=include, **kwargs)
        except Exception as exc:
            raise StoreError(
                f"Reading from the store failed ({type(exc).__name__}: {exc}). "
                "Check the store is readable."
            ) from exc
        ids = got.get("ids") or []
        return [
            _chunk_from(str(i), str(d or ""), dict(m or {}))
            for i, d, m in zip(
                ids,
                got.get("documents") or [""] * len(ids),
                got.get("metadatas") or [],
                strict=True,
            )
        ]

    def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored embeddings of these chunk ids (unknown ids are left out)."""
        out: dict[str, list[float]] = {}
        for start in range(0, len(ids), MAX_BATCH):
            try:
                got = self._collection.get(
                    ids=list(ids[start : start + MAX_BATCH]), include=["embeddings"]
                )
            except Exception as exc:
                raise StoreError(
                    f"Reading from the store failed ({type(exc).__name__}: {exc}). "
                    "Check the store is readable."
                ) from exc
            embeddings = got.get("embeddings")
            for chunk_id, vector in zip(
                got.get("ids") or [], [] if embeddings is None else embeddings, strict=True
            ):
                out[str(chunk_id)] = [float(x) for x in vector]
        return out

    def vectors_where(self, where: dict[str, Any]) -> tuple[list[str], list[Sequence[float]]]:
        """Ids and embeddings of every chunk matching ``where`` (paged)."""
        ids: list[str] = []
        vectors: list[Sequence[float]] = []
        offset = 0
        while True:
            try:
                got = self._collection.get(
                    where=where, include=["embeddings"], limit=MAX_BATCH, offset=offset
                )
            except Exception as exc:
                raise StoreError(
                    f"Reading from the store failed ({type(exc).__name__}: {exc}). "
                    "Check the store is readable."
                ) from exc
            page = [str(i) for i in got.get("ids") or []]
            embeddings = got.get("embeddings")
            ids += page
            vectors.extend([] if embeddings is None else embeddings)
            if len(page) < MAX_BATCH:
                return ids, vectors
            offset += MAX_BATCH

    def get_chunks(self, ids: Sequence[str], *, text: bool = True) -> list[Chunk]:
        """The chunks with these ids, in the order asked (unknown ids are left out);
        ``text=False`` reads the metadata only."""
        found: dict[str, Chunk] = {}
        for start in range(0, len(ids), MAX_BATCH):
            for chunk in self._get(ids=list(ids[start : start + MAX_BATCH]), text=text):
                found[chunk.chunk_id] = chunk
        return [found[i] for i in ids if i in found]

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        """All chunks of one document, in document order."""
        return sorted(self._get(where={"doc_id": doc_id}), key=lambda c: c.index)

    def chunks_where(self, where: dict[str, Any] | None, limit: int | None = None) -> list[Chunk]:
        """Chunks matching ``where`` (all when None), up to ``limit``."""
        return self._get(where=where, limit=limit)
