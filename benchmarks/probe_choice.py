"""Which probe ``detect`` uses by default: every probe of a bundle on both dev sets, as ``detect`` runs
(probe with Presidio's patterns), scored with the package's metrics; the rule picks one.

    python benchmarks/probe_choice.py [--bundle gemma-3-270m] [--write]

Rule: the highest mean of span F1 on presidio_synth_v2 (privacy labels) and on wnut17 (its own labels).
Prints a table; ``--write`` stores it in the manifest (``metrics.probe_choice``, shown in the model card)
and sets ``default_probe`` to the winner. The dev sets decide between finished probes only: nothing is
fitted or calibrated on them.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from guardrail.bench.datasets import dev_sets
from guardrail.bench.runner import quality
from guardrail.labels import PRIVACY
from guardrail.pipeline import Guardrail

RULE = (
    "highest mean of span F1 on presidio_synth_v2 (privacy labels) and wnut17 (its own labels), "
    "as detect runs (probe with patterns)"
)


def evaluate(bundle: str, probes: list[str] | None = None) -> list[dict[str, Any]]:
    synth, wnut = dev_sets()
    base = Guardrail.load(bundle)
    rows = []
    for name in probes or sorted(base.bundle.probes):
        g = Guardrail(base.bundle, base.backbone, probe=name, patterns=True)
        out: dict[str, Any] = {"probe": name}
        for ds, labels, key in ((synth, list(PRIVACY), ""), (wnut, wnut.annotates, "wnut_")):
            found = g.detect([r.text for r in ds.records], labels=labels)
            preds = {r.id: spans for r, spans in zip(ds.records, found, strict=True)}
            rep = quality(ds, ds.records, preds, labels)
            o = rep["overall"]
            if key:
                out |= {
                    "wnut_person_recall": round(float(rep["per_label"]["PERSON"]["recall_partial"]), 4),
                    "wnut_precision": round(float(o["precision"] or 0), 4),
                    "wnut_f1": round(float(o["f1"] or 0), 4),
                }
            else:
                out |= {
                    k: round(float(o[k] or 0), 4) for k in ("leakage", "recall_partial", "precision", "f1")
                }
        out["mean_f1"] = round((out["f1"] + out["wnut_f1"]) / 2, 4)
        rows.append(out)
        print(out, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="gemma-3-270m")
    ap.add_argument("--probes", default=None, help="comma list (default: every probe of the bundle)")
    ap.add_argument("--write", action="store_true", help="store the table and the winner in the bundle")
    a = ap.parse_args(argv)
    rows = evaluate(a.bundle, a.probes.split(",") if a.probes else None)
    best = max(rows, key=lambda r: r["mean_f1"])
    head = "probe | synth leakage | recall | precision | F1 | wnut PERSON recall | wnut precision | wnut F1"
    print(f"| {head} | mean F1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['probe']} | {100 * r['leakage']:.1f}% | {r['recall_partial']:.3f} | "
            f"{r['precision']:.3f} | {r['f1']:.3f} | {r['wnut_person_recall']:.3f} | "
            f"{r['wnut_precision']:.3f} | {r['wnut_f1']:.3f} | {r['mean_f1']:.3f} |"
        )
    print(f"winner by the rule: {best['probe']}")
    if a.write:
        from guardrail.bundle import Bundle, find

        bundle = Bundle.load(find(a.bundle))
        m = bundle.manifest
        m.metrics["probe_choice"] = {
            "rule": RULE,
            "command": f"python benchmarks/probe_choice.py --bundle {a.bundle} --write "
            f"({time.strftime('%Y-%m-%d')})",
            "rows": rows,
            "verdict": f"{best['probe']} wins by the rule (mean F1 {best['mean_f1']:.3f}; "
            + ", ".join(f"{r['probe']} {r['mean_f1']:.3f}" for r in rows if r is not best)
            + ").",
        }
        m.default_probe = best["probe"]
        bundle.save_manifest()
        print(f"wrote metrics.probe_choice and default_probe={best['probe']} into {bundle.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
