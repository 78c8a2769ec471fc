"""Span decoder and overlap resolution: hand-made cases plus property tests for the offset arithmetic."""

from __future__ import annotations

import random
import unicodedata
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.labels import CANONICAL
from guardrail.segment import words
from guardrail.spans import (
    NEEDS_DIGIT,
    NEEDS_LETTER,
    Span,
    bridge,
    decode,
    decode_batch,
    is_unspaced,
    is_word_char,
    merge,
    on_words,
    snap,
    trim,
)

CLASSES = ("O", "PERSON", "EMAIL", "PHONE", "ORGANIZATION")


def probs_for(labels: list[str | None], pii: float | list[float] = 0.9) -> np.ndarray:
    """``[T, C]`` probabilities: ``None`` is an O token, a label gets ``pii`` mass on that class."""
    scores = pii if isinstance(pii, list) else [pii] * len(labels)
    out = np.zeros((len(labels), len(CLASSES)))
    for t, (label, p) in enumerate(zip(labels, scores, strict=True)):
        if label is None:
            out[t, 0] = 1.0
        else:
            out[t, 0] = 1.0 - p
            out[t, CLASSES.index(label)] = p
    return out


def tokens(text: str, pieces: list[str]) -> np.ndarray:
    """``[T, 2]`` offsets of consecutive pieces that must tile ``text``."""
    assert "".join(pieces) == text
    offsets, pos = [], 0
    for p in pieces:
        offsets.append((pos, pos + len(p)))
        pos += len(p)
    return np.array(offsets, dtype=np.int64)


# --- trim / snap --------------------------------------------------------------------------------------


def test_trim_strips_edge_whitespace_and_punctuation_but_keeps_inner() -> None:
    text = ' ("O\'Brien, j.doe@x.com"). '
    start, end = trim(text, 0, len(text))
    assert text[start:end] == "O'Brien, j.doe@x.com"


def test_trim_keeps_leading_plus_of_a_phone_and_drops_parenthesis() -> None:
    text = "+1 (415) 555-0100."
    assert text[slice(*trim(text, 0, len(text)))] == "+1 (415) 555-0100"
    text = "(415) 555"
    assert text[slice(*trim(text, 0, len(text)))] == "415) 555"


def test_trim_all_junk_is_empty_and_clips_out_of_range() -> None:
    assert trim(" .,; ", 0, 5) == (5, 5)
    assert trim("abc", -3, 10) == (0, 3)
    assert trim("a\u200bb\u200b", 0, 4) == (0, 3)  # zero-width space (Cf) at the edge


def test_snap_extends_half_word_both_ways() -> None:
    text = "Call Anabel now"
    assert snap(text, 5, 8) == (5, 11)
    assert snap(text, 7, 9) == (5, 11)
    assert snap(text, 5, 11) == (5, 11)
    assert snap(text, 4, 4) == (4, 4)


def test_snap_treats_combining_marks_and_underscore_as_word() -> None:
    text = "x Jose\u0301_b y"
    assert snap(text, 2, 6) == (2, 9)


# --- decode: hand-made ---------------------------------------------------------------------------------


def test_leading_space_tokens_are_trimmed() -> None:
    text = "Call Ana Silva today"
    off = tokens(text, ["Call", " Ana", " Silva", " today"])
    spans = decode(text, off, probs_for([None, "PERSON", "PERSON", None]), CLASSES, {})
    assert spans == [Span(5, 14, "PERSON", 0.9, "probe")]
    assert text[5:14] == "Ana Silva"


def test_special_and_padding_tokens_are_ignored() -> None:
    text = "Ana"
    off = np.array([[0, 0], [0, 3], [0, 0], [3, 3]])
    spans = decode(text, off, probs_for(["PERSON", "PERSON", "PERSON", "EMAIL"], 0.99), CLASSES, {})
    assert spans == [Span(0, 3, "PERSON", 0.99)]


def test_whitespace_gap_merges_but_punctuation_gap_splits() -> None:
    text = "Ana  Silva, Bob"
    off = np.array([[0, 3], [5, 10], [12, 15]])
    spans = decode(text, off, probs_for(["PERSON"] * 3), CLASSES, {})
    assert [(text[s.start : s.end], s.label) for s in spans] == [("Ana  Silva", "PERSON"), ("Bob", "PERSON")]


def test_newline_gap_keeps_a_multiline_address_whole() -> None:
    text = "at 6750 Koskikatu\nArtilleros\n, CO"
    off = tokens(text, ["at", " 6750", " Koskikatu", "\n", "Artilleros", "\n,", " CO"])
    spans = decode(text, off, probs_for([None, "PHONE", "PHONE", None, "PHONE", None, None]), CLASSES, {})
    assert [text[s.start : s.end] for s in spans] == ["6750 Koskikatu\nArtilleros"]


def test_label_disagreement_in_a_run_takes_the_label_with_most_total_score() -> None:
    text = "Ana Maria Silva"
    off = tokens(text, ["Ana", " Maria", " Silva"])
    probs = probs_for(["PERSON", "ORGANIZATION", "ORGANIZATION"], [0.95, 0.6, 0.6])
    spans = decode(text, off, probs, CLASSES, {})
    # ORGANIZATION sums 1.2 > PERSON 0.95; the entity stays one span either way.
    assert spans == [Span(0, 15, "ORGANIZATION", 0.95)]


def test_whitespace_adjacent_entities_of_two_labels_form_one_run() -> None:
    # The price of never splitting a mislabelled entity: two real entities with only a space between
    # them come out as one span (nothing leaks; the smaller label is lost).
    text = "Ana +14155550100"
    off = tokens(text, ["Ana", " +14155550100"])
    spans = decode(text, off, probs_for(["PERSON", "PHONE"], [0.9, 0.99]), CLASSES, {})
    assert spans == [Span(0, 16, "PHONE", 0.99)]


def test_label_tie_in_a_run_follows_canonical_order() -> None:
    text = "Ana Silva"
    off = tokens(text, ["Ana", " Silva"])
    assert CANONICAL.index("PERSON") < CANONICAL.index("ORGANIZATION")
    for order in (["PERSON", "ORGANIZATION"], ["ORGANIZATION", "PERSON"]):
        spans = decode(text, off, probs_for(list(order), 0.8), CLASSES, {})
        assert spans == [Span(0, 9, "PERSON", 0.8)]


def test_per_label_threshold_and_default() -> None:
    text = "Ana, x@y.io"
    off = tokens(text, ["Ana", ",", " x@y.io"])
    probs = probs_for(["PERSON", None, "EMAIL"], [0.6, 0.0, 0.6])
    assert [s.label for s in decode(text, off, probs, CLASSES, {"PERSON": 0.7})] == ["EMAIL"]
    assert decode(text, off, probs, CLASSES, {"PERSON": 0.7}, default_threshold=0.65) == []
    # The threshold is inclusive.
    assert len(decode(text, off, probs, CLASSES, {"PERSON": 0.6, "EMAIL": 0.6})) == 2


def test_token_label_is_argmax_over_non_o_classes_even_when_o_is_largest() -> None:
    text = "555"
    probs = np.array([[0.4, 0.1, 0.0, 0.35, 0.15]])
    spans = decode(text, np.array([[0, 3]]), probs, CLASSES, {"PHONE": 0.6})
    assert spans == [Span(0, 3, "PHONE", 0.6)]
    assert decode(text, np.array([[0, 3]]), probs, CLASSES, {"PHONE": 0.61}) == []


def test_digit_types_without_a_digit_are_dropped() -> None:
    text = "my phone: call 555 0100 or Ana"
    off = tokens(text, ["my", " phone", ":", " call", " 555", " 0100", " or", " Ana"])
    probs = probs_for([None, "PHONE", None, None, "PHONE", "PHONE", None, "PERSON"])
    spans = decode(text, off, probs, CLASSES, {})
    # "phone" read as a PHONE value is the type's context, not a value; names need no digit
    assert [(text[s.start : s.end], s.label) for s in spans] == [("555 0100", "PHONE"), ("Ana", "PERSON")]
    assert {"PHONE", "CREDIT_CARD", "IBAN", "ID_NUMBER", "IP_ADDRESS"} == NEEDS_DIGIT
    # any Unicode digit counts (a phone in Arabic-Indic digits)
    text = "هاتف ٠١٢٣"
    off = tokens(text, ["هاتف", " ٠١٢٣"])
    assert [s.label for s in decode(text, off, probs_for([None, "PHONE"]), CLASSES, {})] == ["PHONE"]


def test_names_without_a_letter_are_dropped() -> None:
    text = "population 3108, mayor Ana"
    off = tokens(text, ["population", " 3108", ",", " mayor", " Ana"])
    probs = probs_for([None, "PERSON", None, None, "PERSON"])
    spans = decode(text, off, probs, CLASSES, {})
    assert [(text[s.start : s.end], s.label) for s in spans] == [("Ana", "PERSON")]
    assert {"PERSON", "LOCATION", "ORGANIZATION"} == NEEDS_LETTER
    # any script's letters count
    text = "市長は李"
    off = tokens(text, ["市長", "は", "李"])
    assert [s.label for s in decode(text, off, probs_for([None, None, "PERSON"]), CLASSES, {})] == ["PERSON"]


def test_on_words_takes_whole_words_flagged_enough_and_drops_slivers() -> None:
    text = "ラッパを山田太郎が吹く"
    words = [(0, 3), (3, 4), (4, 6), (6, 8), (8, 9), (9, 11)]  # ラッパ を 山田 太郎 が 吹く
    assert on_words(text, 2, 3, words) == (2, 2)  # "パ", a third of "ラッパ": a sliver, dropped
    assert on_words(text, 2, 3, words, cover=0.0) == (0, 3)  # cover 0: the whole word, never less
    assert on_words(text, 4, 5, words) == (4, 6)  # half of "山田": the whole word
    assert on_words(text, 4, 7, words) == (4, 8)  # "山田" and half of "太郎"
    # characters of spaced scripts keep the range's own edges; no word met: unchanged
    mixed = "Tel 山田"
    assert on_words(mixed, 0, 3, [(0, 3), (3, 4), (4, 6)]) == (0, 3)
    assert on_words(mixed, 4, 5, []) == (4, 5)


def test_decode_sets_japanese_and_chinese_spans_on_dictionary_words() -> None:
    # one flagged character of a common word is no name; part of a name takes the whole word
    text = "ラッパを吹く山田太郎さん"
    off = tokens(text, ["ラ", "ッ", "パ", "を", "吹", "く", "山", "田", "太", "郎", "さん"])
    probs = probs_for([None, None, "PERSON", None, None, None, "PERSON", "PERSON", "PERSON", None, None])
    spans = decode(text, off, probs, CLASSES, {})
    assert [text[s.start : s.end] for s in spans] == ["山田太郎"]
    text = "呂衛倫在紐西蘭工作期間"
    off = tokens(text, list(text))
    labels: list[str | None] = [
        "PERSON",
        "PERSON",
        None,
        None,
        "PERSON",
        "PERSON",
        None,
        None,
        None,
        None,
        None,
    ]
    spans = decode(text, off, probs_for(labels), CLASSES, {})
    assert [text[s.start : s.end] for s in spans] == ["呂衛倫", "紐西蘭"]


def test_lone_token_needs_more_evidence() -> None:
    text = "Ana and Bob Smith"
    off = tokens(text, ["Ana", " and", " Bob", " Smith"])
    probs = probs_for(["PERSON", None, "PERSON", "PERSON"], [0.7, 0.0, 0.7, 0.7])
    spans = decode(text, off, probs, CLASSES, {}, lone_min_score=0.8)
    assert [text[s.start : s.end] for s in spans] == ["Bob Smith"]
    spans = decode(text, off, probs, CLASSES, {}, lone_min_score={"PERSON": 0.7})
    assert [text[s.start : s.end] for s in spans] == ["Ana", "Bob Smith"]
    spans = decode(text, off, probs, CLASSES, {}, lone_min_score={"EMAIL": 0.99})
    assert len(spans) == 2  # labels missing from the mapping default to 0.0


def test_punctuation_is_trimmed_from_flagged_tokens() -> None:
    text = 'Mail "j.doe@x.com".'
    off = tokens(text, ["Mail", ' "', "j", ".", "doe", "@", "x", ".", "com", '".'])
    probs = probs_for([None] + ["EMAIL"] * 9)
    spans = decode(text, off, probs, CLASSES, {})
    assert [text[s.start : s.end] for s in spans] == ["j.doe@x.com"]


def test_flagged_punctuation_alone_gives_no_span() -> None:
    text = "Hi , there"
    off = tokens(text, ["Hi", " ,", " there"])
    assert decode(text, off, probs_for([None, "PERSON", None]), CLASSES, {}) == []


def test_half_word_is_snapped_to_the_whole_word() -> None:
    text = "Call Anabel now"
    off = tokens(text, ["Call", " Ana", "bel", " now"])
    spans = decode(text, off, probs_for([None, "PERSON", None, None]), CLASSES, {})
    assert spans == [Span(5, 11, "PERSON", 0.9)]


def test_two_runs_snapped_into_one_word_become_one_span() -> None:
    text = "Anabelle"
    off = tokens(text, ["An", "abe", "lle"])
    probs = probs_for(["PERSON", None, "ORGANIZATION"], [0.9, 0.0, 0.7])
    assert decode(text, off, probs, CLASSES, {}) == [Span(0, 8, "PERSON", 0.9)]


def test_byte_level_tokens_sharing_one_character_and_unordered_offsets() -> None:
    text = "I am 😀 Ana"
    # Two byte-level tokens of one emoji share its offsets; tokens given out of order still decode.
    off = np.array([[6, 10], [5, 6], [5, 6], [0, 1]])
    probs = probs_for(["PERSON", None, None, None])
    assert decode(text, off, probs, CLASSES, {}) == [Span(7, 10, "PERSON", 0.9)]


def test_score_is_max_token_score_rounded() -> None:
    text = "Ana Silva"
    probs = probs_for(["PERSON", "PERSON"], [0.612345678, 0.81234567])
    assert decode(text, tokens(text, ["Ana", " Silva"]), probs, CLASSES, {})[0].score == 0.8123


def test_no_tokens_and_only_o_class() -> None:
    assert decode("", np.zeros((0, 2), dtype=int), np.zeros((0, len(CLASSES))), CLASSES, {}) == []
    assert decode("abc", np.array([[0, 3]]), np.array([[1.0]]), ("O",), {}) == []


@pytest.mark.parametrize(
    ("offsets", "probs", "classes"),
    [
        (np.array([[0, 3]]), np.zeros((2, 5)), CLASSES),  # T mismatch
        (np.array([0, 3]), np.zeros((1, 5)), CLASSES),  # offsets not [T, 2]
        (np.array([[0, 3]]), np.zeros((1, 5)), ("PERSON", "O", "EMAIL", "PHONE", "ORGANIZATION")),
        (np.array([[0, 3]]), np.zeros((1, 4)), CLASSES),  # C mismatch
        (np.array([[0, 99]]), np.zeros((1, 5)), CLASSES),  # past the text
        (np.array([[-1, 2]]), np.zeros((1, 5)), CLASSES),
        (np.array([[3, 1]]), np.zeros((1, 5)), CLASSES),
    ],
)
def test_bad_inputs_raise_without_the_text(offsets: np.ndarray, probs: np.ndarray, classes: tuple) -> None:
    secret = "Ana Silva"
    with pytest.raises(ValueError) as e:
        decode(secret, offsets, probs, classes, {})
    assert "Ana" not in str(e.value)


# --- merge: hand-made ----------------------------------------------------------------------------------


def test_merge_unions_overlaps_and_keeps_touching_apart() -> None:
    a, b, c = Span(0, 5, "PERSON", 0.9), Span(3, 8, "EMAIL", 0.95), Span(8, 10, "PHONE", 0.5)
    assert merge([c, b, a]) == [Span(0, 8, "EMAIL", 0.95), c]


def test_merge_tie_breaks_source_then_length_then_canonical() -> None:
    probe, pattern = Span(0, 10, "PERSON", 0.9, "probe"), Span(2, 6, "PHONE", 0.9, "pattern")
    assert merge([probe, pattern]) == [Span(0, 10, "PHONE", 0.9, "pattern")]
    short, long = Span(0, 4, "PERSON", 0.9), Span(2, 9, "EMAIL", 0.9)
    assert merge([short, long]) == [Span(0, 9, "EMAIL", 0.9)]
    x, y = Span(0, 4, "ORGANIZATION", 0.9), Span(2, 6, "PERSON", 0.9)
    assert merge([x, y]) == merge([y, x]) == [Span(0, 6, "PERSON", 0.9)]


def test_merge_chains_and_drops_empty_spans() -> None:
    spans = [Span(0, 3, "PERSON", 0.1), Span(2, 5, "PERSON", 0.2), Span(4, 7, "EMAIL", 0.3), Span(9, 9, "X")]
    assert merge(spans) == [Span(0, 7, "EMAIL", 0.3)]
    assert merge([]) == []


# --- properties ----------------------------------------------------------------------------------------

# Characters that break naive offset arithmetic: combining marks, ZWJ emoji, CJK, controls, odd spaces.
TRICKY = [
    "a", "Z", "7", "_", "é", "e\u0301", "\u0301", "😀", "👩\u200d👩\u200d👧", "中", "文", "\u3000", "\x00",
    "\x1f", "\u200b", "\ufeff", "\n", "\t", " ", "  ", "\r\n", "\u2028", "-", ".", "'", "(", ")", "+", "@",
    "ß", "İ", "١", "\u0915\u094d",
]  # fmt: skip


def texts() -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=("Cs",)))
    return st.lists(piece, max_size=30).map("".join)


@st.composite
def decode_inputs(
    draw: st.DrawFn, labels: tuple[str, ...] = CANONICAL
) -> tuple[str, np.ndarray, np.ndarray, tuple[str, ...], dict[str, float]]:
    text = draw(texts())
    n = len(text)
    if draw(st.booleans()):
        # A tokenizer-like tiling, with specials (empty ranges) sprinkled in.
        cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=n + 1))) | {0, n})
        offsets = [(a, b) for a, b in pairwise(cuts)]
        offsets += [(0, 0)] * draw(st.integers(0, 2))
    else:
        pairs = draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=20))
        offsets = [(min(a, b), max(a, b)) for a, b in pairs]
    t = len(offsets)
    classes = ("O", *draw(st.lists(st.sampled_from(labels), min_size=1, max_size=4, unique=True)))
    raw = draw(st.lists(st.floats(0, 1), min_size=t * len(classes), max_size=t * len(classes)))
    probs = np.array(raw, dtype=np.float64).reshape(t, len(classes)) + 1e-9
    probs /= probs.sum(axis=1, keepdims=True)
    thresholds = {c: draw(st.floats(0, 1)) for c in classes[1:] if draw(st.booleans())}
    return text, np.array(offsets, dtype=np.int64).reshape(t, 2), probs, classes, thresholds


def unspaced_edge(text: str, a: int, b: int) -> bool:
    return is_unspaced(text[a]) or is_unspaced(text[b])


def is_junk(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] == "P" or unicodedata.category(ch) in ("Cc", "Cf")


@settings(max_examples=400, deadline=None)
@given(decode_inputs(), st.floats(0, 1))
def test_decode_spans_are_well_formed(
    args: tuple[str, np.ndarray, np.ndarray, tuple[str, ...], dict[str, float]], lone: float
) -> None:
    text, offsets, probs, classes, thresholds = args
    spans = decode(text, offsets, probs, classes, thresholds, lone_min_score=lone)
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)
        assert not text[s.start].isspace() and not text[s.end - 1].isspace()
        # whole words, except where either side is of a script written without spaces
        assert (
            s.start == 0 or not is_word_char(text[s.start - 1]) or unspaced_edge(text, s.start - 1, s.start)
        )
        assert s.end == len(text) or not is_word_char(text[s.end]) or unspaced_edge(text, s.end - 1, s.end)
        assert s.label in classes[1:] and 0.0 <= s.score <= 1.0 and s.source == "probe"
    assert all(a.end <= b.start for a, b in pairwise(spans))
    assert merge(spans) == spans


@settings(max_examples=300, deadline=None)
@given(decode_inputs(tuple(x for x in CANONICAL if x not in NEEDS_DIGIT)))
def test_decode_covers_every_meaningful_character_of_a_flagged_token(
    args: tuple[str, np.ndarray, np.ndarray, tuple[str, ...], dict[str, float]],
) -> None:
    # With no lone-token filter and whole dictionary words taken (word_cover 0), no flagged character
    # that could carry PII may be left raw (labels that need a digit drop digitless runs, and names
    # letterless ones: test_digit_types_without_a_digit_are_dropped, test_names_without_a_letter_...).
    text, offsets, probs, classes, thresholds = args
    found = decode(text, offsets, probs, classes, thresholds, word_cover=0.0)
    covered = {i for s in found for i in range(s.start, s.end)}
    names = bool(set(classes) & NEEDS_LETTER)
    for t, (a, b) in enumerate(offsets.tolist()):
        label = classes[int(probs[t, 1:].argmax()) + 1]
        lettered = any(ch.isalpha() for ch in text[a:b])
        if 1.0 - probs[t, 0] >= thresholds.get(label, 0.5) and (lettered or not names):
            assert all(i in covered for i in range(a, b) if not is_junk(text[i]))


def span_lists(n: int) -> st.SearchStrategy[list[Span]]:
    def build(a: int, b: int, label: str, score: float, source: str) -> Span:
        return Span(min(a, b), max(a, b), label, score, source)

    one = st.builds(
        build,
        st.integers(0, n),
        st.integers(0, n),
        st.sampled_from(CANONICAL[:4]),
        st.sampled_from([0.5, 0.9, 1.0]) | st.floats(0, 1),
        st.sampled_from(["probe", "pattern"]),
    )
    return st.lists(one, max_size=12)


@settings(max_examples=400, deadline=None)
@given(span_lists(40), st.randoms(use_true_random=False))
def test_merge_is_idempotent_order_free_and_covers_exactly_the_union(
    spans: list[Span], rnd: random.Random
) -> None:
    out = merge(spans)
    assert merge(out) == out
    shuffled = list(spans)
    rnd.shuffle(shuffled)
    assert merge(shuffled) == out
    assert all(s.start < s.end for s in out)
    assert all(a.end <= b.start for a, b in pairwise(out))
    chars_in = {i for s in spans for i in range(s.start, s.end)}
    chars_out = {i for s in out for i in range(s.start, s.end)}
    assert chars_in == chars_out
    for s in out:
        members = [m for m in spans if m.start < s.end and s.start < m.end and m.start < m.end]
        assert s.score == max(m.score for m in members)
        # Members chain by real overlap (sharing a character), never by merely touching.
        members.sort(key=lambda m: m.start)
        reach = members[0].end
        for m in members[1:]:
            assert m.start < reach
            reach = max(reach, m.end)
        assert (members[0].start, reach) == (s.start, s.end)
        assert (s.label, s.score, s.source) in {(m.label, m.score, m.source) for m in members}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=0, max_size=6), st.integers(0, 2**31 - 1))
def test_decode_batch_equals_decode_text_by_text(n_words: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = ["Ana", "Silva", "lives", "at", "12", "Rue", "Lepic", ",", "call", "+33", "6", "12"]
    texts, offsets, probs = [], [], []
    for n in n_words:
        picked = [words[int(i)] for i in rng.integers(0, len(words), n)]
        pieces = [w if j == 0 else " " + w for j, w in enumerate(picked)]  # leading-space tokens
        text = "".join(pieces)
        texts.append(text)
        offsets.append(tokens(text, pieces).reshape(-1, 2) if pieces else np.zeros((0, 2), dtype=np.int64))
        p = rng.dirichlet(np.full(len(CANONICAL) + 1, 0.3), size=n)
        probs.append(p)
    classes = ["O", *CANONICAL]
    flat = np.concatenate(probs) if probs else np.zeros((0, len(classes)))
    thresholds = {"PERSON": 0.4, "PHONE": 0.7}
    got = decode_batch(texts, offsets, flat, classes, thresholds, lone_min_score=0.6)
    want = [
        decode(t, o, p.reshape(-1, len(classes)), classes, thresholds, lone_min_score=0.6)
        for t, o, p in zip(texts, offsets, probs, strict=True)
    ]
    assert got == want


def test_decode_batch_refuses_mismatched_inputs() -> None:
    classes = ["O", "PERSON"]
    with pytest.raises(ValueError, match="probs"):
        decode_batch(["ab"], [np.asarray([[0, 2]])], np.zeros((2, 2)), classes, {})
    with pytest.raises(ValueError, match="offsets"):
        decode_batch(["ab"], [np.asarray([[0, 3]])], np.zeros((1, 2)), classes, {})
    with pytest.raises(ValueError, match="texts"):
        decode_batch(["ab", "c"], [np.asarray([[0, 2]])], np.zeros((1, 2)), classes, {})


# --- scripts written without spaces: a span keeps the flagged tokens' edges ---------------------------


@pytest.mark.parametrize(
    ("text", "pieces", "flag", "want"),
    [
        # Japanese: the name, never the clause after it ("…は、日本のバドミントン選手。")
        (
            "山田太郎は、日本のバドミントン選手。",
            ["山田", "太郎", "は", "、", "日本", "の", "バドミントン", "選手", "。"],
            [0, 1],
            "山田太郎",
        ),
        # Chinese: a place inside a run of hanzi
        (
            "他住在北京市朝阳区已经十年了",
            ["他", "住在", "北京", "市", "朝阳", "区", "已经", "十年", "了"],
            [2, 3],
            "北京市",
        ),
        # Thai: no spaces between words either
        ("ผมชื่อสมชายครับ", ["ผม", "ชื่อ", "สมชาย", "ครับ"], [2], "สมชาย"),
        # a Latin word glued to kana still grows to its own whole word, not into the kana
        ("メールはAnabelへ", ["メール", "は", "Ana", "bel", "へ"], [2], "Anabel"),
    ],
)
def test_unspaced_scripts_follow_token_edges(
    text: str, pieces: list[str], flag: list[int], want: str
) -> None:
    labels = [("PERSON" if i in flag else None) for i in range(len(pieces))]
    spans = decode(text, tokens(text, pieces), probs_for(labels), CLASSES, {"PERSON": 0.5})
    assert [text[s.start : s.end] for s in spans] == [want]


def test_snap_never_grows_over_an_unspaced_run() -> None:
    text = "東京都に住む田中さんに電話した"
    a = text.index("田中")
    assert snap(text, a, a + 2) == (a, a + 2)
    assert snap(text, a + 1, a + 2) == (a + 1, a + 2)  # half a name stays half: the token edge decides


_CJK = st.text(
    alphabet=st.sampled_from(list("日本語の東京都田中太郎はにをさん北京市上海我你他的是了ひらがなカタカナ")),
    min_size=1,
    max_size=30,
)


@given(_CJK, st.data())
@settings(max_examples=200, deadline=None)
def test_property_snap_in_unspaced_text_is_identity(text: str, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, len(text) - 1))
    b = data.draw(st.integers(a + 1, len(text)))
    assert snap(text, a, b) == (a, b)


@given(
    st.lists(
        st.sampled_from(["Ana", "Silva", "東京", "田中", "さん", "は", " ", "、", "123", "ผม", "ชื่อ"]),
        min_size=1,
        max_size=12,
    ),
    st.data(),
)
@settings(max_examples=200, deadline=None)
def test_property_spans_cover_only_flagged_unspaced_characters(
    pieces: list[str], data: st.DataObject
) -> None:
    text = "".join(pieces)
    flags = data.draw(st.lists(st.booleans(), min_size=len(pieces), max_size=len(pieces)))
    labels = [("PERSON" if f else None) for f in flags]
    spans = decode(text, tokens(text, pieces), probs_for(labels), CLASSES, {"PERSON": 0.5})
    flagged = np.zeros(len(text), dtype=bool)
    pos = 0
    for p, f in zip(pieces, flags, strict=True):
        flagged[pos : pos + len(p)] = f
        pos += len(p)
    word_of = {i: (a, b) for a, b in words(text) for i in range(a, b)}
    for s in spans:
        for i in range(s.start, s.end):
            # a character of an unspaced script is redacted only when the probe flagged its own token or
            # part of its dictionary word: a span never grows over the rest of the clause
            if is_unspaced(text[i]):
                a, b = word_of.get(i, (i, i + 1))
                assert flagged[a:b].any(), (text, s, i)


def test_lone_unspaced_token_needs_its_own_score() -> None:
    text = "周遭有许多小吃店 and Ana"
    pieces = ["周", "遭有许多小吃店", " and", " Ana"]
    probs = probs_for(["PERSON", None, None, "PERSON"], pii=[0.6, 0.0, 0.0, 0.6])
    off = tokens(text, pieces)
    both = decode(text, off, probs, CLASSES, {"PERSON": 0.5})
    assert [text[s.start : s.end] for s in both] == ["周遭", "Ana"]  # half its word: the whole word
    # one character of Chinese alone is weak evidence; the same score on a Latin word still counts
    only = decode(text, off, probs, CLASSES, {"PERSON": 0.5}, lone_min_unspaced=0.8)
    assert [text[s.start : s.end] for s in only] == ["Ana"]
    # None: the one lone rule for every script
    assert decode(text, off, probs, CLASSES, {"PERSON": 0.5}, lone_min_score=0.8) == []


def _batch_agrees(text: str, off: np.ndarray, probs: np.ndarray, one: list[Span], **kw: object) -> None:
    """Many texts at once (this one, a lone weak "Ana", this one again) decode as one at a time."""
    batch = decode_batch(
        [text, "Ana", text],
        [off, np.array([[0, 3]]), off],
        np.concatenate([probs, probs_for(["PERSON"], 0.3), probs]),
        CLASSES,
        {"PERSON": 0.5},
        **kw,
    )
    assert batch == [one, [], one]


def test_unspaced_tokens_have_thresholds_of_their_own() -> None:
    text = "王小明 met Ana Lee and 李"
    pieces = ["王小明", " met", " Ana", " Lee", " and", " 李"]
    probs = probs_for(
        ["PERSON", None, "PERSON", "PERSON", None, "PERSON"], pii=[0.3, 0.0, 0.3, 0.3, 0.0, 0.3]
    )
    off = tokens(text, pieces)
    assert decode(text, off, probs, CLASSES, {"PERSON": 0.5}) == []
    # the same scores: only the Chinese tokens pass the lower threshold of their script
    low = decode(text, off, probs, CLASSES, {"PERSON": 0.5}, thresholds_unspaced={"PERSON": 0.2})
    assert [text[s.start : s.end] for s in low] == ["王小明", "李"]
    # and a higher one holds them back where the Latin tokens pass
    high = decode(text, off, probs, CLASSES, {"PERSON": 0.25}, thresholds_unspaced={"PERSON": 0.4})
    assert [text[s.start : s.end] for s in high] == ["Ana Lee"]
    # a label it does not name keeps its one threshold; many texts at once agree with one at a time
    assert decode(text, off, probs, CLASSES, {"PERSON": 0.25}, thresholds_unspaced={"EMAIL": 0.9}) == decode(
        text, off, probs, CLASSES, {"PERSON": 0.25}
    )
    _batch_agrees(text, off, probs, low, thresholds_unspaced={"PERSON": 0.2})


def test_spans_grow_over_weaker_neighbours_only_from_a_flagged_token() -> None:
    text = "drinks at Smith Tower , then Observation Deck"
    pieces = ["drinks", " at", " Smith", " Tower", " ,", " then", " Observation", " Deck"]
    probs = probs_for(
        [None, "PERSON", "PERSON", "PERSON", None, None, "PERSON", "PERSON"],
        pii=[0.0, 0.1, 0.9, 0.3, 0.0, 0.0, 0.3, 0.3],
    )
    off = tokens(text, pieces)
    assert [text[s.start : s.end] for s in decode(text, off, probs, CLASSES, {"PERSON": 0.5})] == ["Smith"]
    grown = decode(text, off, probs, CLASSES, {"PERSON": 0.5}, thresholds_grow={"PERSON": 0.2})
    # "Tower" joins the span "Smith" started; "Observation Deck" reaches the grow threshold but no token of
    # it was flagged, so it is no span; "at" is below the grow threshold; punctuation stops a run
    assert [text[s.start : s.end] for s in grown] == ["Smith Tower"]
    assert grown[0].score == 0.9 and grown[0].label == "PERSON"
    # a label the grow thresholds do not name never grows; many texts at once agree with one at a time
    assert decode(text, off, probs, CLASSES, {"PERSON": 0.5}, thresholds_grow={"EMAIL": 0.2}) == decode(
        text, off, probs, CLASSES, {"PERSON": 0.5}
    )
    _batch_agrees(text, off, probs, grown, thresholds_grow={"PERSON": 0.2})


def test_spans_never_grow_over_symbols_or_emoji() -> None:
    text = "меня зовут Иван Петров 👋🏽 , почта"
    pieces = ["меня", " зовут", " Иван", " Петров", " 👋", "🏽", " ,", " почта"]
    probs = probs_for(
        [None, None, "PERSON", "PERSON", "PERSON", "PERSON", "PERSON", None],
        pii=[0, 0, 0.9, 0.3, 0.3, 0.3, 0.3, 0],
    )
    grown = decode(
        text, tokens(text, pieces), probs, CLASSES, {"PERSON": 0.5}, thresholds_grow={"PERSON": 0.2}
    )
    # the surname joins the flagged given name; the emoji (half of it a skin-tone modifier) and comma do not
    assert [text[s.start : s.end] for s in grown] == ["Иван Петров"]


def test_growing_never_joins_two_labels_into_a_span_that_drops() -> None:
    # "aaa": a flagged PERSON token, a weak token, a flagged PHONE token. Grown into one run the PHONE
    # vote wins, and a phone with no digit is dropped; the PERSON span the flagged tokens give alone stays.
    classes = ("O", "PHONE", "PERSON")
    probs = np.array([[0.5, 0.0, 0.5], [0.99, 0.01, 0.0], [0.33, 0.34, 0.33]])
    off = np.array([[0, 1], [1, 2], [2, 3]])
    plain = decode("aaa", off, probs, classes, {})
    assert [(s.start, s.end, s.label) for s in plain] == [(0, 3, "PERSON")]
    assert decode("aaa", off, probs, classes, {}, thresholds_grow={"PHONE": 0.0, "PERSON": 0.0}) == plain


@settings(max_examples=300, deadline=None)
@given(decode_inputs(), st.floats(0, 1), st.floats(0, 1))
def test_property_growing_only_adds_and_every_grown_span_holds_a_flagged_token(
    args: tuple[str, np.ndarray, np.ndarray, tuple[str, ...], dict[str, float]], grow: float, lone: float
) -> None:
    text, offsets, probs, classes, thresholds = args
    grow_thr = {c: grow for c in classes[1:]}
    plain = decode(text, offsets, probs, classes, thresholds, lone_min_score=lone)
    grown = decode(text, offsets, probs, classes, thresholds, lone_min_score=lone, thresholds_grow=grow_thr)
    covered = np.zeros(len(text) + 1, dtype=bool)
    for s in grown:
        assert 0 <= s.start < s.end <= len(text) and s.label in classes[1:]
        covered[s.start : s.end] = True
    assert all(a.end <= b.start for a, b in pairwise(grown))
    # nothing redacted without growing is left raw with it
    for s in plain:
        assert covered[s.start : s.end].all(), (text, s, grown)
    # no flagged token anywhere: growing finds nothing either
    pii = 1.0 - probs[:, 0]
    best = probs[:, 1:].argmax(axis=1) + 1 if len(probs) else np.zeros(0, dtype=int)
    thr = np.array([thresholds.get(c, 0.5) for c in classes])
    if not ((pii >= thr[best]) & (offsets[:, 0] < offsets[:, 1])).any():
        assert grown == []


def _cut(text: str, *pieces: tuple[str, str]) -> list[Span]:
    """Spans over the first occurrence of each surface string, with its label."""
    out = []
    for surface, label in pieces:
        at = text.index(surface)
        out.append(Span(at, at + len(surface), label, 0.9))
    return out


def test_bridge_joins_one_value_in_two_pieces() -> None:
    text = "Ship to 12 Rue Verte Apt. 4B, Lyon. Ask Ana  Silva or Bo\nKim."
    spans = _cut(text, ("12 Rue Verte", "ADDRESS"), ("4B", "ADDRESS"), ("Ana", "PERSON"), ("Silva", "PERSON"))
    spans += _cut(text, ("Bo", "PERSON"), ("Kim", "PERSON"))
    got = [text[s.start : s.end] for s in bridge(text, spans)]
    # over whitespace (one line break included); an address over "Apt. " inside its sentence
    assert got == ["12 Rue Verte Apt. 4B", "Ana  Silva", "Bo\nKim"]


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("Ana\n\nBo", [("Ana", "PERSON"), ("Bo", "PERSON")]),  # a blank line parts records
        ("Ana Lisbon", [("Ana", "PERSON"), ("Lisbon", "LOCATION")]),  # two labels: two values
        ("a@x.io b@y.io", [("a@x.io", "EMAIL"), ("b@y.io", "EMAIL")]),  # two emails: two pseudonyms
        ("Ana or Bo", [("Ana", "PERSON"), ("Bo", "PERSON")]),  # only addresses bridge over words
        ("Rua A 1, Porto. Rua B 2", [("Rua A 1", "ADDRESS"), ("Rua B 2", "ADDRESS")]),  # a new sentence
        ("Rua A 1; Rua B 2", [("Rua A 1", "ADDRESS"), ("Rua B 2", "ADDRESS")]),
        ("Rua A 1 and later also Rua B 2", [("Rua A 1", "ADDRESS"), ("Rua B 2", "ADDRESS")]),  # > 12
    ],
)
def test_bridge_keeps_apart_what_is_not_one_value(text: str, pieces: list[tuple[str, str]]) -> None:
    spans = _cut(text, *pieces)
    assert bridge(text, spans) == spans


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(1, 8), st.sampled_from(["PERSON", "ADDRESS"])), max_size=8
    )
)
def test_bridge_output_is_sorted_disjoint_covering_and_idempotent(raw: list[tuple[int, int, str]]) -> None:
    text = "Ana Silva lives at 12 Rue Verte Apt. 4B\n\nin Lyon; call Bo. Kim or Jo"
    spans = merge(Span(a, min(a + n, len(text)), lab) for a, n, lab in raw if a < len(text))
    out = bridge(text, spans)
    assert out == sorted(out) and all(x.end <= y.start for x, y in pairwise(out))
    covered = {i for s in out for i in range(s.start, s.end)}
    assert all(i in covered for s in spans for i in range(s.start, s.end))
    assert bridge(text, out) == out
