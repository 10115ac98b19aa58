"""How many tokens an answer may take: reasoning and answer share gpt-oss's ``max_tokens``.

gpt-oss writes its reasoning (the analysis channel) before the answer, in the same token
budget, and reasons longer at higher effort; a budget sized for low effort ends high-effort
answers inside the reasoning (finish reason ``length``, no text). So the budget grows with
the effort: ``llm.max_tokens * llm.effort_max_tokens_scale.<effort>`` (1x/2x/4x by default),
and the context packer reserves that much of the window. Where the scaled budget would leave
less than :data:`MIN_PROMPT_TOKENS` of the window for the rules, sources and question, the
request is refused with what to change instead of answering from almost no sources.
Other models (the chat family) have no reasoning channel: ``max_tokens`` as configured.
"""

from __future__ import annotations

from rag.config import LLMSettings
from rag.errors import BadRequestError

MIN_PROMPT_TOKENS = 1024


def answer_budget(llm: LLMSettings, family: str, effort: str) -> int:
    """Tokens reserved for the completion of one request at ``effort``."""
    if family != "gpt-oss":
        return llm.max_tokens
    scale = float(getattr(llm.effort_max_tokens_scale, effort))
    return int(llm.max_tokens * scale)


def checked_budget(llm: LLMSettings, family: str, effort: str, max_model_len: int) -> int:
    """:func:`answer_budget`, refused when it leaves too little of the window for a prompt."""
    budget = answer_budget(llm, family, effort)
    if max_model_len - budget < MIN_PROMPT_TOKENS:
        raise BadRequestError(
            f"reasoning_effort {effort} reserves {budget} tokens for reasoning and the answer, "
            f"which leaves less than {MIN_PROMPT_TOKENS} of the {max_model_len}-token window "
            "for the question and its sources. Ask with a lower reasoning_effort (the "
            "administrator can lower llm.effort_max_tokens_scale or raise llm.max_model_len)."
        )
    return budget
