"""Which probe ``detect`` uses by default, at which operating point: every probe of a bundle, with every
calibration rule training stored for it (``guardrail.train.CALIBRATIONS``), on the whole dev suite as
``detect`` runs (probe with Presidio's patterns), scored like ``benchmarks/devsuite.py``; the rule picks one.

    python benchmarks/probe_choice.py [--bundle gemma-3-270m] [--probes raw,sae-lr] [--write] [--stored]

Rule: the highest mean span F1.5 over the sets of the dev suite (each set counts once: English requests,
tweets, web text, Chinese, Japanese; privacy labels, types a set never annotates ignored). F1.5 counts
recall (leakage) 1.5 times as much as precision: a guardrail that leaks is worse than one that redacts a
word too many, but a guardrail that redacts everything is no product either; a near tie (within
:data:`TIE`) goes to the candidate that leaks least. Prints a table; ``--write``
stores it in the manifest (``metrics.probe_choice``, shown in the model card), sets ``default_probe`` to
the winner and gives each probe the thresholds of its best rule. The dev sets decide between finished
probes and stored rules only: nothing is fitted or calibrated on them.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from guardrail.bench import suite
from guardrail.bench.datasets import dev_sets
from guardrail.pipeline import Guardrail

BETA = 1.5
TIE = 0.005
"""Candidates within this much of the best mean F-beta are a tie: the one that leaks least wins."""
RULE = (
    f"highest mean span F{BETA:g} over the dev suite's sets (privacy labels, types a set never annotates "
    f"ignored), as detect runs (probe with patterns), over every probe and stored calibration rule; within "
    f"{TIE} of the best, the lowest mean leakage"
)


def mean_leakage(row: dict[str, Any]) -> float:
    vals = [float(v["leakage"] or 0.0) for v in row["sets"].values()]
    return sum(vals) / len(vals)


def pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The winner by :data:`RULE`."""
    top = max(r["mean_fbeta"] for r in rows)
    return min((r for r in rows if r["mean_fbeta"] >= top - TIE), key=mean_leakage)


def fbeta(row: dict[str, Any], beta: float = BETA) -> float:
    p, r = float(row["precision"] or 0.0), float(row["recall_partial"] or 0.0)
    return 0.0 if p + r == 0 else (1 + beta**2) * p * r / (beta**2 * p + r)


def _rules(g: Guardrail) -> dict[str, dict[str, Any]]:
    stored = g.bundle.manifest.probes[g.probe_name].metrics.get("calibrations")
    if isinstance(stored, dict) and stored:
        return stored
    return {"shipped": {"thresholds": dict(g.thresholds), "lone_min_score": g.lone_min_score}}


def evaluate(bundle: str, probes: list[str] | None = None) -> list[dict[str, Any]]:
    sets = dev_sets()
    base = Guardrail.load(bundle)
    rows = []
    for name in probes or sorted(base.bundle.probes):
        g = Guardrail(base.bundle, base.backbone, probe=name, patterns=True)
        # one forward pass per set; each rule only re-decodes the scores, exactly as detect would
        prepared = {ds.name: g.prepare([r.text for r in ds.records]) for ds in sets}
        for rule, alt in _rules(g).items():
            suite.use_rule(g, alt)
            preds = {}
            for ds in sets:
                found = g.spans_of(prepared[ds.name])
                preds[ds.name] = {r.id: spans for r, spans in zip(ds.records, found, strict=True)}
            res = suite.evaluate(sets, preds)
            scores = [fbeta(res["sets"][d.name]) for d in sets]
            f1s = [float(res["sets"][d.name]["f1"] or 0.0) for d in sets]
            rows.append(
                {
                    "probe": name,
                    "rule": rule,
                    "sets": res["sets"],
                    "languages": res["languages"],
                    "mean_f1": round(sum(f1s) / len(f1s), 4),
                    "mean_fbeta": round(sum(scores) / len(scores), 4),
                }
            )
            print(name, rule, rows[-1]["mean_fbeta"], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="gemma-3-270m")
    ap.add_argument("--probes", default=None, help="comma list (default: every probe of the bundle)")
    ap.add_argument("--write", action="store_true", help="store the table and the winner in the bundle")
    ap.add_argument(
        "--stored", action="store_true", help="decide on the rows a previous --write stored (no new run)"
    )
    a = ap.parse_args(argv)
    if a.stored:
        from guardrail.bundle import Bundle, find

        rows = Bundle.load(find(a.bundle)).manifest.metrics["probe_choice"]["rows"]
    else:
        rows = evaluate(a.bundle, a.probes.split(",") if a.probes else None)
    best = pick(rows)
    names = list(rows[0]["sets"])
    print("| probe @ rule | " + " | ".join(names) + f" | mean F1 | mean F{BETA:g} |")
    print("|---|" + "---:|" * (len(names) + 2))
    for r in rows:
        cells = [
            f"{100 * (r['sets'][n]['leakage'] or 0):.1f}% / {r['sets'][n]['precision'] or 0:.2f}"
            for n in names
        ]
        print(
            f"| {r['probe']} @ {r['rule']} | "
            + " | ".join(cells)
            + f" | {r['mean_f1']:.3f} | {r['mean_fbeta']:.3f} |"
        )
    print(f"winner by the rule: {best['probe']} @ {best['rule']}")
    if a.write:
        from guardrail.bundle import Bundle, find

        bundle = Bundle.load(find(a.bundle))
        m = bundle.manifest
        for probe in {r["probe"] for r in rows}:  # each probe at its own best rule
            own = pick([r for r in rows if r["probe"] == probe])
            alt = m.probes[probe].metrics.get("calibrations", {}).get(own["rule"])
            if isinstance(alt, dict):
                e = m.probes[probe]
                e.thresholds = dict(alt["thresholds"])
                e.lone_min_score = float(alt["lone_min_score"])
                e.lone_min_unspaced = alt.get("lone_min_unspaced")
                e.thresholds_unspaced = alt.get("thresholds_unspaced")
                e.thresholds_grow = alt.get("thresholds_grow")
                e.metrics["calib_probe_only"] = alt["calib_probe_only"]
                e.metrics["calibration"] = own["rule"]
        m.metrics["probe_choice"] = {
            "rule": RULE,
            "command": f"python benchmarks/probe_choice.py --bundle {a.bundle} --write "
            f"({time.strftime('%Y-%m-%d')})",
            "rows": rows,
            "verdict": f"{best['probe']} @ {best['rule']} wins by the rule "
            f"(mean F{BETA:g} {best['mean_fbeta']:.3f}, mean F1 {best['mean_f1']:.3f}).",
        }
        m.default_probe = best["probe"]
        bundle.save_manifest()
        print(f"wrote metrics.probe_choice and default_probe={best['probe']} into {bundle.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
