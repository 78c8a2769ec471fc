"""Redaction stage: character spans -> redacted text, one operator per redactor."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import regex

from guardrail.labels import CANONICAL
from guardrail.spans import Span, merge

OPERATORS: tuple[str, ...] = ("placeholder", "mask", "hash", "pseudonym")
"""Valid values of ``Redactor(operator=...)``."""

HASH_KEY_ENV = "GUARDRAIL_HASH_KEY"
"""Environment variable the ``hash`` operator reads its key from when none is passed."""


def _label_pattern(sep: str) -> str:
    # longest first, so that ID_NUMBER is not read as a shorter label
    return "|".join(label.replace("_", sep) for label in sorted(CANONICAL, key=len, reverse=True))


PLACEHOLDER = regex.compile(
    # bracketed, as written or as a model rewrites it: <PERSON_1>, < person 1 >, [PERSON-1], &lt;PERSON_1&gt;
    r"(?:\\?<|&lt;|\[|\{)[ \t]{0,3}(?P<label>" + _label_pattern(r"[_ \t-]?") + r")[ \t]{0,2}[_-]?[ \t]{0,2}"
    r"(?P<n>\d{1,6})[ \t]{0,3}(?:\\?>|&gt;|\]|\})"
    # bare, the brackets lost: PERSON_1 (an underscore, so that "person 1" in prose is left alone)
    r"|(?<![\w<\[{&])(?P<blabel>" + _label_pattern("_") + r")_(?P<bn>\d{1,6})(?![\w>])",
    regex.IGNORECASE,
)
"""A ``pseudonym`` placeholder (``<PERSON_1>``) as written, or as a model rewrites it: any case, spaces or
a hyphen for the underscore, ``[]``/``{}`` brackets, HTML or Markdown escapes, or none (with the
underscore). :func:`placeholder_key` reads a match; :mod:`guardrail.vault` restores them."""
MAX_PLACEHOLDER = 48
"""Longest text a :data:`PLACEHOLDER` match can span (its longest label, six digits, padding, escapes)."""
_BY_LETTERS = {label.replace("_", ""): label for label in CANONICAL}


def placeholder_key(m: regex.Match[str]) -> tuple[str, int]:
    """``(label, number)`` of a :data:`PLACEHOLDER` match."""
    label = m.group("label") or m.group("blabel")
    n = m.group("n") or m.group("bn")
    return _BY_LETTERS[re.sub(r"[^A-Za-z]", "", label).upper()], int(n)


def _outside_placeholders(text: str, spans: Sequence[Span]) -> list[Span]:
    """``spans`` less the placeholders they touch, each part trimmed to its letters and digits at both
    ends and dropped if it has none: a placeholder in a name's place reads like a name to a detector."""
    holes = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
    if not holes:
        return list(spans)
    out = []
    for s in spans:
        start = s.start
        parts = []
        for h_start, h_end in holes:
            if h_start < s.end and h_end > start:
                parts.append((start, h_start))
                start = max(start, h_end)
        parts.append((start, s.end))
        for a, b in parts:
            while a < b and not text[a].isalnum():
                a += 1
            while b > a and not text[b - 1].isalnum():
                b -= 1
            if a < b:
                out.append(s if (a, b) == (s.start, s.end) else Span(a, b, s.label, s.score, s.source))
    return out


class RedactionError(ValueError):
    """A redactor that cannot be built or used; the message never contains the text or a surface string."""


@dataclass(frozen=True, slots=True)
class Redacted:
    """The result of one redaction."""

    text: str
    """The redacted text."""
    spans: list[Span]
    """The spans that were replaced, sorted, non-overlapping, offsets into the ORIGINAL text."""


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


class Pseudonyms:
    """The ``pseudonym`` operator's numbering: one number per label and value, and the value as first
    written (to restore it: :mod:`guardrail.vault`). "Ana  Silva" and "ana silva" are one value.

    Shared by every text of one scope (a call, a stream, a conversation carried on by a sealed mapping);
    safe to use from several threads.
    """

    __slots__ = ("_lock", "_numbers", "_surfaces")

    def __init__(self) -> None:
        self._numbers: dict[str, dict[str, int]] = {}
        self._surfaces: dict[tuple[str, int], str] = {}
        # One instance may serve concurrent calls; numbering must not hand one number to two values.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pseudonyms({len(self)} values)"  # never a value

    def __len__(self) -> int:
        return len(self._surfaces)

    @staticmethod
    def _value(surface: str) -> str:
        return " ".join(_nfc(surface).casefold().split())

    def number(self, label: str, surface: str) -> int:
        """The number of ``surface`` under ``label``: the one it already has, else the next."""
        value = self._value(surface)
        with self._lock:
            numbers = self._numbers.setdefault(label, {})
            if (n := numbers.get(value)) is None:
                n = numbers[value] = len(numbers) + 1
                self._surfaces[(label, n)] = surface
        return n

    def surface(self, label: str, number: int) -> str | None:
        """The value ``<label_number>`` stands for, as first written; ``None`` if none has that number."""
        return self._surfaces.get((label, number))

    def entries(self) -> list[tuple[str, int, str]]:
        """``(label, number, value)`` of every value, by label and number."""
        with self._lock:
            return sorted((label, n, v) for (label, n), v in self._surfaces.items())

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, int, str]]) -> Pseudonyms:
        """Numbering that goes on from ``entries`` (as :meth:`entries` gives them); each label's numbers
        must run 1..n without gaps or repeats (as the operator hands them out)."""
        out = cls()
        for label, n, surface in sorted(entries):
            numbers = out._numbers.setdefault(label, {})
            if n != len(numbers) + 1:
                raise RedactionError("pseudonym entries must number each label's values 1..n")
            numbers.setdefault(cls._value(surface), n)
            out._surfaces[(label, n)] = surface
        return out


class Redactor:
    """Replaces spans of texts with one operator; ``pseudonym`` numbering lives as long as the instance,
    or as long as the :class:`Pseudonyms` it is given (a conversation's, carried on from a sealed mapping)."""

    __slots__ = ("_key", "_mask_char", "keep_placeholders", "operator", "pseudonyms")

    def __init__(
        self,
        operator: str = "placeholder",
        *,
        key: bytes | str | None = None,
        mask_char: str = "*",
        pseudonyms: Pseudonyms | None = None,
        keep_placeholders: bool = False,
    ):
        if operator not in OPERATORS:
            raise RedactionError(f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}")
        if pseudonyms is not None and operator != "pseudonym":
            raise RedactionError(f"pseudonym numbering was given to the {operator!r} operator")
        if not isinstance(mask_char, str) or len(mask_char) != 1 or mask_char.isspace():
            # One visible character per masked character, or the output no longer keeps the length.
            raise RedactionError("mask_char must be a single non-whitespace character")
        self.operator = operator
        self._mask_char = mask_char
        self._key: bytes | None = None
        if operator == "hash":
            if key is None:
                key = os.environ.get(HASH_KEY_ENV)
            if not key:
                # Unkeyed hashes of names or phone numbers are reversible by brute force: refuse.
                raise RedactionError(f"the hash operator needs a key: pass key= or set {HASH_KEY_ENV}")
            self._key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        self.pseudonyms = Pseudonyms() if pseudonyms is None else pseudonyms
        """The ``pseudonym`` operator's numbering (empty for the other operators)."""
        self.keep_placeholders = keep_placeholders
        """Leave pseudonym placeholders in the text as they are (:data:`PLACEHOLDER`; e.g. redacting a
        model's answer to pseudonymised input before it is restored): spans give them up."""

    def __repr__(self) -> str:
        return f"Redactor(operator={self.operator!r})"  # never the key

    def redact(self, text: str, spans: Sequence[Span]) -> Redacted:
        """Replace each span of ``text``; every character outside the spans stays in place, in order.

        Spans are clipped to the text, empty ones dropped, overlaps resolved with :func:`spans.merge`.
        """
        if not isinstance(text, str):
            raise RedactionError("text must be a str")
        n = len(text)
        clipped = []
        for s in spans:
            start, end = max(0, min(int(s.start), n)), max(0, min(int(s.end), n))
            if start < end:
                clipped.append(
                    s if (start, end) == (s.start, s.end) else Span(start, end, s.label, s.score, s.source)
                )
        merged = merge(_outside_placeholders(text, clipped) if self.keep_placeholders else clipped)
        pieces: list[str] = []
        pos = 0
        for s in merged:
            pieces.append(text[pos : s.start])
            pieces.append(self._replacement(text[s.start : s.end], s.label))
            pos = s.end
        pieces.append(text[pos:])
        return Redacted("".join(pieces), merged)

    def _replacement(self, surface: str, label: str) -> str:
        if self.operator == "placeholder":
            return f"[{label}]"
        if self.operator == "mask":
            return "".join(ch if ch.isspace() else self._mask_char for ch in surface)
        if self.operator == "hash":
            assert self._key is not None
            # surrogatepass: a lone surrogate in the input must hash, not crash with the value in the error.
            digest = hmac.new(self._key, _nfc(surface).encode("utf-8", "surrogatepass"), hashlib.sha256)
            return f"[{label}:{digest.hexdigest()[:12]}]"
        return f"<{label}_{self.pseudonyms.number(label, surface)}>"
