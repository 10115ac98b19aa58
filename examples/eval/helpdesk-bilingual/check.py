#!/usr/bin/env python3
"""Validate the bilingual helpdesk BEIR set in this folder. Standard library only.

Checks: files parse; ids unique; corpus rows have exactly _id/title/text; query metadata
(lang, doc_lang, kind, answers) is well formed and consistent with the detected language
of the query and of its relevant documents; qrels have the BEIR header, known ids and
scores 1/2 (2 only for the single best document when several are relevant); every query
has >= 1 relevant doc and sits in exactly one split; every answer string occurs literally
in the text of a relevant document; document lengths; counts per kind; the train share.

Usage: python3 check.py [--verbose]     exit status 0 = pass, 1 = errors
"""
import json
import os
import re
import sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = "--verbose" in sys.argv
CJK = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]+")
KINDS = {"en-zh": 60, "zh-en": 60, "en-en": 30, "zh-zh": 30}   # kind -> minimum count
MIN_QUERIES, DOC_RANGE = 180, (60, 80)
EN_WORDS, ZH_CHARS = (150, 600), (250, 900)

errors, warnings = [], []


def err(msg):
    errors.append(msg)


def lang_of(text):
    cjk = len(CJK.findall(text))
    return "zh" if cjk > len(LATIN_WORD.findall(text)) else "en"


def read_jsonl(name):
    rows = []
    path = os.path.join(HERE, name)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                err(f"{name}:{n}: empty line")
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                err(f"{name}:{n}: invalid JSON ({e})")
    return rows


def read_qrels(name):
    path = os.path.join(HERE, "qrels", name)
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "query-id\tcorpus-id\tscore":
        err(f"qrels/{name}: first line must be the header 'query-id<TAB>corpus-id<TAB>score'")
    for n, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[2].isdigit():
            err(f"qrels/{name}:{n}: expected 'qid<TAB>docid<TAB>int', got {line!r}")
            continue
        out.append((parts[0], parts[1], int(parts[2])))
    return out


# ---- corpus ----
corpus = read_jsonl("corpus.jsonl")
docs, doc_lang = {}, {}
for d in corpus:
    if set(d) != {"_id", "title", "text"}:
        err(f"corpus: doc {d.get('_id')!r} has keys {sorted(d)}, expected _id/title/text")
    if not all(isinstance(d.get(k), str) and d.get(k).strip() for k in ("_id", "title", "text")):
        err(f"corpus: doc {d.get('_id')!r} has an empty or non-string field")
        continue
    if d["_id"] in docs:
        err(f"corpus: duplicate _id {d['_id']}")
    docs[d["_id"]] = d
    lang = doc_lang[d["_id"]] = lang_of(d["text"])
    body = d["text"]
    if lang == "en":
        n = len([w for w in body.split() if re.search(r"[A-Za-z0-9]", w)])
        if not EN_WORDS[0] <= n <= EN_WORDS[1]:
            err(f"corpus: {d['_id']} (en) has {n} words, outside {EN_WORDS}")
    else:
        n = len(re.sub(r"[\s|*#\-:]", "", body))
        if not ZH_CHARS[0] <= n <= ZH_CHARS[1]:
            err(f"corpus: {d['_id']} (zh) has {n} characters, outside {ZH_CHARS}")
if not DOC_RANGE[0] <= len(docs) <= DOC_RANGE[1]:
    err(f"corpus: {len(docs)} documents, expected {DOC_RANGE[0]}-{DOC_RANGE[1]}")

# ---- queries ----
queries = {}
for q in read_jsonl("queries.jsonl"):
    qid = q.get("_id")
    if set(q) != {"_id", "text", "metadata"} or not isinstance(qid, str):
        err(f"queries: {qid!r} has keys {sorted(q)}, expected _id/text/metadata")
        continue
    if qid in queries:
        err(f"queries: duplicate _id {qid}")
    queries[qid] = q
    m = q["metadata"]
    if not isinstance(m, dict) or set(m) != {"lang", "doc_lang", "kind", "answers"}:
        err(f"queries: {qid} metadata keys {sorted(m) if isinstance(m, dict) else m}")
        continue
    if m["lang"] not in ("en", "zh") or m["doc_lang"] not in ("en", "zh"):
        err(f"queries: {qid} bad lang/doc_lang {m['lang']}/{m['doc_lang']}")
    if m["kind"] != f"{m['lang']}-{m['doc_lang']}":
        err(f"queries: {qid} kind {m['kind']} does not match lang {m['lang']} / doc_lang {m['doc_lang']}")
    if lang_of(q["text"]) != m["lang"]:
        err(f"queries: {qid} text looks {lang_of(q['text'])}, metadata says {m['lang']}: {q['text']}")
    ans = m["answers"]
    if not isinstance(ans, list) or not ans or not all(isinstance(a, str) and a.strip() for a in ans):
        err(f"queries: {qid} answers must be a non-empty list of non-empty strings")
    elif len(set(ans)) != len(ans):
        err(f"queries: {qid} duplicate answer strings")
    if not q["text"].strip():
        err(f"queries: {qid} empty text")
dup_text = [t for t, c in Counter(q["text"] for q in queries.values()).items() if c > 1]
for t in dup_text:
    err(f"queries: duplicate query text {t!r}")

# ---- qrels ----
rel = defaultdict(dict)
split_of = {}
for name in ("train.tsv", "test.tsv"):
    for qid, did, score in read_qrels(name):
        if qid not in queries:
            err(f"qrels/{name}: unknown query-id {qid}")
        if did not in docs:
            err(f"qrels/{name}: unknown corpus-id {did}")
        if score not in (1, 2):
            err(f"qrels/{name}: {qid} {did} score {score} not in (1, 2)")
        if did in rel[qid]:
            err(f"qrels: duplicate pair {qid} {did}")
        rel[qid][did] = score
        if split_of.setdefault(qid, name) != name:
            err(f"qrels: {qid} appears in both train.tsv and test.tsv")

for qid, q in queries.items():
    r = rel.get(qid)
    if not r:
        err(f"qrels: query {qid} has no relevant document")
        continue
    twos = [d for d, s in r.items() if s == 2]
    if len(r) == 1 and twos:
        err(f"qrels: {qid} has a single relevant doc; it should have score 1")
    if len(r) > 1 and len(twos) != 1:
        err(f"qrels: {qid} has {len(r)} relevant docs but {len(twos)} with score 2 (expected exactly 1)")
    m = q["metadata"]
    for did in r:
        if did in doc_lang and doc_lang[did] != m["doc_lang"]:
            err(f"qrels: {qid} relevant doc {did} is {doc_lang[did]}, metadata doc_lang is {m['doc_lang']}")
    texts = [docs[d]["text"] for d in r if d in docs]
    for a in m["answers"]:
        if not any(a in t for t in texts):
            err(f"answers: {qid} answer {a!r} not found in relevant doc(s) {sorted(r)}")
        if a.lower() in q["text"].lower():
            warnings.append(f"{qid}: answer {a!r} appears in the question itself")
        elsewhere = [d for d, doc in docs.items() if d not in r and a in doc["text"]]
        if elsewhere and VERBOSE:
            warnings.append(f"{qid}: answer {a!r} also occurs in non-relevant {elsewhere}")

# ---- counts ----
kind_count = Counter(q["metadata"]["kind"] for q in queries.values())
train_kind = Counter(q["metadata"]["kind"] for qid, q in queries.items() if split_of.get(qid) == "train.tsv")
for k, minimum in KINDS.items():
    if kind_count[k] < minimum:
        err(f"counts: {kind_count[k]} {k} queries, need >= {minimum}")
    share = train_kind[k] / kind_count[k] if kind_count[k] else 0
    if not 0.25 <= share <= 0.40:
        err(f"split: train share for {k} is {share:.0%}, expected about 1/3")
for k in kind_count:
    if k not in KINDS:
        err(f"counts: unexpected kind {k}")
if len(queries) < MIN_QUERIES:
    err(f"counts: {len(queries)} queries, need >= {MIN_QUERIES}")
docs_used = {d for r in rel.values() for d in r}
unused = sorted(set(docs) - docs_used)

# ---- summary ----
lang_docs = Counter(doc_lang.values())
multi = sum(1 for r in rel.values() if len(r) > 1)
print("Bilingual helpdesk retrieval set (BEIR format)")
print(f"  corpus.jsonl : {len(docs)} documents ({lang_docs['zh']} zh, {lang_docs['en']} en)")
print(f"  queries.jsonl: {len(queries)} queries")
print(f"  {'kind':<7} {'all':>5} {'train':>6} {'test':>5}")
for k in KINDS:
    print(f"  {k:<7} {kind_count[k]:>5} {train_kind[k]:>6} {kind_count[k] - train_kind[k]:>5}")
n_train = sum(train_kind.values())
print(f"  {'total':<7} {len(queries):>5} {n_train:>6} {len(queries) - n_train:>5}")
n_pairs = sum(len(r) for r in rel.values())
print(f"  qrels: {n_pairs} judgements; {multi} queries with several relevant docs (best one scored 2)")
print(f"  answers: {sum(len(q['metadata']['answers']) for q in queries.values())} strings, "
      f"each found verbatim in a relevant document" if not any(e.startswith('answers') for e in errors)
      else "  answers: SOME NOT FOUND (see errors)")
print(f"  documents never judged relevant: {len(unused)}" + (f" {unused}" if unused else ""))
for w in warnings:
    print(f"  warning: {w}")
if errors:
    print(f"FAIL: {len(errors)} error(s)")
    for e in errors:
        print(f"  error: {e}")
    sys.exit(1)
print("PASS")
