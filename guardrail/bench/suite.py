"""The real dev suite as one table: every shared set, scored the way the issues measure it, per set and
per language, for any number of methods side by side.

Scoring is the reference scorer's rule with ``--labels privacy --ignore-unlabeled-types``: each set
annotates only some entity types, so a detection of a type the set never annotates is not held against
a method (and not credited either unless it lies on gold PII).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from guardrail.bench.datasets import Dataset
from guardrail.data import Record
from guardrail.labels import PRIVACY
from guardrail.metrics import score, typed_ok
from guardrail.spans import Span

if TYPE_CHECKING:
    from guardrail.pipeline import Guardrail

SET_LANG: dict[str, str] = {
    "presidio_synth_v2": "en",
    "wnut17_test": "en",
    "uner_en_ewt_dev": "en",
    "uner_zh_gsd_dev": "zh",
    "ja_gsd_dev": "ja",
}
"""Language of each shared dev set (a set not listed takes its records' ``lang``, else ``en``)."""

KEYS: tuple[str, ...] = ("leakage", "recall_partial", "precision", "f1")


def use_rule(g: Guardrail, rule: Mapping[str, Any]) -> None:
    """Run ``g`` at another stored calibration rule (``metrics.calibrations[name]`` of its probe):
    thresholds (and those of scripts without spaces, and those spans grow by) and lone-token scores; the
    bundle on disk is unchanged."""
    g.thresholds = {k: v for k, v in rule["thresholds"].items() if k in g.thresholds}
    g.lone_min_score = rule["lone_min_score"]
    g.lone_min_unspaced = rule.get("lone_min_unspaced")
    unspaced = rule.get("thresholds_unspaced")
    g.thresholds_unspaced = (
        None if unspaced is None else {k: v for k, v in unspaced.items() if k in g.thresholds}
    )
    grow = rule.get("thresholds_grow")
    g.thresholds_grow = None if grow is None else {k: v for k, v in grow.items() if k in g.thresholds}


def language(ds: Dataset) -> str:
    """The language a set is reported under."""
    if ds.name in SET_LANG:
        return SET_LANG[ds.name]
    langs = {(r.lang or "en").split("_")[0].split("-")[0] for r in ds.records}
    return langs.pop() if len(langs) == 1 else "mixed"


def _row(report: Mapping[str, Any]) -> dict[str, float | None]:
    o = report["overall"]
    return {k: (None if o[k] is None else round(float(o[k]), 4)) for k in KEYS}


def score_set(ds: Dataset, pred: Mapping[str, Sequence[Span]]) -> dict[str, float | None]:
    """Leakage, partial recall, precision and F1 of one method on one set (privacy labels, unlabelled
    types ignored)."""
    return _row(score(ds.records, pred, labels=PRIVACY, ignore_unlabeled=True))


def score_language(
    sets: Sequence[Dataset],
    preds: Mapping[str, Mapping[str, Sequence[Span]]],
    labels: Sequence[str] = PRIVACY,
) -> dict[str, Any]:
    """Sets of one language pooled into one corpus (ids prefixed by the set's name); each set keeps its
    own annotated types, so pooling never turns a set's unannotated type into an error."""
    out: dict[str, Any] = {}
    for lang in sorted({language(d) for d in sets}):
        members = [d for d in sets if language(d) == lang]
        # scored set by set and summed would need raw counts: pool per set's annotated types instead
        gold: list[Record] = []
        pred: dict[str, list[Span]] = {}
        for d in members:
            ann = {s.label for r in d.records for s in r.spans}
            for r in d.records:
                rid = f"{d.name}/{r.id}"
                gold.append(Record(rid, r.text, r.spans, r.lang))
                # the per-set rule, pooled: a predicted type the set never annotates counts when it lies
                # on gold PII and is dropped otherwise
                pred[rid] = [
                    s for s in preds[d.name].get(r.id, []) if _annotated(s.label, ann) or _on_gold(r, s)
                ]
        out[lang] = _row(score(gold, pred, labels=labels))
    return out


def _on_gold(r: Record, s: Span) -> bool:
    """Whether at least half of the span's non-space characters lie inside gold spans (the scorer's
    rule for a correct prediction)."""
    inside = np.zeros(len(r.text), dtype=bool)
    for g in r.spans:
        inside[g.start : g.end] = True
    chars = [i for i in range(s.start, min(s.end, len(r.text))) if not r.text[i].isspace()]
    return bool(chars) and 2 * int(inside[chars].sum()) >= len(chars)


def _annotated(label: str, annotated: set[str]) -> bool:
    return any(label in typed_ok(a) for a in annotated)


def evaluate(sets: Sequence[Dataset], preds: Mapping[str, Mapping[str, Sequence[Span]]]) -> dict[str, Any]:
    """``{"sets": {name: row}, "languages": {lang: row}}`` for one method's predictions by set name."""
    return {
        "sets": {d.name: score_set(d, preds[d.name]) for d in sets},
        "languages": score_language(sets, preds),
    }


def _cell(row: Mapping[str, float | None]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    return f"{pct(row['leakage'])} / {num(row['precision'])} / {num(row['f1'])}"


def table(results: Mapping[str, Mapping[str, Any]], sets: Sequence[Dataset]) -> str:
    """Markdown: one row per set and per language, one column per method; cells are
    leakage / precision / F1."""
    methods = list(results)
    head = "| set (lang, records) | " + " | ".join(methods) + " |"
    lines = [head, "|---|" + "---:|" * len(methods)]
    for d in sets:
        cells = [_cell(results[m]["sets"][d.name]) for m in methods]
        lines.append(f"| {d.name} ({language(d)}, {len(d.records)}) | " + " | ".join(cells) + " |")
    langs = sorted({language(d) for d in sets})
    for lang in langs:
        cells = [_cell(results[m]["languages"][lang]) for m in methods]
        lines.append(f"| **all {lang}** | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("cells: leakage / precision / F1 (privacy labels, types a set never annotates ignored)")
    return "\n".join(lines)
