"""Labelled data in the project's JSONL format (DESIGN.md): reading, validating, writing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.labels import CANONICAL
from guardrail.spans import Span


class DataError(ValueError):
    """A record that does not follow the format; the message names the line, never the text."""


@dataclass(slots=True)
class Record:
    """One labelled text."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)
    lang: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Record fields outside the format (e.g. ``source``, ``meta``): kept, ignored."""
    span_extra: list[dict[str, Any]] = field(default_factory=list)
    """Per-span fields outside the format (e.g. ``orig_label``), parallel to ``spans``; may be empty."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.lang is not None:
            d["lang"] = self.lang
        extras = self.span_extra if len(self.span_extra) == len(self.spans) else [{}] * len(self.spans)
        d["spans"] = [
            {"start": s.start, "end": s.end, "label": s.label, **x}
            for s, x in zip(self.spans, extras, strict=True)
        ]
        d.update(self.extra)
        return d


def parse_record(obj: Any, where: str = "record", require_spans: bool = True) -> Record:
    """Validate one decoded JSON object into a :class:`Record` or raise :class:`DataError`."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    if "text" not in obj or not isinstance(obj["text"], str):
        raise DataError(f"{where}: missing or non-string 'text'")
    rid = obj.get("id")
    if rid is None:
        raise DataError(f"{where}: missing 'id'")
    text = obj["text"]
    spans: list[Span] = []
    span_extra: list[dict[str, Any]] = []
    raw_spans = obj.get("spans")
    if raw_spans is None:
        if require_spans:
            raise DataError(f"{where}: missing 'spans'")
        raw_spans = []
    if not isinstance(raw_spans, list):
        raise DataError(f"{where}: 'spans' must be a list")
    for i, s in enumerate(raw_spans):
        if not isinstance(s, dict):
            raise DataError(f"{where}: span {i} is not an object")
        start, end, label = s.get("start"), s.get("end"), s.get("label")
        if not (_is_int(start) and _is_int(end) and isinstance(label, str)):
            raise DataError(f"{where}: span {i} needs integer start/end and a string label")
        score = s.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
            raise DataError(f"{where}: span {i} has a score that is not a number in [0, 1]")
        if not 0 <= start < end <= len(text):
            raise DataError(f"{where}: span {i} [{start}, {end}) is outside the text (length {len(text)})")
        if label not in CANONICAL:
            raise DataError(f"{where}: span {i} has unknown label {label!r}")
        spans.append(Span(start, end, label, float(score), "gold"))
        span_extra.append({k: v for k, v in s.items() if k not in ("start", "end", "label", "score")})
    extra = {k: v for k, v in obj.items() if k not in ("id", "text", "spans", "lang")}
    lang = obj.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise DataError(f"{where}: 'lang' must be a string")
    return Record(str(rid), text, spans, lang, extra, span_extra)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def iter_jsonl(path: str | Path, require_spans: bool = True) -> Iterator[Record]:
    """Yield records of a JSONL file; blank lines are skipped, a bad line raises :class:`DataError`."""
    with open(path, encoding="utf-8-sig") as f:  # a BOM on line 1 is not an error
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            yield parse_record(obj, f"{path}:{n}", require_spans)


def read_jsonl(path: str | Path, require_spans: bool = True) -> list[Record]:
    """All records of a JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path, require_spans))


def write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> int:
    """Write records one a line (UTF-8, no ASCII escaping); return how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            d = r.to_dict() if isinstance(r, Record) else r
            line = json.dumps(d, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: valid JSON only as \u escapes
                line = json.dumps(d, ensure_ascii=True)
            f.write(line + "\n")
            n += 1
    return n
