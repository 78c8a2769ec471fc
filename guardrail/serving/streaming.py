"""Streaming redaction: text arriving in chunks goes out redacted as soon as no later chunk can change it.

Output is released up to a *cut*: before the last ``hold_words`` words and the last ``hold_chars``
characters (a later chunk may still extend, join or re-tokenise them), and never inside or right after a
span (a span followed by only spaces or punctuation may still grow into the next word). A value split
across chunks is never released raw: its start is at most ``hold_words`` words from the end until the
words after it have arrived. The end of the stream flushes everything.

Detection re-reads only what can still change: the unreleased text and ``context_chars`` of released
text before it (released text is final; the rest of it is dropped). It runs only when enough new text
has arrived that its read is at most ``work_ratio`` x the text it reads for the first time, so a stream's
detections read at most ``work_ratio`` x its length plus one final flush (``<= 3x`` unary at the default
2, however small the chunks), and never more than ``window_chars`` at once: a burst longer than that is
read, and released, in window-sized steps.

The detector is causal and reads fixed windows from the start of the text, so what it finds well before
the end of a prefix is what it finds there in the whole text: while a stream's released part is shorter
than ``context_chars``, every detection reads it from its start and the released pieces, concatenated,
equal ``Redact`` on the concatenated input (tests check it with a PII value split at every chunk
boundary). Past that, detection reads ``context_chars`` of context, a little more than the backbone's
own windows guarantee (128 tokens with 32 of overlap).
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
        context_chars: int = 1024,
        work_ratio: float = 2.0,
    ):
        if (
            hold_words < 1
            or hold_chars < 0
            or max_hold_chars < hold_chars
            or context_chars < 0
            or window_chars < 2 * (context_chars + max_hold_chars)
            or work_ratio < 1
        ):
            raise ValueError(
                "need hold_words >= 1, 0 <= hold_chars <= max_hold_chars, context_chars >= 0, "
                "context_chars + max_hold_chars <= window_chars / 2 and work_ratio >= 1"
            )
        self._detect = detect
        self._redactor = redactor  # one instance for the stream: pseudonyms stay consistent across pieces
        self.hold_words = hold_words
        self.hold_chars = hold_chars
        self.max_hold_chars = max_hold_chars
        self.window_chars = window_chars
        self.context_chars = context_chars
        self.work_ratio = work_ratio
        self.read_chars = 0
        """Characters given to the detector so far (the stream's model work)."""
        self._text = ""  # the buffer: input from offset _base on (context, then unreleased text)
        self._base = 0
        self._emitted = 0  # buffer offset up to which output was released
        self._read_upto = 0  # buffer offset up to which some detection has read
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

    def _end(self) -> int:
        """Where the next detection stops reading: the buffer's end, or a window from its start."""
        return min(len(self._text), self.window_chars)

    def _candidate(self, end: int) -> int:
        """Furthest cut the text up to ``end`` alone allows (before the held tail); detection may pull it
        back."""
        text, start = self._text, self._emitted
        words = [m.start() for m in _WORD.finditer(text, start, end)]
        cut = words[-self.hold_words] if len(words) > self.hold_words else start
        cut = min(cut, end - self.hold_chars)
        while cut > start and not text[cut - 1].isspace():  # cut between words, never inside one
            cut -= 1
        # Scripts without spaces have no word boundaries to wait for: never hold more than max_hold_chars.
        return max(cut, end - self.max_hold_chars, start)

    def ready(self) -> bool:
        """Whether a :meth:`release` would detect: more than a window is buffered, or the cut could move
        past the last one and the read is at most ``work_ratio`` x the text it reads for the first time."""
        end = self._end()
        cut = self._candidate(end)
        if cut <= self._emitted:
            return False
        if end < len(self._text):
            return True  # more than a window is buffered: read the next window whatever it costs
        return cut > self._detected_upto and (end - self._read_upto) * self.work_ratio >= end

    async def release(self) -> StreamPiece | None:
        """Detect and release what is safe (window by window after a burst); None when nothing is."""
        pieces = []
        while self.ready():
            pieces.append(await self._step(final=False))
        return _join([p for p in pieces if p is not None])

    async def finish(self) -> StreamPiece:
        """Detect on the remaining text (window by window) and release all of it."""
        pieces = []
        while len(self._text) > self.window_chars:
            pieces.append(await self._step(final=False))
        if self.pending:
            pieces.append(await self._step(final=True))
        return _join([p for p in pieces if p is not None]) or StreamPiece("", [], self.consumed, "")

    async def _step(self, final: bool) -> StreamPiece | None:
        """One detection over the buffer up to :meth:`_end`; releases up to the cut (all when ``final``)."""
        end = self._end()
        candidate = len(self._text) if final else self._candidate(end)
        self._detected_upto = candidate
        self.read_chars += end
        spans = await self._detect(self._text[:end])
        self._read_upto = end
        if final:
            return self._emit(candidate, spans)
        cut = candidate
        for s in sorted(spans, key=lambda s: s.start, reverse=True):
            if s.start < cut and (s.end >= cut or not _has_word_char(self._text[s.end : cut])):
                cut = s.start
        if cut <= self._emitted and end < len(self._text):
            # a span as long as the window: release it anyway, clipped (redacted), so that a burst moves on
            cut = candidate
        return self._emit(cut, spans)

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
        piece = StreamPiece(
            done.text,
            [Span(s.start + offset, s.end + offset, s.label, s.score, s.source) for s in done.spans],
            self.consumed,
            self._text[start:cut],
        )
        self._drop_released()
        return piece

    def _drop_released(self) -> None:
        """Keep ``context_chars`` of released text (from a word start) and drop what is before it."""
        drop = self._emitted - self.context_chars
        if drop <= 0:
            return
        # start at a word (a cut word reads differently), unless the script has no spaces
        at = drop
        while at > max(0, drop - 256) and not self._text[at - 1].isspace():
            at -= 1
        if at > 0 and self._text[at - 1].isspace():
            drop = at
        self._text = self._text[drop:]
        self._base += drop
        self._emitted -= drop
        self._read_upto = max(0, self._read_upto - drop)
        self._detected_upto = max(0, self._detected_upto - drop)


def _join(pieces: list[StreamPiece]) -> StreamPiece | None:
    """Consecutive pieces as one."""
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0]
    return StreamPiece(
        "".join(p.text for p in pieces),
        [s for p in pieces for s in p.spans],
        pieces[-1].consumed,
        "".join(p.source for p in pieces),
    )


def _has_word_char(s: str) -> bool:
    return any(ch.isalnum() for ch in s)
