"""The dev-suite table: per set and per language, each set's unannotated types ignored."""

from __future__ import annotations

from guardrail.bench import suite
from guardrail.bench.datasets import DEV_SETS, Dataset
from guardrail.data import Record
from guardrail.spans import Span


def _sets() -> list[Dataset]:
    en = Dataset(
        "wnut17_test",
        [Record("a", "met Ana in Paris", [Span(4, 7, "PERSON"), Span(11, 16, "LOCATION")])],
        "x",
    )
    en2 = Dataset("uner_en_ewt_dev", [Record("a", "call Bob now", [Span(5, 8, "PERSON")])], "y")
    ja = Dataset("ja_gsd_dev", [Record("a", "田中さんは東京へ", [Span(0, 2, "PERSON")])], "z")
    return [en, en2, ja]


def test_every_shared_set_is_in_the_suite_with_a_language() -> None:
    assert {n.removesuffix(".jsonl") for n in DEV_SETS} == set(suite.SET_LANG)


def test_sets_and_languages_pool_and_ignore_unannotated_types() -> None:
    sets = _sets()
    preds = {
        "wnut17_test": {"a": [Span(4, 7, "PERSON")]},  # Paris leaks
        "uner_en_ewt_dev": {"a": [Span(5, 8, "PERSON"), Span(9, 12, "EMAIL")]},  # EMAIL: never annotated
        "ja_gsd_dev": {"a": [Span(0, 4, "PERSON"), Span(5, 7, "PERSON")]},  # one right, one wrong
    }
    res = suite.evaluate(sets, preds)
    assert res["sets"]["uner_en_ewt_dev"]["precision"] == 1.0  # the EMAIL guess is not held against it
    assert res["sets"]["wnut17_test"]["leakage"] > 0
    assert res["sets"]["ja_gsd_dev"]["precision"] == 0.5
    en = res["languages"]["en"]
    assert en["precision"] == 1.0 and 0 < en["leakage"] < res["sets"]["wnut17_test"]["leakage"]
    assert set(res["languages"]) == {"en", "ja"}
    table = suite.table({"m": res}, sets)
    assert "| ja_gsd_dev (ja, 1) |" in table and "**all en**" in table
