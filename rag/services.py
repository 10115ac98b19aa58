"""The composition root: every part of the service is built here from :class:`Settings`.

``rag-serve`` (:class:`Services`, which the app's lifespan opens), ``rag-ingest`` (the
``build_*`` functions) and the tests build their parts through this module and nowhere else,
so adding a part touches this file and the one that uses it. No DI framework: plain
functions and one class.

``rag`` never imports ``ingest`` or ``serving``: the ingest pipeline is built from a
:class:`KnowledgeBase` by :func:`ingest.pipeline.build_ingestor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from rag.answering.answer import AnswerService
from rag.answering.cache import AnswerCache, distinctive_for
from rag.answering.curated import CuratedAnswers
from rag.config import STATE_FILE, Settings, state_url
from rag.engines import start_engine
from rag.errors import EngineNotReadyError, RagError
from rag.handoff.outbox import Outbox
from rag.index.embedding import create_embedder
from rag.index.keyword import KeywordIndex
from rag.index.manifest import Manifest
from rag.index.manifest import active_collection as manifest_active_collection
from rag.index.store import ChromaStore
from rag.retrieval.hybrid import Retriever, keyword_folder
from rag.seams import Embedder, Engine, IndexListener
from rag.state.answer_cache import AnswerCacheStore
from rag.state.apikeys import KeyStore
from rag.state.audit import AuditLog
from rag.state.conversations import StoredConversations
from rag.state.curated import CuratedStore
from rag.state.db import StateDB
from rag.state.feedback import FeedbackStore
from rag.state.handoff import HandoffStore
from rag.state.legacy import FEEDBACK_FILE, KEYS_FILE
from rag.state.ratelimit import RateLimiter, RateLimits, SharedRateLimiter
from rag.state.shared import IndexVersions, VersionListener, WriterLock, holder_name

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class KnowledgeBase:
    """What both ingest and serving need: the embedder, the store it fills, and the BM25
    index that follows the store (an :class:`rag.seams.IndexListener`). With a shared state
    database (several machines): the store's change counter, raised after every write, and
    the lock that keeps one writer across machines."""

    embedder: Embedder
    store: ChromaStore
    keyword: KeywordIndex | None = None
    versions: VersionListener | None = None
    writer: WriterLock | None = None
    shared: StateDB | None = None
    """The shared state database (several machines): it also holds the manifest."""

    @property
    def listeners(self) -> list[IndexListener]:
        """The secondary indexes the ingest pipeline keeps in step with the store (the
        version counter last: it tells other machines once everything is written)."""
        found: list[IndexListener] = [self.keyword] if self.keyword is not None else []
        return found + ([self.versions] if self.versions is not None else [])


# -- the index ---------------------------------------------------------------------------


def build_embedder(settings: Settings) -> Embedder:
    return create_embedder(settings.embedding, settings.paths)


def build_keyword_index(settings: Settings, *, isolate: bool = False) -> KeywordIndex:
    """The BM25 index; ``isolate`` (a running service) rebuilds it in a worker process, so
    a rebuild never slows the searches this process serves."""
    cfg = settings.retrieval
    folder = keyword_folder(settings.store.path, settings.store.collection, cfg.keyword_dir)
    return KeywordIndex(
        folder,
        k1=cfg.bm25_k1,
        b=cfg.bm25_b,
        stemming=cfg.stemming,
        window=cfg.keyword_window,
        isolate=isolate,
    )


def build_knowledge_base(
    settings: Settings,
    *,
    check_embedder: bool = True,
    collection: str | None = None,
    live: bool = False,
    shared: StateDB | None = None,
    writer: str = "rag-ingest",
) -> KnowledgeBase:
    """The embedder, the store and the BM25 index. Nothing loads the embedding model until
    it is used (an unchanged ``rag-ingest`` re-run never imports torch). Without
    ``check_embedder`` the store opens whatever model built the collection (deleting,
    statistics). ``live`` (the running service) makes the store follow other writers
    (``rag-ingest`` in another process): see :class:`rag.index.store.ChromaStore`.
    ``shared`` (:func:`open_shared_state`): writes raise the store's version there and take
    the writer lock named ``writer`` (who is writing, as a second writer is told)."""
    embedder = build_embedder(settings)
    store = ChromaStore(
        settings.store,
        embedder_id=embedder.model_id if check_embedder else None,
        dimension=lambda: embedder.dimension,
        # With a shared manifest the store cannot read the active collection itself (a file
        # manifest it reads and follows): catch_up() switches when a reindex did.
        collection=collection or (active_collection(settings, shared) if shared else None),
        live=live,
    )
    keyword = build_keyword_index(settings, isolate=live)
    if shared is None:
        return KnowledgeBase(embedder, store, keyword)
    scope = store_scope(settings)
    versions = VersionListener(IndexVersions(shared), scope)
    return KnowledgeBase(
        embedder, store, keyword, versions, WriterLock(shared, scope, holder_name(writer)), shared
    )


def store_scope(settings: Settings) -> str:
    """The store's name in the shared state (what its version and writer lock are for)."""
    cfg = settings.store
    if cfg.mode == "http":
        return f"chroma://{cfg.host}:{cfg.port}/{cfg.tenant}/{cfg.database}"
    return f"file://{cfg.path.resolve()}"


def build_index_listeners(settings: Settings) -> list[IndexListener]:
    """The secondary indexes ``rag-ingest`` keeps in step with the store: BM25 today."""
    return [build_keyword_index(settings)]


def open_manifest(settings: Settings, shared: StateDB | None = None) -> Manifest:
    """The ingest manifest: in the shared state database (``shared``, or the server
    ``state.url`` names), else the file beside the store."""
    if shared is not None:
        return Manifest(shared)
    db = open_shared_state(settings)
    if db is None:
        return Manifest(settings.store.manifest_path())
    return Manifest(db, owns=True)


def manifest_exists(settings: Settings) -> bool:
    """Whether there is a manifest to read (without creating one): always with a shared
    state database, else when the file is there."""
    return settings.store.manifest_path().is_file() or is_shared(settings)


def active_collection(settings: Settings, shared: StateDB | None = None) -> str:
    """The collection queries use (the manifest's pointer, switched by a reindex); never
    creates a manifest file."""
    if shared is None and not is_shared(settings):
        return manifest_active_collection(settings.store)
    with open_manifest(settings, shared) as manifest:
        return manifest.active(settings.store.collection)


def open_store(settings: Settings, *, collection: str | None = None) -> ChromaStore:
    """The store as it is, without an embedder (statistics): never creates a collection."""
    return ChromaStore(
        settings.store, embedder_id=None, collection=collection or active_collection(settings)
    )


def build_retriever(settings: Settings, kb: KnowledgeBase, *, reconcile: bool = True) -> Retriever:
    """The hybrid retriever; with ``reconcile`` the BM25 index first catches up with the store
    (it heals after a crash between a store write and the index update)."""
    if kb.keyword is not None and reconcile:
        kb.keyword.reconcile(kb.store.all_ids(), kb.store.get_chunks)
    return Retriever(
        settings.retrieval,
        kb.embedder,
        kb.store,
        kb.keyword,
        languages=settings.embedding.languages,
        cache=settings.paths.assets_dir,
    )


# -- the state database ----------------------------------------------------------------------


def open_state(settings: Settings) -> StateDB:
    return StateDB(state_url(settings))


def is_shared(settings: Settings) -> bool:
    """Whether ``state.url`` names a database server (several machines), without opening it."""
    url = settings.state.url
    return bool(url) and not str(url).startswith("sqlite")


def open_shared_state(settings: Settings) -> StateDB | None:
    """The state database when it is a server several machines share (``state.url`` names
    PostgreSQL): ingest then raises the store's version and takes the writer lock there.
    None for the SQLite default (one machine: the manifest's lock and files do it)."""
    if not settings.state.url:
        return None
    db = open_state(settings)
    if db.shared:
        return db
    db.close()
    return None


def state_missing(settings: Settings) -> Path | None:
    """The default state file when neither it nor an older feedback file exists yet (nothing
    was ever recorded in this ``paths.data_dir``); None otherwise."""
    data = settings.paths.data_dir
    if settings.state.url or (data / FEEDBACK_FILE).exists() or (data / STATE_FILE).exists():
        return None
    return data / STATE_FILE


def build_key_store(settings: Settings, db: StateDB) -> KeyStore:
    return KeyStore(db, legacy=settings.paths.data_dir / KEYS_FILE)


def build_feedback_store(settings: Settings, db: StateDB) -> FeedbackStore:
    return FeedbackStore(
        db,
        store_questions=settings.feedback.store_questions,
        retention_days=settings.feedback.retention_days,
        legacy=settings.paths.data_dir / FEEDBACK_FILE,
    )


def build_answer_cache(settings: Settings, db: StateDB, kb: KnowledgeBase) -> AnswerCache | None:
    """The answer cache (rag/answering/cache.py) in the state database, comparing questions
    with the knowledge base's embedder and BM25 vocabulary; None when ``cache.enabled`` is
    off. Its scope includes the model and the answer mode: a change of either starts over."""
    cfg = settings.cache
    if not cfg.enabled:
        return None
    return AnswerCache(
        cfg,
        AnswerCacheStore(db),
        kb.embedder,
        kb.store,
        kb.keyword,
        generation=f"{settings.llm.model}|{settings.answer.mode}",
    )


def build_rate_limits(settings: Settings, db: StateDB) -> RateLimits:
    """Shared buckets in a state database server (several replicas grant one rate between
    them), else in memory (one process)."""
    auth = settings.auth
    if db.shared:
        return SharedRateLimiter(db, auth.rate_per_minute, auth.burst)
    return RateLimiter(auth.rate_per_minute, auth.burst)


def build_conversations(settings: Settings, db: StateDB) -> StoredConversations:
    """Histories in the state database (shared by replicas, kept across restarts). Only the
    newest ``context.history_turns`` turns are ever sent: no more are kept."""
    return StoredConversations(
        db,
        max_turns=max(2, settings.context.history_turns),
        idle_seconds=settings.state.conversation_idle_hours * 3600,
    )


def build_curated_store(settings: Settings, db: StateDB) -> CuratedStore:
    """Curated answers in the state database (``rag-ingest curate``, ``/v1/curated``)."""
    from rag.index.lexical import language

    return CuratedStore(db, review_days=settings.curated.review_days, language_of=language)


def build_curated(
    settings: Settings, store: CuratedStore, kb: KnowledgeBase
) -> CuratedAnswers | None:
    """What the answer service matches questions against; None when ``curated.enabled`` is
    off (the answers are still kept and managed)."""
    cfg = settings.curated
    if not cfg.enabled:
        return None
    share, keyword = settings.cache.distinctive_share, kb.keyword
    return CuratedAnswers(
        store,
        kb.embedder,
        threshold=cfg.threshold,
        distinctive=lambda groups: distinctive_for(keyword, groups, share),
        check_every_s=cfg.check_interval_s,
    )


def build_audit_log(settings: Settings, db: StateDB) -> AuditLog | None:
    """The audit log in the state database; None when ``audit.enabled`` is off."""
    cfg = settings.audit
    if not cfg.enabled:
        return None
    return AuditLog(db, store_text=cfg.store_text, retention_days=cfg.retention_days)


def build_handoff_store(settings: Settings, db: StateDB) -> HandoffStore:
    """The hand-offs kept in the state database (what they carry is deleted with the
    feedback, after ``feedback.retention_days``)."""
    return HandoffStore(db, retention_days=settings.feedback.retention_days)


def build_outbox(settings: Settings, db: StateDB) -> Outbox:
    """The hand-off outbox and its channels (a webhook without its signing key is a
    ConfigError at start, not a failed delivery later)."""
    from rag.handoff.outbox import build_channels

    channels = build_channels(settings.handoff, os.environ)
    return Outbox(build_handoff_store(settings, db), channels, settings.handoff)


def catch_up(kb: KnowledgeBase, settings: Settings | None = None) -> tuple[int, int]:
    """Bring the BM25 index in step with the store (after another machine's ingest); with
    ``settings`` and a shared manifest, follow its active collection (another machine's
    ``rag-ingest reindex`` switched it)."""
    if settings is not None and kb.shared is not None:
        kb.store.refresh(active_collection(settings, kb.shared))
    else:
        kb.store.refresh()
    if kb.keyword is None:
        return 0, 0
    return kb.keyword.reconcile(kb.store.all_ids(), kb.store.get_chunks)


# -- the running service ---------------------------------------------------------------------


@dataclass(eq=False)
class Services:
    """The object graph of one ``rag-serve`` process.

    The constructor opens what a request needs first and costs little: the state database,
    the key store, the rate limiter and the conversation store. :meth:`open` (the app's
    lifespan runs it as a task, so ``/healthz`` answers meanwhile) opens the rest in worker
    threads: the feedback store, the knowledge base, the retriever (the BM25 index catches up
    with the store), then the engine unless one was handed in. ``status`` is ``loading``,
    then ``ready`` or ``failed`` (``detail`` says why); :meth:`part` is the one place that
    turns a part that is not there yet into a 503 that says so.
    """

    settings: Settings
    engine: Engine | None = None
    db: StateDB = field(init=False)
    keys: KeyStore = field(init=False)
    limiter: RateLimits = field(init=False)
    conversations: StoredConversations = field(init=False)
    audit: AuditLog | None = field(init=False)
    outbox: Outbox = field(init=False)
    feedback: FeedbackStore | None = None
    kb: KnowledgeBase | None = None
    retriever: Retriever | None = None
    answers: AnswerService | None = None
    answer_cache: AnswerCache | None = None
    """The answer cache (None while loading, or with ``cache.enabled`` off)."""
    curated_store: CuratedStore | None = None
    curated: CuratedAnswers | None = None
    """Curated answers as served (None while loading, or with ``curated.enabled`` off)."""
    status: str = "loading"
    detail: str | None = None
    catch_ups: int = 0
    """Catch-ups with another machine's ingest since start (a shared state database)."""
    last_catch_up_s: float = 0.0
    """Seconds the last one took."""

    def __post_init__(self) -> None:
        self.owns_engine = self.engine is None
        self.db = open_state(self.settings)
        self.keys = build_key_store(self.settings, self.db)
        self.limiter = build_rate_limits(self.settings, self.db)
        self.conversations = build_conversations(self.settings, self.db)
        self.audit = build_audit_log(self.settings, self.db)
        self.outbox = build_outbox(self.settings, self.db)
        self._follower: asyncio.Task[None] | None = None
        self._delivering: asyncio.Task[None] | None = None
        self._preparing: asyncio.Task[None] | None = None

    async def open(self) -> None:
        settings = self.settings
        if self.outbox.available:  # hand-offs need neither the index nor the engine
            self._delivering = asyncio.create_task(self.outbox.run())
        try:
            self.feedback = await asyncio.to_thread(build_feedback_store, settings, self.db)
            self.curated_store = await asyncio.to_thread(build_curated_store, settings, self.db)
            kb = await asyncio.to_thread(
                partial(
                    build_knowledge_base,
                    settings,
                    live=True,
                    shared=self.db if self.db.shared else None,
                    writer="rag-serve upload",
                )
            )
            # Load the embedding model now rather than on the first question.
            await asyncio.to_thread(lambda: kb.embedder.dimension)
            self.kb = kb
            # The store's version is read before the BM25 index catches up: no change is missed.
            versions = IndexVersions(self.db) if self.db.shared else None
            scope = store_scope(settings)
            start = await asyncio.to_thread(versions.read, scope) if versions else 0
            self.retriever = await asyncio.to_thread(build_retriever, settings, kb)
            # In the background: the first bilingual question waits for it only if it is early.
            self._preparing = asyncio.create_task(asyncio.to_thread(self.retriever.prepare))
            self.curated = build_curated(settings, self.curated_store, kb)
            self.answer_cache = await asyncio.to_thread(build_answer_cache, settings, self.db, kb)
            if self.engine is None:
                self.engine = await asyncio.to_thread(start_engine, settings)
            self.answers = AnswerService(
                settings,
                self.retriever,
                self.engine,
                conversations=self.conversations,
                curated=self.curated,
                cache=self.answer_cache,
            )
            if versions is not None:
                self._follower = asyncio.create_task(self._follow(kb, versions, scope, start))
            self.status = "ready"
            log.info("service ready")
        except RagError as exc:
            self.status, self.detail = "failed", exc.message
            log.error("start-up failed: %s", exc.message)
        except Exception as exc:
            self.status, self.detail = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("start-up failed")

    def manifest(self) -> Manifest | None:
        """The ingest manifest to read (close it after use): the shared one in the state
        database, else the file beside the store; None before anything was ingested."""
        if self.db.shared:
            return Manifest(self.db)
        path = self.settings.store.manifest_path()
        return Manifest(path) if path.is_file() else None

    def part(self, value: T | None, what: str) -> T:
        """``value`` once it is there; else a 503 saying whether it is loading or failed."""
        if value is not None:
            return value
        if self.status == "failed":
            raise EngineNotReadyError(
                f"The service failed to start: {self.detail}. Fix the cause and restart."
            )
        raise EngineNotReadyError(f"The {what} is still loading. Retry in a few seconds.")

    async def _follow(
        self, kb: KnowledgeBase, versions: IndexVersions, scope: str, seen: int
    ) -> None:
        """Keep this replica's BM25 index in step with ingests made on other machines: poll
        the store's version in the shared state every ``state.poll_interval_s``; when it
        moved, catch up with the store (what the BM25 table lacks is fetched and indexed,
        what the store no longer has is dropped) and publish. ``seen`` was read before the
        start-up catch-up. A failure is logged once (and its end), and the next poll tries
        again."""
        failing = False
        while True:
            await asyncio.sleep(self.settings.state.poll_interval_s)
            try:
                now = await asyncio.to_thread(versions.read, scope)
                if now != seen:
                    started = time.perf_counter()
                    await asyncio.to_thread(catch_up, kb, self.settings)
                    seen = now
                    self.catch_ups += 1
                    self.last_catch_up_s = time.perf_counter() - started
                if failing:
                    log.warning("following the shared index works again")
                failing = False
            except Exception as exc:
                if not failing:
                    reason = exc.message if isinstance(exc, RagError) else repr(exc)
                    log.warning("following the shared index failed (retrying): %s", reason)
                failing = True

    async def close(self) -> None:
        for task in (self._follower, self._delivering, self._preparing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            if self.owns_engine and self.engine is not None:
                await self.engine.close()
        finally:
            if self.kb is not None:
                self.kb.store.close()
                if self.kb.keyword is not None:
                    with contextlib.suppress(Exception):
                        self.kb.keyword.close()
            self.db.close()
