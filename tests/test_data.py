"""Labelled JSONL data: reading, validating, writing (guardrail/data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.data import DataError, Record, iter_jsonl, parse_record, read_jsonl, write_jsonl
from guardrail.labels import CANONICAL
from guardrail.spans import Span

SECRET = "Call Ana Silva at +1 415 555 0100"


def good(**over: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "id": "r1",
        "text": SECRET,
        "lang": "en",
        "spans": [{"start": 5, "end": 14, "label": "PERSON"}, {"start": 18, "end": 33, "label": "PHONE"}],
    }
    rec.update(over)
    return rec


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_round_trip_keeps_text_spans_lang_and_extra_fields(tmp_path: Path) -> None:
    records = [
        Record(
            "a", SECRET, [Span(5, 14, "PERSON"), Span(18, 33, "PHONE")], "en", {"meta": {"template_id": 3}}
        ),
        Record("b", "Zoë 😀 中文\u0301 \u2028 next\tline", [Span(0, 3, "PERSON")], None, {}),
        Record("c", "", [], "ja", {"source": "x"}),
    ]
    path = tmp_path / "set.jsonl"
    assert write_jsonl(path, records) == 3
    back = read_jsonl(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in records]
    assert back[0].spans[0].label == "PERSON" and back[1].text == records[1].text
    # One record a line, UTF-8 kept as is (no ASCII escapes), even with U+2028 inside a text.
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 3 and "😀" in raw


def test_writes_plain_dicts_too(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [good()])
    (rec,) = read_jsonl(path)
    assert rec.id == "r1" and rec.lang == "en"
    assert rec.spans == [Span(5, 14, "PERSON", 1.0, "gold"), Span(18, 33, "PHONE", 1.0, "gold")]


def test_blank_lines_are_skipped_and_extra_fields_kept(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "x.jsonl", ["", json.dumps(good(meta={"k": 1})), "   ", json.dumps(good(id=2))]
    )
    recs = list(iter_jsonl(path))
    assert [r.id for r in recs] == ["r1", "2"]
    assert recs[0].extra == {"meta": {"k": 1}}


def test_malformed_line_error_names_the_line_number_and_not_the_text(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl", [json.dumps(good()), "", '{"id": "r2", "text": "Ana Silva", "spans": [']
    )
    with pytest.raises(DataError) as e:
        read_jsonl(path)
    assert f"{path}:3:" in str(e.value)
    assert "Ana" not in str(e.value)


def test_invalid_record_error_names_the_line_number(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(good()), json.dumps(good(text=7))])
    with pytest.raises(DataError, match=r":2: missing or non-string 'text'"):
        read_jsonl(path)


@pytest.mark.parametrize(
    "span",
    [
        {"start": 20, "end": 99, "label": "PERSON"},
        {"start": -1, "end": 3, "label": "PERSON"},
        {"start": 5, "end": 5, "label": "PERSON"},
        {"start": 9, "end": 5, "label": "PERSON"},
    ],
)
def test_span_out_of_range(span: dict[str, object]) -> None:
    with pytest.raises(DataError, match="outside the text") as e:
        parse_record(good(spans=[span]), "f.jsonl:4")
    assert str(e.value).startswith("f.jsonl:4: span 0 ")
    assert "Ana" not in str(e.value)


def test_unknown_label() -> None:
    with pytest.raises(DataError, match="unknown label 'NAME'") as e:
        parse_record(good(spans=[{"start": 5, "end": 14, "label": "NAME"}]))
    assert "Ana" not in str(e.value)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "expected a JSON object"),
        ({"id": "x", "spans": []}, "missing or non-string 'text'"),
        ({"text": "t", "spans": []}, "missing 'id'"),
        ({"id": "x", "text": "t"}, "missing 'spans'"),
        ({"id": "x", "text": "t", "spans": {}}, "'spans' must be a list"),
        ({"id": "x", "text": "t", "spans": [3]}, "span 0 is not an object"),
        ({"id": "x", "text": "t", "spans": [{"start": 0, "label": "PERSON"}]}, "integer start/end"),
        (
            {"id": "x", "text": "t", "spans": [{"start": "a", "end": 1, "label": "PERSON"}]},
            "integer start/end",
        ),
    ],
)
def test_structural_errors(obj: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_record(obj)


def test_spans_optional_when_not_required(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "u.jsonl", [json.dumps({"id": "u", "text": SECRET})])
    (rec,) = read_jsonl(path, require_spans=False)
    assert rec.spans == [] and rec.lang is None
    with pytest.raises(DataError, match=":1: missing 'spans'"):
        read_jsonl(path)


def test_shared_dev_set_shape_parses() -> None:
    line = (
        '{"id": "p-0", "text": "The address of Persint is 6750 Koskikatu", '
        '"spans": [{"start": 15, "end": 22, '
        '"label": "ORGANIZATION", "orig_label": "ORGANIZATION"}], "source": "github:x", "lang": "en", '
        '"meta": {"template_id": 87}}'
    )
    rec = parse_record(json.loads(line))
    assert rec.text[15:22] == "Persint"
    assert rec.extra == {"source": "github:x", "meta": {"template_id": 87}}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    text = data.draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
    n = len(text)
    spans = []
    if n:
        for a, b in data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n)), max_size=5)):
            if a < b:
                spans.append(Span(a, b, data.draw(st.sampled_from(CANONICAL)), 1.0, "gold"))
    rec = Record(data.draw(st.text(max_size=5)), text, spans, data.draw(st.none() | st.text(max_size=3)), {})
    path = tmp_path_factory.mktemp("rt") / "p.jsonl"
    write_jsonl(path, [rec])
    (back,) = read_jsonl(path)
    assert back.to_dict() == rec.to_dict()
    assert back.spans == rec.spans


# --- regressions: issues found in data.py and fixed -----------------------------


def test_fractional_offsets_are_refused() -> None:
    with pytest.raises(DataError):
        parse_record(good(spans=[{"start": 5.7, "end": 14, "label": "PERSON"}]))


def test_bad_score_is_a_data_error() -> None:
    with pytest.raises(DataError):
        parse_record(good(spans=[{"start": 5, "end": 14, "label": "PERSON", "score": "high"}]))


def test_span_extra_fields_survive_a_round_trip(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "o.jsonl",
        [json.dumps(good(spans=[{"start": 5, "end": 14, "label": "PERSON", "orig_label": "PER"}]))],
    )
    out = tmp_path / "o2.jsonl"
    write_jsonl(out, read_jsonl(path))
    assert json.loads(out.read_text(encoding="utf-8"))["spans"][0]["orig_label"] == "PER"


def test_lone_surrogate_read_can_be_written_back(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", ['{"id": "s", "text": "a\\ud800b", "spans": []}'])
    write_jsonl(tmp_path / "s2.jsonl", read_jsonl(path))
