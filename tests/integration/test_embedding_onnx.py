"""The ONNX backend: exported once from the shipped model, same vectors as torch (fp32),
close ones (int8) under its own model id."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("assets")

TEXTS = [
    "The badge office is room 101.",
    "出差住宿标准：一线城市每晚不超过 600 元。",
    "| Item code | Item | Price |\n| --- | --- | --- |\n| HW-1 | Webcam | 49 |",
    "Visitor parking is on level -2; ask reception for a ticket. " * 12,
]


MINILM = "builtin:all-minilm-l6-v2"  # the English model, the one exported to ONNX


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_onnx_fp32_matches_torch_and_int8_is_close(make_settings: Any) -> None:
    from rag.index.embedding import SentenceTransformerEmbedder, create_embedder
    from rag.index.embedding_onnx import ensure_onnx

    settings = make_settings(embedding={"backend": "onnx", "model": MINILM, "languages": ["en"]})
    fp32 = create_embedder(settings.embedding, settings.paths)
    int8 = create_embedder(
        settings.embedding.model_copy(update={"onnx_precision": "int8"}), settings.paths
    )
    torch = SentenceTransformerEmbedder(settings.embedding)
    assert fp32.model_id == torch.model_id == "builtin:all-minilm-l6-v2"
    assert int8.model_id == "builtin:all-minilm-l6-v2@onnx-int8"

    reference = torch.embed_documents(TEXTS)
    for got, want in zip(fp32.embed_documents(TEXTS), reference, strict=True):
        assert cosine(got, want) > 0.9999
    for got, want in zip(int8.embed_documents(TEXTS), reference, strict=True):
        assert cosine(got, want) > 0.97
    assert fp32.dimension == 384
    assert fp32.count_tokens(TEXTS[3]) == torch.count_tokens(TEXTS[3])

    folder = ensure_onnx(settings.embedding, settings.paths)  # cached: not exported again
    marker = folder / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert ensure_onnx(settings.embedding, settings.paths) == folder
    assert marker.stat().st_mtime_ns == stamp


def test_streams_keep_each_vector_with_its_text(make_settings: Any) -> None:
    """Texts run side by side come back in the caller's order, the same vectors as one
    stream gives (texts of different lengths, finishing out of order)."""
    from rag.index.embedding import create_embedder

    settings = make_settings(embedding={"backend": "onnx", "batch_size": 1})
    base = settings.embedding
    texts = [*TEXTS, *(f"Policy {n}: " + "word " * (n * 7) for n in range(9))]
    one = create_embedder(base.model_copy(update={"onnx_streams": 1}), settings.paths)
    three = create_embedder(base.model_copy(update={"onnx_streams": 3}), settings.paths)
    single = one.embed_documents(texts)
    side_by_side = three.embed_documents(texts)
    assert len(side_by_side) == len(texts)
    for got, want in zip(side_by_side, single, strict=True):
        assert cosine(got, want) > 0.99999
    # And each vector belongs to its own text, not to a neighbour in the sorted order.
    for i, text in enumerate(texts):
        assert cosine(three.embed_query(text), side_by_side[i]) > 0.99999


def test_a_vector_does_not_depend_on_the_texts_embedded_with_it(make_settings: Any) -> None:
    """int8's dynamic quantization picks activation scales per run: a text embedded among
    others must still get exactly the vector it gets alone (issue 20)."""
    from rag.index.embedding import create_embedder

    settings = make_settings(embedding={"backend": "onnx", "onnx_precision": "int8"})
    int8 = create_embedder(settings.embedding, settings.paths)
    crowd = [*TEXTS, *(f"Policy {n}: " + "word " * (n * 7) for n in range(20))]
    together = int8.embed_documents(crowd)
    for i in (0, 1, 3):
        alone = int8.embed_documents([crowd[i]])[0]
        assert max(abs(x - y) for x, y in zip(alone, together[i], strict=True)) < 1e-6


def test_a_read_only_assets_folder_is_a_clear_asset_error(tmp_path: Any) -> None:
    """The GPU image's assets folder belongs to root and the service runs as uid 10001: the
    first embedding must fail with what to do, never with an uncaught PermissionError
    (the export's mkdir was outside the error handling)."""
    import subprocess
    import sys

    from tests.integration.test_storage_faults import read_only

    assets = tmp_path / "assets"
    assets.mkdir()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rag.config import EmbeddingSettings, PathsSettings\n"
        "from rag.errors import AssetError\n"
        "from rag.index.embedding_onnx import ensure_onnx\n"
        "try:\n"
        f"    ensure_onnx(EmbeddingSettings(model={MINILM!r}),"
        f" PathsSettings(assets_dir=Path({str(assets)!r})))\n"
        "except AssetError as exc:\n"
        "    print(exc.message)\n"
        "    sys.exit(9)\n"
    )
    with read_only(assets) as prefix:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 9, done.stderr[-2000:]
    assert "Cannot write the ONNX export" in done.stdout
    assert "--onnx" in done.stdout and "embedding.backend: torch" in done.stdout
    assert not (assets / "onnx").exists()
