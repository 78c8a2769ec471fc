"""Redaction stage: character spans -> redacted text, one operator per redactor."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from guardrail.spans import Span, merge

OPERATORS: tuple[str, ...] = ("placeholder", "mask", "hash", "pseudonym")
"""Valid values of ``Redactor(operator=...)``."""

HASH_KEY_ENV = "GUARDRAIL_HASH_KEY"
"""Environment variable the ``hash`` operator reads its key from when none is passed."""


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


class Redactor:
    """Replaces spans of texts with one operator; ``pseudonym`` numbering lives as long as the instance."""

    __slots__ = ("_key", "_lock", "_mask_char", "_pseudonyms", "operator")

    def __init__(
        self, operator: str = "placeholder", *, key: bytes | str | None = None, mask_char: str = "*"
    ):
        if operator not in OPERATORS:
            raise RedactionError(f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}")
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
        self._pseudonyms: dict[str, dict[str, int]] = {}
        # One instance may serve concurrent calls; numbering must not hand one number to two values.
        self._lock = threading.Lock()

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
        merged = merge(clipped)
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
        # pseudonym: "Ana  Silva" and "ana silva" are one person, so they get one number.
        value = " ".join(_nfc(surface).casefold().split())
        with self._lock:
            numbers = self._pseudonyms.setdefault(label, {})
            number = numbers.setdefault(value, len(numbers) + 1)
        return f"<{label}_{number}>"
