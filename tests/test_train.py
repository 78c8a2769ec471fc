"""Training: token labels, calibration, a whole bundle from nothing (tiny model), and the SAE stage."""

from __future__ import annotations

import json

import numpy as np

from guardrail.bundle import Bundle
from guardrail.labels import PROBE_CLASSES
from guardrail.pipeline import Guardrail
from guardrail.sae import Sae
from guardrail.spans import Span
from guardrail.train import SaeTrainConfig, TrainConfig, calibrate, token_labels, train, train_sae_for_bundle


def test_token_labels_skip_the_leading_space() -> None:
    text = "Call Ana Silva now"
    offsets = np.array([[0, 4], [4, 8], [8, 14], [14, 18]])  # SentencePiece style: " Ana" = (4, 8)
    y = token_labels(text, offsets, [Span(5, 14, "PERSON")], PROBE_CLASSES)
    person = PROBE_CLASSES.index("PERSON")
    assert y.tolist() == [0, person, person, 0]


def test_calibrate_meets_the_token_recall_target() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.choice([0, 1], size=n, p=[0.7, 0.3])  # O or PERSON
    pii = np.where(labels == 1, rng.beta(5, 1, n), rng.beta(1, 5, n))
    probs = np.zeros((n, len(PROBE_CLASSES)))
    probs[:, 0] = 1 - pii
    probs[:, 1] = pii
    thr = calibrate([probs], [labels], ["PERSON"], 0.95)["PERSON"]
    assert np.mean(pii[labels == 1] >= thr) >= 0.95 - 1e-9
    assert thr > 0.3  # not a degenerate "flag everything" point


def test_train_builds_a_loadable_bundle_then_an_sae(tiny_model_dir, tmp_path) -> None:
    cfg = TrainConfig(
        out=tmp_path / "tiny-bundle",
        model=str(tiny_model_dir),
        layer=2,
        n_train=300,
        n_calib=120,
        max_iter=50,
    )
    bundle = train(cfg)
    m = Bundle.load(cfg.out).manifest
    assert m.backbone.layer == 2 and set(m.thresholds) == set(m.detect_labels)
    assert m.training["n_train_records"] == 300 and "calib_probe_only" in m.metrics
    assert (cfg.out / "MODEL_CARD.md").read_text().startswith("# Guard bundle")
    g = Guardrail.load(cfg.out, dtype="fp32")
    (spans,) = g.detect(["write to ana.silva@example.com"])
    assert any(s.label == "EMAIL" for s in spans)  # patterns at least; the probe is tiny
    figures = train_sae_for_bundle(
        SaeTrainConfig(
            bundle=str(bundle.folder), tokens=3000, heldout_records=40, d_sae=64, k=4, batch_size=256
        )
    )
    assert figures["train_tokens"] >= 2048 and 0 <= figures["heldout_dead_share"] <= 1
    assert figures["heldout_l0"] <= 4 + 1e-6
    sae = Sae.load(cfg.out / "sae")
    assert sae.cfg.d_in == 32 and sae.cfg.d_sae == 64
    manifest = json.loads((cfg.out / "guard.json").read_text())
    assert manifest["metrics"]["sae"]["k"] == 4
