"""Streaming redaction: text arriving in chunks goes out redacted as soon as no later chunk can change it.

Each time new words arrive, detection runs on the whole text received so far (a sliding window on very
long streams) and output is released up to a *cut*: before the last ``hold_words`` words and the last
``hold_chars`` characters (a later chunk may still extend, join or re-tokenise them), and never inside
or right after a span (a span followed by only spaces or punctuation may still grow into the next word).
The detector is causal and reads fixed windows from the start of the text, so what it finds well before
the end of a prefix is what it finds there in the whole text; hence the released pieces, concatenated,
equal ``Redact`` on the concatenated input (tests check it with a PII value split at every chunk
boundary). A value split across chunks is never released raw: its start is at most ``hold_words`` words
from the end until the words after it have arrived. The end of the stream flushes everything.

Equality is exact while a stream is at most ``window_chars`` long; past that, detection reads the last
``window_chars`` characters (with at least a quarter of the window of already released context), like a
unary request of that size would.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from guardrail.redact import Redactor
from guardrail.spans import Span

DetectOne = Callable[[str], Awaitable[list[Span]]]
"""``text -> spans`` of one text (the server routes it through the micro-batcher)."""

_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class StreamPiece:
    """One piece of redacted output."""

    text: str
    """Redacted text to append to the output so far."""
    spans: list[Span]
    """Spans replaced in this piece, offsets into the whole stream's input."""
    consumed: int
    """Input characters covered by the output so far (this piece included)."""
    source: str
    """The input this piece covers (raw: for offset arithmetic only, never to be logged or sent)."""


class StreamRedactor:
    """Redacts one stream; :meth:`feed` chunks, :meth:`release` what is safe, :meth:`finish` at the end."""

    def __init__(
        self,
        detect: DetectOne,
        redactor: Redactor,
        *,
        hold_words: int = 8,
        hold_chars: int = 64,
        max_hold_chars: int = 1024,
        window_chars: int = 8192,
    ):
        if (
            hold_words < 1
            or hold_chars < 0
            or max_hold_chars < hold_chars
            or window_chars < 2 * max_hold_chars
        ):
            raise ValueError("need hold_words >= 1, 0 <= hold_chars <= max_hold_chars <= window_chars / 2")
        self._detect = detect
        self._redactor = redactor  # one instance for the stream: pseudonyms stay consistent across pieces
        self.hold_words = hold_words
        self.hold_chars = hold_chars
        self.max_hold_chars = max_hold_chars
        self.window_chars = window_chars
        self._text = ""  # the window: input from offset _base on
        self._base = 0
        self._emitted = 0  # window offset up to which output was released
        self._detected_upto = 0  # cut candidate at the last detection (skip detection if unchanged)

    @property
    def consumed(self) -> int:
        """Input characters released so far."""
        return self._base + self._emitted

    @property
    def pending(self) -> int:
        """Input characters received but not yet released."""
        return len(self._text) - self._emitted

    def feed(self, chunk: str) -> None:
        """Append the next chunk of input."""
        self._text += chunk

    def _candidate(self) -> int:
        """Furthest cut the text alone allows (before the held tail); detection may pull it back."""
        text, start = self._text, self._emitted
        words = [m.start() for m in _WORD.finditer(text, start)]
        cut = words[-self.hold_words] if len(words) > self.hold_words else start
        cut = min(cut, len(text) - self.hold_chars)
        while cut > start and not text[cut - 1].isspace():  # cut between words, never inside one
            cut -= 1
        # Scripts without spaces have no word boundaries to wait for: never hold more than max_hold_chars.
        return max(cut, len(text) - self.max_hold_chars, start)

    def ready(self) -> bool:
        """Whether a :meth:`release` could release more than the last one (enough new words arrived)."""
        cut = self._candidate()
        return cut > self._emitted and cut > self._detected_upto

    async def release(self) -> StreamPiece | None:
        """Detect on the text so far and release what is safe; None when nothing is."""
        if not self.ready():
            return None
        self._slide()
        cut = self._candidate()
        self._detected_upto = cut
        spans = await self._detect(self._text)
        for s in sorted(spans, key=lambda s: s.start, reverse=True):
            if s.start < cut and (s.end >= cut or not _has_word_char(self._text[s.end : cut])):
                cut = s.start
        return self._emit(cut, spans)

    async def finish(self) -> StreamPiece:
        """Detect on the whole remaining text and release all of it."""
        spans = await self._detect(self._text) if self.pending else []
        return self._emit(len(self._text), spans)

    def _emit(self, cut: int, spans: list[Span]) -> StreamPiece | None:
        start = self._emitted
        if cut <= start:
            return None
        # A span reaching back into released text (the detector changed its mind) is still redacted
        # from where output stands: clipped, never skipped.
        local = [
            Span(max(s.start, start) - start, min(s.end, cut) - start, s.label, s.score, s.source)
            for s in spans
            if s.end > start and s.start < cut
        ]
        done = self._redactor.redact(self._text[start:cut], local)
        offset = self._base + start
        self._emitted = cut
        return StreamPiece(
            done.text,
            [Span(s.start + offset, s.end + offset, s.label, s.score, s.source) for s in done.spans],
            self.consumed,
            self._text[start:cut],
        )

    def _slide(self) -> None:
        """Keep the window at most ``window_chars``: drop released text, keeping some of it as context."""
        if len(self._text) <= self.window_chars:
            return
        keep_context = self.window_chars // 4
        drop = max(0, min(self._emitted - keep_context, len(self._text) - self.window_chars))
        # start the window at a word (a cut word reads differently), unless the script has no spaces
        at_word = drop
        while at_word > max(0, drop - 256) and not self._text[at_word - 1].isspace():
            at_word -= 1
        if at_word > 0 and self._text[at_word - 1].isspace():
            drop = at_word
        if drop <= 0:
            return
        self._text = self._text[drop:]
        self._base += drop
        self._emitted -= drop
        self._detected_upto = max(0, self._detected_upto - drop)


def _has_word_char(s: str) -> bool:
    return any(ch.isalnum() for ch in s)
