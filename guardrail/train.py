"""Training: data -> activations -> probe fit -> thresholds -> bundle (``guardrail train``).

The data is the synthetic generator plus, by default, real human-annotated corpora
(:mod:`guardrail.realdata`, ``../shared/data/train``; never the evaluation sets). Thresholds are set
on a shifted calibration set: the generator's ``calib`` family (held-out templates) and the corpora's
held-out slices. In-distribution validation is near-separable and would pick too strict a point.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from guardrail.backbone import DEFAULT_MODEL, Backbone, Encoded
from guardrail.bundle import (
    DEFAULT_BUNDLE,
    MANIFEST,
    BackboneRef,
    Bundle,
    BundleError,
    Manifest,
    ProbeEntry,
    probes_root,
)
from guardrail.data import Record
from guardrail.labels import PRIVACY, PROBE_CLASSES
from guardrail.pipeline import collapse
from guardrail.probe import AnyProbe, Probe, fit, fit_mlp, rms_normalise, sae_features, token_features
from guardrail.spans import Span, decode, is_unspaced, is_unspaced_token

if TYPE_CHECKING:
    from guardrail.pipeline import Guardrail
    from guardrail.prune import Pruning
    from guardrail.sae import Sae

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TrainConfig:
    """Everything ``guardrail train`` can set."""

    out: Path = field(default_factory=lambda: probes_root() / DEFAULT_BUNDLE)
    model: str = DEFAULT_MODEL
    layer: int = 3
    """Residual stream after this many blocks: 3, the default bundle's; 6 leaks less and is more precise on
    every language of the real dev suite, at about three quarters of the speed (README, "The cost rule")."""
    n_train: int = 8000
    n_calib: int = 2000
    seed: int = 0
    context: tuple[int, ...] = (-2, -1, 0, 1, 2)
    """Token offsets the probe reads around each token (two each side: a name in Chinese or Japanese is
    several one-character tokens; chosen on the dev suite over -1..1)."""
    o_keep: float | None = None
    """Share of ``O`` tokens kept for fitting (they outnumber PII tokens ~5:1). None: 0.35 for the linear
    head (scikit-learn's cost scales with it); every one for the MLP, which draws a fresh share each epoch
    and gained on the dev suite from seeing them all (mean F1.5 0.859 against 0.849 at 0.35)."""
    c: float = 0.5
    recall_target: float = 0.99
    detect_labels: tuple[str, ...] = (*PRIVACY, "PASSWORD")
    batch_size: int = 16
    max_iter: int = 300
    runtime: str = "torch"
    """Backbone runtime for the activations; fit on what inference will run (see backbone.RUNTIMES)."""
    mlp_keep: int | None = None
    """Prune each block's MLP to this many neurons before anything is read (:func:`prune_for`); None:
    the whole model."""
    prune_records: int = 1500
    """Records (70% synthetic of another seed, 30% real corpora, or general text without them) that
    rank the MLP neurons."""
    mlp_refit: bool = True
    """Refit the pruned blocks' down projections by least squares (:mod:`guardrail.prune`)."""
    n_real: int = 16000
    """Records drawn from the real corpora (:mod:`guardrail.realdata`); 0: synthetic only."""
    n_real_calib: int = 2000
    """Held-out real records added to the calibration set."""
    real_mix: dict[str, float] | None = None
    """Weight per corpus (None: ``realdata.DEFAULT_MIX``)."""
    real_dir: Path | None = None
    """Folder of the corpora (None: ``realdata.train_data_dir()``)."""
    calibration: str = "f2"
    """How a label's threshold is set on the calibration tokens (:data:`CALIBRATIONS`): ``recall`` (the
    lowest that keeps ``recall_target`` of them) or ``f2`` / ``f1.5`` / ``f1`` (the best token F-beta).
    Every rule is stored beside the chosen one; ``benchmarks/probe_choice.py`` picks by the dev suite."""
    head: str = "mlp"
    """``mlp`` (one hidden layer, torch) or ``linear`` (logistic regression, scikit-learn)."""
    hidden: int = 512
    """Hidden units of the ``mlp`` head."""
    epochs: int = 4
    """Passes over the training tokens of the ``mlp`` head."""
    repeat: dict[str, int] = field(default_factory=lambda: {"LOCATION": 2})
    """Times per epoch the ``mlp`` head sees the tokens of a class (a class weight). LOCATION twice:
    places were the most missed class on real text (Chinese and Japanese place names, countries used as
    adjectives). On the same cached activations and calibration set, at the same rule, it raised the dev
    suite's mean F1.5 from 0.868 to 0.874 (best rules: 0.868 -> 0.880), with less leakage on tweets, web
    text and Chinese; doubling the Chinese records gave 0.868 (0.877 at its best rule, with tweets'
    precision down to 0.77) and the Chinese and Japanese ones 0.867 (README, "Quality on real text")."""


HEADS: tuple[str, ...] = ("linear", "mlp")
"""Heads ``guardrail train`` fits on the raw residual (the forest reads SAE codes: ``train-sae-probe``)."""


@dataclass(slots=True)
class TrainingData:
    """The records a probe is fitted and calibrated on, and where they came from."""

    train: list[Record]
    calib: list[Record]
    annotates: dict[str, frozenset[str]]
    """Labels each real corpus annotates (for :func:`guardrail.realdata.trust_mask`)."""
    card: dict[str, object]
    """The data summary for the manifest (sources, licences, counts)."""


def training_data(
    n_synth: int,
    n_synth_calib: int,
    seed: int,
    n_real: int = 0,
    n_real_calib: int = 0,
    real_mix: dict[str, float] | None = None,
    real_dir: Path | None = None,
) -> TrainingData:
    """Synthetic records (train and ``calib`` families) plus real corpora records (their training and
    held-out slices), shuffled together."""
    import random

    from guardrail import realdata, synth

    train = synth.generate(n_synth, seed=seed, family="train") if n_synth else []
    calib = synth.generate(n_synth_calib, seed=seed + 1, family="calib") if n_synth_calib else []
    card: dict[str, object] = {
        "synthetic": {
            "generator": "guardrail.synth",
            "train_records": len(train),
            "calib_records": len(calib),
        }
    }
    annotates: dict[str, frozenset[str]] = {}
    if n_real or n_real_calib:
        sources = realdata.load_sources(real_dir)
        mix = real_mix if real_mix is not None else realdata.DEFAULT_MIX
        real = realdata.draw(sources, n_real, mix, seed=seed)
        real_calib = realdata.draw(sources, n_real_calib, mix, seed=seed, calib=True)
        annotates = {s.name: s.annotates for s in sources}
        used = realdata.counts_by_source(real)
        card["real"] = {
            "mix": {s.name: mix.get(s.name, 0.0) for s in sources},
            "train_records": len(real),
            "calib_records": len(real_calib),
            "calib_slice": f"1 record in {realdata.CALIB_EVERY} of each corpus, by a hash of its id",
            "masking": realdata.MASKING,
            "conventions": realdata.CONVENTIONS,
            "sources": realdata.card_sources(sources, used),
        }
        train = train + real
        calib = calib + real_calib
        random.Random(f"train-mix/{seed}").shuffle(train)
    return TrainingData(train, calib, annotates, card)


def token_labels(text: str, offsets: np.ndarray, spans: Sequence[Span], classes: Sequence[str]) -> np.ndarray:
    """Class index per token ``[T]``: a token takes the label of a gold span its non-space part overlaps."""
    cover = np.zeros(len(text) + 1, dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    for s in spans:
        cover[s.start : s.end] = index.get(s.label, 0)
    out = np.zeros(len(offsets), dtype=np.int64)
    for t, (a, b) in enumerate(offsets):
        while a < b and text[a].isspace():  # SentencePiece tokens carry their leading space
            a += 1
        if a < b:
            seg = cover[a:b]
            hit = seg[seg > 0]
            if hit.size:
                out[t] = np.bincount(hit).argmax()
    return out


@dataclass(slots=True)
class Activations:
    """Residuals of a corpus with per-token labels, one entry per record."""

    resid: list[torch.Tensor]
    """``[T_i, d]`` in bf16 (half the memory of float32; on CPU the backbone computed them in bf16)."""
    offsets: list[np.ndarray]
    labels: list[np.ndarray]
    seconds: float
    tokens: int


def residual_chunks(
    backbone: Backbone,
    records: Iterable[Record],
    chunk: int = 256,
    batch_size: int = 16,
    layers: Sequence[int] | None = None,
) -> Iterator[tuple[list[Record], list[Encoded], list[torch.Tensor]]]:
    """Records a chunk at a time with their encodings and residuals: the one loop that feeds training
    (probe fitting, SAE streaming, layer sweeps), so the corpus never has to be encoded at once."""
    it = iter(records)
    while part := list(islice(it, chunk)):
        enc = backbone.encode([r.text for r in part])
        yield part, enc, backbone.residuals(enc, batch_size=batch_size, layers=layers)


def record_labels(record: Record, offsets: np.ndarray, annotates: Mapping[str, frozenset[str]]) -> np.ndarray:
    """Class index per token of ``record``; a record of a real corpus (``extra["corpus"]`` in
    ``annotates``) gets ``realdata.MASKED`` on the tokens :func:`guardrail.realdata.trust_mask` does not
    trust as ``O``."""
    from guardrail.realdata import MASKED, trust_mask

    y = token_labels(record.text, offsets, record.spans, PROBE_CLASSES)
    corpus = record.extra.get("corpus")
    if corpus in annotates:
        y[~trust_mask(record.text, record.spans, offsets, annotates[corpus])] = MASKED
    return y


def collect(
    backbone: Backbone,
    records: Sequence[Record],
    desc: str,
    batch_size: int = 16,
    annotates: Mapping[str, frozenset[str]] | None = None,
) -> Activations:
    """Run the backbone over records in chunks, with a progress bar.

    Labels as :func:`record_labels` gives them (masked where a real corpus is not to be trusted).
    """
    t0 = time.perf_counter()
    resid, offs, labs = [], [], []
    annotates = annotates or {}
    with tqdm(total=len(records), desc=desc, unit="rec") as bar:
        for part, enc, res in residual_chunks(backbone, records, batch_size=batch_size):
            for r, e, x in zip(part, enc, res, strict=True):
                resid.append(x.to(torch.bfloat16))  # halves memory; values were bf16 anyway on CPU
                offs.append(e.offsets)
                labs.append(record_labels(r, e.offsets, annotates))
            bar.update(len(part))
    n = sum(len(x) for x in labs)
    return Activations(resid, offs, labs, time.perf_counter() - t0, n)


def design_matrix(
    acts: Activations, context: Sequence[int], o_keep: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stack token features ``[N, F]`` and labels ``[N]``, keeping a random ``o_keep`` share of ``O``."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for r, y in zip(acts.resid, acts.labels, strict=True):
        if len(y) == 0:
            continue
        keep = (y > 0) | ((y == 0) & (rng.random(len(y)) < o_keep))  # masked tokens (-1) never
        xs.append(token_features(r.float(), context)[torch.from_numpy(keep)].numpy())
        ys.append(y[keep])
    return np.concatenate(xs), np.concatenate(ys)


def token_rows(
    acts: Activations, context: Sequence[int]
) -> tuple[Callable[[torch.Tensor], torch.Tensor], np.ndarray]:
    """Every token of ``acts`` as a row source for :func:`guardrail.probe.fit_mlp`: ``rows(idx)`` gives
    the features of tokens ``idx`` (their residual and neighbours', as :func:`token_features` builds them
    text by text), read from one flat bf16 table as needed; and the tokens' labels."""
    sizes = torch.tensor([len(y) for y in acts.labels], dtype=torch.long)
    d = acts.resid[0].shape[1] if acts.resid else 0
    flat = torch.cat([*acts.resid, torch.zeros(1, d, dtype=torch.bfloat16)])
    n = len(flat) - 1
    starts = torch.cumsum(sizes, 0) - sizes
    pos = torch.arange(n) - torch.repeat_interleave(starts, sizes, output_size=n)
    length = torch.repeat_interleave(sizes, sizes, output_size=n)
    here = torch.arange(n)
    # a neighbour past either end of its text points at the zero row (zeros, as with_context_flat)
    past = torch.full_like(here, n)
    nb = torch.stack([torch.where((pos + o >= 0) & (pos + o < length), here + o, past) for o in context], 1)

    def rows(idx: torch.Tensor) -> torch.Tensor:
        return rms_normalise(flat[nb[idx]].float()).reshape(len(idx), -1)

    labels = np.concatenate([y for y in acts.labels]) if acts.labels else np.zeros(0, dtype=np.int64)
    return rows, labels


def predict(probe: AnyProbe, acts: Activations) -> list[np.ndarray]:
    """Probe probabilities ``[T_i, C]`` per record."""
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for i in range(0, len(acts.resid), 256):
            out += [p.numpy() for p in probe.probs_batch([r.float() for r in acts.resid[i : i + 256]])]
    return out


CALIBRATIONS: tuple[str, ...] = ("recall", "f2", "f1.5", "f1")
"""Threshold rules: ``recall`` keeps ``recall_target`` of each label's calibration tokens; ``fB`` maximises
the token F-beta with beta B (recall counts B times as much as precision)."""

UNSPACED_CALIBRATIONS: tuple[str, ...] = ("f3", "recall0.97", "recall0.95")
"""Rules for a second set of thresholds, calibrated on the tokens of scripts written without spaces
alone (Chinese, Japanese, Thai): each is stored on top of every rule of :data:`CALIBRATIONS` as
``"<rule>+unspaced-<this>"``, and the dev suite decides (``benchmarks/probe_choice.py``). One such token
is a character or two, so a missed token leaks part of a name: these rules lean further to recall."""

GROW_RULE = "recall"
"""The rule whose thresholds a span grows by: every other rule is also stored as ``"<rule>+grow"``, seeded
by its own thresholds and grown over neighbouring tokens that reach this rule's (the dev suite decides)."""

MIN_UNSPACED_TOKENS = 2000
"""Calibration tokens of scripts without spaces needed before they get thresholds of their own."""

MIN_UNSPACED_LABEL_TOKENS = 50
"""Tokens of a label, in scripts without spaces, needed before that label gets a threshold of its own
there (the others keep their one threshold)."""


def _rule(mode: str, target: float) -> tuple[str, float]:
    """``("recall", target)`` or ``("f", beta)`` for a rule name: ``recall``, ``recall0.97``, ``f2``..."""
    try:
        if mode.startswith("recall"):
            t = float(mode[6:]) if len(mode) > 6 else target
            if 0.0 < t <= 1.0:
                return "recall", t
        elif mode.startswith("f") and float(mode[1:]) > 0:
            return "f", float(mode[1:])
    except ValueError:
        pass
    raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)} (or fB / recallT), got {mode!r}")


def calibrate(
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    keep: Sequence[str],
    target: float,
    mode: str = "recall",
) -> dict[str, float]:
    """Per-label threshold on ``1 - P(O)``.

    ``mode="recall"``: the lowest score that keeps ``target`` of the label's gold tokens (``recall0.97``:
    0.97 of them). ``mode="f2"`` / ``"f1.5"`` / ``"f1"`` (any ``fB``): the score that maximises the label's
    token F-beta (tokens whose best reported class is the label count as its predictions). Masked tokens
    (label < 0) are left out.
    """
    kind, value = _rule(mode, target)
    classes = list(PROBE_CLASSES)
    pp = np.concatenate([collapse(p, classes, keep)[0] for p in probs if len(p)])
    yy = np.concatenate([y for y in labels if len(y)])
    trusted = yy >= 0
    pp, yy = pp[trusted], yy[trusted]
    pii = 1.0 - pp[:, 0]
    best = pp[:, 1:].argmax(axis=1)
    out = {}
    for i, lab in enumerate(keep):
        pos = yy == classes.index(lab)
        s = pii[pos]
        if s.size < 20:
            out[lab] = 0.5
            continue
        if kind == "recall":
            # the (1 - target) quantile lets `target` of this label's tokens through
            thr = float(np.quantile(s, 1.0 - value, method="lower"))
        else:
            beta2 = value**2
            mine = best == i
            if not mine.any():  # the probe never prefers this label: nothing to trade off
                out[lab] = 0.5
                continue
            order = np.argsort(-pii[mine], kind="stable")
            score, hit = pii[mine][order], pos[mine][order]
            tp = np.cumsum(hit)
            k = np.arange(1, len(score) + 1)
            prec, rec = tp / k, tp / pos.sum()
            f = (1 + beta2) * prec * rec / np.maximum(beta2 * prec + rec, 1e-12)
            thr = float(score[int(np.argmax(f))])
        out[lab] = float(np.clip(thr, 0.02, 0.9))  # a sane range
    return out


def spans_of(
    records: Sequence[Record],
    acts: Activations,
    probs: Sequence[np.ndarray],
    keep: Sequence[str],
    thresholds: dict[str, float],
    lone_min_score: float,
    lone_min_unspaced: float | None = None,
    thresholds_unspaced: Mapping[str, float] | None = None,
    thresholds_grow: Mapping[str, float] | None = None,
) -> dict[str, list[Span]]:
    """Decoded probe spans (no patterns) per record id."""
    out = {}
    for r, o, p in zip(records, acts.offsets, probs, strict=True):
        cp, cl = collapse(p, list(PROBE_CLASSES), keep)
        out[r.id] = decode(
            r.text,
            o,
            cp,
            cl,
            thresholds,
            lone_min_score=lone_min_score,
            lone_min_unspaced=lone_min_unspaced,
            thresholds_unspaced=thresholds_unspaced,
            thresholds_grow=thresholds_grow,
        )
    return out


LONE_CANDIDATES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def _best_lone(
    run: Callable[[float], dict[str, float]], max_recall_drop: float
) -> tuple[float, dict[str, float]]:
    base = run(0.0)
    best, best_m = 0.0, base
    for lone in LONE_CANDIDATES:
        m = run(lone)
        if m["recall_partial"] >= base["recall_partial"] - max_recall_drop and m["f1"] > best_m["f1"]:
            best, best_m = lone, m
    return best, best_m


def choose_lone_min(
    records: Sequence[Record],
    acts: Activations,
    probs: Sequence[np.ndarray],
    keep: Sequence[str],
    thresholds: dict[str, float],
    max_recall_drop: float = 0.01,
    thresholds_unspaced: Mapping[str, float] | None = None,
    lone: float | None = None,
    thresholds_grow: Mapping[str, float] | None = None,
) -> tuple[float, float | None, dict[str, float]]:
    """The score a one-token span needs: the best F1 on the calibration set among values that cost at
    most ``max_recall_drop`` of span recall (lone sub-word hits are the commonest false alarm; ``lone``
    given: that one); then, on the calibration records written in scripts without spaces, the score one
    such token needs (one token there is often one character: None when the set has no such records)."""
    from guardrail.metrics import score

    def scorer(idx: Sequence[int]) -> Callable[..., dict[str, float]]:
        recs = [records[i] for i in idx]
        sub = Activations([], [acts.offsets[i] for i in idx], [], 0.0, 0)  # offsets are all it reads
        pr = [probs[i] for i in idx]

        def run(lone: float, unspaced: float | None = None) -> dict[str, float]:
            found = spans_of(
                recs, sub, pr, keep, thresholds, lone, unspaced, thresholds_unspaced, thresholds_grow
            )
            o = score(recs, found, labels=PRIVACY)["overall"]
            return {k: float(o[k] or 0.0) for k in ("leakage", "recall_partial", "precision", "f1")}

        return run

    every = range(len(records))
    if lone is None:
        lone, _ = _best_lone(scorer(every), max_recall_drop)
    cjk = [i for i in every if any(is_unspaced(ch) for ch in records[i].text)]
    unspaced: float | None = None
    if len(cjk) >= 50:
        run_cjk = scorer(cjk)
        unspaced, _ = _best_lone(lambda u: run_cjk(lone, u), max_recall_drop)
    return lone, unspaced, scorer(every)(lone, unspaced)


def calibrations(
    records: Sequence[Record],
    acts: Activations,
    probs: Sequence[np.ndarray],
    keep: Sequence[str],
    target: float,
    chosen: str,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Thresholds and lone-token scores by every calibration rule: the ``chosen`` rule's
    (``thresholds``, ``lone_min_score``, ``lone_min_unspaced``, ``calib_probe_only``), and all rules'
    (for the manifest: the dev suite picks the rule, ``benchmarks/devsuite.py NAME:PROBE@RULE``).

    With :data:`MIN_UNSPACED_TOKENS` calibration tokens of scripts without spaces, every rule also comes
    as ``"<rule>+unspaced-<u>"`` for each ``u`` of :data:`UNSPACED_CALIBRATIONS`: the same thresholds,
    plus ``thresholds_unspaced`` calibrated by ``u`` on those tokens alone (and their lone-token score),
    for the labels with :data:`MIN_UNSPACED_LABEL_TOKENS` such tokens, and never above the label's
    threshold for every other token."""
    out: dict[str, dict[str, Any]] = {}
    unspaced_tok = [
        np.fromiter((is_unspaced_token(r.text, int(a), int(b)) for a, b in o), dtype=bool, count=len(o))
        for r, o in zip(records, acts.offsets, strict=True)
    ]
    n_unspaced = int(sum(int((m & (y >= 0)).sum()) for m, y in zip(unspaced_tok, acts.labels, strict=True)))
    gold_u = np.concatenate(
        [y[m] for y, m in zip(acts.labels, unspaced_tok, strict=True)] or [np.zeros(0, int)]
    )
    unspaced_counts = {lab: int((gold_u == PROBE_CLASSES.index(lab)).sum()) for lab in keep}
    for mode in CALIBRATIONS:
        thr = calibrate(probs, acts.labels, keep, target, mode)
        lone, unspaced, met = choose_lone_min(records, acts, probs, keep, thr)
        out[mode] = {
            "thresholds": thr,
            "lone_min_score": lone,
            "lone_min_unspaced": unspaced,
            "calib_probe_only": met,
        }
        log.info("calibration %s: %s", mode, met)
        if n_unspaced < MIN_UNSPACED_TOKENS:
            continue
        for u in UNSPACED_CALIBRATIONS:
            thr_u = calibrate(
                [p[m] for p, m in zip(probs, unspaced_tok, strict=True)],
                [y[m] for y, m in zip(acts.labels, unspaced_tok, strict=True)],
                keep,
                target,
                u,
            )
            # a label seen too rarely in these scripts keeps its one threshold, and these rules only
            # ever lean to recall: never stricter than the label's threshold everywhere else
            thr_u = {
                k: min(v, thr[k])
                for k, v in thr_u.items()
                if unspaced_counts.get(k, 0) >= MIN_UNSPACED_LABEL_TOKENS
            }
            _, unspaced_u, met_u = choose_lone_min(
                records, acts, probs, keep, thr, thresholds_unspaced=thr_u, lone=lone
            )
            out[f"{mode}+unspaced-{u}"] = {
                "thresholds": thr,
                "thresholds_unspaced": thr_u,
                "lone_min_score": lone,
                "lone_min_unspaced": unspaced_u,
                "calib_probe_only": met_u,
            }
    # Every rule but the recall one also comes as "<rule>+grow": spans seeded by its thresholds grow over
    # neighbouring tokens that reach the recall rule's (hysteresis, ``thresholds_grow`` of spans.decode).
    if GROW_RULE in out:
        grow = dict(out[GROW_RULE]["thresholds"])
        for name, rule in list(out.items()):
            if name.startswith(GROW_RULE):
                continue
            _, unspaced_g, met_g = choose_lone_min(
                records,
                acts,
                probs,
                keep,
                rule["thresholds"],
                thresholds_unspaced=rule.get("thresholds_unspaced"),
                lone=rule["lone_min_score"],
                thresholds_grow=grow,
            )
            out[f"{name}+grow"] = {
                **rule,
                "thresholds_grow": grow,
                "lone_min_unspaced": unspaced_g,
                "calib_probe_only": met_g,
            }
    return out[chosen], out


def calibration_records(manifest: Manifest, real_dir: Path | None = None) -> TrainingData:
    """The calibration records a bundle was trained with, drawn again from its manifest (synthetic
    ``calib`` family at the training seed + 1; the real corpora's held-out slice at the stored mix)."""
    t = manifest.training
    sources = t.get("sources", {})
    if not isinstance(sources, dict) or "synthetic" not in sources or "seed" not in t:
        raise ValueError(f"bundle {manifest.name!r} does not record how its calibration set was drawn")
    n_synth = int(sources["synthetic"]["calib_records"])
    real = sources.get("real") or {}
    return training_data(
        0, n_synth, int(t["seed"]), 0, int(real.get("calib_records", 0)), real.get("mix"), real_dir
    )


def probe_scores(
    guard: Guardrail, records: Sequence[Record], annotates: Mapping[str, frozenset[str]], batch_size: int = 16
) -> tuple[Activations, list[np.ndarray]]:
    """Token offsets and labels (:func:`collect`'s masking) and the class probabilities of ``guard``'s
    probe for each record, as ``detect`` computes them (the bundle's runtime, its pruned backbone)."""
    t0 = time.perf_counter()
    offs, labs, probs = [], [], []
    with tqdm(total=len(records), desc="scores", unit="rec") as bar:
        for i in range(0, len(records), 256):
            part = records[i : i + 256]
            scored = guard.scores([r.text for r in part], batch_size=batch_size)
            probs += [s.probs for s in scored]
            for r, s in zip(part, scored, strict=True):
                offs.append(np.asarray(s.offsets))
                labs.append(record_labels(r, s.offsets, annotates))
            bar.update(len(part))
    return Activations([], offs, labs, time.perf_counter() - t0, sum(len(y) for y in labs)), probs


def recalibrate(
    bundle: str | Path, probes: Sequence[str] | None = None, real_dir: Path | None = None
) -> Bundle:
    """Calibrate a finished bundle's probes again, by every rule :func:`calibrations` knows today, on
    the calibration records it was trained with; stored as each probe's ``metrics.calibrations``. The
    shipped thresholds are left as they are: ``benchmarks/probe_choice.py --write`` picks among rules."""
    from guardrail.pipeline import Guardrail

    base = Guardrail.load(bundle, patterns=False)
    m = base.bundle.manifest
    data = calibration_records(m, real_dir)
    target = m.recall_target
    for name in probes or [m.default_probe]:
        if name not in m.probes:
            raise ValueError(
                f"bundle {m.name!r} has no probe {name!r} (it has {', '.join(sorted(m.probes))})"
            )
        guard = Guardrail(base.bundle, base.backbone, probe=name, patterns=False)
        acts, probs = probe_scores(guard, data.calib, data.annotates)
        # the base rule of the one it ships (a per-script rule "f2+unspaced-..." is built on "f2")
        rule = str(m.probes[name].metrics.get("calibration", m.training.get("calibration", "f2"))).split("+")[
            0
        ]
        _, alternatives = calibrations(data.calib, acts, probs, list(m.detect_labels), target, rule)
        m.probes[name].metrics["calibrations"] = alternatives
        log.info("%s: %d rules calibrated on %d records", name, len(alternatives), len(data.calib))
    base.bundle.save_manifest()
    return base.bundle


def train(cfg: TrainConfig) -> Bundle:
    """Build a bundle from nothing; returns it after writing it to ``cfg.out``."""
    t_start = time.perf_counter()
    log.info(
        "data: %d + %d synthetic, %d + %d real records (train + calib)",
        cfg.n_train,
        cfg.n_calib,
        cfg.n_real,
        cfg.n_real_calib,
    )
    kept = kept_probes(cfg)
    data = training_data(
        cfg.n_train, cfg.n_calib, cfg.seed, cfg.n_real, cfg.n_real_calib, cfg.real_mix, cfg.real_dir
    )
    train_recs, calib_recs = data.train, data.calib
    pruning = prune_for(cfg) if cfg.mlp_keep is not None else None
    backbone = Backbone.load(cfg.model, layer=cfg.layer, runtime=cfg.runtime, pruning=pruning)
    tr = collect(backbone, train_recs, "activations (train)", cfg.batch_size, data.annotates)
    ca = collect(backbone, calib_recs, "activations (calib)", cfg.batch_size, data.annotates)
    t_fit = time.perf_counter()
    probe = fit_raw_head(cfg, tr)
    fit_s = time.perf_counter() - t_fit
    tr.resid = []  # the training residuals are done with: free them before calibration
    cprobs = predict(probe, ca)
    keep = list(cfg.detect_labels)
    chosen, alternatives = calibrations(calib_recs, ca, cprobs, keep, cfg.recall_target, cfg.calibration)
    log.info("calib (probe only): %s", chosen["calib_probe_only"])
    info = backbone.info
    manifest = Manifest(
        name=cfg.out.name,
        backbone=BackboneRef(
            id=cfg.model,
            layer=cfg.layer,
            file=info.get("file"),
            sha256=info.get("sha256"),
            license=info.get("license"),
            n_layers=int(info["n_layers"]),
            runtime=backbone.runtime,
            mlp_keep=cfg.mlp_keep,
        ),
        detect_labels=keep,
        probes={
            "raw": ProbeEntry(
                prefix="raw.",
                head=probe.head,
                thresholds=chosen["thresholds"],
                lone_min_score=chosen["lone_min_score"],
                lone_min_unspaced=chosen["lone_min_unspaced"],
                metrics={"calib_probe_only": chosen["calib_probe_only"], "calibrations": alternatives},
            )
        },
        recall_target=cfg.recall_target,
        training={
            "data": "guardrail.synth"
            + (" + real annotated corpora (guardrail.realdata)" if cfg.n_real else " (generated only)")
            + "; no evaluation data",
            "sources": data.card,
            "calibration": cfg.calibration,
            "seed": cfg.seed,
            "n_train_records": len(train_recs),
            "n_calib_records": len(calib_recs),
            "train_tokens": tr.tokens,
            "calib_tokens": ca.tokens,
            "context": list(cfg.context),
            "head": cfg.head,
            "o_keep": o_keep_for(cfg),
            **(
                {"C": cfg.c}
                if cfg.head == "linear"
                else {"hidden": cfg.hidden, "epochs": cfg.epochs, "repeat": cfg.repeat}
            ),
            "activation_seconds": round(tr.seconds + ca.seconds, 1),
            "fit_seconds": round(fit_s, 1),
            "total_seconds": round(time.perf_counter() - t_start, 1),
            **(
                {
                    "mlp_pruning": f"{cfg.mlp_keep} neurons per block kept by E[h^2]*|W_down col|^2"
                    f"{', down projection refitted by least squares' if cfg.mlp_refit else ''}, on "
                    f"{pruning_text(cfg)}"
                }
                if cfg.mlp_keep is not None
                else {}
            ),
        },
    )
    bundle = Bundle(cfg.out, manifest, {"raw": probe}, pruning=pruning)
    if kept is not None:
        bundle = keep_probes(bundle, kept)
    bundle.save()
    return bundle


KEPT_METRICS = ("sae", "sae_cost", "sae_probe")
"""Figures of a bundle's SAE and SAE probes, which a new raw probe leaves as they are; the others
(``probe_choice``, ``dev_suite``, ``benchmark``, ``isa_matrix``) measured the probe it replaces."""


def kept_probes(cfg: TrainConfig) -> Bundle | None:
    """The bundle already at ``cfg.out`` when it has probes other than ``raw`` to keep (its SAE probes);
    a :class:`~guardrail.bundle.BundleError` when they could not be kept: they read the residuals of
    its backbone, which this training does not read (another model or layer, or a pruning it redoes).
    Checked before anything is computed."""
    if not (cfg.out / MANIFEST).is_file():
        return None
    old = Bundle.load(cfg.out)
    others = sorted(set(old.probes) - {"raw"})
    if not others:
        return None
    ref = old.manifest.backbone
    if (ref.id, ref.layer, ref.mlp_keep, cfg.mlp_keep) != (cfg.model, cfg.layer, None, None):
        raise BundleError(
            f"{cfg.out} holds probes {', '.join(others)} on {ref.id} layer {ref.layer}"
            f"{' (pruned)' if ref.mlp_keep else ''}; they would not read what this training reads: "
            "write to another --out, or remove the folder first"
        )
    return old


def keep_probes(new: Bundle, old: Bundle) -> Bundle:
    """``new`` (one fresh ``raw`` probe) with ``old``'s other probes, SAE and their figures kept; the
    default probe stays ``old``'s (``benchmarks/probe_choice.py --write`` chooses again)."""
    m = new.manifest
    for name, probe in old.probes.items():
        if name != "raw":
            new.probes[name] = probe
            m.probes[name] = old.manifest.probes[name]
    m.default_probe = old.manifest.default_probe
    if "sae_probe" in old.manifest.training:
        m.training["sae_probe"] = old.manifest.training["sae_probe"]
    m.metrics = {k: v for k, v in old.manifest.metrics.items() if k in KEPT_METRICS}
    return Bundle(new.folder, m, new.probes, old.sae, new.pruning)


def o_keep_for(cfg: TrainConfig) -> float:
    """The share of ``O`` tokens the head is fitted on (see :attr:`TrainConfig.o_keep`)."""
    if cfg.o_keep is not None:
        return cfg.o_keep
    return 1.0 if cfg.head == "mlp" else 0.35


def fit_raw_head(cfg: TrainConfig, acts: Activations) -> AnyProbe:
    """The ``cfg.head`` probe on the raw residuals of ``acts``."""
    if cfg.head == "mlp":
        rows, labels = token_rows(acts, cfg.context)
        log.info("fitting MLP head (%d hidden) on %d tokens", cfg.hidden, int((labels >= 0).sum()))
        return fit_mlp(
            rows,
            labels,
            context=cfg.context,
            hidden=cfg.hidden,
            epochs=cfg.epochs,
            o_keep=o_keep_for(cfg),
            seed=cfg.seed,
            repeat=cfg.repeat,
        )
    if cfg.head != "linear":
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {cfg.head!r}")
    x, y = design_matrix(acts, cfg.context, o_keep_for(cfg), cfg.seed)
    log.info("fitting probe on %d tokens x %d features", *x.shape)
    return fit(x, y, context=cfg.context, c=cfg.c, max_iter=cfg.max_iter, seed=cfg.seed)


def prune_for(cfg: TrainConfig) -> Pruning:
    """The MLP pruning of a fast backbone (:func:`guardrail.prune.plan`): ``cfg.mlp_keep`` neurons per
    block, ranked and refitted on the unpruned model over synthetic text and the real corpora
    (:func:`_pruning_real`), or general text when training reads none (never evaluation data)."""
    from guardrail import corpus, synth
    from guardrail.prune import plan

    records = list(
        islice(
            corpus.mix(
                synth.iter_records(cfg.prune_records, seed=cfg.seed + 2),
                iter(_pruning_real(cfg)) if cfg.n_real else corpus.iter_records(seed=cfg.seed + 2),
                weights=(0.7, 0.3),
                seed=cfg.seed + 2,
            ),
            cfg.prune_records,
        )
    )
    assert cfg.mlp_keep is not None
    full = Backbone.load(cfg.model, layer=cfg.layer)
    log.info("pruning MLPs to %d neurons on %d records", cfg.mlp_keep, len(records))
    return plan(full, full.encode([r.text for r in records]), cfg.mlp_keep, refit=cfg.mlp_refit)


def _pruning_real(cfg: TrainConfig) -> list[Record]:
    """Real records that rank the neurons beside the synthetic ones: the training slice of the real
    corpora by the training mix, another seed. Fixed files in every language the probe reads, where the
    offline corpus of installed packages' READMEs (used when training takes no real text) is English
    and changes with what is installed, and with it the pruning."""
    from guardrail import realdata

    sources = realdata.load_sources(cfg.real_dir)
    return realdata.draw(sources, cfg.prune_records, cfg.real_mix, seed=cfg.seed + 2)  # None: the default mix


def pruning_text(cfg: TrainConfig) -> str:
    """What ranked the neurons, as the manifest says it."""
    general = "real annotated corpora by the training mix" if cfg.n_real else "general text"
    return f"{cfg.prune_records} records (70% synthetic, seed {cfg.seed + 2}; 30% {general})"


@dataclass(slots=True)
class SaeTrainConfig:
    """What ``guardrail train-sae`` can set (the SAE's own hyper-parameters live in sae.TrainSaeConfig)."""

    bundle: str = DEFAULT_BUNDLE
    tokens: int = 2_000_000
    heldout_records: int = 2500
    general_share: float = 0.3
    """Share of the stream drawn from general offline text (:mod:`guardrail.corpus`), the rest synthetic."""
    d_sae: int = 5120
    """8x expansion of Gemma 3 270M's 640: small expansions generalised best in the Rakuten study."""
    k: int = 32
    batch_size: int = 4096
    dead_window: int = 100_000
    """A latent silent for this many tokens joins the AuxK revival set (25 steps of 4,096)."""
    seed: int = 0


def activation_stream(
    backbone: Backbone, records: Iterable[Record], chunk: int = 256
) -> Iterator[torch.Tensor]:
    """Yield residual batches ``[N, d]`` (float32) of records, a chunk of texts at a time: the corpus is
    never held in memory."""
    for _part, _enc, res in residual_chunks(backbone, records, chunk):
        rows = [x for x in res if len(x)]
        if rows:
            yield torch.cat(rows)


def train_sae_for_bundle(cfg: SaeTrainConfig) -> dict[str, object]:
    """Train the bundle's SAE on activations of its backbone layer, streamed from synthetic data;
    write it to ``<bundle>/sae/`` (SAELens layout) and its figures into the manifest."""
    from guardrail import corpus, synth
    from guardrail.bundle import find
    from guardrail.sae import TrainSaeConfig, evaluate, train_sae

    folder = find(cfg.bundle)
    bundle = Bundle.load(folder)
    ref = bundle.manifest.backbone
    backbone = Backbone.for_bundle(bundle)
    t0 = time.perf_counter()
    # records are ~50 tokens: generate more than enough, the token budget stops training
    records = corpus.mix(
        synth.iter_records(cfg.tokens // 20, seed=cfg.seed + 100),
        corpus.iter_records(seed=cfg.seed),
        weights=(1 - cfg.general_share, cfg.general_share),
        seed=cfg.seed,
    )
    stream = activation_stream(backbone, records)
    tcfg = TrainSaeConfig(
        d_sae=cfg.d_sae,
        k=cfg.k,
        batch_size=cfg.batch_size,
        buffer_size=16 * cfg.batch_size,
        dead_window=cfg.dead_window,
        max_tokens=cfg.tokens,
        seed=cfg.seed,
        model_name=ref.id,
        hook_layer=ref.layer - 1,  # SAELens counts blocks from 0: the output of block L-1
    )
    sae, tlog = train_sae(stream, tcfg)
    seconds = time.perf_counter() - t0
    held_general = [
        Record(id=f"general-heldout-{i}", text=t) for i, t in enumerate(corpus.paragraphs("heldout"))
    ]
    held_records = synth.generate(cfg.heldout_records, seed=cfg.seed + 7, family="calib") + held_general
    ev = evaluate(sae, activation_stream(backbone, held_records))
    sae.cfg.dtype = "bfloat16"  # inference runs in bf16 (never fp16); halves the bundle
    sae.to(torch.bfloat16).save(folder / "sae")
    figures = {
        "d_sae": cfg.d_sae,
        "k": cfg.k,
        "train_tokens": tlog.tokens[-1] if tlog.tokens else 0,
        "train_seconds": round(seconds, 1),
        "heldout_fvu": round(float(ev["fvu"]), 4),
        "heldout_l0": round(float(ev["l0"]), 2),
        "heldout_dead_share": round(float(ev["dead_share"]), 4),
        "heldout_tokens": int(ev["tokens"]),
        "general_share": cfg.general_share,
        "command": f"guardrail train-sae --bundle {cfg.bundle} --tokens {cfg.tokens}",
    }
    bundle.manifest.metrics["sae"] = figures
    bundle.save()
    return figures


@dataclass(slots=True)
class SaeProbeConfig:
    """What ``guardrail train-sae-probe`` can set."""

    bundle: str = DEFAULT_BUNDLE
    n_train: int = 8000
    n_calib: int = 2000
    seed: int = 0
    n_real: int = 16000
    """Real corpus records beside the synthetic ones (as :class:`TrainConfig`); 0: synthetic only."""
    n_real_calib: int = 2000
    real_mix: dict[str, float] | None = None
    real_dir: Path | None = None
    calibration: str = "f2"
    """As :attr:`TrainConfig.calibration`."""
    n_latents: int = 512
    """Latents the probe reads (selected by class-mean difference on the training data)."""
    sweep: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    """Latent counts whose recall/precision is reported (a quick linear head per count)."""
    context: tuple[int, ...] = (-2, -1, 0, 1, 2)
    heads: tuple[str, ...] = ("linear", "forest")
    o_keep: float = 0.35
    c: float = 0.5
    n_trees: int = 32
    max_depth: int = 20
    min_samples_leaf: int = 5
    max_iter: int = 200
    min_scale: float = 0.1
    """Floor added to the features' standard deviation before the linear head (rare latents)."""
    batch_size: int = 16
    sae: str | None = None
    """A published or own SAE folder (SAELens, sparsify or Gemma Scope layout) to use instead of the
    bundle's ``sae/``; it is copied into the bundle (SAELens layout)."""
    encode: str = "threshold"
    """How the probe encodes its latents: ``threshold`` (one global threshold, the mean k-th largest
    pre-activation on the training tokens: only the selected latents' encoder columns are computed) or
    ``topk`` (the SAE's own rule: every pre-activation, each token's k-th largest)."""


def code_stats(sae: Sae, acts: Activations, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class mean code ``[C, d_sae]``, overall std ``[d_sae]`` and class token counts ``[C]``, from
    the SAE's sparse TopK codes (no dense code matrix of the corpus is built)."""
    d = sae.cfg.d_sae
    sums = torch.zeros(n_classes, d, dtype=torch.float64)
    sq = torch.zeros(d, dtype=torch.float64)
    counts = torch.zeros(n_classes, dtype=torch.float64)
    rows = [(x, y) for x, y in zip(acts.resid, acts.labels, strict=True) if len(y)]
    with torch.inference_mode():
        for i in range(0, len(rows), 64):  # ~3k tokens per SAE call
            x = torch.cat([r[0] for r in rows[i : i + 64]]).float()
            yy = torch.from_numpy(np.concatenate([r[1] for r in rows[i : i + 64]])).long()
            trusted = yy >= 0  # masked tokens of real corpora say nothing about their class
            x, yy = x[trusted], yy[trusted]
            vals, idx = sae._topk(sae.pre_acts(x))
            vals = vals.double()
            sums.index_put_((yy[:, None].expand_as(idx), idx), vals, accumulate=True)
            sq.index_put_((idx.reshape(-1),), vals.pow(2).reshape(-1), accumulate=True)
            counts += torch.bincount(yy, minlength=n_classes).double()
    n = counts.sum().clamp_min(1)
    means = sums / counts.clamp_min(1)[:, None]
    overall = sums.sum(0) / n
    std = (sq / n - overall.pow(2)).clamp_min(0).sqrt()
    return means.numpy(), std.numpy(), counts.numpy()


def sae_design(
    sae: Sae,
    latents: np.ndarray,
    context: Sequence[int],
    acts: Activations,
    o_keep: float,
    seed: int,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """SAE-probe features (the ``latents``' codes with ``context``) of the kept tokens, and their labels."""
    rng = np.random.default_rng(seed)
    rows = [(x, y) for x, y in zip(acts.resid, acts.labels, strict=True) if len(y)]
    xs, ys = [], []
    with torch.inference_mode():
        for i in range(0, len(rows), 256):  # one SAE call per chunk of records
            part = rows[i : i + 256]
            feats = sae_features(
                [r.float() for r, _ in part], sae, torch.from_numpy(latents), context, threshold
            )
            for f, (_, y) in zip(feats, part, strict=True):
                keep = (y > 0) | ((y == 0) & (rng.random(len(y)) < o_keep))
                xs.append(f[torch.from_numpy(keep)].numpy())
                ys.append(y[keep])
    return np.concatenate(xs), np.concatenate(ys)


def _probe_metrics(
    probe: AnyProbe,
    recs: Sequence[Record],
    acts: Activations,
    keep: Sequence[str],
    thresholds: dict[str, float],
) -> tuple[list[np.ndarray], dict[str, float]]:
    from guardrail.metrics import score

    probs = predict(probe, acts)
    o = score(recs, spans_of(recs, acts, probs, keep, thresholds, 0.0), labels=PRIVACY)["overall"]
    return probs, {k: round(float(o[k] or 0.0), 4) for k in ("leakage", "recall_partial", "precision", "f1")}


def top_latents(probe: Probe, n: int, labels: Sequence[str]) -> list[dict[str, object]]:
    """The latents with the largest standardised weight (a reported label against ``O``, the token's own
    code) of a linear SAE probe, one row per latent with the label it speaks for."""
    assert probe.latents is not None
    width = len(probe.latents)
    own = probe.context.index(0) if 0 in probe.context else 0
    rows_of = [probe.classes.index(c) for c in labels if c in probe.classes]
    w = (probe.weight[rows_of] - probe.weight[0])[:, own * width : (own + 1) * width]  # [len(labels), L]
    best, cls = w.max(0)
    rows = []
    for i in torch.argsort(best, descending=True)[:n].tolist():
        label = probe.classes[rows_of[int(cls[i])]]
        rows.append({"latent": int(probe.latents[i]), "label": label, "weight": round(float(best[i]), 3)})
    return rows


def use_sae(bundle: Bundle, path: str) -> Sae:
    """Load an SAE folder for ``bundle``, checking that it reads the bundle's layer and width."""
    from guardrail.sae import Sae, SaeError

    try:
        sae = Sae.load(path)
    except SaeError as e:
        raise ValueError(str(e)) from None
    layer = bundle.manifest.backbone.layer
    if sae.cfg.backbone_layer is not None and sae.cfg.backbone_layer != layer:
        raise ValueError(
            f"the SAE reads the residual after block {sae.cfg.backbone_layer}, "
            f"the bundle's probe layer is {layer}"
        )
    return sae.eval()


def train_sae_probe(cfg: SaeProbeConfig) -> dict[str, object]:
    """Fit probes on the SAE codes of the bundle's SAE (one per head), calibrate them like the raw
    probe, and add them to the bundle as ``sae-<head>``; returns the figures it wrote to the manifest."""
    from guardrail.backbone import pick_dtype
    from guardrail.bundle import find
    from guardrail.probe import fit_forest, select_latents

    t_start = time.perf_counter()
    folder = find(cfg.bundle)
    bundle = Bundle.load(folder)
    if cfg.sae is not None:
        bundle.sae = use_sae(bundle, cfg.sae)
    if bundle.sae is None:
        raise ValueError(f"bundle {folder.name} has no SAE: run `guardrail train-sae` first")
    sae = bundle.sae.to(dtype=pick_dtype(torch.device("cpu"))).eval()  # as inference runs it
    m = bundle.manifest
    keep = list(m.detect_labels)
    backbone = Backbone.for_bundle(bundle)
    data = training_data(
        cfg.n_train, cfg.n_calib, cfg.seed, cfg.n_real, cfg.n_real_calib, cfg.real_mix, cfg.real_dir
    )
    tr = collect(backbone, data.train, "activations (train)", cfg.batch_size, data.annotates)
    calib_recs = data.calib
    ca = collect(backbone, calib_recs, "activations (calib)", cfg.batch_size, data.annotates)
    n_cls = len(PROBE_CLASSES)
    means, std, counts = code_stats(sae, tr, n_cls)
    enough = counts >= 20
    if cfg.encode not in ("threshold", "topk"):
        raise ValueError(f"encode must be threshold or topk, got {cfg.encode!r}")
    threshold = None
    if cfg.encode == "threshold":
        with torch.inference_mode():
            threshold = sae.kth_threshold(torch.cat([r.float() for r in tr.resid if len(r)]))
        log.info("SAE probe threshold (mean k-th pre-activation on the training tokens): %.4f", threshold)

    sweep = []
    part = max(1, len(tr.resid) * 2 // 5)  # a quick look: 40% of the training records per count
    sweep_acts = Activations(tr.resid[:part], tr.offsets[:part], tr.labels[:part], 0.0, 0)
    for n in tqdm(sorted({*cfg.sweep, cfg.n_latents}), desc="latent sweep"):
        lat = select_latents(means, std, n, enough)
        x, y = sae_design(sae, lat, cfg.context, sweep_acts, cfg.o_keep * 0.5, cfg.seed, threshold)
        p = fit(
            x,
            y,
            context=cfg.context,
            c=cfg.c,
            max_iter=100,
            seed=cfg.seed,
            latents=torch.from_numpy(lat),
            min_scale=cfg.min_scale,
        )
        p.sae = sae
        if threshold is not None:
            p.meta["sae_threshold"] = threshold
        half = {k: 0.5 for k in keep}
        _, met = _probe_metrics(p, calib_recs, ca, keep, half)
        sweep.append({"n_latents": n, **{f"{k}_at_0.5": v for k, v in met.items()}})
        log.info("latent sweep %s", sweep[-1])
    latents = select_latents(means, std, cfg.n_latents, enough)
    x, y = sae_design(sae, latents, cfg.context, tr, cfg.o_keep, cfg.seed, threshold)
    lat = torch.from_numpy(latents)
    figures: dict[str, object] = {
        "latent_sweep": sweep,
        "n_latents": len(latents),
        "sae_threshold": threshold,
    }
    for head in cfg.heads:
        t0 = time.perf_counter()
        if head == "linear":
            probe: AnyProbe = fit(
                x,
                y,
                context=cfg.context,
                c=cfg.c,
                max_iter=cfg.max_iter,
                seed=cfg.seed,
                latents=lat,
                min_scale=cfg.min_scale,
            )
        elif head == "forest":
            probe = fit_forest(
                x,
                y,
                latents=lat,
                context=cfg.context,
                n_trees=cfg.n_trees,
                max_depth=cfg.max_depth,
                min_samples_leaf=cfg.min_samples_leaf,
                seed=cfg.seed,
            )
        else:
            raise ValueError(f"unknown head {head!r}; expected linear or forest")
        probe.sae = sae
        if threshold is not None:
            probe.meta["sae_threshold"] = threshold
        fit_s = time.perf_counter() - t0
        cprobs = predict(probe, ca)
        chosen, alternatives = calibrations(calib_recs, ca, cprobs, keep, m.recall_target, cfg.calibration)
        calib_metrics = chosen["calib_probe_only"]
        name = f"sae-{'lr' if head == 'linear' else 'rf'}"
        bundle.probes[name] = probe
        m.probes[name] = ProbeEntry(
            prefix=f"{name}.",
            features="sae",
            head=head,  # type: ignore[arg-type]
            thresholds=chosen["thresholds"],
            lone_min_score=chosen["lone_min_score"],
            lone_min_unspaced=chosen["lone_min_unspaced"],
            metrics={
                "calib_probe_only": calib_metrics,
                "calibrations": alternatives,
                "fit_seconds": round(fit_s, 1),
                "train_tokens": len(y),
                "features": int(x.shape[1]),
            },
        )
        figures[name] = calib_metrics
        log.info("%s calib (probe only): %s", name, calib_metrics)
        if isinstance(probe, Probe):
            figures["top_latents"] = top_latents(probe, 12, keep)
    m.training["sae_probe"] = {
        "sources": data.card,
        "calibration": cfg.calibration,
        "n_train_records": len(data.train),
        "n_calib_records": len(calib_recs),
        "seed": cfg.seed,
        "context": list(cfg.context),
        "encode": cfg.encode,
        "sae_threshold": threshold,
        "selection": "standardised class-mean difference, classes take turns",
        "latents": [int(j) for j in latents],
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    m.metrics["sae_probe"] = figures
    bundle.save()
    return figures
