"""The o200k_harmony tokenizer (gpt-oss's), offline: the only importer of ``tiktoken``.

tiktoken finds the vocabulary through ``TIKTOKEN_CACHE_DIR`` (set by
:func:`rag.deploy.vocab.offline_tokenizer_env`), so nothing is downloaded. Document text is
encoded as ordinary tokens: special-token spellings in a document are not special.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from rag.errors import AssetError

ENCODING = "o200k_harmony"
_lock = threading.Lock()
_encoding: Any = None


def encoding() -> Any:
    global _encoding
    with _lock:
        if _encoding is None:
            import tiktoken

            try:
                _encoding = tiktoken.get_encoding(ENCODING)
            except Exception as exc:
                raise AssetError(
                    f"Cannot load the {ENCODING} tokenizer ({type(exc).__name__}: {exc}). "
                    "Run `make setup` to build the o200k vocabulary, and make sure "
                    "TIKTOKEN_CACHE_DIR points at it."
                ) from exc
        return _encoding


def encode(text: str) -> list[int]:
    return list(encoding().encode(text, allowed_special=set(), disallowed_special=()))


@lru_cache(maxsize=65536)
def count(text: str) -> int:
    """Exact o200k_harmony token count of ``text`` as ordinary text (cached)."""
    return len(encoding().encode(text, allowed_special=set(), disallowed_special=()))
