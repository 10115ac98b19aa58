"""gpt-oss's harmony format (the only importer of ``openai_harmony``).

Rendering puts each part where harmony gives it the right authority, in the order that keeps
the long prefix across follow-ups (:func:`rag.answering.prompt.conversation`):

- system message: identity, reasoning effort, the current date (as vLLM's own server writes
  it) and harmony's channel declaration,
- developer message: the service's rules,
- user message: the retrieved sources (clearly delimited, untrusted), then the earlier turns,
  then the question as the last user message.

Harmony encodes message text as ordinary tokens, so a document that contains ``<|start|>``
or ``<|channel|>`` cannot open a message of its own.

Parsing (:class:`FinalChannelFilter`) feeds completion tokens to harmony's streaming parser
and lets only what vLLM 0.33 shows as content through: the ``final`` channel and
``commentary`` without a recipient (preambles). The ``analysis`` channel (chain of thought)
and tool calls never reach a user. Real gpt-oss output is not always valid harmony, so the
filter degrades instead of failing (skipping and recovering as vLLM 0.33's
``vllm/parser/harmony.py`` does; the header repair and the hiding rules are this service's):

- a token the parser rejects is skipped and counted (the text already streamed stays), and
  so is a special token it takes as text inside a visible message (``<|start|>``);
- a message header with stray tokens (``<|channel|>final to=functions.x json``) is
  repaired to its channel and recipient instead of losing the whole message;
- a completion that ends inside a header is recovered as raw text on flush, unless that
  header is the analysis channel or a tool call (vLLM would show those too: we never do);
- a completion cut off by ``max_tokens`` before any visible text is reported
  (:attr:`FinalChannelFilter.cut_in_reasoning`), so the caller can say why it is empty;
- a completed message addressed to a tool (``to=functions.x``, ``to=browser.search``) is
  recorded (:attr:`FinalChannelFilter.tool_call`): no tools are declared, so the engine
  answers it with :meth:`HarmonyCodec.tool_refusal` and lets the model go on.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.answering.prompt import conversation
from rag.errors import EngineError
from rag.types import GenerationRequest, HistoryTurn

log = logging.getLogger(__name__)

MODEL_IDENTITY = "You are a knowledge assistant that answers from company documents."
TOOL_REFUSAL = (
    "Error: no tools are available in this conversation. Answer from the sources in the "
    "user's message, in the final channel."
)
_CHANNEL = re.compile(r"\b(analysis|commentary|final)\b")
_RECIPIENT = re.compile(r"to=([^\s<]+)")


def today() -> str:
    """The date for the system message, as vLLM writes it (``%Y-%m-%d``, local time)."""
    return datetime.date.today().isoformat()


@dataclass
class DecodeFaults:
    """What the filters of one engine met in the model's output since start (counts only)."""

    malformed_tokens: int = 0
    """Tokens harmony's parser rejected; skipped."""
    repaired_headers: int = 0
    """Message headers with stray tokens, parsed as their channel and recipient."""
    recovered_answers: int = 0
    """Completions that ended inside a header, whose raw text became the answer."""
    cut_in_reasoning: int = 0
    """Completions cut off by max_tokens before any answer text."""
    tool_calls_refused: int = 0
    """Calls to a tool (none is declared) answered with an error message."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def normalize_recipient(recipient: str | None) -> str | None:
    """Drop a constrained format older harmony misparses into the recipient
    (``<|constrain|>response``), as vLLM's ``HarmonyParser._normalize_recipient`` does."""
    if not recipient:
        return None
    cut = recipient.find("<|constrain|>")
    if cut == -1:
        return recipient
    return recipient[:cut].rstrip() or None


def visible(channel: str | None, recipient: str | None) -> bool:
    """What vLLM 0.33 returns as content: the final channel, and commentary to nobody."""
    return channel in {"final", "commentary"} and normalize_recipient(recipient) is None


class HarmonyCodec:
    """Renders requests to token ids and builds final-channel filters."""

    def __init__(self, date: Callable[[], str] = today) -> None:
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        try:
            self._enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
        except Exception as exc:
            raise EngineError(
                f"Cannot load the harmony encoding ({exc}). Run `make setup` to build the "
                "o200k vocabulary, and make sure TIKTOKEN_ENCODINGS_BASE points at it."
            ) from exc
        self._date = date
        self.faults = DecodeFaults()

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
        system = system.with_reasoning_effort(effort).with_conversation_start_date(self._date())
        messages = [
            Message.from_role_and_content(Role.SYSTEM, system),
            Message.from_role_and_content(
                Role.DEVELOPER, DeveloperContent.new().with_instructions(request.instructions)
            ),
        ]
        for role, text in conversation(request.context, request.question, history):
            if role == "assistant":
                messages.append(
                    Message.from_role_and_content(Role.ASSISTANT, text).with_channel("final")
                )
            else:
                messages.append(Message.from_role_and_content(Role.USER, text))
        return list(
            self._enc.render_conversation_for_completion(
                Conversation.from_messages(messages), Role.ASSISTANT
            )
        )

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self._enc.decode(list(tokens)))

    def encode_plain(self, text: str) -> list[int]:
        """Text as ordinary tokens: special-token spellings are not special here."""
        return list(self._enc.encode(text, allowed_special=set(), disallowed_special=()))

    def encode_harmony(self, text: str) -> list[int]:
        """Text with harmony's special tokens spelled out (``<|start|>`` is one token):
        only for text the service writes itself, never for documents or questions."""
        return list(self._enc.encode(text, allowed_special="all"))

    def is_special(self, token: int) -> bool:
        return bool(self._enc.is_special_token(token))

    def tool_refusal(self, recipient: str, completion: Sequence[int] = ()) -> list[int]:
        """What follows a completion that called a tool although none is declared: the
        ``<|call|>`` that ends the call (when the completion lacks it), the tool's error
        reply, and the open assistant turn. Appended to prompt + completion, the model goes
        on from there (vLLM's server does the same round trip for the tools it runs)."""
        from openai_harmony import Author, Message, Role

        reply = (
            Message.from_author_and_content(Author.new(Role.TOOL, recipient), TOOL_REFUSAL)
            .with_channel("commentary")
            .with_recipient("assistant")
        )
        call = self.encode_harmony("<|call|>")
        ids = [] if list(completion[-1:]) == call else call
        return ids + list(self._enc.render(reply)) + self.encode_harmony("<|start|>assistant")

    def final_filter(self) -> FinalChannelFilter:
        return FinalChannelFilter(self)


def user_text(request: GenerationRequest) -> str:
    """Sources and question as one message (the chat template of small CPU models)."""
    if not request.context:
        return request.question
    return f"{request.context}\n\nQuestion: {request.question}"


class FinalChannelFilter:
    """Feeds completion tokens to harmony's parser; returns only the user-visible text."""

    def __init__(self, codec: HarmonyCodec) -> None:
        self._codec = codec
        self._parser: Any = self._new_parser()
        self._pending: list[int] = []  # tokens of the message being parsed
        self._seen = 0  # messages of the current parser already looked at
        self._message_no = 0  # messages completed in this completion (across repairs)
        self._shown_in = -1  # the message the last visible text came from
        self.final_text = ""
        self.tool_call: str | None = None
        self.skipped = 0
        self.repaired = 0
        self.recovered = ""
        self.cut_in_reasoning = False

    def _new_parser(self) -> Any:
        from openai_harmony import Role, StreamableParser

        return StreamableParser(self._codec._enc, Role.ASSISTANT)

    def feed(self, tokens: Sequence[int]) -> str:
        """Process completion tokens; return the new user-visible text (may be empty)."""
        return self._feed(tokens, silent=False)

    def feed_silent(self, tokens: Sequence[int]) -> None:
        """Process tokens the service appended (a tool's reply): nothing is shown."""
        self._feed(tokens, silent=True)

    def _feed(self, tokens: Sequence[int], *, silent: bool) -> str:
        from openai_harmony import HarmonyError

        out: list[str] = []
        for token in tokens:
            try:
                self._parser.process(token)
            except HarmonyError as exc:
                if not self._repair_header(token, str(exc)):
                    self.skipped += 1
                    self._codec.faults.malformed_tokens += 1
                continue
            self._pending.append(token)
            self._collect_messages()
            delta = self._parser.last_content_delta
            if not delta or silent:
                continue
            if not visible(self._parser.current_channel, self._parser.current_recipient):
                continue
            if self._codec.is_special(token):  # harmony markup inside the text: never shown
                self.skipped += 1
                self._codec.faults.malformed_tokens += 1
                continue
            out.append(self._show(delta))
        return "".join(out)

    def _show(self, delta: str) -> str:
        """Visible text; a new visible message (a preamble, then the answer) starts a paragraph."""
        if self._shown_in != self._message_no and self.final_text:
            delta = "\n\n" + delta.lstrip()
        self._shown_in = self._message_no
        self.final_text += delta
        return delta

    def _collect_messages(self) -> None:
        from openai_harmony import Role

        messages = self._parser.messages
        if len(messages) <= self._seen:
            return
        for message in messages[self._seen :]:
            recipient = normalize_recipient(message.recipient)
            if recipient and message.author.role == Role.ASSISTANT:
                self.tool_call = recipient
        self._message_no += len(messages) - self._seen
        self._seen = len(messages)
        self._pending.clear()

    def _repair_header(self, token: int, error: str) -> bool:
        """A header harmony refused (stray tokens before ``<|message|>``): restart the parser
        on a clean header of the same channel and recipient. Unknown channel: analysis, so
        nothing unknown is ever shown."""
        if "message header" not in error or self._codec.decode([token]) != "<|message|>":
            return False
        header = self._codec.decode(self._pending)
        channel_at = header.rfind("<|channel|>")
        match = _CHANNEL.search(header[channel_at:] if channel_at >= 0 else header)
        channel = match.group(1) if match else "analysis"
        to = _RECIPIENT.search(header)
        recipient = normalize_recipient(to.group(1)) if to else None
        clean = f"<|channel|>{channel}" + (f" to={recipient}" if recipient else "") + "<|message|>"
        self._parser = self._new_parser()
        self._seen = 0
        self._pending = []
        for repaired in self._codec.encode_harmony(clean):
            self._parser.process(repaired)
        self.repaired += 1
        self._codec.faults.repaired_headers += 1
        return True

    def finish(self, truncated: bool) -> str:
        """End the completion; return raw text recovered from an unfinished header, if any.

        ``truncated`` (finish reason ``length``): nothing is flushed; when no visible text
        came, the budget ran out while reasoning (:attr:`cut_in_reasoning`)."""
        from openai_harmony import HarmonyError

        if truncated:
            if not self.final_text:
                self.cut_in_reasoning = True
                self._codec.faults.cut_in_reasoning += 1
            return ""
        try:
            self._parser.process_eos()
        except HarmonyError:
            return self._recover()
        self._collect_messages()
        return ""

    def _recover(self) -> str:
        """The raw text of a completion that ended inside a message header (vLLM 0.33's
        ``HarmonyParser.flush``), without harmony's markers; nothing when the header names
        the analysis channel or a recipient."""
        header = self._codec.decode(self._pending)
        plain = self._codec.decode([t for t in self._pending if not self._codec.is_special(t)])
        after = header.rsplit("<|channel|>", 1)[1] if "<|channel|>" in header else ""
        match = _CHANNEL.match(after.strip())
        channel = match.group(1) if match else None
        if channel == "analysis" or _RECIPIENT.search(header):
            return ""
        text = plain.strip()
        if header.startswith("<|start|>") and text.startswith("assistant"):
            text = text[len("assistant") :].strip()
        if channel and text.startswith(channel):
            text = text[len(channel) :].strip()
        if not text:
            return ""
        self._message_no += 1
        self.recovered = text
        self._codec.faults.recovered_answers += 1
        return self._show(text)
