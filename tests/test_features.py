"""Latent descriptions and span explanations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from guardrail.bundle import BundleError, load_descriptions
from guardrail.features import describe, explain
from guardrail.labels import PROBE_CLASSES
from guardrail.probe import fit
from guardrail.spans import Span


def test_describe_names_the_dominant_label_and_tokens() -> None:
    mass = np.zeros(len(PROBE_CLASSES))
    mass[PROBE_CLASSES.index("PERSON")] = 9.0
    mass[0] = 1.0
    assert describe(mass, ["Silva", "Dupont"]) == "PERSON 90%: «Silva», «Dupont»"
    mass[0] = 30.0
    assert describe(mass, []) == "non-PII 77%, PERSON 23%"
    assert describe(np.zeros(len(PROBE_CLASSES)), []) == "never fired"


def test_explain_ranks_the_latents_behind_a_span() -> None:
    rng = np.random.default_rng(0)
    n = 400
    y = rng.choice([0, 1], size=n)
    x = rng.random((n, 3)).astype(np.float32) * 0.1
    x[:, 1] += 2.0 * (y == 1)  # latent 42 (column 1) carries PERSON
    latents = torch.tensor([7, 42, 99])
    probe = fit(x, y, context=(0,), latents=latents)
    feats = torch.tensor([[0.0, 0.0, 0.0], [0.05, 2.0, 0.0], [0.0, 2.1, 0.0], [0.0, 0.0, 0.0]])
    offsets = np.array([[0, 4], [5, 8], [9, 14], [15, 18]])
    (top, *_) = explain(probe, feats, offsets, Span(5, 14, "PERSON"), {42: "PERSON 90%: «Ana»"})
    assert top.latent == 42 and top.activation == pytest.approx(2.1) and top.contribution > 0
    assert top.description == "PERSON 90%: «Ana»"
    assert explain(probe, feats, offsets, Span(30, 40, "PERSON"), {}) == ()  # no token under it


def test_load_descriptions(tmp_path) -> None:
    assert load_descriptions(tmp_path) == {}
    (tmp_path / "features.json").write_text(json.dumps({"latents": {"3": {"description": "EMAIL 99%"}}}))
    assert load_descriptions(tmp_path) == {3: "EMAIL 99%"}
    (tmp_path / "features.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        load_descriptions(tmp_path)


@pytest.mark.model
def test_shipped_sae_probe_explains_a_name() -> None:
    from guardrail.pipeline import Guardrail

    g = Guardrail.load(probe="sae-lr", patterns=False)
    text = "Please call Ana Silva tomorrow about the invoice."
    (spans,) = g.detect([text], explain=True)
    person = [s for s in spans if s.label == "PERSON"]
    assert person and text[person[0].start : person[0].end] == "Ana Silva"
    feats = person[0].features
    assert feats and all(f.contribution > 0 and f.description for f in feats)
    assert any("PERSON" in f.description for f in feats)  # a name latent is among the top ones
