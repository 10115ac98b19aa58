"""The fusion benches' vector cache: questions are embedded as the service embeds them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.fusion import cached_vectors
from rag.eval.beir import Dataset


def test_questions_are_embedded_as_questions_and_an_old_cache_is_rebuilt(tmp_path: Path) -> None:
    data = Dataset("set", {}, {"q1": "leave", "q2": "wifi"}, {"q1": {"d1": 1}})
    ids = ["d1:0", "d2:0"]
    stored = {"d1:0": [1.0, 0.0], "d2:0": [0.0, 1.0]}
    asked: list[str] = []

    def embed_query(text: str) -> Sequence[float]:
        # e5 prefixes a question "query: " and a passage "passage: ": the two differ.
        asked.append(text)
        return [float(len(text)), 1.0]

    def index_vectors(chunk_ids: Sequence[str]) -> dict[str, list[float]]:
        return {c: stored[c] for c in chunk_ids}

    path = tmp_path / "cache.npz"
    # A cache from before (question vectors made as passages, no marker) is not trusted.
    np.savez(
        path,
        ids=np.asarray(ids),
        X=np.zeros((2, 2)),
        qids=np.asarray(["q1", "q2"]),
        Q=np.zeros((2, 2)),
    )
    x, q = cached_vectors(path, ids, data, index_vectors, embed_query)
    assert asked == ["leave", "wifi"]
    assert x.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert q["q1"].tolist() == [5.0, 1.0] and q["q2"].tolist() == [4.0, 1.0]
    # Read back without embedding again.
    x2, q2 = cached_vectors(path, ids, data, index_vectors, embed_query)
    assert asked == ["leave", "wifi"] and q2["q1"].tolist() == [5.0, 1.0]
    assert np.array_equal(x, x2)
