"""What the service itself says around quoted sources, in the question's language."""

from __future__ import annotations

from typing import Literal

from rag.answering.facts import is_chinese
from rag.answering.prompt import DECLINE_MESSAGE

Language = Literal["en", "zh"]

_TEXT: dict[str, dict[Language, str]] = {
    "lead_in": {
        "en": "The knowledge base says:",
        "zh": "知识库中的相关内容：",
    },
    "unverified": {
        "en": "I could not verify an answer in the sources. The closest passage:",
        "zh": "无法在资料中核实答案。最相关的原文：",
    },
    "not_verified": {
        "en": "I could not verify this answer in the sources.",
        "zh": "无法在资料中核实这个回答。",
    },
    "decline": {
        "en": DECLINE_MESSAGE,
        "zh": "知识库中没有找到这个问题的答案。请换个说法再问，或请服务台补充相关文档。",
    },
}


def language_of(question: str) -> Language:
    return "zh" if is_chinese(question) else "en"


def say(what: Literal["lead_in", "unverified", "not_verified", "decline"], question: str) -> str:
    return _TEXT[what][language_of(question)]


def quoted(text: str) -> str:
    """``text`` in quotation marks of its own script."""
    return f"“{text}”" if is_chinese(text) else f'"{text}"'
