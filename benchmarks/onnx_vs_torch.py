"""ONNX Runtime (the backbone in int8, or the whole exported probe graph) against torch for the same work,
in one run: ``detect`` over presidio_synth texts.

    python benchmarks/onnx_vs_torch.py [--bundle gemma-3-270m] [--limit 400] [--rounds 2] [--out DIR]

Each runtime runs in its own fresh process (spawned one after the other, ``--rounds`` times alternating, so
that a noisy shared machine hurts both alike), loads the bundle, exports/loads its model outside the timed
part, warms every length bucket, then times ``detect`` over the texts; the best round counts. Quality on the
same texts (privacy labels) and span agreement with torch come from the package's own scorer. Writes
``results.json`` and ``README.md`` into ``--out`` (default ``benchmarks/results/<date>-onnx-vs-torch-<cpu>``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

from guardrail.bench.runner import cpu_model
from guardrail.data import read_jsonl
from guardrail.labels import PRIVACY
from guardrail.metrics import score
from guardrail.spans import Span

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GUARDRAIL_SHARED", REPO.parent / "shared")) / "data"
CONFIGS = {
    "torch-auto": {"runtime": "torch", "dtype": "auto"},
    "torch-fp32": {"runtime": "torch", "dtype": "fp32"},
    "onnx-int8": {"runtime": "onnx-int8", "dtype": "auto"},
    "onnx-graph": {"runtime": "onnx", "export": "fp32"},
    "onnx-graph-int8": {"runtime": "onnx", "export": "int8"},
}
"""``torch-auto`` is the default (bf16 on a CPU with AVX512-BF16/AMX, else fp32). ``onnx-int8``: the backbone
in ONNX Runtime, the probe in torch; ``onnx-graph``: the whole probe as one graph (``guardrail export-onnx``,
exported once into the cache, outside the timed part), fp32 or with int8 MatMul weights."""


def _worker(bundle: str, cfg: dict[str, str], texts: list[str], q: mp.Queue) -> None:
    import torch

    from guardrail.pipeline import Guardrail

    cfg = dict(cfg)
    if precision := cfg.pop("export", None):
        from guardrail.backbone import cache_dir
        from guardrail.export import export

        folder = cache_dir() / "onnx-graph" / f"{Path(bundle).name}-{precision}"
        try:
            Guardrail.load(bundle, device="cpu", runtime="onnx", onnx_dir=folder, patterns=False)
        except Exception:  # not exported yet, or from other weights: export again
            export(Guardrail.load(bundle, device="cpu", dtype="fp32"), folder, int8=precision == "int8")
        cfg["onnx_dir"] = str(folder)
    g = Guardrail.load(bundle, device="cpu", **cfg).warmup()
    t0 = time.perf_counter()
    spans = g.detect(texts)
    dt = time.perf_counter() - t0
    q.put(
        {
            "seconds": dt,
            "tokens": sum(len(e.ids) for e in g.backbone.encode(texts)),
            "dtype": str(g.backbone.dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "spans": [[s.to_dict() for s in x] for x in spans],
        }
    )


def _run(*args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="gemma-3-270m")
    ap.add_argument("--limit", type=int, default=400, help="first N records of presidio_synth_v2")
    ap.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds; the best time per runtime counts"
    )
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--out", default=None, help="results folder")
    a = ap.parse_args(argv)

    records = read_jsonl(DATA / "presidio_synth_v2.jsonl")[: a.limit]
    texts = [r.text for r in records]
    chars = sum(len(t) for t in texts)
    names = a.configs.split(",")
    load = os.getloadavg()
    print(f"{len(texts)} texts, {chars} chars; load average before: {load[0]:.1f}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names:
            runs[n].append(_run(a.bundle, CONFIGS[n], texts))
            print(f"round {r + 1} {n}: {chars / runs[n][-1]['seconds']:.0f} chars/s", flush=True)

    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "bundle": a.bundle,
        "records": len(texts),
        "chars": chars,
        "rounds": a.rounds,
        "command": "python benchmarks/onnx_vs_torch.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    ref = runs[names[0]][0]["spans"]

    def pred(spans: list[list[dict]]) -> dict[str, list[Span]]:
        return {
            rec.id: [Span(d["start"], d["end"], d["label"], d["score"]) for d in s]
            for rec, s in zip(records, spans, strict=True)
        }

    for n in names:
        best = min(runs[n], key=lambda x: x["seconds"])
        q = score(records, pred(best["spans"]), labels=PRIVACY)["overall"]
        result[n] = {
            "dtype": best["dtype"],
            "threads": best["threads"],
            "best_seconds": best["seconds"],
            "all_seconds": [round(x["seconds"], 3) for x in runs[n]],
            "chars_per_s": chars / best["seconds"],
            "tokens_per_s": best["tokens"] / best["seconds"],
            "peak_rss_mb": best["peak_rss_mb"],
            "leakage": q["leakage"],
            "recall_partial": q["recall_partial"],
            "precision": q["precision"],
            "same_spans_as_first": sum(x == y for x, y in zip(best["spans"], ref, strict=True)) / len(ref),
        }
    first = names[0]
    for n in names[1:]:
        result[f"{n}_over_{first}"] = result[n]["chars_per_s"] / result[first]["chars_per_s"]

    lines = [
        f"# ONNX Runtime vs torch, same work, one run ({result['date']})",
        "",
        f"`detect` over the first {len(texts)} presidio_synth_v2 texts ({chars} chars), bundle `{a.bundle}`, "
        f"CPU: {result['machine']['cpu']}, {os.cpu_count()} cores (load average "
        f"{load[0]:.1f} before, {result['machine']['load_average_after'][0]:.1f} after). Best of {a.rounds} "
        "alternating rounds, each in a fresh process after warm-up.",
        "",
        "| runtime | dtype | chars/s (best) | every round (s) | tokens/s | leakage | recall | precision "
        "| = 1st spans | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        x = result[n]
        every = ", ".join(f"{t:.1f}" for t in x["all_seconds"])
        lines.append(
            f"| {n} | {x['dtype']} | {x['chars_per_s']:.0f} | {every} "
            f"| {x['tokens_per_s']:.0f} "
            f"| {100 * x['leakage']:.1f}% "
            f"| {x['recall_partial']:.3f} | {x['precision']:.3f} | {100 * x['same_spans_as_first']:.1f}% "
            f"| {x['peak_rss_mb']:.0f} |"
        )
    ratios = [f"{n} **{result[f'{n}_over_{first}']:.2f}x**" for n in names[1:]]
    lines += [
        "",
        f"Speed against {first} (chars/s): " + "; ".join(ratios) + ". Peak MB of a config that exported its "
        "ONNX model in the same process (its first round) includes the export.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")[:40]
    out = (
        Path(a.out)
        if a.out
        else REPO / "benchmarks" / "results" / f"{time.strftime('%Y-%m-%d')}-onnx-vs-torch-{cpu}"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "README.md").write_text(report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
