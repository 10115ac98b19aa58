"""Issue 19, finding 1: BM25 scores must not reveal words in documents the caller cannot
read. Before, the term statistics (document frequency, average length) covered every
group's chunks, so a probe word scored lower when it also occurred in an HR document."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.index.keyword import KeywordIndex
from rag.types import Chunk

WORDS = ["salary", "payroll", "lisbon", "printer", "badge", "canteen", "vpn", "wifi", "leave"]


def chunk(doc: str, i: int, text: str, groups: Sequence[str]) -> Chunk:
    return Chunk(
        chunk_id=f"{doc}:v:{i}",
        doc_id=doc,
        text=text,
        source=f"/kb/{doc}.txt",
        title=doc,
        index=i,
        content_hash=f"{doc}{i}",
        groups=tuple(groups),
    )


def build(folder: Path, chunks: Sequence[Chunk]) -> KeywordIndex:
    kw = KeywordIndex(folder)
    kw.on_upsert(chunks)
    kw.commit()
    return kw


def test_a_probe_word_scores_the_same_whether_or_not_hr_uses_it(tmp_path: Path) -> None:
    """The attack as reported: an everyone-scope caller's probe file lists candidate words;
    the word that also occurs in HR's documents must score exactly like one that does not."""
    public = [
        chunk("probe", 0, "zanzibar quokka", ["everyone"]),
        chunk("faq", 0, "printers are on every floor", ["everyone"]),
    ]
    hr = [chunk(f"hr{n}", 0, f"director salary band zanzibar {n}", ["hr"]) for n in range(5)]
    kw = build(tmp_path / "kw", public + hr)
    outsider = ["everyone"]
    (hit_z,) = kw.search("zanzibar", 5, groups=outsider)
    (hit_q,) = kw.search("quokka", 5, groups=outsider)
    assert hit_z[0] == hit_q[0] == "probe:v:0"
    assert hit_z[1] == hit_q[1]
    # HR itself sees its own documents with statistics over what it may read.
    assert {cid for cid, _ in kw.search("zanzibar", 10, groups=["hr", "everyone"])} == {
        "probe:v:0",
        *(c.chunk_id for c in hr),
    }


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    public=st.lists(texts, min_size=1, max_size=6),
    restricted=st.lists(texts, min_size=1, max_size=6),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
)
def test_restricted_documents_never_change_what_an_outsider_gets(
    public: list[str], restricted: list[str], query: str
) -> None:
    """Adding restricted documents (with and without neighbouring public chunks in the same
    document) changes no result and no score an outsider gets."""
    outside = [chunk(f"p{n}", 0, text, ["everyone"]) for n, text in enumerate(public)]
    hidden = [chunk(f"r{n}", 0, text, ["hr"]) for n, text in enumerate(restricted)]
    # A restricted chunk inside a public document: windows must not read across groups.
    hidden.append(chunk("p0", 1, restricted[0], ["finance"]))
    with tempfile.TemporaryDirectory() as tmp:
        without = build(Path(tmp) / "a", outside)
        with_restricted = build(Path(tmp) / "b", outside + hidden)
        for groups in (["everyone"], ["everyone", "sales"]):
            assert without.search(query, 20, groups=groups) == with_restricted.search(
                query, 20, groups=groups
            )
        # Removing them again: the index follows, and the outsider's view is unchanged.
        with_restricted.on_delete([c.chunk_id for c in hidden])
        with_restricted.commit()
        assert without.search(query, 20, groups=["everyone"]) == with_restricted.search(
            query, 20, groups=["everyone"]
        )
