"""The o200k vocabulary, built offline from the ``quicktok-v1`` package.

Harmony (gpt-oss's chat format) and tiktoken both want the file ``o200k_base.tiktoken``
and download it from OpenAI's blob store unless told otherwise. ``quicktok-v1`` (MIT)
ships the same vocabulary, so we write the file ourselves, check it against the official
sha256, and point both libraries at it:

- harmony reads ``TIKTOKEN_ENCODINGS_BASE``: a folder holding ``o200k_base.tiktoken``;
- tiktoken reads ``TIKTOKEN_CACHE_DIR``: a folder holding the file under the sha1 hex of
  its official download address.

Layout chosen here: both live in one folder, ``<assets>/tiktoken/``::

    <assets>/tiktoken/o200k_base.tiktoken
    <assets>/tiktoken/fb374d419588a4632f3f557e76b4b70aebbca790   (sha1 of O200K_URL)

This is the only module that imports ``quicktok``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from rag.errors import AssetError
from rag.index.hashing import sha256_file

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_FILENAME = "o200k_base.tiktoken"
O200K_RANKS = 199_998
"""Ordinary (non-special) tokens in o200k: ranks 0..199997."""

TIKTOKEN_SUBDIR = "tiktoken"
_FILE_MODE = 0o644


class _TokenBytes(Protocol):
    """The part of ``quicktok.Tokenizer`` used here."""

    def decode_single_token_bytes(self, rank: int, /) -> bytes: ...


def tiktoken_cache_key() -> str:
    """The file name tiktoken gives its cached copy of ``O200K_URL``."""
    return hashlib.sha1(O200K_URL.encode(), usedforsecurity=False).hexdigest()


def _vocab_lines() -> Iterator[bytes]:
    """One ``base64(token bytes) rank`` line per o200k rank, from quicktok's copy."""
    try:
        quicktok = importlib.import_module("quicktok")  # untyped: no py.typed marker
    except ImportError as exc:
        raise AssetError(
            "The package quicktok-v1 is not installed, so the o200k vocabulary cannot be "
            "built offline. Install it with `pip install quicktok-v1==0.4.0`."
        ) from exc
    encoding: _TokenBytes = quicktok.get_encoding("o200k_base")
    for rank in range(O200K_RANKS):
        token = encoding.decode_single_token_bytes(rank)
        yield base64.b64encode(token) + b" " + str(rank).encode() + b"\n"


def _write_atomically(dest: Path, data: bytes, expected_sha256: str) -> None:
    """Write ``data`` to ``dest`` via a temp file in the same folder, if its hash matches."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise AssetError(
            f"The o200k vocabulary built from quicktok has sha256 {actual}, expected "
            f"{expected_sha256}. The installed quicktok-v1 differs from the tested one: "
            "reinstall it with `pip install --force-reinstall quicktok-v1==0.4.0`."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _is_valid(path: Path) -> bool:
    """True when ``path`` exists and holds the official o200k vocabulary."""
    return path.is_file() and sha256_file(path) == O200K_SHA256


def build_o200k_vocab(dest_dir: Path) -> Path:
    """Write ``dest_dir/o200k_base.tiktoken`` from quicktok; a no-op when already right.

    Raises AssetError when quicktok is missing or its vocabulary is not the official one.
    """
    dest = dest_dir / O200K_FILENAME
    if _is_valid(dest):
        return dest
    _write_atomically(dest, b"".join(_vocab_lines()), O200K_SHA256)
    return dest


def install_tiktoken_cache(vocab_file: Path, cache_dir: Path) -> Path:
    """Copy the vocabulary into tiktoken's cache layout; a no-op when already there."""
    if not _is_valid(vocab_file):
        raise AssetError(
            f"{vocab_file} is missing or is not the official o200k vocabulary. "
            "Rebuild it with `python -m rag.deploy.assets --dir <assets dir>`."
        )
    cached = cache_dir / tiktoken_cache_key()
    if cached.resolve() == vocab_file.resolve() or _is_valid(cached):
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{cached.name}.", dir=cache_dir)
    os.close(fd)
    try:
        shutil.copyfile(vocab_file, tmp_name)
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, cached)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return cached


def tiktoken_dir(assets_dir: Path) -> Path:
    """The folder holding both the vocabulary file and tiktoken's cached copy."""
    return assets_dir / TIKTOKEN_SUBDIR


def offline_tokenizer_env(assets_dir: Path) -> dict[str, str]:
    """Environment variables that make harmony and tiktoken read the local files."""
    folder = str(tiktoken_dir(assets_dir).resolve())
    return {"TIKTOKEN_ENCODINGS_BASE": folder, "TIKTOKEN_CACHE_DIR": folder}
