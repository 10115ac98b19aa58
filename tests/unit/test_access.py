"""Access groups from config rules and sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.access import resolve_meta
from rag.config import IngestSettings
from rag.errors import IngestError


def settings() -> IngestSettings:
    return IngestSettings.model_validate(
        {
            "default_groups": ["staff"],
            "group_rules": [
                {"pattern": "hr/*", "groups": ["hr"]},
                {"pattern": "*/salaries*", "groups": ["finance"]},
            ],
        }
    )


def test_rules_add_groups_and_the_default_covers_the_rest(tmp_path: Path) -> None:
    (tmp_path / "hr" / "pay").mkdir(parents=True)
    nested = tmp_path / "hr" / "pay" / "salaries-2026.xlsx"
    assert resolve_meta(nested, tmp_path, settings()).groups == ("hr", "finance")
    assert resolve_meta(tmp_path / "hr" / "leave.md", tmp_path, settings()).groups == ("hr",)
    assert resolve_meta(tmp_path / "it" / "vpn.md", tmp_path, settings()).groups == ("staff",)


def test_a_sidecar_sets_groups_title_and_url(tmp_path: Path) -> None:
    doc = tmp_path / "hr" / "board.pdf"
    doc.parent.mkdir()
    (tmp_path / "hr" / "board.pdf.meta.json").write_text(
        json.dumps({"groups": ["board"], "title": "Board minutes", "url": "https://x/1"})
    )
    meta = resolve_meta(doc, tmp_path, settings())
    assert meta.groups == ("board",)
    assert (meta.title, meta.url) == ("Board minutes", "https://x/1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid UTF-8 JSON"),
        ('{"groups": "hr"}', "non-empty list"),
        ('{"groups": ["a|b"]}', "not a valid name"),
        ('{"owner": "x"}', "unknown sidecar keys"),
    ],
)
def test_a_bad_sidecar_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "a.md.meta.json").write_text(content)
    with pytest.raises(IngestError, match=message):
        resolve_meta(tmp_path / "a.md", tmp_path, settings())
