"""Metrics: leakage, span recall/precision, F1/F2 (DESIGN.md), defined once for the whole package.

The definitions are those of the reference scorer ``../shared/tools/score.py`` and the numbers agree
with it exactly (tests/test_metrics.py checks this on the dev sets). In short, counting only
non-whitespace characters:

- leakage: share of gold characters that no predicted span (any label) covers;
- recall_partial: gold spans whose characters predicted spans (any label, union) cover >= 50%;
  recall_exact: gold spans that some predicted span matches after stripping whitespace and punctuation
  at both edges; recall_typed: as partial, counting only predictions of a compatible label (TYPED_OK);
- precision: predicted spans with >= 50% of their characters inside gold spans. Under ``labels``, gold
  spans of other labels are "don't care": a prediction that is correct only thanks to them is neutral.
  With ``ignore_unlabeled``, a wrong prediction of a label the gold set never annotates is ignored.
- per-label rows: recall and leakage over gold spans of the label; precision over predictions carrying
  it, correct when >= 50% inside gold spans of any label (no don't-care rule).

Each text is reduced to prefix sums over its non-whitespace characters, so every span's counts are two
array lookups: 1,500 records score in a fraction of a second.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from guardrail.data import Record
from guardrail.labels import CANONICAL, check_label
from guardrail.spans import Span

THRESHOLD = 0.5
"""Share of a span's characters that must be covered for it to count (found, or correct)."""

TYPED_OK: dict[str, frozenset[str]] = {
    "ADDRESS": frozenset({"ADDRESS", "LOCATION"}),
    "LOCATION": frozenset({"LOCATION", "ADDRESS"}),
}
"""Gold label -> predicted labels accepted for typed recall (others: the same label only)."""

GOLD_FIELDS = ("gold", "gold_chars", "leaked_chars", "found_partial", "found_exact", "found_typed")
"""Counts over gold spans."""
PRED_FIELDS = ("pred", "tp", "fp", "ignored_unlabeled", "tp_typed")
"""Counts over predicted spans shown in per-label rows (``neutral`` cannot happen there)."""


def typed_ok(gold_label: str) -> frozenset[str]:
    """Predicted labels that count for typed recall of a gold span labelled ``gold_label``."""
    return TYPED_OK.get(gold_label, frozenset((gold_label,)))


@dataclass(slots=True)
class Counts:
    """Span and character counts behind one row of the report."""

    gold: int = 0
    """Gold spans with at least one non-whitespace character."""
    gold_chars: int = 0
    """Their non-whitespace characters."""
    leaked_chars: int = 0
    """Of those, characters no predicted span covers."""
    found_partial: int = 0
    found_exact: int = 0
    found_typed: int = 0
    pred: int = 0
    """Predicted spans with at least one non-whitespace character."""
    tp: int = 0
    fp: int = 0
    neutral: int = 0
    """Correct only thanks to don't-care gold (labels outside ``labels``): neither tp nor fp."""
    ignored_unlabeled: int = 0
    """Wrong, but of a label the gold set never annotates (``ignore_unlabeled``)."""
    tp_typed: int = 0
    """Predictions >= 50% inside gold spans whose label accepts theirs (per-label rows only)."""

    def metrics(self) -> dict[str, Any]:
        """Leakage, recalls, precision, F1 and F2 (None where undefined), plus the counts."""
        r = ratio(self.found_partial, self.gold)
        p = ratio(self.tp, self.tp + self.fp)
        return {
            "leakage": ratio(self.leaked_chars, self.gold_chars),
            "recall_partial": r,
            "recall_exact": ratio(self.found_exact, self.gold),
            "recall_typed": ratio(self.found_typed, self.gold),
            "precision": p,
            "f1": fbeta(p, r, 1.0),
            "f2": fbeta(p, r, 2.0),
            "counts": asdict(self),
        }


def ratio(num: int, den: int) -> float | None:
    """``num / den``, None when ``den`` is 0."""
    return None if den == 0 else num / den


def fbeta(p: float | None, r: float | None, beta: float) -> float | None:
    """F-beta of precision and recall; None when either is undefined, 0 when both are 0."""
    if p is None or r is None:
        return None
    if p == 0 and r == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r)


def _is_edge_junk(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Boundaries after stripping whitespace and punctuation (Unicode P*) at both edges."""
    while start < end and _is_edge_junk(text[start]):
        start += 1
    while end > start and _is_edge_junk(text[end - 1]):
        end -= 1
    return start, end


# str.isspace() is true only below U+3001 (tests check the whole code space): a lookup table.
_WS_LIMIT = 0x3001
_IS_WS = np.array([chr(i).isspace() for i in range(_WS_LIMIT)], dtype=bool)


def nonspace_mask(text: str) -> np.ndarray:
    """``[n]`` bool: which characters of ``text`` are not whitespace (``str.isspace``)."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return ~(_IS_WS[np.minimum(codes, _WS_LIMIT - 1)] & (codes < _WS_LIMIT))


def _prefix(mask: np.ndarray) -> np.ndarray:
    """``[n + 1]`` prefix sums of a ``[n]`` bool mask: chars in ``[a, b)`` = ``p[b] - p[a]``."""
    out = np.zeros(mask.size + 1, dtype=np.int64)
    np.cumsum(mask, out=out[1:])
    return out


def _union(n: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``[n]`` bool: characters inside any ``[starts[i], ends[i])`` (all ``0 <= start < end <= n``)."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    return np.cumsum(delta[:n]) > 0


@dataclass(slots=True)
class _SpanTable:
    """Spans of a whole corpus as arrays, offsets into the concatenated texts."""

    start: np.ndarray
    """``[k]`` int64."""
    end: np.ndarray
    """``[k]`` int64."""
    label: np.ndarray
    """``[k]`` int64 index into the label vocabulary."""

    def select(self, keep: np.ndarray) -> _SpanTable:
        return _SpanTable(self.start[keep], self.end[keep], self.label[keep])


class _Corpus:
    """All texts joined end to end, with prefix sums over their non-whitespace characters.

    Spans are clipped to their own text before they are shifted, so none crosses into the next one and
    a character count over any span is two lookups; a union of spans is one pass over the corpus.
    """

    def __init__(self, texts: Sequence[str]):
        self.text = "".join(texts)
        self.n = len(self.text)
        self.offsets = np.cumsum([0, *(len(t) for t in texts)])
        self.nonws = nonspace_mask(self.text)
        self.nonws_prefix = _prefix(self.nonws)

    def chars(self, spans: _SpanTable) -> np.ndarray:
        """``[k]`` non-whitespace characters of each span."""
        return self.nonws_prefix[spans.end] - self.nonws_prefix[spans.start]

    def inside(self, spans: _SpanTable, region: _SpanTable) -> np.ndarray:
        """``[k]`` non-whitespace characters of each span that lie inside the union of ``region``."""
        if region.start.size == 0 or spans.start.size == 0:
            return np.zeros(spans.start.size, dtype=np.int64)
        p = _prefix(_union(self.n, region.start, region.end) & self.nonws)
        return p[spans.end] - p[spans.start]


def _table(corpus: _Corpus, per_text: Sequence[Iterable[Span]], vocab: dict[str, int]) -> _SpanTable:
    """Clip each text's spans to it, shift them into the corpus, drop the empty ones."""
    rows = []
    for i, spans in enumerate(per_text):
        lo, n = int(corpus.offsets[i]), int(corpus.offsets[i + 1] - corpus.offsets[i])
        for s in spans:
            a, b = max(0, s.start), min(n, s.end)
            if a < b:
                rows.append((lo + a, lo + b, vocab.setdefault(s.label, len(vocab))))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return _SpanTable(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


def _reaches(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """``part >= THRESHOLD * whole``, elementwise."""
    return part >= THRESHOLD * whole


def _per_label(label: np.ndarray, size: int, **values: np.ndarray) -> dict[str, np.ndarray]:
    """Sum each ``[k]`` array of ``values`` by ``label``: ``{name: [size]}``."""
    return {k: np.bincount(label, weights=v, minlength=size).astype(np.int64) for k, v in values.items()}


def _gold_counts(
    corpus: _Corpus, gold: _SpanTable, preds: _SpanTable, labels: list[str]
) -> dict[str, np.ndarray]:
    """``[k]`` per gold span: its characters, the covered ones, and whether it is found (3 ways)."""
    nch = corpus.chars(gold)
    covered = corpus.inside(gold, preds)
    typed = np.zeros_like(nch)
    for lab in np.unique(gold.label):
        of_lab = gold.label == lab
        accepted = [i for i, x in enumerate(labels) if x in typed_ok(labels[lab])]
        typed[of_lab] = corpus.inside(gold.select(of_lab), preds.select(np.isin(preds.label, accepted)))
    t = corpus.text
    exact = {strip_span(t, a, b) for a, b in zip(preds.start.tolist(), preds.end.tolist())}
    found_exact = [strip_span(t, a, b) in exact for a, b in zip(gold.start.tolist(), gold.end.tolist())]
    return {
        "gold": np.ones_like(nch),
        "gold_chars": nch,
        "leaked_chars": nch - covered,
        "found_partial": _reaches(covered, nch),
        "found_exact": np.array(found_exact, dtype=bool),
        "found_typed": _reaches(typed, nch),
    }


def _pred_verdicts(
    corpus: _Corpus, gold: _SpanTable, preds: _SpanTable, considered: np.ndarray, labels: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[k]`` bools per prediction: correct on considered gold, on any gold, on gold accepting its label."""
    nch = corpus.chars(preds)
    good = corpus.inside(preds, gold.select(considered))
    dont_care = corpus.inside(preds, gold.select(~considered))
    compat = np.zeros_like(nch)
    for lab in np.unique(preds.label):
        of_lab = preds.label == lab
        accepting = [i for i, x in enumerate(labels) if labels[lab] in typed_ok(x)]
        compat[of_lab] = corpus.inside(preds.select(of_lab), gold.select(np.isin(gold.label, accepting)))
    return _reaches(good, nch), _reaches(good + dont_care, nch), _reaches(compat, nch)


def _counts(values: Mapping[str, Any]) -> Counts:
    return Counts(**{k: int(v) for k, v in values.items()})


def _label_order(label: str) -> tuple[int, str]:
    return (CANONICAL.index(label) if label in CANONICAL else len(CANONICAL), label)


def _per_label_row(
    gold_counts: Counts, pred_counts: Counts, unannotated: bool, in_overall: bool
) -> dict[str, Any]:
    mg, mp = gold_counts.metrics(), pred_counts.metrics()
    row = {k: mg[k] for k in ("leakage", "recall_partial", "recall_exact", "recall_typed")}
    # a label the set never annotates could only score 100%: n/a rather than a flattering number
    row["precision"] = None if unannotated else mp["precision"]
    row["precision_typed"] = (
        None if unannotated else ratio(pred_counts.tp_typed, pred_counts.tp + pred_counts.fp)
    )
    row["f1"] = fbeta(row["precision"], row["recall_partial"], 1.0)
    row["f2"] = fbeta(row["precision"], row["recall_partial"], 2.0)
    row["in_overall"] = in_overall
    row["counts"] = {k: mg["counts"][k] for k in GOLD_FIELDS} | {k: mp["counts"][k] for k in PRED_FIELDS}
    return row


def score(
    gold: Sequence[Record],
    pred: Mapping[str, Sequence[Span]],
    labels: Iterable[str] | None = None,
    ignore_unlabeled: bool = False,
    annotated: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Score predicted spans (by record id) against gold records; the report of score.py's ``score()``.

    ``labels``: gold labels counted in the overall row (None: all); gold spans of other labels are
    don't-care for precision. ``ignore_unlabeled``: a wrong prediction of a label the gold set never
    annotates (``annotated``, default: the labels found in ``gold``) is ignored, not a false positive.
    A record with no entry in ``pred`` counts as predicting nothing (``missing_pred_ids``).
    """
    considered = None if labels is None else frozenset(check_label(x) for x in labels)
    if annotated is None:
        annotated = sorted({s.label for r in gold for s in r.spans})
    else:
        annotated = list(annotated)
    accepted = set().union(*(typed_ok(x) for x in annotated))
    pred_labels = {s.label for spans in pred.values() for s in spans}
    unannotated = {x for x in pred_labels if x not in accepted} if ignore_unlabeled else set()

    vocab: dict[str, int] = {}
    corpus = _Corpus([r.text for r in gold])
    gold_spans = _table(corpus, [r.spans for r in gold], vocab)
    preds = _table(corpus, [pred.get(r.id, ()) for r in gold], vocab)
    preds = preds.select(corpus.chars(preds) > 0)  # a prediction of only whitespace is dropped
    names = list(vocab)
    in_labels = np.array([considered is None or x in considered for x in names], dtype=bool)
    skip = np.array([x in unannotated for x in names], dtype=bool)[preds.label]

    g = _gold_counts(corpus, gold_spans, preds, names)
    real = g["gold_chars"] > 0  # a gold span of only whitespace is not counted (its chars still are gold)
    g = {k: v[real] for k, v in g.items()}
    gold_label = gold_spans.label[real]
    per_gold = _per_label(gold_label, len(names), **g)
    overall_gold = {k: v[in_labels[gold_label]].sum() for k, v in g.items()}

    good, anygold, typed = _pred_verdicts(corpus, gold_spans, preds, in_labels[gold_spans.label], names)
    # overall: don't-care gold makes a prediction neutral; per label: gold of any label counts
    overall_pred = {
        "pred": good.size,
        "tp": good.sum(),
        "fp": (~anygold & ~skip).sum(),
        "neutral": (~good & anygold & ~skip).sum(),
        "ignored_unlabeled": (~good & skip).sum(),
    }
    per_pred = _per_label(
        preds.label,
        len(names),
        pred=np.ones_like(good),
        tp=anygold,
        fp=~anygold & ~skip,
        ignored_unlabeled=~anygold & skip,
        tp_typed=typed,
    )

    per_label = {}
    shown = [i for i in range(len(names)) if per_gold["gold"][i] or per_pred["pred"][i]]
    for i in sorted(shown, key=lambda i: _label_order(names[i])):
        lab = names[i]
        per_label[lab] = _per_label_row(
            _counts({k: v[i] for k, v in per_gold.items()}),
            _counts({k: v[i] for k, v in per_pred.items()}),
            unannotated=ignore_unlabeled and lab not in accepted,
            in_overall=considered is None or lab in considered,
        )
    overall = _counts(overall_gold | overall_pred).metrics()
    del overall["counts"]["tp_typed"]  # typed precision is a per-label notion
    gold_ids = {r.id for r in gold}
    return {
        "overall": overall,
        "per_label": per_label,
        "labels_considered": "all" if considered is None else sorted(considered, key=CANONICAL.index),
        "gold_annotates": annotated,
        "ignore_unlabeled_types": ignore_unlabeled,
        "records": len(gold),
        "missing_pred_ids": sum(r.id not in pred for r in gold),
        "extra_pred_ids": len(set(pred) - gold_ids),
        "typed_ok": {k: sorted(v) for k, v in TYPED_OK.items()},
        "threshold": THRESHOLD,
    }



def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:5.1f}"


TABLE_COLUMNS = ("label", "gold", "leak%", "R_part", "R_exact", "R_typed", "pred", "P", "P_typed", "F1", "F2")


def _table_row(name: str, m: Mapping[str, Any]) -> list[str]:
    c = m["counts"]
    rates = ("leakage", "recall_partial", "recall_exact", "recall_typed")
    return [
        name,
        str(c["gold"]),
        *(_pct(m[k]) for k in rates),
        str(c["pred"]),
        _pct(m["precision"]),
        _pct(m.get("precision_typed")),
        _pct(m["f1"]),
        _pct(m["f2"]),
    ]


def format_table(report: Mapping[str, Any], title: str = "") -> str:
    """A fixed-width text table of a :func:`score` report: OVERALL, then one row per label."""
    rows = [_table_row("OVERALL", report["overall"])]
    for lab, m in report["per_label"].items():
        rows.append(_table_row(lab if m["in_overall"] else f"{lab} *", m))
    widths = [max(len(r[i]) for r in [list(TABLE_COLUMNS), *rows]) for i in range(len(TABLE_COLUMNS))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths)))

    considered = report["labels_considered"]
    c = report["overall"]["counts"]
    head = [
        f"labels considered: {considered if considered == 'all' else ', '.join(considered)}"
        f" | gold annotates: {', '.join(report['gold_annotates'])}"
        f" | ignore-unlabeled-types: {report['ignore_unlabeled_types']}",
        f"records {report['records']} (missing preds {report['missing_pred_ids']},"
        f" extra preds {report['extra_pred_ids']}) | pred spans {c['pred']}: tp {c['tp']}, fp {c['fp']},"
        f" neutral {c['neutral']}, ignored {c['ignored_unlabeled']}",
    ]
    body = [line(TABLE_COLUMNS), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    foot = "(* = label outside `labels`: shown, not in OVERALL; per-label P = predictions carrying that label)"
    return "\n".join(([title] if title else []) + head + body + [foot])
