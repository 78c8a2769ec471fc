"""Invisible characters (guardrail/invisible.py): taken out before detection, spans mapped back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from guardrail.invisible import strip_invisible, to_original
from guardrail.spans import Span

SHY, ZWSP, ZWNJ, ZWJ, WJ, BOM = "\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"


def test_a_soft_hyphen_inside_a_name_is_covered_by_its_span() -> None:
    text = f"call Mar{SHY}ia Sch{ZWSP}midt{WJ} now"
    seen, kept = strip_invisible(text)
    assert seen == "call Maria Schmidt now"
    name = Span(seen.index("Maria"), seen.index(" now"), "PERSON")
    (back,) = to_original([name], kept)
    assert text[back.start : back.end] == f"Mar{SHY}ia Sch{ZWSP}midt"  # the whole value, raw nothing


def test_text_without_invisible_characters_is_untouched() -> None:
    text = "Grüße 🎉 an Ana Silva, 日本語"
    assert strip_invisible(text) == (text, None)
    spans = [Span(12, 21, "PERSON")]
    assert to_original(spans, None) == spans


def test_every_kind_is_taken_out() -> None:
    for ch in (SHY, ZWSP, ZWNJ, ZWJ, WJ, BOM, "\u200e", "\u202e", "\u2066", "\ufe0f", "\u034f"):
        assert strip_invisible(f"a{ch}b")[0] == "ab", hex(ord(ch))


_CHARS = st.sampled_from(["a", "b", " ", "@", ".", "é", "🎉", SHY, ZWSP, ZWJ, WJ, BOM])


@given(st.lists(_CHARS, max_size=40), st.data())
def test_mapped_spans_cover_the_same_visible_characters(chars: list[str], data: st.DataObject) -> None:
    text = "".join(chars)
    seen, kept = strip_invisible(text)
    assert len(seen) <= len(text)
    if not seen:
        return
    start = data.draw(st.integers(0, len(seen) - 1))
    end = data.draw(st.integers(start + 1, len(seen)))
    (back,) = to_original([Span(start, end, "EMAIL")], kept)
    assert strip_invisible(text[back.start : back.end])[0] == seen[start:end]
    assert text[back.start] == seen[start] and text[back.end - 1] == seen[end - 1]
