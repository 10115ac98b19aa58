"""The Protocols the composition root wires together; real adapters live in their own modules."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from rag.types import Chunk, EngineEvent, GenerationRequest, HistoryTurn, Hit


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """A stable identity of the model: a collection keeps vectors of one model only."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int: ...


class VectorStore(Protocol):
    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None: ...

    def delete_document(self, doc_id: str) -> None: ...

    def query(self, vector: Sequence[float], k: int) -> list[Hit]: ...

    def count(self) -> int: ...


class Engine(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str:
        """``gpt-oss`` (harmony) or ``chat`` (the model's chat template)."""
        ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def healthy(self) -> bool: ...

    def count_prompt_tokens(self, request: GenerationRequest) -> int: ...

    def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[EngineEvent, None]:
        """Yield answer text deltas, then one ``Finished``; cancelling aborts the request."""
        ...

    async def close(self) -> None: ...
