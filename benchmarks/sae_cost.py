"""What the SAE stage costs next to the truncated forward pass (issue: "SAE encode + probe + span
decoding add <= 15% to the forward at batch 8 x 128 tokens").

    python benchmarks/sae_cost.py [--bundle gemma-3-270m] [--probes sae-lr,sae-rf,raw] [--reps 30]

Times, per batch of 8 windows of 128 tokens (BOS + 127 text tokens), the median over ``--reps`` runs
after warm-up: the backbone's truncated forward; for each probe its feature step (SAE encode of the
selected latents for SAE probes, RMS normalisation for the raw one), its head, and span decoding of
the 8 texts. Prints a table and writes JSON with ``--json-out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from guardrail.backbone import WINDOW
from guardrail.pipeline import Guardrail, collapse
from guardrail.spans import decode

BATCH = 8


def _median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up of this exact shape
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _texts(guard: Guardrail, n_tokens: int) -> tuple[list[str], list[np.ndarray]]:
    """BATCH texts of at least ``n_tokens`` tokens (synthetic agent data, joined), cut to ``n_tokens``."""
    from guardrail import synth

    recs = synth.generate(BATCH * 12, seed=5, family="calib")
    texts = [" ".join(r.text for r in recs[i::BATCH]) for i in range(BATCH)]
    enc = guard.backbone.encode(texts)
    out_texts, rows = [], []
    for t, e in zip(texts, enc, strict=True):
        if len(e.ids) < n_tokens:
            raise SystemExit("sample texts too short for a full window")
        out_texts.append(t[: int(e.offsets[n_tokens - 1, 1])])
        rows.append(e.ids[:n_tokens])
    return out_texts, rows


def run(bundle: str, probes: list[str], reps: int) -> dict[str, object]:
    guard = Guardrail.load(bundle, patterns=False)
    torch.set_num_threads(torch.get_num_threads())
    n_tok = WINDOW - 1
    texts, rows = _texts(guard, n_tok)
    offsets = [e.offsets for e in guard.backbone.encode(texts)]
    guard.backbone.warmup(BATCH)
    with torch.inference_mode():
        resids = guard.backbone.forward_windows(rows)
        forward_ms = _median_ms(lambda: guard.backbone.forward_windows(rows), reps)
        result: dict[str, object] = {
            "bundle": bundle,
            "batch": f"{BATCH} x {WINDOW} tokens (BOS + {n_tok})",
            "forward_ms": round(forward_ms, 2),
            "backbone_dtype": str(guard.backbone.dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(),
            "machine": {
                "cpus": torch.get_num_threads(),
                "processor": platform.processor() or platform.machine(),
            },
            "probes": {},
        }
        keep = list(guard.labels)
        for name in probes:
            if name not in guard.bundle.probes:
                print(f"skip {name}: not in the bundle")
                continue
            probe = guard.bundle.probes[name]
            entry = guard.bundle.manifest.probes[name]
            feats = probe.features_batch(resids)
            cat = torch.cat(feats)
            probs = [p.numpy() for p in probe.probs(cat).split([len(f) for f in feats])]

            def spans(probs: list[np.ndarray] = probs, entry=entry, probe=probe) -> None:
                for text, off, p in zip(texts, offsets, probs, strict=True):
                    cp, classes = collapse(p, list(probe.classes), keep)
                    decode(text, off, cp, classes, entry.thresholds, lone_min_score=entry.lone_min_score)

            f_ms = _median_ms(lambda probe=probe: probe.features_batch(resids), reps)
            h_ms = _median_ms(lambda probe=probe, cat=cat: probe.probs(cat), reps)
            d_ms = _median_ms(spans, reps)
            total = f_ms + h_ms + d_ms
            result["probes"][name] = {  # type: ignore[index]
                "features_ms": round(f_ms, 2),
                "head_ms": round(h_ms, 2),
                "decode_ms": round(d_ms, 2),
                "added_ms": round(total, 2),
                "added_share_of_forward": round(total / forward_ms, 4),
                "head": entry.head,
                "features": entry.features,
            }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="gemma-3-270m")
    ap.add_argument("--probes", default="raw,sae-lr,sae-rf")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--note", default=None, help="a word on the machine's state, kept with the figures")
    ap.add_argument(
        "--write",
        action="store_true",
        help="store the figures in the bundle manifest (metrics.sae_cost) and card",
    )
    args = ap.parse_args()
    res = run(args.bundle, args.probes.split(","), args.reps)
    res["note"] = args.note or f"load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}"
    print(f"truncated forward, {res['batch']}: {res['forward_ms']} ms ({res['backbone_dtype']})")
    print("| probe | features ms | head ms | decode ms | added ms | added / forward |")
    print("|---|---|---|---|---|---|")
    for name, r in res["probes"].items():  # type: ignore[union-attr]
        print(
            f"| {name} | {r['features_ms']} | {r['head_ms']} | {r['decode_ms']} | {r['added_ms']} | "
            f"{100 * r['added_share_of_forward']:.1f}% |"
        )
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    if args.write:
        from guardrail.bundle import Bundle, find

        bundle = Bundle.load(find(args.bundle))
        bundle.manifest.metrics["sae_cost"] = res
        bundle.save_manifest()
        print(f"wrote metrics.sae_cost into {bundle.folder}")


if __name__ == "__main__":
    main()
