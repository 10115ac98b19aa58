"""gpt-oss's harmony format (the only importer of ``openai_harmony``).

Rendering puts each part where harmony gives it the right authority:

- system message: reasoning effort (and harmony's channel declaration),
- developer message: the service's rules,
- user message: the retrieved sources (clearly delimited, untrusted) and the question.

Harmony encodes message text as ordinary tokens, so a document that contains ``<|start|>``
or ``<|channel|>`` cannot open a message of its own.

Parsing feeds completion tokens to harmony's streaming parser and lets only the ``final``
channel through: the ``analysis`` channel (chain of thought) never reaches a user.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.errors import EngineError
from rag.types import GenerationRequest, HistoryTurn

MODEL_IDENTITY = "You are a knowledge assistant that answers from company documents."


class HarmonyCodec:
    """Renders requests to token ids and builds final-channel filters."""

    def __init__(self) -> None:
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        try:
            self._enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
        except Exception as exc:
            raise EngineError(
                f"Cannot load the harmony encoding ({exc}). Run `make setup` to build the "
                "o200k vocabulary, and make sure TIKTOKEN_ENCODINGS_BASE points at it."
            ) from exc

    @property
    def stop_token_ids(self) -> list[int]:
        """``<|return|>`` and ``<|call|>``: where an assistant turn ends."""
        return list(self._enc.stop_tokens_for_assistant_actions())

    def render(self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()) -> list[int]:
        from openai_harmony import (
            Conversation,
            DeveloperContent,
            Message,
            ReasoningEffort,
            Role,
            SystemContent,
        )

        effort = {
            "low": ReasoningEffort.LOW,
            "medium": ReasoningEffort.MEDIUM,
            "high": ReasoningEffort.HIGH,
        }[request.reasoning_effort]
        system = SystemContent.new().with_model_identity(MODEL_IDENTITY)
        system = system.with_reasoning_effort(effort)
        messages = [
            Message.from_role_and_content(Role.SYSTEM, system),
            Message.from_role_and_content(
                Role.DEVELOPER, DeveloperContent.new().with_instructions(request.instructions)
            ),
        ]
        for turn in history:
            if turn.role == "assistant":
                messages.append(
                    Message.from_role_and_content(Role.ASSISTANT, turn.text).with_channel("final")
                )
            else:
                messages.append(Message.from_role_and_content(Role.USER, turn.text))
        messages.append(Message.from_role_and_content(Role.USER, user_text(request)))
        conversation = Conversation.from_messages(messages)
        return list(self._enc.render_conversation_for_completion(conversation, Role.ASSISTANT))

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self._enc.decode(list(tokens)))

    def encode_plain(self, text: str) -> list[int]:
        """Text as ordinary tokens: special-token spellings are not special here."""
        return list(self._enc.encode(text, allowed_special=set(), disallowed_special=()))

    def final_filter(self) -> FinalChannelFilter:
        return FinalChannelFilter(self)


def user_text(request: GenerationRequest) -> str:
    if not request.context:
        return request.question
    return f"{request.context}\n\nQuestion: {request.question}"


class FinalChannelFilter:
    """Feeds completion tokens to harmony's parser; returns only ``final``-channel text."""

    def __init__(self, codec: HarmonyCodec) -> None:
        from openai_harmony import Role, StreamableParser

        self._parser = StreamableParser(codec._enc, Role.ASSISTANT)
        self.final_text = ""

    def feed(self, tokens: Sequence[int]) -> str:
        """Process completion tokens; return the new user-visible text (may be empty)."""
        out: list[str] = []
        for token in tokens:
            try:
                self._parser.process(token)
            except Exception as exc:
                raise EngineError(
                    f"The model's output is not valid harmony ({exc}). Check that llm.model "
                    "is a gpt-oss checkpoint, or set llm.family: chat for other models."
                ) from exc
            delta = self._parser.last_content_delta
            if (
                delta
                and self._parser.current_channel == "final"
                and not self._parser.current_recipient
            ):
                out.append(delta)
        text = "".join(out)
        self.final_text += text
        return text

    def finish(self, truncated: bool) -> None:
        """Check the completion ended cleanly; a cut-off one (``length``) is left as is."""
        if truncated:
            return
        try:
            self._parser.process_eos()
        except Exception as exc:
            raise EngineError(
                f"The model's output is not valid harmony ({exc}). Check that llm.model "
                "is a gpt-oss checkpoint, or set llm.family: chat for other models."
            ) from exc
