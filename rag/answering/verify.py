"""What of an answer is shown, per ``answer.mode``; never an answer with no verified sentence.

- **generative** (gpt-oss profiles): the model's text streams once one of its sentences is
  verified (rag/answering/grounding.py: a claim a source supports), or the sentence being
  written states a number or code a source supports; until then it is held back. Later
  unsupported sentences are shown, marked (``unsupported``); should the sentence that
  opened the stream end unsupported, the "could not verify" notice and quote follow it.
- **extractive** (the CPU profile): no model call; the answer is the source units that
  answer the question, quoted and cited (rag/answering/extractive.py).
- **hybrid**: the model writes, held back; its answer is shown only when it has a verified
  sentence and no unsupported one, else the extractive answer is.

An answer with no verified sentence is never shown as an answer. In the generative modes
it becomes the extractive choice under a "could not verify" notice (``quoted: true``;
``context.quote_fallback``), or a decline when no source unit clears ``answer.min_score``
(or the fallback is off). The model's withheld text is kept for benchmarks, never shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answering.extractive import choose, compose
from rag.answering.facts import facts_of
from rag.answering.grounding import Evidence, Grounded, Sentence
from rag.answering.sentences import split_sentences
from rag.answering.wording import say
from rag.config import Settings
from rag.types import Source

_CUT_NUMBER = re.compile(r"\d[\d.,:]*$")
_COMPLETE = re.compile(r"(?:[.!?]\s+|[。！？；]\s*|\n\s*)$")


@dataclass
class Outcome:
    """The end of an answer: text still to stream, the final text and its grounding."""

    pieces: list[str]
    text: str
    grounded: Grounded
    quoted: bool = False
    declined: bool = False
    withheld: str = ""
    """The model's text that was not shown (no verified sentence, or hybrid's fallback)."""


class Verifier:
    """One answer's gate and finish (module docstring)."""

    def __init__(self, settings: Settings, question: str, query: str, sources: Sequence[Source]):
        self._mode = settings.answer.mode
        self._answer = settings.answer
        self._fallback = settings.context.quote_fallback
        self._min_support = settings.context.min_support
        self._question = question
        self._query = query
        self._sources = list(sources)
        self._evidence: Evidence | None = None
        self._held = ""
        self._checked = 0
        self._values: tuple[object, ...] = ()
        self.open = False
        """True once the streamed text has a verified sentence (generative mode)."""

    @property
    def generates(self) -> bool:
        """Whether the model is asked at all."""
        return self._mode != "extractive"

    @property
    def evidence(self) -> Evidence:
        if self._evidence is None:
            self._evidence = Evidence(self._sources, min_support=self._min_support)
        return self._evidence

    def feed(self, delta: str) -> str:
        """The text to show now for a piece of the model's answer ('' while held back)."""
        if self.open:
            return delta
        self._held += delta
        if self._mode != "generative":
            return ""
        sentences = split_sentences(self._held)
        done = sentences if _COMPLETE.search(self._held) else sentences[:-1]
        for sentence in done[self._checked :]:
            if self.evidence.check(sentence):
                self.open = True
                break
        self._checked = len(done)
        if not self.open and len(done) < len(sentences):
            # The sentence being written opens the stream once its words so far state a
            # number or code that a source supports (a number still being written, 3 of 36,
            # is left out; a cut code, NW-Follow of NW-Follow-Me, matches no code).
            partial = sentences[-1]
            if not self._held[-1:].isspace():
                partial = _CUT_NUMBER.sub("", partial).strip()
            facts = facts_of(partial)
            values = (facts.quantities, facts.codes)
            if facts.values and values != self._values:  # check each new number or code once
                self._values = values
                self.open = bool(self.evidence.check(partial))
        if not self.open:
            return ""
        shown, self._held = self._held, ""
        return shown

    def finish(self, model_text: str = "") -> Outcome:
        """What the answer ends as, given the model's whole text (blocking: run in a thread)."""
        if self._mode == "extractive":
            return self._extract(say("lead_in", self._question), withheld="")
        text = model_text.strip()
        grounded = self.evidence.ground(text) if text else Grounded([])
        if self._mode == "generative" and (self.open or grounded.verified):
            rest, self._held = self._held, ""
            if grounded.verified:
                return Outcome([rest] if rest else [], text, grounded)
            # Opened on a sentence the model then finished into something unsupported: what
            # was shown stays (marked), and the service says it could not verify it.
            return self._unverified_after(model_text, grounded, rest)
        if self._mode == "hybrid" and grounded.verified and not grounded.unsupported:
            return Outcome([text], text, grounded)
        if self._mode == "hybrid":
            return self._extract(say("lead_in", self._question), withheld=text)
        if not self._fallback:
            return self._decline(withheld=text)
        return self._extract(say("unverified", self._question), withheld=text)

    def _unverified_after(self, model_text: str, grounded: Grounded, rest: str) -> Outcome:
        tail = self._extract(say("unverified", self._question), withheld="")
        if tail.declined:
            notice = say("not_verified", self._question)
            tail = Outcome([notice], notice, Grounded([Sentence(notice, (), True)]))
        pieces = [rest + "\n\n", *tail.pieces]
        joined = Grounded(
            [*grounded.sentences, *tail.grounded.sentences],
            [*grounded.citations, *tail.grounded.citations],
        )
        text = f"{model_text}\n\n{tail.text}".strip()  # exactly what was streamed
        return Outcome(pieces, text, joined, quoted=tail.quoted)

    def _extract(self, lead_in: str, *, withheld: str) -> Outcome:
        picks = choose(
            self._query,
            self.evidence,
            min_score=self._answer.min_score,
            max_quotes=self._answer.max_quotes,
        )
        if not picks:
            return self._decline(withheld=withheld)
        built = compose(self._question, picks, lead_in=lead_in)
        return Outcome(
            built.pieces,
            built.text,
            built.grounded,
            quoted=True,
            withheld=withheld,
        )

    def _decline(self, *, withheld: str) -> Outcome:
        message = say("decline", self._question)
        return Outcome(
            [message],
            message,
            Grounded([]),
            declined=True,
            withheld=withheld,
        )
