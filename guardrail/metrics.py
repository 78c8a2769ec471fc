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

Records are scored in batches: a batch's texts are joined and reduced to prefix sums over their
non-whitespace characters, so a span's counts are array lookups and every step is a numpy operation over
all spans of the batch; 1,500 records score in a few tens of milliseconds.
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

BATCH_RECORDS = 4096
"""Records scored together: vectorised across a batch, memory bounded by one batch's text."""

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
    """``[n + 1]`` prefix sums of a ``[n]`` bool mask: ``True`` s in ``[a, b)`` = ``p[b] - p[a]``."""
    out = np.zeros(mask.size + 1, dtype=np.int64)
    np.cumsum(mask, out=out[1:])
    return out


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint intervals, sorted, covering the union of ``[starts[i], ends[i])``: ``([m], [m])``."""
    order = np.argsort(starts, kind="stable")
    s, reach = starts[order], np.maximum.accumulate(ends[order])
    opens = np.ones(s.size, dtype=bool)
    opens[1:] = s[1:] > reach[:-1]
    last = np.append(np.flatnonzero(opens)[1:] - 1, s.size - 1)
    return s[opens], reach[last]


@dataclass(slots=True)
class _SpanTable:
    """Spans of a batch of records as arrays, offsets into the batch's concatenated texts."""

    start: np.ndarray
    """``[k]`` int64."""
    end: np.ndarray
    """``[k]`` int64."""
    label: np.ndarray
    """``[k]`` int64 index into the label vocabulary."""

    def select(self, keep: np.ndarray) -> _SpanTable:
        return _SpanTable(self.start[keep], self.end[keep], self.label[keep])

    def with_labels(self, wanted: Iterable[int]) -> _SpanTable:
        return self.select(np.isin(self.label, list(wanted)))


class _Corpus:
    """A batch of texts joined end to end, with prefix sums over their non-whitespace characters.

    Spans are clipped to their own text before they are shifted, so none crosses into the next one;
    counting a span's characters is two lookups, and counting those inside a union of spans is a
    merge of the union plus a binary search per span. No array per union: memory stays ~ the text.
    """

    def __init__(self, texts: Sequence[str]):
        self.text = "".join(texts)
        self.offsets = np.cumsum([0, *(len(t) for t in texts)])
        self.prefix = _prefix(nonspace_mask(self.text))

    def table(self, per_text: Sequence[Iterable[Span]], vocab: Mapping[str, int]) -> _SpanTable:
        """Spans of each text, clipped to it and shifted into the corpus; empty ones dropped."""
        rows = []
        for i, spans in enumerate(per_text):
            lo, n = int(self.offsets[i]), int(self.offsets[i + 1] - self.offsets[i])
            for s in spans:
                a, b = max(0, s.start), min(n, s.end)
                if a < b:
                    rows.append((lo + a, lo + b, vocab[s.label]))
        arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return _SpanTable(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())

    def chars(self, spans: _SpanTable) -> np.ndarray:
        """``[k]`` non-whitespace characters of each span."""
        return self.prefix[spans.end] - self.prefix[spans.start]

    def inside(self, spans: _SpanTable, region: _SpanTable) -> np.ndarray:
        """``[k]`` non-whitespace characters of each span that lie inside the union of ``region``."""
        if region.start.size == 0 or spans.start.size == 0:
            return np.zeros(spans.start.size, dtype=np.int64)
        s, e = _merge(region.start, region.end)
        before = np.concatenate(([0], np.cumsum(self.prefix[e] - self.prefix[s])))

        def upto(x: np.ndarray) -> np.ndarray:  # union's non-ws chars before position x
            k = np.searchsorted(s, x, side="left")  # intervals starting before x; all but the last end by x
            j = np.maximum(k - 1, 0)
            last = self.prefix[np.minimum(x, e[j])] - self.prefix[s[j]]
            return np.where(k > 0, before[j] + last, 0)

        return upto(spans.end) - upto(spans.start)


def _reaches(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """``part >= THRESHOLD * whole``, elementwise."""
    return part >= THRESHOLD * whole


def _by_label(label: np.ndarray, size: int, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum each ``[k]`` array of ``values`` by ``label``: ``{name: [size]}``."""
    return {k: np.bincount(label, weights=v, minlength=size).astype(np.int64) for k, v in values.items()}


@dataclass(slots=True)
class _Vocab:
    """The labels met in gold and predictions, and what each implies, as index arrays."""

    names: list[str]
    index: dict[str, int]
    considered: np.ndarray
    """``[V]`` bool: gold of this label counts in the overall row."""
    unannotated: np.ndarray
    """``[V]`` bool: a wrong prediction of this label is ignored (``ignore_unlabeled``)."""

    def typed_ok(self, gold_label: int) -> list[int]:
        return [i for i, x in enumerate(self.names) if x in typed_ok(self.names[gold_label])]

    def accepting(self, pred_label: int) -> list[int]:
        return [i for i, x in enumerate(self.names) if self.names[pred_label] in typed_ok(x)]


def _gold_counts(c: _Corpus, gold: _SpanTable, preds: _SpanTable, v: _Vocab) -> dict[str, np.ndarray]:
    """``[k]`` per gold span: its characters, the uncovered ones, and whether it is found (3 ways)."""
    nch = c.chars(gold)
    covered = c.inside(gold, preds)
    typed = np.zeros_like(nch)
    for lab in np.unique(gold.label):
        of_lab = gold.label == lab
        typed[of_lab] = c.inside(gold.select(of_lab), preds.with_labels(v.typed_ok(lab)))
    t = c.text
    exact = {strip_span(t, a, b) for a, b in zip(preds.start.tolist(), preds.end.tolist(), strict=True)}
    found_exact = [
        strip_span(t, a, b) in exact for a, b in zip(gold.start.tolist(), gold.end.tolist(), strict=True)
    ]
    return {
        "gold": np.ones_like(nch),
        "gold_chars": nch,
        "leaked_chars": nch - covered,
        "found_partial": _reaches(covered, nch),
        "found_exact": np.array(found_exact, dtype=bool),
        "found_typed": _reaches(typed, nch),
    }


def _pred_hits(
    c: _Corpus, gold: _SpanTable, preds: _SpanTable, v: _Vocab
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[k]`` bools per prediction: >= 50% inside considered gold, any gold, gold accepting its label."""
    considered = v.considered[gold.label]
    nch = c.chars(preds)
    good = c.inside(preds, gold.select(considered))
    dont_care = c.inside(preds, gold.select(~considered))
    compat = np.zeros_like(nch)
    for lab in np.unique(preds.label):
        of_lab = preds.label == lab
        compat[of_lab] = c.inside(preds.select(of_lab), gold.with_labels(v.accepting(lab)))
    return _reaches(good, nch), _reaches(good + dont_care, nch), _reaches(compat, nch)


@dataclass(slots=True)
class _Tally:
    """Counts summed so far: overall, and ``[V]`` arrays per gold label and per predicted label."""

    overall: dict[str, int]
    per_gold: dict[str, np.ndarray]
    per_pred: dict[str, np.ndarray]

    def add(self, other: _Tally) -> None:
        for mine, theirs in ((self.overall, other.overall), (self.per_gold, other.per_gold)):
            for k, x in theirs.items():
                mine[k] = mine[k] + x if k in mine else x
        for k, x in other.per_pred.items():
            self.per_pred[k] = self.per_pred[k] + x if k in self.per_pred else x


def _score_batch(gold: Sequence[Record], pred: Mapping[str, Sequence[Span]], v: _Vocab) -> _Tally:
    c = _Corpus([r.text for r in gold])
    gold_spans = c.table([r.spans for r in gold], v.index)
    preds = c.table([pred.get(r.id, ()) for r in gold], v.index)
    preds = preds.select(c.chars(preds) > 0)  # a prediction of only whitespace is dropped

    g = _gold_counts(c, gold_spans, preds, v)
    real = g["gold_chars"] > 0  # a gold span of only whitespace is not counted (still gold for precision)
    g = {k: x[real] for k, x in g.items()}
    gold_label = gold_spans.label[real]
    overall = {k: int(x[v.considered[gold_label]].sum()) for k, x in g.items()}

    good, anygold, typed = _pred_hits(c, gold_spans, preds, v)
    skip = v.unannotated[preds.label]
    # overall: don't-care gold makes a prediction neutral; per label: gold of any label counts
    overall |= {
        "pred": int(good.size),
        "tp": int(good.sum()),
        "fp": int((~anygold & ~skip).sum()),
        "neutral": int((~good & anygold & ~skip).sum()),
        "ignored_unlabeled": int((~good & skip).sum()),
    }
    per_pred = {
        "pred": np.ones_like(good),
        "tp": anygold,
        "fp": ~anygold & ~skip,
        "ignored_unlabeled": ~anygold & skip,
        "tp_typed": typed,
    }
    size = len(v.names)
    return _Tally(overall, _by_label(gold_label, size, g), _by_label(preds.label, size, per_pred))


def _counts(values: Mapping[str, Any]) -> Counts:
    return Counts(**{k: int(x) for k, x in values.items()})


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
    annotated = sorted({s.label for r in gold for s in r.spans}) if annotated is None else list(annotated)
    accepted = set().union(*(typed_ok(x) for x in annotated))
    names = sorted({s.label for r in gold for s in r.spans} | {s.label for x in pred.values() for s in x})
    v = _Vocab(
        names,
        {x: i for i, x in enumerate(names)},
        np.array([considered is None or x in considered for x in names], dtype=bool),
        np.array([ignore_unlabeled and x not in accepted for x in names], dtype=bool),
    )

    tally = _Tally({}, {}, {})
    for i in range(0, len(gold), BATCH_RECORDS):
        tally.add(_score_batch(gold[i : i + BATCH_RECORDS], pred, v))
    if not tally.overall:
        tally.add(_score_batch([], pred, v))

    per_label = {}
    shown = [i for i, x in enumerate(names) if tally.per_gold["gold"][i] or tally.per_pred["pred"][i]]
    for i in sorted(shown, key=lambda i: _label_order(names[i])):
        per_label[names[i]] = _per_label_row(
            _counts({k: x[i] for k, x in tally.per_gold.items()}),
            _counts({k: x[i] for k, x in tally.per_pred.items()}),
            unannotated=bool(v.unannotated[i]),
            in_overall=bool(v.considered[i]),
        )
    overall = _counts(tally.overall).metrics()
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
        "typed_ok": {k: sorted(ok) for k, ok in TYPED_OK.items()},
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
        return "  ".join(
            x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))
        )

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
    foot = (
        "(* = label outside `labels`: shown, not in OVERALL; per-label P = predictions carrying that label)"
    )
    return "\n".join(([title] if title else []) + head + body + [foot])
