"""Which probe ``detect`` uses by default: every probe of a bundle on the whole dev suite, as ``detect``
runs (probe with Presidio's patterns), scored like ``benchmarks/devsuite.py``; the rule picks one.

    python benchmarks/probe_choice.py [--bundle gemma-3-270m] [--write]

Rule: the highest mean span F1 over the sets of the dev suite (each set counts once: English requests,
tweets, web text, Chinese, Japanese; privacy labels, types a set never annotates ignored). Prints a
table; ``--write`` stores it in the manifest (``metrics.probe_choice``, shown in the model card) and sets
``default_probe`` to the winner. The dev sets decide between finished probes only: nothing is fitted or
calibrated on them.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from guardrail.bench import suite
from guardrail.bench.datasets import dev_sets
from guardrail.pipeline import Guardrail

RULE = (
    "highest mean span F1 over the dev suite's sets (privacy labels, types a set never annotates ignored), "
    "as detect runs (probe with patterns)"
)


def evaluate(bundle: str, probes: list[str] | None = None) -> list[dict[str, Any]]:
    sets = dev_sets()
    base = Guardrail.load(bundle)
    rows = []
    for name in probes or sorted(base.bundle.probes):
        g = Guardrail(base.bundle, base.backbone, probe=name, patterns=True)
        preds = {}
        for ds in sets:
            found = g.detect([r.text for r in ds.records])
            preds[ds.name] = {r.id: spans for r, spans in zip(ds.records, found, strict=True)}
        res = suite.evaluate(sets, preds)
        f1s = [float(res["sets"][d.name]["f1"] or 0.0) for d in sets]
        rows.append(
            {
                "probe": name,
                "sets": res["sets"],
                "languages": res["languages"],
                "mean_f1": round(sum(f1s) / len(f1s), 4),
            }
        )
        print(name, rows[-1]["mean_f1"], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="gemma-3-270m")
    ap.add_argument("--probes", default=None, help="comma list (default: every probe of the bundle)")
    ap.add_argument("--write", action="store_true", help="store the table and the winner in the bundle")
    a = ap.parse_args(argv)
    rows = evaluate(a.bundle, a.probes.split(",") if a.probes else None)
    best = max(rows, key=lambda r: r["mean_f1"])
    names = list(rows[0]["sets"])
    print("| probe | " + " | ".join(names) + " | mean F1 |")
    print("|---|" + "---:|" * (len(names) + 1))
    for r in rows:
        cells = [
            f"{100 * (r['sets'][n]['leakage'] or 0):.1f}% / {r['sets'][n]['f1'] or 0:.3f}" for n in names
        ]
        print(f"| {r['probe']} | " + " | ".join(cells) + f" | {r['mean_f1']:.3f} |")
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
