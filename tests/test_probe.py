"""Probe stage: features, fitting, storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guardrail.labels import PROBE_CLASSES
from guardrail.probe import (
    ForestProbe,
    MlpProbe,
    Probe,
    ProbeError,
    fit,
    fit_mlp,
    forest_from_sklearn,
    load_probe,
    rms_normalise,
    sae_features,
    select_latents,
    token_features,
    with_context,
    with_context_flat,
)


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


def _blobs(n: int = 600, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 3], size=n)  # O, PERSON, PHONE
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += 2.0 * (y == 1)
    x[:, 1] += 2.0 * (y == 3)
    return x, y


def test_forest_matches_sklearn_and_round_trips(tmp_path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _blobs()
    clf = RandomForestClassifier(n_estimators=7, max_depth=5, random_state=0).fit(x, y)
    probe = forest_from_sklearn(clf, latents=None)
    ours = probe.probs(torch.from_numpy(x)).numpy()
    ref = clf.predict_proba(x)
    assert np.allclose(ours[:, [0, 1, 3]], ref, atol=1e-6) and np.allclose(ours[:, 2], 0)
    probe.save(tmp_path / "p.safetensors", "rf.")
    again = load_probe(tmp_path / "p.safetensors", "rf.")
    assert isinstance(again, ForestProbe) and again.depth == probe.depth
    # stored as float16 class distributions: equal to 3 decimals, and the same argmax
    a, b = again.probs(torch.from_numpy(x)), probe.probs(torch.from_numpy(x))
    assert torch.allclose(a, b, atol=1e-3) and torch.equal(a.argmax(1), b.argmax(1))
    # Saabas: the root's value plus every feature's contribution is the predicted probability
    feats = torch.from_numpy(x[:20])
    contrib = probe.contributions(feats, 1).sum(1)
    root = probe.value[:, 0, 1].mean()
    assert torch.allclose(root + contrib, probe.probs(feats)[:, 1], atol=1e-5)
    assert int(probe.contributions(feats, 1).abs().sum(0).argmax()) == 0  # PERSON rides on feature 0


def test_forest_load_refuses_broken_arrays(tmp_path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _blobs(200)
    probe = forest_from_sklearn(RandomForestClassifier(n_estimators=2, max_depth=3).fit(x, y), latents=None)
    probe.left[0, 0] = 10_000
    probe.save(tmp_path / "p.safetensors")
    with pytest.raises(ProbeError, match="out of range"):
        load_probe(tmp_path / "p.safetensors")


def test_linear_head_contributions_explain_the_log_odds() -> None:
    x, y = _blobs()
    probe = fit(x, y, context=(0,))
    feats = torch.from_numpy(x[:10])
    p = probe.probs(feats)
    log_odds = torch.log(p[:, 1]) - torch.log(p[:, 0])
    const = probe.bias[1] - probe.bias[0]
    assert torch.allclose(probe.contributions(feats, 1).sum(1) + const, log_odds, atol=1e-3)


def test_sae_probe_reads_selected_codes_with_context(tmp_path) -> None:
    from guardrail.sae import Sae, SaeConfig

    sae = Sae(SaeConfig(d_in=8, d_sae=32, k=4), seed=1)
    latents = torch.tensor([3, 7, 20])
    resid = torch.randn(5, 8) * 100
    (feats,) = sae_features([resid], sae, latents, (-1, 0))
    codes = sae.encode(resid)[:, latents]
    assert feats.shape == (5, 6)
    assert torch.allclose(feats[:, 3:], codes) and torch.allclose(feats[1:, :3], codes[:-1])
    x = torch.randn(40, 6).abs()
    probe = fit(x.numpy(), np.arange(40) % 2, context=(-1, 0), latents=latents)
    assert probe.source == "sae" and probe.feature_name(4) == (0, 7) and probe.feature_name(0) == (-1, 3)
    with pytest.raises(ProbeError, match="SAE attached"):
        probe(resid)
    probe.sae = sae
    batch = probe.probs_batch([resid, resid[:2]])
    assert torch.allclose(batch[0], probe(resid), atol=1e-6) and batch[1].shape == (2, len(PROBE_CLASSES))
    probe.save(tmp_path / "p.safetensors", "sae.")
    again = load_probe(tmp_path / "p.safetensors", "sae.")
    assert torch.equal(again.latents, latents) and again.sae is None


def test_select_latents_takes_turns_between_classes() -> None:
    means = np.zeros((4, 10))
    means[1, [0, 1, 2]] = [3.0, 2.0, 1.0]  # class 1 likes latents 0, 1, 2
    means[2, [5, 6]] = [0.5, 0.4]  # class 2, weaker, likes 5 and 6
    chosen = select_latents(means, np.ones(10), 3, np.array([True, True, True, False]))
    assert chosen.tolist() == [0, 1, 5]  # 0 (class 1), 5 (class 2), 1 (class 1); class 3 skipped


def test_context_of_stacked_texts_never_reads_across_texts() -> None:
    torch.manual_seed(0)
    sizes = [3, 0, 1, 5, 2]
    texts = [torch.randn(n, 4) for n in sizes]
    for context in [(0,), (-1, 0, 1), (-2, 0, 3)]:
        got = with_context_flat(torch.cat(texts), sizes, context)
        want = torch.cat([with_context(x, context) for x in texts])
        assert torch.equal(got, want)


def test_probe_features_flat_equals_text_by_text() -> None:
    torch.manual_seed(1)
    probe = Probe(
        weight=torch.randn(3, 12),
        bias=torch.zeros(3),
        mean=torch.zeros(12),
        scale=torch.ones(12),
        classes=("O", "PERSON", "EMAIL"),
        context=(-1, 0, 1),
    )
    resids = [torch.randn(n, 4) * 100 for n in (4, 1, 0, 6)]
    flat = probe.features_flat(torch.cat(resids), [len(r) for r in resids])
    assert torch.equal(flat, torch.cat([token_features(r, probe.context) for r in resids]))
    assert probe.device == torch.device("cpu") and probe.to("cpu") is probe


def _xor(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PERSON where exactly one of two features is high: no linear head can read it."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 2, size=(2, n))
    x = np.stack([a, b], 1).astype(np.float32) * 4 + rng.normal(size=(n, 2)).astype(np.float32) * 0.5
    x = np.concatenate([x, rng.normal(size=(n, 4)).astype(np.float32)], 1)
    return x, (a ^ b).astype(np.int64)  # 0 = O, 1 = PERSON


def test_mlp_head_learns_what_a_linear_one_cannot_and_round_trips(tmp_path) -> None:
    x, y = _xor()
    t = torch.from_numpy(x)
    linear = fit(x, y, context=(0,))
    assert (linear.probs(t).argmax(-1).numpy() == y).mean() < 0.8
    probe = fit_mlp(lambda idx: t[idx], y, hidden=32, epochs=30, o_keep=1.0, lr=1e-2, batch_size=128)
    assert isinstance(probe, MlpProbe) and probe.head == "mlp" and probe.n_features == 6
    assert (probe.probs(t).argmax(-1).numpy() == y).mean() > 0.95
    assert probe.probs(t)[:, 2:].max() < 0.05  # classes never seen are hardly ever predicted
    probe.save(tmp_path / "p.safetensors", "raw.")
    again = load_probe(tmp_path / "p.safetensors", "raw.")
    assert isinstance(again, MlpProbe) and again.meta["hidden"] == 32
    assert torch.allclose(again.probs(t), probe.probs(t), atol=1e-6)


def test_mlp_fit_skips_masked_tokens_and_is_deterministic() -> None:
    x, y = _xor(600)
    t = torch.from_numpy(x)
    masked = y.copy()
    masked[:300] = -1  # masked tokens are never read: flipping their features changes nothing
    seen: set[int] = set()

    def rows(idx: torch.Tensor) -> torch.Tensor:
        seen.update(idx.tolist())
        return t[idx]

    a = fit_mlp(rows, masked, hidden=8, epochs=2, progress=False)
    assert not seen & set(range(300))
    b = fit_mlp(lambda idx: t[idx], masked, hidden=8, epochs=2, progress=False)
    assert torch.equal(a.w1, b.w1) and torch.equal(a.b2, b.b2)
    with pytest.raises(ProbeError, match="PII tokens"):
        fit_mlp(lambda idx: t[idx], np.zeros(len(y), dtype=np.int64), hidden=8, epochs=1)


def test_mlp_contributions_are_gradient_times_input() -> None:
    x, y = _xor(400)
    t = torch.from_numpy(x)
    probe = fit_mlp(lambda idx: t[idx], y, hidden=16, epochs=5, progress=False)
    c = probe.contributions(t[:5], 1)
    assert c.shape == (5, 6) and torch.isfinite(c).all()
    eps = 1e-3  # first order: nudging the standardised feature moves the log-odds by the gradient
    z = (t[:1] - probe.mean) / probe.scale
    nudged = (z + torch.tensor([[eps, 0, 0, 0, 0, 0]])) * probe.scale + probe.mean
    lo = probe.logits(t[:1])
    lo2 = probe.logits(nudged)
    grad0 = float(((lo2[0, 1] - lo2[0, 0]) - (lo[0, 1] - lo[0, 0])) / eps)
    assert abs(float(c[0, 0]) - grad0 * float(z[0, 0])) < 1e-2 * max(1.0, abs(grad0 * float(z[0, 0])))


def test_mlp_load_refuses_mismatched_shapes(tmp_path) -> None:
    probe = MlpProbe(
        torch.zeros(4, 3),
        torch.zeros(4),
        torch.zeros(2, 5),
        torch.zeros(2),
        torch.zeros(3),
        torch.ones(3),
        ("O", "PERSON"),
    )
    probe.save(tmp_path / "p.safetensors")
    with pytest.raises(ProbeError, match="output layer"):
        load_probe(tmp_path / "p.safetensors")


def test_flush_denormal_is_on_inside_and_put_back_after() -> None:
    from guardrail.probe import flush_denormal

    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal in float32
    supported = torch.set_flush_denormal(False)  # off, as a process starts; False where unsupported
    assert float(tiny * 1.0) != 0.0
    with flush_denormal():
        if supported:
            assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) != 0.0


def test_mlp_repeat_weighs_a_class_by_showing_its_tokens_again() -> None:
    x, y = _xor(600)
    t = torch.from_numpy(x)
    seen: list[int] = []

    def rows(idx: torch.Tensor) -> torch.Tensor:
        seen.extend(idx.tolist())
        return t[idx]

    once = fit_mlp(lambda idx: t[idx], y, hidden=8, epochs=1, progress=False)
    twice = fit_mlp(rows, y, hidden=8, epochs=1, o_keep=1.0, progress=False, repeat={"PERSON": 2})
    n_person = int((y == 1).sum())
    from collections import Counter

    counts = Counter(seen[-(n_person * 2 + int((y == 0).sum())) :])  # the epoch (after the scaling sample)
    assert all(counts[i] == 2 for i in np.flatnonzero(y == 1)) and all(
        counts[i] == 1 for i in np.flatnonzero(y == 0)
    )
    assert twice.meta["repeat"] == {"PERSON": 2} and "repeat" not in once.meta
    assert twice.meta["n_train_tokens"] == once.meta["n_train_tokens"] == len(y)
    for bad in ({"O": 2}, {"NOPE": 2}, {"PERSON": 0}):
        with pytest.raises(ProbeError, match="repeat"):
            fit_mlp(lambda idx: t[idx], y, hidden=8, epochs=1, progress=False, repeat=bad)


def _random_mlp(d: int, context: tuple[int, ...], hidden: int = 24, seed: int = 0) -> MlpProbe:
    g = torch.Generator().manual_seed(seed)
    n_feat = d * len(context)
    return MlpProbe(
        torch.randn(hidden, n_feat, generator=g),
        torch.randn(hidden, generator=g),
        torch.randn(len(PROBE_CLASSES), hidden, generator=g),
        torch.randn(len(PROBE_CLASSES), generator=g),
        torch.randn(n_feat, generator=g),
        torch.rand(n_feat, generator=g) + 0.05,
        context=context,
    )


@pytest.mark.parametrize("context", [(0,), (-1, 0, 1), (-2, -1, 0, 1, 2), (-3, 0, 2)])
@pytest.mark.parametrize("sizes", [[1], [2, 1, 3], [7, 1, 1, 12, 2], [4] * 9, [30]])
def test_mlp_probs_flat_equals_the_feature_table(context: tuple[int, ...], sizes: list[int]) -> None:
    # the folded head reads neighbours within each text only, as the table does, texts of one token and
    # offsets longer than a text included
    probe = _random_mlp(8, context)
    flat = torch.randn(sum(sizes), 8, generator=torch.Generator().manual_seed(1)) * 300
    want = probe.probs(probe.features_flat(flat, sizes))
    got = probe.probs_flat(flat, sizes)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    batch = probe.probs_batch(list(flat.split(sizes)))
    assert torch.allclose(torch.cat(batch), want, atol=1e-5)
    assert [len(b) for b in batch] == sizes


def test_probs_flat_of_other_heads_is_their_table() -> None:
    n = len(PROBE_CLASSES)
    probe = Probe(torch.randn(n, 16), torch.zeros(n), torch.zeros(16), torch.ones(16), context=(-1, 0))
    flat = torch.randn(5, 8)
    assert torch.equal(probe.probs_flat(flat, [2, 3]), probe.probs(probe.features_flat(flat, [2, 3])))


def test_mlp_probs_flat_of_an_sae_head_reads_its_sae() -> None:
    # an SAE-feature MLP head takes the feature table's way (and says when its SAE is missing)
    probe = _random_mlp(8, (0,))
    probe.source = "sae"
    with pytest.raises(ProbeError, match="SAE attached"):
        probe.probs_flat(torch.randn(3, 8), [3])
