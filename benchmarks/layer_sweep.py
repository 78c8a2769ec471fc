"""Which layer and context to read: probe quality on the shifted synthetic ``calib`` family, per layer.

    python benchmarks/layer_sweep.py [--layers 2,3,4,6] [--n-train 4000] [--n-calib 1500]

One backbone pass records every layer asked for; a probe is fitted per (layer, context) on ``train``
and scored on ``calib`` (held-out templates), span level, probe only. Evaluation sets are not used:
the layer is a training choice, and peeking at the dev sets to pick it would overfit them.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from guardrail import synth
from guardrail.backbone import Backbone
from guardrail.labels import PRIVACY, PROBE_CLASSES
from guardrail.metrics import score
from guardrail.probe import fit
from guardrail.train import (
    Activations,
    calibrate,
    design_matrix,
    predict,
    residual_chunks,
    spans_of,
    token_labels,
)


def collect_layers(bb: Backbone, records, layers: list[int], desc: str) -> dict[int, Activations]:
    """Residuals of several layers from one pass (the backbone is loaded up to the highest)."""
    store: dict[int, list[torch.Tensor]] = {x: [] for x in layers}
    offs, labs = [], []
    t0 = time.perf_counter()
    with tqdm(total=len(records), desc=desc, unit="rec") as bar:
        for part, enc, res in residual_chunks(bb, records, layers=layers):
            for r, e, x in zip(part, enc, res, strict=True):
                for j, layer in enumerate(layers):
                    store[layer].append(x[:, j].to(torch.bfloat16))
                offs.append(e.offsets)
                labs.append(token_labels(r.text, e.offsets, r.spans, PROBE_CLASSES))
            bar.update(len(part))
    dt = time.perf_counter() - t0
    n = sum(len(y) for y in labs)
    return {x: Activations(store[x], offs, labs, dt, n) for x in layers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--layers", default="2,3,4,6")
    ap.add_argument("--contexts", default="0;-1,0,1")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-calib", type=int, default=1500)
    ap.add_argument("--c", type=float, default=0.5)
    a = ap.parse_args(argv)
    layers = [int(x) for x in a.layers.split(",")]
    contexts = [tuple(int(v) for v in c.split(",")) for c in a.contexts.split(";")]
    train = synth.generate(a.n_train, seed=0, family="train")
    calib = synth.generate(a.n_calib, seed=1, family="calib")
    bb = Backbone.load(a.model, layer=max(layers))
    tr = collect_layers(bb, train, layers, "train")
    ca = collect_layers(bb, calib, layers, "calib")
    keep = [*PRIVACY, "PASSWORD"]
    print(f"{'layer':>5} {'context':>10} {'leak%':>6} {'R':>6} {'P':>6} {'F1':>6} {'fit s':>6}")
    for x in layers:
        for ctx in contexts:
            xs, ys = design_matrix(tr[x], ctx, o_keep=0.35)
            t0 = time.perf_counter()
            probe = fit(xs, ys, context=ctx, c=a.c, max_iter=200)
            fs = time.perf_counter() - t0
            cp = predict(probe, ca[x])
            thr = calibrate(cp, ca[x].labels, keep, 0.99)
            rep = score(calib, spans_of(calib, ca[x], cp, keep, thr, 0.0), labels=PRIVACY)["overall"]
            thr5 = {k: 0.5 for k in keep}
            rep5 = score(calib, spans_of(calib, ca[x], cp, keep, thr5, 0.0), labels=PRIVACY)["overall"]
            print(
                f"{x:5d} {ctx!s:>10} {100 * rep['leakage']:6.1f} {rep['recall_partial']:6.3f}"
                f" {rep['precision']:6.3f} {rep['f1']:6.3f} {fs:6.0f}   @0.5: R {rep5['recall_partial']:.3f}"
                f" P {rep5['precision']:.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
