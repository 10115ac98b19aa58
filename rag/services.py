"""The composition root: builds the object graph from :class:`Settings`. No DI framework."""

from __future__ import annotations

from dataclasses import dataclass

from rag.config import Settings
from rag.index.embedding import create_embedder
from rag.index.keyword import KeywordIndex
from rag.index.store import ChromaStore
from rag.retrieval.hybrid import Retriever, keyword_folder
from rag.seams import Embedder, IndexListener


@dataclass(frozen=True)
class KnowledgeBase:
    """What both ingest and serving need: the embedder, the store it fills, and the BM25
    index that follows the store (an :class:`rag.seams.IndexListener`)."""

    embedder: Embedder
    store: ChromaStore
    keyword: KeywordIndex | None = None


def build_keyword_index(settings: Settings) -> KeywordIndex:
    cfg = settings.retrieval
    folder = keyword_folder(settings.store.path, settings.store.collection, cfg.keyword_dir)
    return KeywordIndex(
        folder,
        k1=cfg.bm25_k1,
        b=cfg.bm25_b,
        stemming=cfg.stemming,
        window=cfg.keyword_window,
    )


def build_knowledge_base(settings: Settings) -> KnowledgeBase:
    embedder = create_embedder(settings.embedding, settings.paths)
    store = ChromaStore(settings.store, embedder_id=embedder.model_id, dimension=embedder.dimension)
    return KnowledgeBase(embedder, store, build_keyword_index(settings))


def build_retriever(settings: Settings, kb: KnowledgeBase, *, reconcile: bool = True) -> Retriever:
    """The hybrid retriever; with ``reconcile`` the BM25 index first catches up with the store
    (it heals after a crash between a store write and the index update)."""
    if kb.keyword is not None and reconcile:
        kb.keyword.reconcile(kb.store.all_ids(), kb.store.get_chunks)
    return Retriever(settings.retrieval, kb.embedder, kb.store, kb.keyword)


def build_index_listeners(settings: Settings) -> list[IndexListener]:
    """The secondary indexes ``rag-ingest`` keeps in step with the store: BM25 today."""
    return [build_keyword_index(settings)]
