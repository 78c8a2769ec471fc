"""MLP pruning: ranking, least-squares refit, in-place application, stored form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guardrail.backbone import Backbone, BackboneError
from guardrail.prune import Pruning, gram, plan, prune_block, refit_down

TEXTS = ["Call Ana Silva at +1 415 555 0100.", "Order #4821 shipped to 12 Main Street", "café 🎉 naïve"] * 3


def _tiny(tiny_model_dir, pruning: Pruning | None = None) -> Backbone:
    return Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32", pruning=pruning)


def test_keeping_every_neuron_is_the_model(tiny_model_dir) -> None:
    full = _tiny(tiny_model_dir)
    hidden = full.model.layers[0].mlp.down_proj.in_features
    same = _tiny(tiny_model_dir, Pruning([np.arange(hidden)] * 2))
    enc = full.encode(TEXTS)
    assert torch.allclose(full.residuals_flat(enc), same.residuals_flat(enc), atol=1e-5)


def test_refit_reproduces_the_full_mlp_best() -> None:
    torch.manual_seed(0)
    h = torch.randn(4000, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)  # correlated
    w = torch.randn(5, 12, dtype=torch.float64)
    g = h.T @ h / len(h)
    keep = np.array([0, 2, 3, 7, 8, 11])
    refit = torch.from_numpy(refit_down(w, g, keep, ridge=0.0)).double()
    target = h @ w.T
    err_refit = (h[:, keep] @ refit.T - target).square().mean()
    err_plain = (h[:, keep] @ w[:, keep].T - target).square().mean()
    assert err_refit < err_plain
    # the least-squares optimum: no small move of the weights does better
    for _ in range(5):
        moved = refit + 1e-3 * torch.randn_like(refit)
        assert (h[:, keep] @ moved.T - target).square().mean() >= err_refit


def test_plan_prunes_and_refits_block_by_block(tiny_model_dir) -> None:
    full = _tiny(tiny_model_dir)
    enc = full.encode(TEXTS)
    ref = full.residuals_flat(enc)
    hidden = full.model.layers[0].mlp.down_proj.in_features
    g = gram(full, enc, 0)
    assert g.shape == (hidden, hidden) and torch.allclose(g, g.T) and (torch.diagonal(g) >= 0).all()

    errors = {}
    for refit in (False, True):
        bb = _tiny(tiny_model_dir)
        pr = plan(bb, enc, hidden // 2, refit=refit)
        assert [len(k) for k in pr.keep] == [hidden // 2] * 2 and all((np.diff(k) > 0).all() for k in pr.keep)
        assert bb.model.layers[1].mlp.up_proj.out_features == hidden // 2  # pruned in place
        assert (pr.down is not None) == refit
        loaded = _tiny(tiny_model_dir, pr)  # the stored form rebuilds the same model
        assert loaded.info["mlp_keep"] == f"{hidden // 2},{hidden // 2}"
        assert torch.allclose(loaded.residuals_flat(enc), bb.residuals_flat(enc), atol=1e-5)
        errors[refit] = float((loaded.residuals_flat(enc) - ref).norm())
    assert errors[True] < errors[False]  # refitting recovers part of what pruning lost

    # ranked by contribution: keeping the least important half moves the residual more
    worst = [np.sort(np.argsort(torch.diagonal(gram(full, enc, i)).numpy())[: hidden // 2]) for i in range(2)]
    assert float((_tiny(tiny_model_dir, Pruning(worst)).residuals_flat(enc) - ref).norm()) > errors[False]


def test_stored_form_round_trips_and_is_checked() -> None:
    pr = Pruning([np.array([1, 4], dtype=np.int64)] * 2, [np.ones((6, 2), dtype=np.float32)] * 2)
    back = Pruning.from_arrays(pr.arrays(), 2, 2)
    assert all((a == b).all() for a, b in zip(back.keep, pr.keep, strict=True)) and back.down is not None
    assert Pruning.from_arrays(Pruning(pr.keep).arrays(), 2, 2).down is None
    with pytest.raises(ValueError, match="int64 indices"):
        Pruning.from_arrays(pr.arrays(), 2, 3)
    bad = pr.arrays() | {"mlp_down.1": np.ones((6, 3), dtype=np.float32)}
    with pytest.raises(ValueError, match="float32"):
        Pruning.from_arrays(bad, 2, 2)


def test_bad_pruning_is_refused(tiny_model_dir) -> None:
    with pytest.raises(BackboneError, match="names 1 blocks"):
        _tiny(tiny_model_dir, Pruning([np.arange(4)]))
    with pytest.raises(BackboneError, match="increasing"):
        _tiny(tiny_model_dir, Pruning([np.array([3, 1]), np.arange(4)]))
    with pytest.raises(BackboneError, match="within"):
        _tiny(tiny_model_dir, Pruning([np.arange(4), np.array([0, 10_000])]))
    with pytest.raises(BackboneError, match="must be \\["):
        _tiny(tiny_model_dir, Pruning([np.arange(4)] * 2, [np.ones((3, 4), dtype=np.float32)] * 2))
    with pytest.raises(BackboneError, match="gated MLPs"):
        prune_block(torch.nn.Linear(2, 2), np.arange(2))


def test_pruned_backbone_runs_in_onnx_int8_under_its_own_key(tiny_model_dir, tmp_path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("GUARDRAIL_CACHE", str(tmp_path / "cache"))
    few, other = Pruning([np.arange(0, 8, 2)] * 2), Pruning([np.arange(4)] * 2)
    assert few.digest() != other.digest() and few.digest() == Pruning([np.arange(0, 8, 2)] * 2).digest()
    eager = _tiny(tiny_model_dir, few)
    full = Backbone.load(str(tiny_model_dir), layer=2, runtime="onnx-int8")
    pruned = Backbone.load(str(tiny_model_dir), layer=2, runtime="onnx-int8", pruning=few)
    assert pruned.runtime == "onnx-int8" and pruned.model is None
    graphs = sorted(p.parent.name for p in (tmp_path / "cache" / "onnx").glob("*/model.int8.onnx"))
    assert len(graphs) == 2 and f"-p{few.digest()}-a" in graphs[1], graphs  # not the whole model's
    enc = eager.encode(TEXTS)
    for a, b, c in zip(eager.residuals(enc), pruned.residuals(enc), full.residuals(enc), strict=True):
        near = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        assert float(near.min()) > 0.95, float(near.min())  # int8 weights of the pruned model
        assert not torch.allclose(b, c, atol=1e-3)  # and not the whole model's
