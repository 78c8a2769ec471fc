"""Redaction operators: hand-made cases plus a property test that no character outside a span moves."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.labels import CANONICAL
from guardrail.redact import OPERATORS, Redacted, RedactionError, Redactor
from guardrail.spans import Span, merge

KEY = b"test-key"
TEXT = "Call Ana Silva at +1 415 555 0100 or ana.silva@example.com."
NAME = Span(5, 14, "PERSON")
PHONE = Span(18, 33, "PHONE", 0.99, "pattern")
EMAIL = Span(37, 58, "EMAIL")


def expected_hash(label: str, surface: str, key: bytes = KEY) -> str:
    digest = hmac.new(
        key, unicodedata.normalize("NFC", surface).encode("utf-8", "surrogatepass"), hashlib.sha256
    )
    return f"[{label}:{digest.hexdigest()[:12]}]"


def test_spans_fixture_matches_text() -> None:
    assert [TEXT[s.start : s.end] for s in (NAME, PHONE, EMAIL)] == [
        "Ana Silva",
        "+1 415 555 0100",
        "ana.silva@example.com",
    ]


def test_placeholder_is_the_default() -> None:
    out = Redactor().redact(TEXT, [EMAIL, NAME, PHONE])
    assert out == Redacted("Call [PERSON] at [PHONE] or [EMAIL].", [NAME, PHONE, EMAIL])


def test_mask_keeps_length_and_whitespace() -> None:
    out = Redactor("mask").redact(TEXT, [NAME, PHONE])
    assert out.text == "Call *** ***** at ** *** *** **** or ana.silva@example.com."
    assert len(out.text) == len(TEXT)
    assert Redactor("mask", mask_char="#").redact("Ana\tB", [Span(0, 5, "PERSON")]).text == "###\t#"


@pytest.mark.parametrize("mask_char", ["", "**", " ", "\n"])
def test_mask_char_must_be_one_visible_character(mask_char: str) -> None:
    with pytest.raises(RedactionError):
        Redactor("mask", mask_char=mask_char)


def test_hash_is_keyed_hmac_of_the_nfc_surface() -> None:
    red = Redactor("hash", key=KEY)
    out = red.redact(TEXT, [NAME])
    assert (
        out.text
        == f"Call {expected_hash('PERSON', 'Ana Silva')} at +1 415 555 0100 or ana.silva@example.com."
    )
    # NFC: a decomposed "é" hashes like the composed one; a str key equals its UTF-8 bytes.
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    a = red.redact(composed, [Span(0, len(composed), "PERSON")]).text
    b = Redactor("hash", key=KEY.decode()).redact(decomposed, [Span(0, len(decomposed), "PERSON")]).text
    assert a == b == expected_hash("PERSON", composed)
    # Another key, another digest.
    assert Redactor("hash", key=b"other").redact(composed, [Span(0, 4, "PERSON")]).text != a


def test_hash_refuses_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARDRAIL_HASH_KEY", raising=False)
    with pytest.raises(
        RedactionError, match="the hash operator needs a key: pass key= or set GUARDRAIL_HASH_KEY"
    ):
        Redactor("hash")
    with pytest.raises(RedactionError):
        Redactor("hash", key=b"")
    monkeypatch.setenv("GUARDRAIL_HASH_KEY", "")
    with pytest.raises(RedactionError):
        Redactor("hash")


def test_hash_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_HASH_KEY", "env-key")
    out = Redactor("hash").redact("Ana", [Span(0, 3, "PERSON")])
    assert out.text == expected_hash("PERSON", "Ana", b"env-key")
    # An explicit key wins over the environment.
    assert Redactor("hash", key=KEY).redact("Ana", [Span(0, 3, "PERSON")]).text == expected_hash(
        "PERSON", "Ana"
    )


def test_hash_key_never_shows_in_repr() -> None:
    assert "test-key" not in repr(Redactor("hash", key=KEY))


def test_other_operators_do_not_need_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARDRAIL_HASH_KEY", raising=False)
    for op in ("placeholder", "mask", "pseudonym"):
        Redactor(op)


def test_pseudonym_is_consistent_across_texts_and_numbered_per_label() -> None:
    red = Redactor("pseudonym")
    first = red.redact("Ana met Bob", [Span(0, 3, "PERSON"), Span(8, 11, "PERSON")])
    second = red.redact(
        "BOB  and ana\u00a0silva wrote to bob@x.io",
        [Span(0, 3, "PERSON"), Span(9, 18, "PERSON"), Span(28, 36, "EMAIL")],
    )
    third = red.redact("ANA  SILVA", [Span(0, 10, "PERSON")])
    assert first.text == "<PERSON_1> met <PERSON_2>"
    assert second.text == "<PERSON_2>  and <PERSON_3> wrote to <EMAIL_1>"
    assert third.text == "<PERSON_3>"  # casefold and collapsed whitespace: the same value
    # A fresh redactor (a fresh Guardrail.redact call) starts numbering again.
    assert Redactor("pseudonym").redact("Bob", [Span(0, 3, "PERSON")]).text == "<PERSON_1>"


def test_pseudonym_same_surface_under_two_labels_is_numbered_per_label() -> None:
    red = Redactor("pseudonym")
    out = red.redact("Paris Paris", [Span(0, 5, "PERSON"), Span(6, 11, "LOCATION")])
    assert out.text == "<PERSON_1> <LOCATION_1>"


def test_unknown_operator_names_the_valid_ones() -> None:
    with pytest.raises(RedactionError) as e:
        Redactor("shred")
    for op in OPERATORS:
        assert op in str(e.value)


def test_overlapping_and_out_of_range_spans_are_safe() -> None:
    text = "Ana Silva"
    spans = [Span(0, 3, "PERSON", 0.5), Span(2, 9, "ORGANIZATION", 0.9), Span(5, 50, "PERSON", 0.4)]
    out = Redactor().redact(text, spans)
    assert out == Redacted("[ORGANIZATION]", [Span(0, 9, "ORGANIZATION", 0.9)])
    assert Redactor().redact(text, [Span(-5, 3, "PERSON")]).spans == [Span(0, 3, "PERSON")]
    assert Redactor().redact(text, [Span(20, 30, "PERSON"), Span(4, 4, "PERSON")]) == Redacted(text, [])
    assert Redactor().redact("", [Span(0, 3, "PERSON")]) == Redacted("", [])


def test_touching_spans_are_replaced_one_by_one() -> None:
    out = Redactor().redact("AnaSilva", [Span(0, 3, "PERSON"), Span(3, 8, "ORGANIZATION")])
    assert out.text == "[PERSON][ORGANIZATION]"


def test_errors_never_contain_the_text() -> None:
    secret = "Ana Silva 4111111111111111"
    with pytest.raises(RedactionError) as e:
        Redactor().redact(secret.encode(), [Span(0, 3, "PERSON")])  # type: ignore[arg-type]
    assert "Ana" not in str(e.value) and "4111" not in str(e.value)
    # A lone surrogate is hashed, never echoed in an encoding error.
    out = Redactor("hash", key=KEY).redact("x\ud800y", [Span(0, 3, "PERSON")])
    assert out.text == expected_hash("PERSON", "x\ud800y")


# --- property: a pure string operation -----------------------------------------------------------------

TRICKY = [
    "a",
    "é",
    "e\u0301",
    "\u0301",
    "😀",
    "👩\u200d👧",
    "中",
    "\x00",
    "\u200b",
    "\n",
    " ",
    "\t",
    "\ud800",
]


def texts() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(TRICKY) | st.characters(), max_size=30).map("".join)


@st.composite
def text_and_spans(draw: st.DrawFn) -> tuple[str, list[Span]]:
    text = draw(texts())
    n = len(text)
    pos = st.integers(-2, n + 2)
    spans = draw(
        st.lists(
            st.builds(
                lambda a, b, label, score: Span(min(a, b), max(a, b), label, score),
                pos,
                pos,
                st.sampled_from(CANONICAL[:3]),
                st.sampled_from([0.5, 0.9]),
            ),
            max_size=8,
        )
    )
    return text, spans


def pseudonym_oracle() -> Callable[[str, str], str]:
    numbers: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}

    def replace(surface: str, label: str) -> str:
        value = " ".join(unicodedata.normalize("NFC", surface).casefold().split())
        if (label, value) not in numbers:
            counts[label] = counts.get(label, 0) + 1
            numbers[label, value] = counts[label]
        return f"<{label}_{numbers[label, value]}>"

    return replace


def oracle(operator: str) -> Callable[[str, str], str]:
    """The spec of each operator, written independently of the implementation."""
    if operator == "placeholder":
        return lambda surface, label: f"[{label}]"
    if operator == "mask":
        return lambda surface, label: re.sub(r"\S", "*", surface)
    if operator == "hash":
        return lambda surface, label: expected_hash(label, surface)
    return pseudonym_oracle()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPERATORS), st.lists(text_and_spans(), min_size=1, max_size=3))
def test_redaction_keeps_every_outside_character_in_place(
    operator: str, batch: list[tuple[str, list[Span]]]
) -> None:
    red, replace = Redactor(operator, key=KEY), oracle(operator)
    for text, spans in batch:
        out = red.redact(text, spans)
        clipped = [Span(max(0, s.start), min(len(text), s.end), s.label, s.score) for s in spans]
        assert out.spans == merge(clipped)
        pieces, pos = [], 0
        for s in out.spans:
            assert 0 <= pos <= s.start < s.end <= len(text)
            pieces += [text[pos : s.start], replace(text[s.start : s.end], s.label)]
            pos = s.end
        pieces.append(text[pos:])
        assert out.text == "".join(pieces)


def test_keep_placeholders_redacts_around_them() -> None:
    """A model's answer to pseudonymised input: a detector may take a placeholder in a name's place for a
    name; the placeholders stay, for restoring, and only what else a span holds is redacted."""
    text = "mail Ana <PERSON_1>, [PERSON_2] or <EMAIL_1>"
    spans = [Span(5, 19, "PERSON"), Span(21, 31, "PERSON"), Span(35, 44, "EMAIL")]
    kept = Redactor(keep_placeholders=True).redact(text, spans)
    assert kept.text == "mail [PERSON] <PERSON_1>, [PERSON_2] or <EMAIL_1>"
    assert kept.spans == [Span(5, 8, "PERSON")]
    assert Redactor().redact(text, spans).text == "mail [PERSON], [PERSON] or [EMAIL]"
    assert Redactor("mask", keep_placeholders=True).redact("Bob PERSON_1", [Span(0, 12, "PERSON")]).text == (
        "*** PERSON_1"
    )
