"""Retrieval metrics on hand-made rankings with answers worked out by hand."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from rag.config import RetrievalSettings
from rag.errors import BadRequestError
from rag.eval.beir import (
    bootstrap_ci,
    load_beir,
    mrr_at,
    ndcg_at,
    ndcg_per_query,
    percentile,
    recall_at,
    roll_up,
    roll_up_scored,
    score_run,
)
from rag.retrieval.hybrid import Weights, convex, fuse, fuse_hybrid, ranked, rrf, weights


def test_ndcg_recall_mrr_match_hand_computed_values() -> None:
    rels = {"a": 2, "b": 1}
    # Ideal: a (gain 2) at rank 1, b (gain 1) at rank 2: IDCG = 2 + 1/log2(3).
    idcg = 2 + 1 / math.log2(3)
    assert ndcg_at(["a", "b", "x"], rels) == pytest.approx(1.0)
    assert ndcg_at(["x", "a", "b"], rels) == pytest.approx((2 / math.log2(3) + 1 / 2) / idcg)
    assert ndcg_at(["x", "y"], rels) == 0.0
    assert recall_at(["x", "b"], rels, 10) == 0.5
    assert recall_at(["x"] * 10 + ["a"], rels, 10) == 0.0
    assert mrr_at(["x", "y", "b"], rels) == pytest.approx(1 / 3)
    assert mrr_at(["x"] * 10 + ["a"], rels) == 0.0


def test_score_run_averages_over_judged_queries_and_counts_missing_runs_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": ["a"], "q3": ["c"]}
    scores = score_run(run, qrels)
    assert scores["ndcg@10"] == pytest.approx(0.5)  # q1 perfect, q2 missing; q3 unjudged
    assert scores["mrr@10"] == pytest.approx(0.5)
    assert scores["recall@100"] == pytest.approx(0.5)


def test_rrf_and_document_roll_up() -> None:
    fused = rrf([(1.0, ["a", "b"]), (2.0, ["b", "c"])], k=60)
    assert fused["b"] == pytest.approx(1 / 62 + 2 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert max(fused, key=fused.__getitem__) == "b"
    assert rrf([(0.0, ["a"])], k=60) == {}
    ranked = roll_up([("d1:0", 0.9), ("d2:0", 0.8), ("d2:1", 0.7), ("d1:3", 0.1)], bonus=0.5)
    assert ranked == ["d2", "d1"]  # 0.8 + 0.35 beats 0.9 + 0.05
    assert percentile([1, 2, 3, 4], 0.5) == 2.5


def test_convex_fusion_keeps_score_gaps_that_rank_fusion_loses() -> None:
    # b and c are good in both rankers; a and d top one ranker and are far behind in the other.
    dense = [("a", 0.90), ("b", 0.50), ("c", 0.49), ("d", 0.10)]
    keyword = [("d", 10.0), ("c", 9.9), ("b", 9.8), ("a", 1.0)]
    fused = convex([(1.0, dense), (1.0, keyword)])
    # min-max per ranker, then halved by the equal weights.
    assert fused["a"] == pytest.approx(0.5)
    assert fused["b"] == pytest.approx((0.5 + 8.8 / 9) / 2)
    assert fused["c"] == pytest.approx((0.39 / 0.8 + 8.9 / 9) / 2)
    assert fused["d"] == pytest.approx(0.5)
    assert ranked(fused) == ["b", "c", "a", "d"]
    # RRF sees ranks only: 1st + 4th (a, d) edges out 2nd + 3rd (b, c).
    by_rank = fuse([(1.0, dense), (1.0, keyword)], "rrf", 60)
    assert by_rank == rrf([(1.0, ["a", "b", "c", "d"]), (1.0, ["d", "c", "b", "a"])], 60)
    assert by_rank["a"] == pytest.approx(1 / 61 + 1 / 64)
    assert ranked(by_rank) == ["a", "d", "b", "c"]


def test_convex_fusion_weights_missing_keys_and_flat_rankings() -> None:
    fused = fuse([(3.0, [("a", 5.0), ("b", 1.0)]), (1.0, [("c", 7.0)])], "convex", 60)
    # a: 3 x 1 / 4; b: its ranker's worst -> 0; c: a one-item ranking normalises to 1 -> 1/4.
    assert fused == pytest.approx({"a": 0.75, "b": 0.0, "c": 0.25})
    assert convex([(0.0, [("a", 1.0)]), (1.0, [])]) == {}
    assert convex([(1.0, [("a", 2.0), ("b", 2.0)])]) == {"a": 1.0, "b": 1.0}


def test_max_scaled_fusion_keeps_how_far_a_list_sits_below_its_best() -> None:
    # The keyword list is flat (all near its best), the dense one falls away steeply.
    dense = [("a", 0.80), ("b", 0.40), ("c", 0.20)]
    keyword = [("b", 10.0), ("c", 9.5), ("a", 9.0)]
    fused = convex([(1.0, dense), (1.0, keyword)], "max")
    assert fused["a"] == pytest.approx((1.0 + 0.9) / 2)
    assert fused["b"] == pytest.approx((0.5 + 1.0) / 2)
    assert fused["c"] == pytest.approx((0.25 + 0.95) / 2)
    # Min-max stretches the flat list to 1..0 and lets it outvote the steep one.
    assert ranked(convex([(1.0, dense), (1.0, keyword)], "minmax")) == ["b", "a", "c"]
    assert ranked(fused) == ["a", "b", "c"]
    # Negative scores count as 0; a list with nothing positive falls back to min-max.
    assert convex([(1.0, [("a", 0.5), ("b", -0.2)])], "max") == {"a": 1.0, "b": 0.0}
    assert convex([(1.0, [("a", -0.1), ("b", -0.3)])], "max") == pytest.approx({"a": 1.0, "b": 0.0})


def test_max_scaled_fusion_floors_missing_keys_by_whether_the_list_was_cut_short() -> None:
    dense = [("a", 0.9), ("b", 0.6)]
    keyword = [("c", 4.0)]
    # No depth: each list was cut short, so a key it lacks scored below its last entry.
    fused = fuse([(1.0, dense), (1.0, keyword)], "convex", 60, "max")
    assert fused == pytest.approx({"a": 1.0, "b": (2 / 3 + 1.0) / 2, "c": (2 / 3 + 1.0) / 2})
    # Depth 2: the one-item keyword list is everything BM25 matched, so a and b get 0 there.
    fused = fuse([(1.0, dense), (1.0, keyword)], "convex", 60, "max", depth=2)
    assert fused == pytest.approx({"a": 0.5, "b": 1 / 3, "c": (2 / 3 + 1.0) / 2})
    assert ranked(fused) == ["c", "a", "b"]


def test_roll_up_scored_gives_each_document_its_best_chunk() -> None:
    chunks = [("d1:0", 0.9), ("d2:0", 0.8), ("d2:1", 0.7), ("d1:3", 0.1)]
    assert roll_up_scored(chunks, bonus=0.0) == [("d1", 0.9), ("d2", 0.8)]
    assert roll_up_scored(chunks, bonus=0.5) == [
        ("d2", pytest.approx(1.15)),
        ("d1", pytest.approx(0.95)),
    ]


def test_load_beir_reads_graded_qrels(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "T", "text": "x"}) + "\n", encoding="utf-8"
    )
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "x"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    data = load_beir(tmp_path)
    assert data.corpus == {"d1": ("T", "x")} and data.qrels == {"q1": {"d1": 2}}
    with pytest.raises(BadRequestError, match=r"qrels/dev\.tsv"):
        load_beir(tmp_path, "dev")


def test_load_beir_groups_queries_by_kind_or_else_by_language(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "x"}) + "\n")
    queries = [
        {"_id": "q1", "text": "年假有几天？"},
        {"_id": "q2", "text": "How many days of leave?"},
        {"_id": "q3", "text": "leave days in china?", "metadata": {"kind": "en-zh"}},
    ]
    (tmp_path / "queries.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8"
    )
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td1\t1\nq2\td1\t1\nq3\td1\t1\n")
    assert load_beir(tmp_path).groups == {"q1": "zh", "q2": "en", "q3": "en-zh"}


def test_the_report_prints_each_query_group() -> None:
    from rag.eval.beir import ModeResult, Report

    metrics = {"ndcg@10": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}
    modes = {m: ModeResult(dict(metrics), [1.0]) for m in ("keyword", "hybrid")}
    report = Report(
        "set",
        3,
        1,
        1,
        0.0,
        1.0,
        modes,
        by_group={
            "en": {"keyword": (2, 0.25, 0.5), "hybrid": (2, 0.75, 1.0)},
            "zh": {"keyword": (1, 1.0, 1.0), "hybrid": (1, 0.0, 0.0)},
        },
        group_gain={"en": ("keyword", 0.5, 0.0, 1.0), "zh": ("keyword", -1.0, -1.0, -1.0)},
    )
    lines = report.table().splitlines()
    assert lines[-4].startswith("nDCG@10 / recall@10 by query group: en (2) | zh (1)")
    assert lines[-3].split()[:3] == ["group", "keyword", "hybrid"]
    assert "hybrid - better" in lines[-3]
    assert lines[-1].split() == [
        *["zh", "1.0000", "/", "1.0000", "0.0000", "/", "0.0000"],
        *["-1.0000", "vs", "keyword", "(-1.0000", "to", "-1.0000)"],
    ]
    assert report.to_json()["groups"]["en"]["hybrid"] == {
        "queries": 2,
        "ndcg@10": 0.75,
        "recall@10": 1.0,
    }
    assert report.to_json()["groups_hybrid_minus_better"]["en"] == {
        "mode": "keyword",
        "delta": 0.5,
        "ci_low": 0.0,
        "ci_high": 1.0,
    }


def test_groups_by_kind_roll_up_by_language_and_compare_hybrid_with_the_better_part() -> None:
    from rag.eval.beir import Dataset, by_query_group

    queries = {"q1": "leave policy", "q2": "annual leave days", "q3": "年假几天", "q4": "病假"}
    kinds = {"q1": "en-en", "q2": "en-zh", "q3": "zh-zh", "q4": "zh-en"}
    qrels = {q: {f"d{q[1]}": 1} for q in queries}
    data = Dataset("set", {}, queries, qrels, kinds)
    runs = {
        # keyword finds d1 and d3 first, dense finds d2 and d4 second; hybrid ranks every
        # answer first but d3's, which it ranks second.
        "dense": {"q1": ["x", "d1"], "q2": ["x", "d2"], "q3": ["x", "d3"], "q4": ["x", "d4"]},
        "keyword": {"q1": ["d1"], "q2": ["x"], "q3": ["d3"], "q4": []},
        "hybrid": {"q1": ["d1"], "q2": ["d2"], "q3": ["x", "d3"], "q4": ["d4"]},
    }
    by_group, gain = by_query_group(data, list(queries), runs, ["dense", "keyword", "hybrid"])
    second = 1 / math.log2(3)  # nDCG@10 of the only answer at rank 2
    assert list(by_group) == ["en-*", "en-en", "en-zh", "zh-*", "zh-en", "zh-zh"]
    assert by_group["en-*"]["hybrid"] == (2, 1.0, 1.0)
    assert by_group["zh-*"]["keyword"] == (2, pytest.approx(0.5), 0.5)
    assert gain["en-en"] == ("keyword", 0.0, 0.0, 0.0)
    assert gain["en-zh"] == ("dense", pytest.approx(1 - second), *[pytest.approx(1 - second)] * 2)
    assert gain["zh-zh"] == ("keyword", pytest.approx(second - 1), *[pytest.approx(second - 1)] * 2)
    better, delta, low, high = gain["zh-*"]
    assert better == "dense" and delta == pytest.approx((1 + second) / 2 - second)
    assert low <= delta <= high
    # One group (every query English): nothing by group.
    english = Dataset("set", {}, {"q1": "leave"}, {"q1": {"d1": 1}}, {})
    assert by_query_group(english, ["q1"], runs, ["dense", "hybrid"]) == ({}, {})


def test_ndcg_per_query_follows_the_judged_queries_and_scores_missing_runs_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}, "q3": {"c": 1}}
    assert ndcg_per_query({"q1": ["a"], "q2": ["b"]}, qrels) == [1.0, 0.0]  # q2 unjudged


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_queries() -> None:
    assert bootstrap_ci([0.4] * 50) == pytest.approx((0.4, 0.4))
    assert bootstrap_ci([]) == (0.0, 0.0)
    few = [1.0, 0.0] * 10
    many = [1.0, 0.0] * 500
    lo, hi = bootstrap_ci(few)
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    lo2, hi2 = bootstrap_ci(many)
    assert lo < lo2 < 0.5 < hi2 < hi
    # Binomial standard error at n=1000 is 0.0158: a 95% interval is about +-0.031.
    assert hi2 - lo2 == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=0.15)
    assert bootstrap_ci(few) == (lo, hi)  # seeded: a rerun prints the same interval


def _retrieval() -> RetrievalSettings:
    from rag.config import LanguageWeights

    weights = {
        "en": LanguageWeights(dense=0.45, keyword=0.55, cross=1.1, translated=1.5),
        "zh": LanguageWeights(dense=0.5, keyword=0.5, cross=1.3, translated=1.0),
    }
    return RetrievalSettings(language_weights=weights)


def test_weights_follow_the_questions_language_and_what_the_model_reads() -> None:
    cfg = _retrieval()
    both = frozenset({"en", "zh"})
    assert weights(cfg, "how many days of annual leave", both) == Weights(
        0.45, 0.55, 1.1, "en", both, 1.5
    )
    assert weights(cfg, "年假有几天", both) == Weights(0.5, 0.5, 1.3, "zh", both, 1.0)
    # A model that reads English only: a Chinese question is BM25's (unread_dense_weight 0),
    # with no cross-language cosine factor; its translation still finds English chunks.
    assert weights(cfg, "年假有几天", ["en"]) == Weights(
        0.0, 0.5, 1.0, "zh", frozenset({"en"}), 1.0
    )
    # A model that reads one language: language_weights were tuned for a bilingual one, so
    # dense_weight/keyword_weight (tuned with MiniLM), and still the translation.
    assert weights(cfg, "how many days of annual leave", ["en"]) == Weights(
        0.65, 0.35, 1.0, "en", frozenset({"en"}), 1.5
    )
    # A language without its own weights: dense_weight/keyword_weight, nothing by language.
    plain = weights(cfg.model_copy(update={"language_weights": {}}), "annual leave", both)
    assert (plain.dense, plain.keyword, plain.cross, plain.translated) == (0.65, 0.35, 1.0, 0.0)
    assert not plain.bilingual


def test_a_document_in_the_other_language_competes_on_its_translation_and_cosine() -> None:
    """BM25 matches only same-language chunks. Fused alike, the Chinese answer to an English
    question (the best cosine, 0.62, but no BM25 score) ranks below both English chunks BM25
    matched. The translated question's BM25 score (x translated) stands in for its missing
    BM25 score, and its cosine counts x cross."""
    cfg = _retrieval()
    dense = [("zh-answer", 0.62), ("en-near", 0.60), ("en-far", 0.30)]
    keyword = [("en-far", 9.0), ("en-near", 6.0)]
    translated = [("zh-answer", 5.0), ("en-far", 20.0)]  # a kept code matched en-far: ignored
    langs = {"zh-answer": "zh", "en-near": "en", "en-far": "en"}
    plan = Weights(0.45, 0.55, 1.1, "en", frozenset({"en", "zh"}), 1.5)
    depth = 50  # fewer than asked: a chunk a ranker left out scores 0 there
    blind = fuse_hybrid(dense, keyword, replace(plan, cross=1.0, translated=0.0), cfg, depth, langs)
    assert ranked(blind) == ["en-near", "en-far", "zh-answer"]
    fused = fuse_hybrid(dense, keyword, plan, cfg, depth, langs, translated)
    # Dense: zh-answer 0.62 x 1.1 = 0.682 is the best; keyword: en-far 9, en-near 6 and
    # zh-answer 1.5 x 5 = 7.5, each over the best (9).
    top = 0.62 * 1.1
    assert fused == pytest.approx(
        {
            "zh-answer": 0.45 * 1.0 + 0.55 * 7.5 / 9,
            "en-near": 0.45 * 0.60 / top + 0.55 * 6 / 9,
            "en-far": 0.45 * 0.30 / top + 0.55 * 1.0,
        }
    )
    assert ranked(fused) == ["zh-answer", "en-near", "en-far"]
    # Without its translation, the cosine factor alone does not lift it past the English
    # chunks BM25 matched.
    cosine_only = fuse_hybrid(dense, keyword, replace(plan, translated=0.0), cfg, depth, langs)
    assert ranked(cosine_only) == ["en-near", "en-far", "zh-answer"]
    assert cosine_only["zh-answer"] == pytest.approx(0.45)  # the best cosine, no BM25
    # A chunk in a language the model does not read gets no cosine factor (its
    # translation still counts).
    english_model = replace(plan, reads=frozenset({"en"}))
    unread = fuse_hybrid(dense, keyword, english_model, cfg, depth, langs, translated)
    assert unread["en-near"] == pytest.approx(0.45 * 0.60 / 0.62 + 0.55 * 6 / 9)
    assert unread["zh-answer"] == pytest.approx(0.45 * 1.0 + 0.55 * 7.5 / 9)
    # Nothing in another language, no languages known, or RRF: the plain fusion.
    plain = fuse([(0.45, dense), (0.55, keyword)], "convex", 60, "max", depth)
    english = dict.fromkeys(langs, "en")
    assert fuse_hybrid(dense, keyword, plan, cfg, depth, english, translated) == plain
    assert fuse_hybrid(dense, keyword, plan, cfg, depth, {}, translated) == plain
    rrf_cfg = cfg.model_copy(update={"fusion": "rrf"})
    assert fuse_hybrid(dense, keyword, plan, rrf_cfg, depth, langs, translated) == fuse(
        [(0.45, dense), (0.55, keyword)], "rrf", 60
    )
