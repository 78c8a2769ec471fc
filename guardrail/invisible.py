"""Invisible characters: taken out of a text before detection, spans mapped back onto the text as given.

A soft hyphen (U+00AD), a zero-width space, joiner or non-joiner (U+200B-U+200D), a word joiner
(U+2060), a byte-order mark (U+FEFF), a bidirectional control or a variation selector renders as nothing,
so "Mar<SHY>ia" reads "Maria"; but a tokenizer or a regex sees two words, and the detector would find
(at most) one of them. Detection reads the text without these characters (format characters, category
Cf, and the other default-ignorable code points); each span is then mapped back so that it covers the
whole value as given, the invisible characters inside it included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import regex

from guardrail.spans import Span

INVISIBLE = regex.compile(r"[\p{Cf}\p{Default_Ignorable_Code_Point}]")
"""A character that renders as nothing (or only shapes its neighbours): category Cf or default-ignorable."""


def strip_invisible(text: str) -> tuple[str, list[int] | None]:
    """``text`` without its :data:`INVISIBLE` characters, and for each character kept its offset in
    ``text`` (None when there was nothing to take out: the text is returned as is)."""
    drop = {m.start() for m in INVISIBLE.finditer(text)}
    if not drop:
        return text, None
    kept = [i for i in range(len(text)) if i not in drop]
    return "".join(text[i] for i in kept), kept


def to_original(spans: Iterable[Span], kept: list[int] | None) -> list[Span]:
    """Spans of the stripped text as spans of the original (``kept`` from :func:`strip_invisible`).

    A span runs from its first character to its last one in the original, so invisible characters
    between them are inside it; order and non-overlap are kept (the mapping is increasing).
    """
    if kept is None:
        return list(spans)
    return [replace(s, start=kept[s.start], end=kept[s.end - 1] + 1) for s in spans if s.start < s.end]
