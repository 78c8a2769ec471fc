"""Probe stage: features, fitting, storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guardrail.labels import PROBE_CLASSES
from guardrail.probe import Probe, ProbeError, fit, rms_normalise, token_features


def test_rms_normalise_is_scale_invariant() -> None:
    x = torch.randn(5, 16)
    assert torch.allclose(rms_normalise(x), rms_normalise(x * 1e4), atol=1e-5)
    assert torch.allclose(rms_normalise(x).pow(2).mean(-1), torch.ones(5), atol=1e-4)


def test_context_features_shift_neighbours_in() -> None:
    x = torch.arange(1, 4, dtype=torch.float32).unsqueeze(1).repeat(1, 2)  # [3, 2], rows 1,2,3
    f = token_features(x, (-1, 0, 1))
    assert f.shape == (3, 6)
    assert torch.all(f[0, :2] == 0) and torch.all(f[2, 4:] == 0)  # past the ends: zeros
    assert torch.allclose(f[1, :2], f[0, 2:4]) and torch.allclose(f[1, 4:], f[2, 2:4])


def test_fit_learns_separable_classes_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 4
    y = rng.integers(0, 3, size=600)
    x = centers[y] + rng.normal(size=(600, 8))
    y_cls = np.array([0, 1, 3])[y]  # O, PERSON, PHONE
    probe = fit(x.astype(np.float32), y_cls, context=(0,))
    pred = probe.probs(torch.from_numpy(x).float()).argmax(-1).numpy()
    assert (pred == y_cls).mean() > 0.95
    # classes never seen in training are never predicted
    assert probe.probs(torch.from_numpy(x).float())[:, 2].max() < 1e-6
    probe.save(tmp_path / "p.safetensors", "raw.")
    again = Probe.load(tmp_path / "p.safetensors", "raw.")
    assert again.classes == PROBE_CLASSES and again.context == (0,)
    assert torch.allclose(again.probs(torch.from_numpy(x).float()), probe.probs(torch.from_numpy(x).float()))


def test_load_rejects_bad_files(tmp_path) -> None:
    with pytest.raises(ProbeError):
        Probe.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ProbeError):
        Probe.load(bad)
    p = Probe(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), torch.ones(4), ("O", "PERSON", "EMAIL"))
    p.save(tmp_path / "ok.safetensors")
    with pytest.raises(ProbeError, match="missing"):
        Probe.load(tmp_path / "ok.safetensors", "sae.")
    q = Probe(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), torch.ones(4), ("PERSON", "O", "EMAIL"))
    q.save(tmp_path / "q.safetensors")
    with pytest.raises(ProbeError, match="first class"):
        Probe.load(tmp_path / "q.safetensors")
