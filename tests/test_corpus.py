"""Offline general text for SAE training: found, split, deterministic, mixed."""

from __future__ import annotations

from itertools import islice

import pytest

from guardrail import corpus
from guardrail.data import Record


def test_paragraphs_are_split_bounded_and_disjoint() -> None:
    train, held = corpus.paragraphs("train"), corpus.paragraphs("heldout")
    assert len(train) > 1000 and len(held) > 20  # installed READMEs + stdlib docstrings
    assert not set(train) & set(held)
    assert all(corpus.MIN_CHARS <= len(p) <= corpus.MAX_CHARS for p in train[:2000])
    with pytest.raises(ValueError, match="split"):
        corpus.paragraphs("test")


def test_long_text_is_cut_at_spaces() -> None:
    words = " ".join(["word"] * 600)  # ~3000 chars, one block
    parts = list(corpus._paragraphs(words))
    assert len(parts) >= 3 and all(len(p) <= corpus.MAX_CHARS for p in parts)
    assert " ".join(parts) == words


def test_iter_records_is_seeded_and_endless() -> None:
    a = [r.text for r in islice(corpus.iter_records(seed=1), 50)]
    b = [r.text for r in islice(corpus.iter_records(seed=1), 50)]
    assert a == b and a != [r.text for r in islice(corpus.iter_records(seed=2), 50)]


def test_mix_follows_weights_and_stops_with_a_stream() -> None:
    left = iter([Record(f"a{i}", "a") for i in range(1000)])
    right = iter([Record(f"b{i}", "b") for i in range(10_000)])
    out = list(islice(corpus.mix(left, right, weights=(0.2, 0.8), seed=0), 2000))
    share = sum(r.text == "a" for r in out) / len(out)
    assert 0.15 < share < 0.25
    short = list(corpus.mix(iter([Record("x", "x")]), iter([]), weights=(1.0, 0.0)))
    assert [r.id for r in short] == ["x"]
    with pytest.raises(ValueError):
        next(corpus.mix(iter([]), weights=(1.0, 2.0)))
