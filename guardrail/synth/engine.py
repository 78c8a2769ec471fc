"""A tiny text builder and template grammar: spans are recorded while the text is written.

Offsets are never recovered by searching the finished text for a value (a name that also occurs in
the prose would be found at the wrong place); each labelled piece knows its offset when appended.

Template mini-language (compiled once, cached):

- ``{SLOT}``        a slot filler from the registry (labelled value or unlabelled negative);
- ``[text]``        optional: rendered with probability 0.5 (nests);
- ``(a|b|c)``       one alternative, chosen uniformly (nests); parentheses without a top-level ``|``
                    are literal text, so "(optional)" in prose stays as written;
- ``\\[``            a backslash makes the next character literal.
"""

from __future__ import annotations

import bisect
import functools
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardrail.labels import CANONICAL
from guardrail.spans import Span

_CANON = frozenset(CANONICAL)


class Builder:
    """Appends text pieces; labelled pieces become spans at the offset they were written at."""

    __slots__ = ("_len", "_parts", "case", "spans")

    def __init__(self, case: str | None = None) -> None:
        self._parts: list[str] = []
        self._len = 0
        self.spans: list[Span] = []
        self.case = case
        """``"lower"``/``"upper"``/None: applied to every piece (tweets are often all lowercase)."""

    def add(self, text: str, label: str | None = None) -> Builder:
        """Append ``text``; with a label it becomes one span (edge whitespace stays outside)."""
        if not self._len:
            text = text.lstrip()  # a record never starts with whitespace
        if not text:
            return self
        if self.case is not None:
            cased = text.lower() if self.case == "lower" else text.upper()
            # "ß".upper() is "SS": a length change would shift every later offset.
            if len(cased) == len(text):
                text = cased
        if label is not None:
            if label not in _CANON:
                raise ValueError(f"unknown label {label!r}")
            core = text.strip()
            if core:
                lead = len(text) - len(text.lstrip())
                start = self._len + lead
                prev = self.spans[-1] if self.spans else None
                if prev and label == "PERSON" == prev.label and self.text()[prev.end : start] == " ":
                    # "{FIRST} {LAST}" is one name: one span, as an annotator would mark it.
                    self.spans[-1] = Span(prev.start, start + len(core), label)
                else:
                    self.spans.append(Span(start, start + len(core), label))
        self._parts.append(text)
        self._len += len(text)
        return self

    def pos(self) -> int:
        """Current length of the text."""
        return self._len

    def last_char(self) -> str:
        """The last character written, or ``""``."""
        for part in reversed(self._parts):
            if part:
                return part[-1]
        return ""

    def text(self) -> str:
        """The text written so far."""
        s = "".join(self._parts)
        self._parts = [s]
        return s

    def chop(self, n: int) -> bool:
        """Remove the last ``n`` characters unless a span reaches into them; True if removed."""
        s = self.text()
        if n > len(s) or (self.spans and self.spans[-1].end > len(s) - n):
            return False
        self._parts = [s[: len(s) - n]]
        self._len -= n
        return True

    def rstrip(self) -> None:
        """Drop trailing whitespace that no span covers."""
        s = self.text()
        floor = self.spans[-1].end if self.spans else 0
        cut = max(len(s.rstrip()), floor)
        self._parts = [s[:cut]]
        self._len = cut

    def reset(self, text: str, spans: list[Span]) -> None:
        """Replace text and spans at once (for rewrites that keep the spans aligned themselves)."""
        self._parts = [text]
        self._len = len(text)
        self.spans = spans


def rewrite(b: Builder, fn: Callable[[str, str | None], str], glue: Callable[[str, str], str]) -> None:
    """Rewrite ``b`` piece by piece, keeping every span on its (rewritten) value.

    The text is cut at span edges; ``fn(piece, label)`` maps each piece (``label`` None between
    spans). ``glue(left_char, right_char)`` is written (outside any span) where two non-empty
    pieces meet. A span whose value maps to whitespace only is dropped.
    """
    s = b.text()
    pieces: list[tuple[str, str | None]] = []
    pos = 0
    for sp in b.spans:
        if sp.start > pos:
            pieces.append((s[pos : sp.start], None))
        pieces.append((s[sp.start : sp.end], sp.label))
        pos = sp.end
    if pos < len(s):
        pieces.append((s[pos:], None))
    out: list[str] = []
    spans: list[Span] = []
    n = 0
    for piece, label in pieces:
        new = fn(piece, label)
        if label is not None:
            new = new.strip()
        if not new:
            continue
        if out:
            g = glue(out[-1][-1], new[0])
            out.append(g)
            n += len(g)
        if label is not None:
            spans.append(Span(n, n + len(new), label))
        out.append(new)
        n += len(new)
    text = "".join(out)
    lead = len(text) - len(text.lstrip())
    if lead:  # a record never starts with whitespace
        text = text[lead:]
        spans = [Span(x.start - lead, x.end - lead, x.label) for x in spans]
    b.reset(text, spans)


_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")


def is_cjk(s: str) -> bool:
    """True if ``s`` holds a kana, Han or full-width character."""
    return any(
        "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in s
    )


def squeeze_cjk(b: Builder) -> None:
    """Drop ASCII spaces between two CJK characters (Japanese and Chinese put none between words).

    Spans follow the text: their edges are never spaces, so none is cut.
    """
    s = b.text()
    gaps = [(m.start(), m.end()) for m in _CJK_GAP.finditer(s)]
    if not gaps:
        return
    ends, removed, acc = [], [], 0
    for start, end in gaps:
        acc += end - start
        ends.append(end)
        removed.append(acc)

    def shift(p: int) -> int:
        i = bisect.bisect_right(ends, p)
        return p - (removed[i - 1] if i else 0)

    text = "".join(s[a:b_] for a, b_ in zip([0, *ends], [g[0] for g in gaps] + [len(s)], strict=True))
    b.reset(text, [Span(shift(x.start), shift(x.end), x.label) for x in b.spans])


Filler = Callable[["Ctx", Builder], None]


@dataclass(slots=True)
class Ctx:
    """What a slot filler needs: the record's RNG, its locale's Faker, and per-record memory."""

    rng: random.Random
    fake: Any
    locale: str
    family: str
    memo: dict[str, Any] = field(default_factory=dict)
    """Values reused inside one record (the same person named twice, the email built from the name)."""


SLOTS: dict[str, Filler] = {}
"""Slot name -> filler; modules register theirs with :func:`slot`."""


def slot(*names: str) -> Callable[[Filler], Filler]:
    """Decorator registering a filler under one or more slot names."""

    def deco(fn: Filler) -> Filler:
        for n in names:
            if n in SLOTS:
                raise ValueError(f"slot {n} registered twice")
            SLOTS[n] = fn
        return fn

    return deco


# Compiled template nodes: ("t", str) literal, ("s", name) slot, ("o", seq) optional,
# ("c", [seq, ...]) choice. A seq is a tuple of nodes.
Node = tuple[str, Any]


def _parse(src: str, i: int, stop: str) -> tuple[list[list[Node]], int]:
    """Parse from ``i`` until a character of ``stop``; return alternatives split at top-level ``|``."""
    alts: list[list[Node]] = [[]]
    buf: list[str] = []

    def flush() -> None:
        if buf:
            alts[-1].append(("t", "".join(buf)))
            buf.clear()

    while i < len(src):
        ch = src[i]
        if ch in stop:
            flush()
            return alts, i
        if ch == "\\" and i + 1 < len(src):  # escaped: a literal [, ], (, ), {, } or |
            buf.append(src[i + 1])
            i += 2
        elif ch == "|" and "|" in stop:
            flush()
            alts.append([])
            i += 1
        elif ch == "{":
            j = src.index("}", i)
            flush()
            alts[-1].append(("s", src[i + 1 : j]))
            i = j + 1
        elif ch == "[":
            flush()
            inner, j = _parse(src, i + 1, "]")
            if len(inner) != 1:
                raise ValueError(f"'|' inside [...] of template {src!r}")
            alts[-1].append(("o", tuple(inner[0])))
            i = j + 1
        elif ch == "(":
            flush()
            inner, j = _parse(src, i + 1, ")|")
            while j < len(src) and src[j] == "|":
                more, j = _parse(src, j + 1, ")|")
                inner.extend(more)
            if j >= len(src):
                raise ValueError(f"unbalanced '(' in template {src!r}")
            if len(inner) == 1:  # no alternatives: literal parentheses
                alts[-1].extend([("t", "("), *inner[0], ("t", ")")])
            else:
                alts[-1].append(("c", [tuple(a) for a in inner]))
            i = j + 1
        else:
            buf.append(ch)
            i += 1
    flush()
    if stop and stop != ")|":
        raise ValueError(f"unterminated group in template {src!r}")
    return alts, i


@functools.cache
def compile_template(src: str) -> tuple[Node, ...]:
    """Compile a template once; raises ValueError on bad syntax or an unknown slot at render."""
    alts, _ = _parse(src, 0, "")
    if len(alts) != 1:
        raise ValueError(f"top-level '|' in template {src!r}")
    return tuple(alts[0])


def _render_seq(seq: tuple[Node, ...] | list[Node], ctx: Ctx, b: Builder) -> None:
    for kind, val in seq:
        if kind == "t":
            # Optional groups leave double spaces behind ("a  b"); collapse when writing.
            if val.startswith(" ") and b.last_char() in (" ", "\n", ""):
                val = val.lstrip(" ")
            elif val.startswith(".") and b.last_char() == ".":
                val = val[1:]  # "... Chen W." ends the sentence: no second full stop
            b.add(val)
        elif kind == "s":
            fill = SLOTS.get(val)
            if fill is None:
                raise KeyError(f"no filler for slot {{{val}}}")
            fill(ctx, b)
        elif kind == "o":
            if ctx.rng.random() < 0.5:
                _render_seq(val, ctx, b)
        else:
            _render_seq(ctx.rng.choice(val), ctx, b)


def render(src: str, ctx: Ctx, b: Builder) -> None:
    """Render template ``src`` into ``b``."""
    _render_seq(compile_template(src), ctx, b)


def stable_hash(name: str) -> int:
    """A hash that is the same in every process (``hash()`` is salted per run)."""
    return zlib.crc32(name.encode("utf-8"))


def family_of(frame: str) -> str:
    """``"calib"`` for about a quarter of frames, ``"train"`` for the rest (stable by name)."""
    return "calib" if stable_hash(frame) % 4 == 0 else "train"


def split(frames: list[str] | tuple[str, ...], family: str) -> list[str]:
    """The frames of ``frames`` that belong to ``family``; never empty (falls back to all)."""
    picked = [f for f in frames if family_of(f) == family]
    return picked or list(frames)


def pick(ctx: Ctx, frames: list[str] | tuple[str, ...]) -> str:
    """One frame of ``frames`` from the record's family (split cached per list identity)."""
    key = (id(frames), ctx.family)
    got = _SPLIT_CACHE.get(key)
    if got is None or got[0] is not frames:
        got = (frames, split(frames, ctx.family))
        _SPLIT_CACHE[key] = got
    return ctx.rng.choice(got[1])


_SPLIT_CACHE: dict[tuple[int, str], tuple[Any, list[str]]] = {}


def chance(ctx: Ctx, p: float) -> bool:
    """True with probability ``p``."""
    return ctx.rng.random() < p
