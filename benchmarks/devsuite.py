"""Quality on the whole real dev suite, per set and per language, beside Presidio + spaCy in the same run.

    python benchmarks/devsuite.py [--bundle NAME_OR_PATH[:PROBE[@CALIBRATION]][~RUNTIME]]... [--no-presidio]
                                  [--limit N] [--json-out FILE] [--md-out FILE] [--update-card]

Every set of ``guardrail.bench.datasets.DEV_SETS`` (``../shared/data`` or ``$GUARDRAIL_DEV_DATA``) is read
with ``detect`` (probe + patterns, the bundle's reported labels) and scored with the reference rule
(privacy labels, ``--ignore-unlabeled-types``). This is the table model settings are chosen by: never one
set alone. Quality only; speed is ``benchmarks/core.py``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from guardrail.bench import runner, suite
from guardrail.bench.datasets import Dataset, dev_sets
from guardrail.spans import Span


def split_runtime(spec: str) -> tuple[str, str | None]:
    """``NAME[:PROBE[@RULE]][~RUNTIME]`` -> the spec without its runtime, and the runtime (None: the
    bundle's own, as ``auto`` picks it here)."""
    from guardrail.backbone import RUNTIMES

    head, sep, runtime = spec.rpartition("~")
    if sep and runtime in (*RUNTIMES, "auto"):
        return head, runtime
    return spec, None


def _detect_guardrail(
    spec: str, sets: list[Dataset], batch_size: int | None
) -> dict[str, dict[str, list[Span]]]:
    from guardrail.pipeline import Guardrail

    spec, runtime = split_runtime(spec)
    name, _, rest = spec.partition(":")
    probe, _, calibration = rest.partition("@")
    g = Guardrail.load(name, probe=probe or None, runtime=runtime)
    if calibration:  # another calibration rule the training stored beside the shipped one
        alt = g.bundle.manifest.probes[g.probe_name].metrics["calibrations"][calibration]
        suite.use_rule(g, alt)
    out = {}
    for d in sets:
        spans = g.detect([r.text for r in d.records], batch_size=batch_size)
        out[d.name] = {r.id: s for r, s in zip(d.records, spans, strict=True)}
    return out


def _detect_presidio(sets: list[Dataset]) -> dict[str, dict[str, list[Span]]]:
    from guardrail.baselines import PresidioNER
    from guardrail.labels import PRIVACY

    ner = PresidioNER(labels=PRIVACY)
    out = {}
    for d in sets:
        spans = ner.detect_batch([r.text for r in d.records])
        out[d.name] = {r.id: s for r, s in zip(d.records, spans, strict=True)}
    return out


def run(
    bundles: list[str], presidio: bool, limit: int | None, batch_size: int | None = None
) -> dict[str, Any]:
    """Scores of every method on every set: ``{"methods": {name: suite.evaluate(...)}, ...}``."""
    sets = dev_sets(limit)
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for spec in bundles:
        t0 = time.perf_counter()
        results[spec] = suite.evaluate(sets, _detect_guardrail(spec, sets, batch_size))
        seconds[spec] = round(time.perf_counter() - t0, 1)
        print(f"{spec}: {seconds[spec]} s", file=sys.stderr, flush=True)
    if presidio:
        t0 = time.perf_counter()
        results["presidio_spacy_sm"] = suite.evaluate(sets, _detect_presidio(sets))
        seconds["presidio_spacy_sm"] = round(time.perf_counter() - t0, 1)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": runner.machine(),
        "limit": limit,
        "records": {d.name: len(d.records) for d in sets},
        "seconds": seconds,
        "methods": results,
        "table": suite.table(results, sets),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--bundle",
        action="append",
        default=[],
        metavar="NAME[:PROBE[@RULE]][~RUNTIME]",
        help="bundle name or folder, optionally with a probe, a stored calibration rule (recall, f2, "
        "f1: guardrail.train.CALIBRATIONS) and a backbone runtime (torch, torch-int8, onnx-int8; default: "
        "what auto picks here) (repeatable; default gemma-3-270m)",
    )
    ap.add_argument("--no-presidio", action="store_true", help="leave out Presidio + spaCy")
    ap.add_argument("--limit", type=int, default=None, help="first N records of each set")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--md-out", default=None, help="write the table as Markdown")
    ap.add_argument(
        "--update-card",
        action="store_true",
        help="store each bundle's rows (and Presidio's) in its manifest as metrics.dev_suite",
    )
    a = ap.parse_args(argv)
    bundles = a.bundle or ["gemma-3-270m"]
    res = run(bundles, not a.no_presidio, a.limit, a.batch_size)
    print(res["table"])
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if a.md_out:
        Path(a.md_out).write_text(res["table"] + "\n", encoding="utf-8")
    if a.update_card:
        from guardrail.bundle import Bundle

        presidio = ["presidio_spacy_sm"] if "presidio_spacy_sm" in res["methods"] else []

        def bundle_of(spec: str) -> str:
            return split_runtime(spec)[0].partition(":")[0]

        for name in dict.fromkeys(map(bundle_of, bundles)):  # each bundle, once
            b = Bundle.load(name)
            mine = [spec for spec in bundles if bundle_of(spec) == name]
            b.manifest.metrics["dev_suite"] = {
                "date": res["date"],
                "command": "python benchmarks/devsuite.py " + " ".join(f"--bundle {x}" for x in bundles),
                "records": res["records"],
                "machine": res["machine"],
                "rows": {k: res["methods"][k] for k in mine + presidio},
            }
            b.save_manifest()
    return 0


if __name__ == "__main__":
    sys.exit(main())
