"""What the SAE latents mean, and which of them are behind a detection.

``guardrail features --bundle B`` runs the bundle's backbone and SAE over generated (labelled,
synthetic) records and writes ``<bundle>/features.json``: for every latent, how often it fires, which
gold label the tokens it fires on carry, its top-activating tokens, and a short human-readable
description made from those ("PERSON 94%: «Silva», «Dupont», «Kowalski»"); the latents the bundle's
SAE probe reads also keep a few top-activating contexts. Only synthetic data is used, so the file
holds no real person's data.

:func:`explain` turns a probe span into its top latents with activation and contribution.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from guardrail.bundle import FEATURES_FILE, Bundle, BundleError, render_card
from guardrail.labels import PROBE_CLASSES
from guardrail.probe import AnyProbe
from guardrail.spans import Feature, Span

TOP_TOKENS = 5
TOP_CONTEXTS = 3
CONTEXT_CHARS = 30


@dataclass(slots=True)
class _LatentStats:
    """Running statistics of one latent over the corpus."""

    fired: int = 0
    by_label: np.ndarray = field(default_factory=lambda: np.zeros(len(PROBE_CLASSES)))
    """Summed activation per gold class of the tokens it fired on."""
    top: list[tuple[float, int, str, str]] = field(default_factory=list)
    """Min-heap of (activation, tie-breaker, token surface, context snippet)."""


def describe(by_label: np.ndarray, tokens: Sequence[str], classes: Sequence[str] = PROBE_CLASSES) -> str:
    """``"PERSON 64%, non-PII 20%: «Silva», «Dupont»"``: the gold classes that carry most of the
    latent's activation mass (the top one, and a second with at least 15%), then its top-activating
    tokens. ``non-PII`` is the ``O`` class."""
    total = float(by_label.sum())
    if total <= 0:
        return "never fired"
    order = np.argsort(-by_label)
    shares = [(classes[i], by_label[i] / total) for i in order[:2]]
    parts = [shares[0]] + [x for x in shares[1:] if x[1] >= 0.15]
    head = ", ".join(f"{'non-PII' if c == 'O' else c} {p:.0%}" for c, p in parts)
    toks = ", ".join(f"«{t}»" for t in tokens[:TOP_TOKENS])
    return f"{head}: {toks}" if toks else head


def _snippet(text: str, start: int, end: int) -> str:
    left = text[max(0, start - CONTEXT_CHARS) : start]
    right = text[end : end + CONTEXT_CHARS]
    return " ".join(f"{left}[{text[start:end]}]{right}".split())


def build(bundle_name: str | Path, n_records: int = 3000, seed: int = 11) -> dict[str, object]:
    """Compute ``features.json`` for a bundle with an SAE and write it into the bundle."""
    from guardrail import synth
    from guardrail.backbone import Backbone, pick_dtype
    from guardrail.train import residual_chunks, token_labels

    bundle = Bundle.load(bundle_name)
    sae = bundle.sae
    if sae is None:
        raise BundleError(f"bundle {bundle.folder.name} has no SAE (run `guardrail train-sae` first)")
    ref = bundle.manifest.backbone
    backbone = Backbone.for_bundle(bundle)
    sae.to(dtype=pick_dtype(torch.device("cpu")))  # as inference runs it (see Guardrail.load)
    keep_contexts = {int(j) for p in bundle.probes.values() if p.latents is not None for j in p.latents}
    stats = [_LatentStats() for _ in range(sae.cfg.d_sae)]
    records = synth.generate(n_records, seed=seed, family="train")
    t0, tokens, tie = time.perf_counter(), 0, 0
    with torch.inference_mode(), tqdm(total=len(records), desc="features", unit="rec") as bar:
        for part, encs, resids in residual_chunks(backbone, records):
            for rec, enc, x in zip(part, encs, resids, strict=True):
                if not len(x):
                    continue
                acts, idx = sae._topk(sae.pre_acts(x))
                acts, idx = acts.float().numpy(), idx.numpy()
                gold = token_labels(rec.text, enc.offsets, rec.spans, PROBE_CLASSES)
                tokens += len(x)
                for t in range(len(x)):
                    a, j = acts[t], idx[t]
                    s, e = (int(v) for v in enc.offsets[t])
                    surface = rec.text[s:e].strip()
                    for act, lat in zip(a[a > 0], j[a > 0], strict=True):
                        st = stats[int(lat)]
                        st.fired += 1
                        st.by_label[gold[t]] += act
                        tie += 1
                        item = (float(act), tie, surface, _snippet(rec.text, s, e))
                        if len(st.top) < 20:
                            heapq.heappush(st.top, item)
                        elif act > st.top[0][0]:
                            heapq.heapreplace(st.top, item)
            bar.update(len(part))
    latents: dict[str, object] = {}
    for j, st in enumerate(stats):
        ranked = sorted(st.top, reverse=True)
        distinct = list(dict.fromkeys(t for _, _, t, _ in ranked if t))
        entry: dict[str, object] = {
            "description": describe(st.by_label, distinct),
            "fires_per_1k_tokens": round(1000 * st.fired / max(tokens, 1), 3),
            "label_mass": {PROBE_CLASSES[i]: round(float(v), 2) for i, v in enumerate(st.by_label) if v > 0},
            "top_tokens": distinct[:TOP_TOKENS],
        }
        if j in keep_contexts:
            entry["top_contexts"] = [c for _, _, _, c in ranked[:TOP_CONTEXTS]]
        latents[str(j)] = entry
    doc = {
        "format_version": 1,
        "sae": {"d_sae": sae.cfg.d_sae, "k": sae.cfg.k, "layer": ref.layer},
        "corpus": f"guardrail.synth, {n_records} records (family train, seed {seed}), {tokens} tokens",
        "seconds": round(time.perf_counter() - t0, 1),
        "latents": latents,
    }
    (bundle.folder / FEATURES_FILE).write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
    card = render_card(bundle.manifest, bundle.folder)  # its top-latent table quotes the descriptions
    (bundle.folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return doc


def explain(
    probe: AnyProbe,
    feats: torch.Tensor,
    offsets: np.ndarray,
    span: Span,
    descriptions: dict[int, str],
    top: int = 5,
) -> tuple[Feature, ...]:
    """The ``top`` latents behind a probe span: contributions to the span's label summed over its
    tokens and grouped by latent (a latent read at several token offsets counts once), largest first.

    ``feats`` are the probe's features ``[T, F]`` of the span's text, ``offsets`` its tokens' ``[T, 2]``.
    """
    if probe.latents is None or span.label not in probe.classes:
        return ()
    rows = np.nonzero((offsets[:, 0] < span.end) & (offsets[:, 1] > span.start))[0]
    if len(rows) == 0:
        return ()
    cls = probe.classes.index(span.label)
    contrib = probe.contributions(feats[rows], cls).sum(0)  # [F]
    n_lat = len(probe.latents)
    by_latent = contrib.reshape(len(probe.context), n_lat).sum(0)
    own = feats[rows][:, probe.context.index(0) * n_lat : (probe.context.index(0) + 1) * n_lat]
    peak = own.max(0).values if 0 in probe.context else torch.zeros(n_lat)
    order = torch.argsort(by_latent, descending=True)[:top]
    out = []
    for i in order.tolist():
        if float(by_latent[i]) <= 0:
            break
        lat = int(probe.latents[i])
        out.append(Feature(lat, float(peak[i]), float(by_latent[i]), descriptions.get(lat, "")))
    return tuple(out)
