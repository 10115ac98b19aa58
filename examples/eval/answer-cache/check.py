#!/usr/bin/env python3
"""Validate the answer-cache evaluation set in this folder. Standard library only.

pairs.jsonl: every line parses and has exactly the documented keys; ids are p0001, p0002, ...
in order; expect/kind/lang/split take documented values; expect follows from kind (repeat and
paraphrase are hits, everything else misses); lang matches the script of both questions
(en-zh exactly for kind "language"); "repeat" pairs differ only by case, punctuation, spacing
or a typo or two; no pair is duplicated; minimum counts; train share per kind and per lang.

stream.jsonl: every line parses; ids are s0001, s0002, ... in order; t strictly increases;
same_as is null or the id of an earlier question whose same_as is null, in the same language;
the same text never has two meanings; the share of repeats is 40-55 %.

Both files together: the labels are consistent. Two questions joined by a chain of hits and
same_as links are never labelled a miss, and two stream questions that also occur in a pair
have the same meaning exactly when the pair is a hit.

Usage: python3 check.py [--table]    --table prints the count tables used in README.md
Exit status 0 = pass, 1 = errors.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CJK = re.compile(r"[\u3400-\u9fff]")
PAIR_KEYS = ["id", "a", "b", "expect", "kind", "lang", "split", "note"]
STREAM_KEYS = {"id", "t", "question", "groups", "same_as"}
HIT_KINDS = ("repeat", "paraphrase")
MISS_KINDS = ("entity", "number", "negation", "scope", "role", "language")
KINDS = HIT_KINDS + MISS_KINDS
LANGS = ("en", "zh", "en-zh")
MIN_PAIRS, MIN_LANGUAGE_PAIRS, MIN_ZH_SHARE = 240, 18, 0.40
HIT_SHARE, REPEAT_SHARE, TRAIN_SHARE = (0.40, 0.50), (0.40, 0.55), (0.35, 0.65)
STREAM_LEN = 300

errors: list[str] = []


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def lang_of(text: str) -> str:
    return "zh" if CJK.search(text) else "en"


def norm(text: str) -> str:
    """Case-, width-, punctuation- and space-insensitive form of a question."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def read_jsonl(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n, line in enumerate((HERE / name).read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{name}:{n}: not JSON ({exc})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{name}:{n}: not an object")
            continue
        rows.append(row)
    return rows


def find(parent: dict[str, str], x: str) -> str:
    while parent.setdefault(x, x) != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def check_pairs(rows: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str]] = set()
    for n, r in enumerate(rows, 1):
        where = f"pairs.jsonl:{n}"
        if list(r) != PAIR_KEYS:
            errors.append(f"{where}: keys {list(r)} != {PAIR_KEYS}")
            continue
        if r["id"] != f"p{n:04d}":
            errors.append(f"{where}: id {r['id']} should be p{n:04d}")
        a, b = r["a"], r["b"]
        if not (isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip()):
            errors.append(f"{where}: a and b must be non-empty strings")
            continue
        if r["kind"] not in KINDS or r["lang"] not in LANGS or r["split"] not in ("train", "test"):
            errors.append(f"{where}: bad kind/lang/split {r['kind']}/{r['lang']}/{r['split']}")
            continue
        if r["expect"] != ("hit" if r["kind"] in HIT_KINDS else "miss"):
            errors.append(f"{where}: kind {r['kind']} must have expect {r['expect']!r} flipped")
        la, lb = lang_of(a), lang_of(b)
        lang = la if la == lb else "en-zh"
        if r["lang"] != lang:
            errors.append(f"{where}: lang {r['lang']} but the questions are {la}/{lb}")
        if (r["kind"] == "language") != (lang == "en-zh"):
            errors.append(f"{where}: kind language <=> lang en-zh")
        if not isinstance(r["note"], str) or not r["note"].strip():
            errors.append(f"{where}: empty note")
        na, nb = norm(a), norm(b)
        if a == b:
            errors.append(f"{where}: a and b are identical")
        dist = edit_distance(na, nb)
        if r["kind"] == "repeat" and dist > 3:
            errors.append(f"{where}: repeat differs by more than case/punctuation/typos ({dist})")
        if r["kind"] != "repeat" and dist == 0:
            errors.append(f"{where}: {r['kind']} pair differs only by case/punctuation")
        key = (min(na, nb), max(na, nb))
        if key in seen:
            errors.append(f"{where}: duplicate pair")
        seen.add(key)

    total = len(rows)
    kinds = Counter(r.get("kind") for r in rows)
    langs = Counter(r.get("lang") for r in rows)
    hits = sum(r.get("expect") == "hit" for r in rows)
    if total < MIN_PAIRS:
        errors.append(f"pairs: {total} < {MIN_PAIRS}")
    if not HIT_SHARE[0] <= hits / max(total, 1) <= HIT_SHARE[1]:
        errors.append(f"pairs: hit share {hits / max(total, 1):.2f} outside {HIT_SHARE}")
    if langs["zh"] / max(total, 1) < MIN_ZH_SHARE:
        errors.append(f"pairs: Chinese share {langs['zh'] / max(total, 1):.2f} < {MIN_ZH_SHARE}")
    if kinds["language"] < MIN_LANGUAGE_PAIRS:
        errors.append(f"pairs: {kinds['language']} language pairs < {MIN_LANGUAGE_PAIRS}")
    for kind in KINDS:
        if kinds[kind] < 10:
            errors.append(f"pairs: only {kinds[kind]} of kind {kind}")
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(f"kind {r.get('kind')}", []).append(str(r.get("split")))
        groups.setdefault(f"lang {r.get('lang')}", []).append(str(r.get("split")))
    for name, splits in groups.items():
        share = splits.count("train") / len(splits)
        if len(splits) >= 10 and not TRAIN_SHARE[0] <= share <= TRAIN_SHARE[1]:
            errors.append(f"pairs: train share of {name} is {share:.2f}, outside {TRAIN_SHARE}")


def check_both(pairs: list[dict[str, Any]], stream: list[dict[str, Any]]) -> None:
    """Hits of pairs.jsonl and same_as links of stream.jsonl never join the two sides of a miss."""
    parent: dict[str, str] = {}
    texts = [(str(r.get("a")), str(r.get("b"))) for r in pairs if r.get("expect") == "hit"]
    first = {r.get("id"): str(r.get("question")) for r in stream}
    texts += [
        (str(r.get("question")), first.get(r["same_as"], ""))
        for r in stream
        if r.get("same_as") is not None
    ]
    for a, b in texts:
        parent[find(parent, norm(a))] = find(parent, norm(b))
    for n, r in enumerate(pairs, 1):
        joined = find(parent, norm(str(r.get("a")))) == find(parent, norm(str(r.get("b"))))
        if r.get("expect") == "miss" and joined:
            errors.append(f"pairs.jsonl:{n}: miss, but a chain of hits joins a and b")
    meaning = {norm(r["question"]): r["same_as"] or r["id"] for r in stream if "question" in r}
    for n, r in enumerate(pairs, 1):
        ma, mb = meaning.get(norm(str(r.get("a")))), meaning.get(norm(str(r.get("b"))))
        if ma is None or mb is None:
            continue
        if (ma == mb) != (r.get("expect") == "hit"):
            errors.append(
                f"pairs.jsonl:{n} is a {r.get('expect')}, but stream.jsonl has "
                f"{'one meaning' if ma == mb else 'two meanings'} for its questions"
            )


def check_stream(rows: list[dict[str, Any]]) -> None:
    first_of: dict[str, str] = {}
    lang_by_id: dict[str, str] = {}
    meaning_of_text: dict[str, str] = {}
    last_t = -1.0
    for n, r in enumerate(rows, 1):
        where = f"stream.jsonl:{n}"
        if set(r) != STREAM_KEYS:
            errors.append(f"{where}: keys {sorted(r)} != {sorted(STREAM_KEYS)}")
            continue
        if r["id"] != f"s{n:04d}":
            errors.append(f"{where}: id {r['id']} should be s{n:04d}")
        if not isinstance(r["t"], int | float) or r["t"] <= last_t:
            errors.append(f"{where}: t must be a number that strictly increases")
        else:
            last_t = float(r["t"])
        if r["groups"] != ["everyone"]:
            errors.append(f"{where}: groups must be ['everyone']")
        q = r["question"]
        if not isinstance(q, str) or not q.strip():
            errors.append(f"{where}: empty question")
            continue
        lang_by_id[r["id"]] = lang_of(q)
        same = r["same_as"]
        if same is None:
            root = r["id"]
        elif same in lang_by_id and first_of.get(same) == same:
            root = same
            if lang_by_id[same] != lang_of(q):
                errors.append(f"{where}: same_as {same} is in another language")
        else:
            errors.append(f"{where}: same_as {same!r} is not an earlier first question")
            root = r["id"]
        first_of[r["id"]] = root
        previous = meaning_of_text.setdefault(norm(q), root)
        if previous != root:
            errors.append(f"{where}: the same text also appears as {previous}'s meaning")
    if len(rows) != STREAM_LEN:
        errors.append(f"stream: {len(rows)} questions, expected {STREAM_LEN}")
    repeats = sum(r.get("same_as") is not None for r in rows)
    if not REPEAT_SHARE[0] <= repeats / max(len(rows), 1) <= REPEAT_SHARE[1]:
        errors.append(f"stream: repeat share {repeats / max(len(rows), 1):.2f} outside range")


def tables(pairs: list[dict[str, Any]], stream: list[dict[str, Any]]) -> None:
    out("| kind | expect | en | zh | en-zh | all | train | test |")
    out("|---|---|---|---|---|---|---|---|")
    for kind in KINDS:
        rs = [r for r in pairs if r["kind"] == kind]
        cells = [sum(r["lang"] == lang for r in rs) for lang in LANGS]
        split = Counter(r["split"] for r in rs)
        expect = "hit" if kind in HIT_KINDS else "miss"
        out(
            f"| `{kind}` | {expect} | " + " | ".join(map(str, cells)) + f" | {len(rs)} | "
            f"{split['train']} | {split['test']} |"
        )
    split = Counter(r["split"] for r in pairs)
    cells = [sum(r["lang"] == lang for r in pairs) for lang in LANGS]
    out(
        "| total | | " + " | ".join(map(str, cells)) + f" | {len(pairs)} | {split['train']} | "
        f"{split['test']} |"
    )
    hits = [r for r in pairs if r["expect"] == "hit"]
    out()
    out(
        f"hits {len(hits)} ({len(hits) / len(pairs):.0%}), misses {len(pairs) - len(hits)}; "
        f"Chinese pairs {cells[1]} ({cells[1] / len(pairs):.0%})"
    )
    for split_name in ("train", "test"):
        rs = [r for r in pairs if r["split"] == split_name]
        h = sum(r["expect"] == "hit" for r in rs)
        out(f"{split_name}: {len(rs)} pairs, {h} hits, {len(rs) - h} misses")
    out()
    sizes = Counter(r["same_as"] or r["id"] for r in stream)
    repeats = sum(r["same_as"] is not None for r in stream)
    zh = sum(lang_of(r["question"]) == "zh" for r in stream)
    out(
        f"stream: {len(stream)} questions, {len(sizes)} distinct meanings, {repeats} repeats "
        f"({repeats / len(stream):.0%}); {zh} Chinese, {len(stream) - zh} English; "
        f"t from {stream[0]['t']} to {stream[-1]['t']} s"
    )
    by_size = Counter(sizes.values())
    out(
        "meanings by times asked: "
        + ", ".join(f"{k}x: {by_size[k]}" for k in sorted(by_size, reverse=True))
    )


def main() -> int:
    pairs = read_jsonl("pairs.jsonl")
    stream = read_jsonl("stream.jsonl")
    check_pairs(pairs)
    check_stream(stream)
    check_both(pairs, stream)
    for e in errors:
        out("ERROR " + e)
    if errors:
        out(f"FAIL ({len(errors)} errors)")
        return 1
    if "--table" in sys.argv:
        tables(pairs, stream)
    out(f"PASS: {len(pairs)} pairs, {len(stream)} stream questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
