"""The committed widget bundle is built from the current sources and stays small."""

from __future__ import annotations

import gzip
import hashlib
import re

from serving.widget import BUNDLE, WIDGET_DIR


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((WIDGET_DIR / "src").iterdir(), key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def test_bundle_is_fresh() -> None:
    banner = BUNDLE.read_text(encoding="utf-8").split("\n", 1)[0]
    found = re.search(r"src:([0-9a-f]{16})", banner)
    assert found, banner
    assert found.group(1) == source_hash(), "serving/widget/dist is stale: run `make widget`"


def test_bundle_is_under_30_kb_gzipped() -> None:
    size = len(gzip.compress(BUNDLE.read_bytes(), compresslevel=9))
    assert 2_000 < size < 30 * 1024, size
