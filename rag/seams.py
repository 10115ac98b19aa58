"""The Protocols the composition root wires together; real adapters live in their own modules."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol, runtime_checkable

from rag.types import Chunk, EngineEvent, GenerationRequest, HistoryTurn


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


class IndexListener(Protocol):
    """A secondary index (e.g. BM25 keyword search) kept in step with the vector store.

    The ingest pipeline calls ``on_upsert`` after a document's new chunks are stored,
    ``on_delete`` after chunks are removed from the store, and ``commit`` once at the end of
    a run (or batch) to persist. A listener must tolerate a crash between the store write
    and its own update: on load it reconciles with the store's chunk ids.
    """

    def on_upsert(self, chunks: Sequence[Chunk]) -> None: ...

    def on_delete(self, chunk_ids: Sequence[str]) -> None: ...

    def commit(self) -> None: ...


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

    def count_prompt_tokens(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> int:
        """Exact prompt length in the model's tokens, history included."""
        ...

    def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[EngineEvent, None]:
        """Yield answer text deltas, then one ``Finished``; cancelling aborts the request.
        ``request.prompt_ids``, when set, is the prompt as this engine renders it."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PromptRenderer(Protocol):
    """An engine that takes its prompt as token ids (the in-process vLLM engine). The answer
    service renders the prompt once, to count it while packing, and hands the ids on in
    ``GenerationRequest.prompt_ids``."""

    def render(self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()) -> list[int]:
        """The prompt's token ids, history included."""
        ...


@runtime_checkable
class RemoteReachability(Protocol):
    """An engine that talks to a model server over the network (openai, ollama)."""

    base_url: str

    def describe(self) -> str:
        """Backend, address and model, for logs and ``rag-serve --check``."""
        ...

    async def unreachable_reason(self) -> str | None:
        """None when the server answers (cached briefly); else what is wrong and the fix."""
        ...
