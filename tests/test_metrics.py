"""Metrics (guardrail/metrics.py): hand-made cases with known answers, properties of the character
arithmetic, and exact agreement with the reference scorer ../shared/tools/score.py on the dev sets."""

from __future__ import annotations

import importlib.util
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import metrics
from guardrail.data import Record, read_jsonl
from guardrail.labels import CANONICAL, PRIVACY, UnknownLabelError
from guardrail.metrics import Counts, fbeta, format_table, nonspace_mask, score, strip_span
from guardrail.spans import Span

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GUARDRAIL_SHARED", REPO.parent / "shared"))
DEV_SETS = ("presidio_synth_v2.jsonl", "wnut17_test.jsonl")

#       0         1         2         3         4         5         6
#       0123456789012345678901234567890123456789012345678901234567890123456
TEXT = "Call Ana Silva at +1 415 555 0100 from Paris, 12 Main St on May 5."
GOLD = [
    Record(
        "a",
        TEXT,
        [
            Span(5, 14, "PERSON"),  # "Ana Silva" (8 non-ws chars)
            Span(18, 33, "PHONE"),  # "+1 415 555 0100" (12)
            Span(39, 44, "LOCATION"),  # "Paris" (5)
            Span(46, 56, "ADDRESS"),  # "12 Main St" (8)
            Span(60, 65, "DATE"),  # "May 5" (4)
        ],
    ),
    Record("b", "nothing here", []),
]
PRED = {
    "a": [
        Span(5, 8, "PERSON"),  # "Ana": 3/8 -> PERSON not found; tp (inside gold)
        Span(18, 33, "PHONE"),  # exact
        Span(39, 45, "LOCATION"),  # "Paris," exact after stripping
        Span(46, 53, "LOCATION"),  # "12 Main": 6/8 -> partial + typed (LOCATION accepted for ADDRESS)
        Span(0, 4, "URL"),  # "Call": fp (or ignored: URL never annotated)
        Span(60, 65, "DATE"),  # tp; neutral when DATE is outside `labels`
        Span(14, 15, "OTHER"),  # " ": no non-ws char -> dropped
    ]
}  # no entry for "b": counts as an empty prediction


def counts(report: Mapping[str, Any], *keys: str) -> tuple[int, ...]:
    c = report["overall"]["counts"]
    return tuple(c[k] for k in keys)


# --- hand-made cases ------------------------------------------------------------------------------


def test_reference_example_all_labels() -> None:
    r = score(GOLD, PRED)
    o = r["overall"]
    assert counts(r, "gold", "found_partial", "found_exact", "found_typed") == (5, 4, 3, 4)
    assert counts(r, "gold_chars", "leaked_chars") == (37, 5 + 2)  # "Silva" + "St"
    assert counts(r, "pred", "tp", "fp", "neutral") == (6, 5, 1, 0)
    assert o["precision"] == pytest.approx(5 / 6) and o["recall_partial"] == pytest.approx(0.8)
    assert o["leakage"] == pytest.approx(7 / 37)
    assert o["f1"] == pytest.approx(2 * (5 / 6) * 0.8 / (5 / 6 + 0.8))
    assert o["f2"] == pytest.approx(5 * (5 / 6) * 0.8 / (4 * 5 / 6 + 0.8))
    assert r["missing_pred_ids"] == 1 and r["extra_pred_ids"] == 0 and r["records"] == 2
    pl = r["per_label"]
    assert list(pl) == ["PERSON", "PHONE", "ADDRESS", "LOCATION", "DATE", "URL"]  # canonical order
    assert pl["PERSON"]["recall_partial"] == 0 and pl["PERSON"]["leakage"] == 5 / 8
    assert pl["ADDRESS"]["recall_exact"] == 0 and pl["ADDRESS"]["recall_typed"] == 1
    assert pl["LOCATION"]["precision"] == 1.0 and pl["URL"]["precision"] == 0.0
    assert pl["ADDRESS"]["precision"] is None  # nothing predicted as ADDRESS
    assert pl["LOCATION"]["precision_typed"] == 1.0 and pl["PERSON"]["precision_typed"] == 1.0
    assert "OTHER" not in pl  # its only prediction was whitespace


def test_labels_make_other_gold_dont_care() -> None:
    r = score(GOLD, PRED, labels=PRIVACY)
    assert counts(r, "gold", "found_partial", "tp", "fp", "neutral") == (4, 3, 4, 1, 1)
    assert r["labels_considered"] == list(PRIVACY)
    date = r["per_label"]["DATE"]
    assert not date["in_overall"] and date["precision"] == 1.0  # per-label rows ignore don't-care


def test_ignore_unlabeled_skips_wrong_predictions_of_unannotated_labels() -> None:
    r = score(GOLD, PRED, labels=PRIVACY, ignore_unlabeled=True)
    assert counts(r, "tp", "fp", "neutral", "ignored_unlabeled") == (4, 0, 1, 1)
    assert r["overall"]["precision"] == 1.0
    assert r["per_label"]["URL"]["precision"] is None  # could only ever be 100%
    assert r["per_label"]["URL"]["counts"]["ignored_unlabeled"] == 1
    # a correct prediction of an unannotated label still counts as correct
    r2 = score(GOLD, {"a": [Span(5, 14, "USERNAME")]}, ignore_unlabeled=True)
    assert counts(r2, "tp", "fp", "ignored_unlabeled") == (1, 0, 0)
    # `annotated` overrides what the set is taken to annotate
    r3 = score(GOLD, PRED, ignore_unlabeled=True, annotated=["PERSON", "URL"])
    assert r3["gold_annotates"] == ["PERSON", "URL"] and counts(r3, "ignored_unlabeled") == (0,)


def test_typed_recall_needs_a_compatible_label() -> None:
    r = score(GOLD, {"a": [Span(46, 56, "PERSON")]})
    address = r["per_label"]["ADDRESS"]
    assert address["recall_partial"] == 1 and address["recall_typed"] == 0
    assert r["per_label"]["PERSON"]["precision"] == 1 and r["per_label"]["PERSON"]["precision_typed"] == 0


def test_overlapping_predictions_cover_as_a_union_and_count_one_by_one() -> None:
    gold = [Record("x", "Ana Maria Silva", [Span(0, 15, "PERSON")])]  # 13 non-ws chars
    pred = {"x": [Span(0, 5, "PERSON"), Span(2, 9, "PERSON"), Span(0, 3, "LOCATION")]}
    r = score(gold, pred)
    # union covers "Ana Maria" = 8 chars >= 6.5: found; neither alone is an exact match
    assert counts(r, "found_partial", "found_exact", "leaked_chars") == (1, 0, 5)
    assert counts(r, "pred", "tp", "fp") == (3, 3, 0)  # not merged: each prediction counts
    assert r["per_label"]["PERSON"]["recall_typed"] == 1


def test_partial_threshold_is_half_of_the_non_whitespace_chars() -> None:
    gold = [Record("x", "ab cd", [Span(0, 5, "PERSON")])]  # 4 non-ws chars
    assert counts(score(gold, {"x": [Span(0, 3, "PERSON")]}), "found_partial") == (1,)  # "ab " = 2
    assert counts(score(gold, {"x": [Span(0, 1, "PERSON")]}), "found_partial") == (0,)  # "a" = 1
    # a prediction half outside gold is still correct; less than half is not
    gold2 = [Record("y", "abcd efgh", [Span(0, 4, "PERSON")])]
    assert counts(score(gold2, {"y": [Span(2, 6, "PERSON")]}), "tp", "fp") == (1, 0)  # "cd" + "e"
    assert counts(score(gold2, {"y": [Span(3, 9, "PERSON")]}), "tp", "fp") == (0, 1)


def test_empty_predictions() -> None:
    r = score(GOLD, {})
    o = r["overall"]
    assert o["leakage"] == 1.0 and o["recall_partial"] == 0.0
    assert o["precision"] is None and o["f1"] is None and o["f2"] is None
    assert r["missing_pred_ids"] == 2
    r2 = score(GOLD, {"a": [], "b": [], "zzz": []})
    assert r2["missing_pred_ids"] == 0 and r2["extra_pred_ids"] == 1
    assert r2["overall"]["counts"] == r["overall"]["counts"]


def test_no_gold_spans_and_no_records() -> None:
    r = score([Record("x", "plain text", [])], {"x": [Span(0, 5, "PERSON")]})
    assert r["overall"]["recall_partial"] is None and r["overall"]["leakage"] is None
    assert r["overall"]["precision"] == 0.0 and r["overall"]["f1"] is None
    empty = score([], {})
    assert empty["records"] == 0 and empty["per_label"] == {} and empty["overall"]["counts"]["gold"] == 0


def test_whitespace_only_spans_are_dropped() -> None:
    gold = [Record("x", "a \u2003\t b", [Span(1, 5, "PERSON"), Span(0, 1, "EMAIL")])]
    r = score(gold, {"x": [Span(1, 5, "OTHER"), Span(2, 3, "URL"), Span(0, 1, "EMAIL")]})
    assert counts(r, "gold", "pred", "tp") == (1, 1, 1)
    assert set(r["per_label"]) == {"EMAIL"}


def test_exact_match_strips_whitespace_and_punctuation() -> None:
    gold = [Record("x", 'He said "(Fla.)" once', [Span(9, 14, "LOCATION")])]  # "(Fla."
    assert counts(score(gold, {"x": [Span(8, 16, "LOCATION")]}), "found_exact") == (1,)
    assert counts(score(gold, {"x": [Span(10, 12, "LOCATION")]}), "found_exact") == (0,)
    assert strip_span("(Fla.) ", 0, 7) == (1, 4)
    assert strip_span(" ,; ", 0, 4) == (4, 4)


def test_spans_outside_the_text_are_clipped() -> None:
    gold = [Record("x", "Ana", [Span(0, 3, "PERSON")])]
    r = score(gold, {"x": [Span(-5, 2, "PERSON"), Span(2, 99, "PERSON"), Span(7, 9, "PERSON")]})
    assert counts(r, "pred", "tp", "found_partial") == (2, 2, 1)


def test_unknown_label_in_labels_is_rejected() -> None:
    with pytest.raises(UnknownLabelError):
        score(GOLD, PRED, labels=["NAME"])


def test_fbeta_and_counts() -> None:
    assert fbeta(None, 0.5, 1.0) is None and fbeta(0.5, None, 2.0) is None
    assert fbeta(0.0, 0.0, 1.0) == 0.0
    assert fbeta(0.5, 0.5, 2.0) == pytest.approx(0.5)
    m = Counts(gold=4, found_partial=3, tp=2, fp=2, gold_chars=10, leaked_chars=1).metrics()
    assert (m["recall_partial"], m["precision"], m["leakage"]) == (0.75, 0.5, 0.1)


def test_format_table_shows_overall_and_every_label() -> None:
    table = format_table(score(GOLD, PRED, labels=PRIVACY), title="example")
    lines = table.splitlines()
    assert lines[0] == "example" and "OVERALL" in table and "DATE *" in table and "URL *" in table
    assert "labels considered: PERSON, EMAIL" in table
    assert "n/a" in table  # ADDRESS precision


# --- properties of the character arithmetic --------------------------------------------------------


def test_whitespace_exists_only_below_the_lookup_limit() -> None:
    assert not any(chr(i).isspace() for i in range(0x3001, 0x110000))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=60))
def test_nonspace_mask_is_not_isspace(text: str) -> None:
    assert nonspace_mask(text).tolist() == [not c.isspace() for c in text]


span_lists = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=" ab\t", min_size=1, max_size=40), spans=span_lists, region=span_lists)
def test_chars_inside_a_union_match_brute_force(
    text: str, spans: list[tuple[int, int]], region: list[tuple[int, int]]
) -> None:
    n = len(text)

    def table(pairs: list[tuple[int, int]]) -> metrics._SpanTable:
        kept = [(min(a, n - 1), min(a + w, n)) for a, w in pairs]
        arr = np.array(kept, dtype=np.int64).reshape(-1, 2)
        return metrics._SpanTable(arr[:, 0], arr[:, 1], np.zeros(len(kept), dtype=np.int64))

    def pairs(t: metrics._SpanTable) -> list[tuple[int, int]]:
        return list(zip(t.start.tolist(), t.end.tolist(), strict=True))

    got = metrics._Corpus([text]).inside(table(spans), table(region))
    union = {i for a, b in pairs(table(region)) for i in range(a, b)}
    want = [sum(i in union and not text[i].isspace() for i in range(a, b)) for a, b in pairs(table(spans))]
    assert got.tolist() == want


def test_batches_do_not_change_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    gold = read_dev("wnut17_test.jsonl")[:200]
    pred = perturbed(gold, seed=3)
    whole = score(gold, pred, labels=PRIVACY, ignore_unlabeled=True)
    monkeypatch.setattr(metrics, "BATCH_RECORDS", 7)
    assert score(gold, pred, labels=PRIVACY, ignore_unlabeled=True) == whole


# --- agreement with the reference scorer -----------------------------------------------------------


def read_dev(name: str) -> list[Record]:
    path = SHARED / "data" / name
    if not path.exists():
        pytest.skip(f"{path} not found (set GUARDRAIL_SHARED)")
    return read_jsonl(path)


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    """../shared/tools/score.py, loaded as a module."""
    path = SHARED / "tools" / "score.py"
    if not path.exists():
        pytest.skip(f"{path} not found (set GUARDRAIL_SHARED)")
    spec = importlib.util.spec_from_file_location("reference_score", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def perturbed(gold: Sequence[Record], seed: int) -> dict[str, list[Span]]:
    """Predictions made from gold: spans dropped, boundaries shifted, relabelled, spurious ones added,
    whitespace-only ones, some records without an entry and one entry for no record."""
    rng = random.Random(seed)
    pred: dict[str, list[Span]] = {}
    for r in gold:
        spans = []
        for s in r.spans:
            if rng.random() < 0.2:
                continue
            start, end = s.start + rng.randint(-3, 3), s.end + rng.randint(-4, 4)
            label = rng.choice(CANONICAL) if rng.random() < 0.2 else s.label
            spans.append(Span(start, end, label))
            if rng.random() < 0.1:  # an overlapping duplicate
                spans.append(Span(s.start, (s.start + s.end) // 2, s.label))
        if r.text and rng.random() < 0.4:
            a = rng.randrange(len(r.text))
            spans.append(Span(a, a + rng.randint(1, 12), rng.choice(CANONICAL)))
        blank = r.text.find(" ")
        if blank >= 0 and rng.random() < 0.1:
            spans.append(Span(blank, blank + 1, "OTHER"))
        if rng.random() < 0.95:
            pred[r.id] = spans
    pred["not-a-record"] = [Span(0, 3, "PERSON")]
    return pred


def reference_score(
    ref: ModuleType, gold: Sequence[Record], pred: Mapping[str, Sequence[Span]], **kwargs: Any
) -> dict[str, Any]:
    gold_json = [r.to_dict() for r in gold]
    pred_json = [
        {"id": rid, "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in spans]}
        for rid, spans in pred.items()
    ]
    return ref.score(gold_json, pred_json, **kwargs)


SETTINGS = (
    {},
    {"labels": list(PRIVACY)},
    {"ignore_unlabeled": True},
    {"labels": list(PRIVACY), "ignore_unlabeled": True},
)


@pytest.mark.parametrize("kwargs", SETTINGS, ids=["all", "privacy", "ignore-unlabeled", "privacy+ignore"])
def test_agrees_with_reference_on_its_own_example(reference: ModuleType, kwargs: dict[str, Any]) -> None:
    assert score(GOLD, PRED, **kwargs) == reference_score(reference, GOLD, PRED, **kwargs)


@pytest.mark.parametrize("kwargs", SETTINGS, ids=["all", "privacy", "ignore-unlabeled", "privacy+ignore"])
@pytest.mark.parametrize("name", DEV_SETS)
def test_agrees_with_reference_on_perturbed_gold(
    reference: ModuleType, name: str, kwargs: dict[str, Any]
) -> None:
    gold = read_dev(name)
    pred = perturbed(gold, seed=len(name))
    assert score(gold, pred, **kwargs) == reference_score(reference, gold, pred, **kwargs)


@pytest.fixture(scope="module")
def pattern_predictions() -> dict[str, dict[str, list[Span]]]:
    pytest.importorskip("presidio_analyzer")
    from guardrail.patterns import PatternDetector

    detector = PatternDetector()
    out = {}
    for name in DEV_SETS:
        gold = read_dev(name)
        out[name] = dict(
            zip([r.id for r in gold], detector.detect_batch([r.text for r in gold]), strict=True)
        )
    return out


@pytest.mark.parametrize("kwargs", SETTINGS, ids=["all", "privacy", "ignore-unlabeled", "privacy+ignore"])
@pytest.mark.parametrize("name", DEV_SETS)
def test_agrees_with_reference_on_pattern_predictions(
    reference: ModuleType,
    pattern_predictions: dict[str, dict[str, list[Span]]],
    name: str,
    kwargs: dict[str, Any],
) -> None:
    gold = read_dev(name)
    pred = pattern_predictions[name]
    assert score(gold, pred, **kwargs) == reference_score(reference, gold, pred, **kwargs)


def test_scores_1500_records_quickly() -> None:
    gold = read_dev("presidio_synth_v2.jsonl")
    pred = perturbed(gold, seed=1)
    start = time.perf_counter()
    score(gold, pred, labels=PRIVACY)
    assert time.perf_counter() - start < 1.0
