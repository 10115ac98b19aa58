"""The composition root: builds the object graph from :class:`Settings`. No DI framework."""

from __future__ import annotations

from dataclasses import dataclass

from rag.config import Settings
from rag.embedding import create_embedder
from rag.seams import Embedder
from rag.store import ChromaStore


@dataclass(frozen=True)
class KnowledgeBase:
    """What both ingest and serving need: the embedder and the store it fills."""

    embedder: Embedder
    store: ChromaStore


def build_knowledge_base(settings: Settings) -> KnowledgeBase:
    embedder = create_embedder(settings.embedding, settings.paths)
    store = ChromaStore(settings.store, embedder_id=embedder.model_id, dimension=embedder.dimension)
    return KnowledgeBase(embedder, store)
