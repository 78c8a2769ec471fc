"""SAE stage: encode conventions per on-disk layout, folder validation, the shuffle buffer, training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import guardrail.sae as sae_module
from guardrail.sae import (
    Sae,
    SaeConfig,
    SaeError,
    ShuffleBuffer,
    TrainSaeConfig,
    evaluate,
    train_sae,
)

D_IN, D_SAE, K = 16, 64, 4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices gain nothing from threads, and on a busy 2-core machine the spinning threads of
    a loop of many small ops (training) slow it down 10-40x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_sae(architecture: str = "topk", **overrides) -> Sae:
    """A tiny SAE with every parameter random (biases and thresholds included)."""
    cfg = SaeConfig(
        d_in=D_IN,
        d_sae=D_SAE,
        architecture=architecture,  # type: ignore[arg-type]
        k=None if architecture == "jumprelu" else K,
        model_name="tiny",
        hook_layer=5,
        meta={"note": "test"},
        **overrides,
    )
    sae = Sae(cfg, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) * 0.5)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.1)
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.1)
        if sae.threshold is not None:
            sae.threshold.copy_(torch.rand(D_SAE, generator=g))
    return sae


def inputs(n: int = 20, seed: int = 3) -> torch.Tensor:
    """Raw residual-like rows with a large, varying scale (as real residuals have)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D_IN, generator=g) * torch.logspace(0, 4, n)[:, None]


def topk_reference(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Dense codes keeping the k largest ReLU'd pre-activations per row."""
    vals, idx = pre.relu().topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, vals)


def rms(x: torch.Tensor) -> torch.Tensor:
    return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()


# -- encode conventions ------------------------------------------------------------------------------


def test_topk_encode_keeps_exactly_the_k_largest():
    sae = random_sae("topk", normalize="none", apply_b_dec_to_input=True)
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive, so exactly k survive
    x = inputs()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    codes = sae.encode(x)
    assert ((codes != 0).sum(-1) == K).all()
    torch.testing.assert_close(codes, topk_reference(pre, K))
    kept_min = codes.masked_fill(codes == 0, math.inf).min(-1).values
    dropped_max = pre.masked_fill(codes != 0, -math.inf).max(-1).values
    assert (kept_min >= dropped_max).all()
    acts, idx, pre_out = sae.encode_topk(x)
    assert acts.shape == idx.shape == (len(x), K)
    torch.testing.assert_close(pre_out, pre)
    torch.testing.assert_close(torch.zeros_like(codes).scatter(-1, idx, acts), codes)


def test_jumprelu_encode_respects_the_threshold():
    sae = random_sae("jumprelu", normalize="none", apply_b_dec_to_input=False)
    x = inputs()
    pre = x @ sae.W_enc + sae.b_enc
    codes = sae.encode(x)
    torch.testing.assert_close(codes, pre * (pre > sae.threshold))
    on = codes != 0
    assert on.any() and (~on).any()
    assert (codes[on] > sae.threshold.expand_as(codes)[on]).all()


def test_rms_normalisation_makes_encode_scale_invariant():
    sae = random_sae("topk")  # normalize="rms" is the default
    x = inputs()
    torch.testing.assert_close(sae.encode(x * 1e3), sae.encode(x), rtol=1e-4, atol=1e-4)
    pre = (rms(x) - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), topk_reference(pre, K))


def test_constant_normalisation_multiplies_by_norm_scale():
    sae = random_sae("jumprelu", normalize="constant", norm_scale=0.01)
    x = inputs()
    pre = (x * 0.01 - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), pre * (pre > sae.threshold))


def test_batchtopk_is_topk_at_inference_or_thresholded_when_it_has_a_global_threshold():
    plain = random_sae("batchtopk")
    x = inputs()
    torch.testing.assert_close(plain.encode(x), topk_reference(plain.pre_acts(x), K))
    gated = random_sae("batchtopk", batch_threshold=0.2)
    pre = gated.pre_acts(x)
    torch.testing.assert_close(gated.encode(x), pre * (pre > 0.2))
    with pytest.raises(SaeError):
        gated.encode_topk(x)


def test_forward_decodes_in_the_normalised_space():
    sae = random_sae("topk")
    x = inputs()
    out = sae(x)
    torch.testing.assert_close(out.target, rms(x))
    torch.testing.assert_close(out.recon, out.codes @ sae.W_dec + sae.b_dec)
    acts, idx, _ = sae.encode_topk(x)
    torch.testing.assert_close(sae.decode_sparse(acts, idx), out.recon, rtol=1e-5, atol=1e-5)
    expected = (out.target - out.recon).pow(2).sum() / (out.target - out.target.mean(0)).pow(2).sum()
    torch.testing.assert_close(out.fvu, expected)
    assert out.l0.item() <= K


# -- SAELens layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "extra"),
    [("topk", {}), ("batchtopk", {}), ("batchtopk", {"batch_threshold": 0.1}), ("jumprelu", {})],
)
def test_saelens_round_trip(tmp_path: Path, architecture: str, extra: dict):
    sae = random_sae(architecture, **extra)
    sae.save(tmp_path / "sae")
    loaded = Sae.load(tmp_path / "sae")
    assert loaded.cfg == sae.cfg
    x = inputs()
    assert torch.equal(loaded.encode(x), sae.encode(x))
    for name, tensor in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_saelens_cfg_uses_saelens_keys_and_tensor_names(tmp_path: Path):
    from safetensors import safe_open

    random_sae("topk").save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == K and cfg["activation_fn_kwargs"] == {"k": K}
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (D_IN, D_SAE, "float32", "cpu")
    assert cfg["hook_name"] == "blocks.5.hook_resid_post" and cfg["hook_layer"] == 5
    assert cfg["model_name"] == "tiny" and cfg["apply_b_dec_to_input"] is True
    assert cfg["normalize_activations"] == "constant_norm_rescale"  # = x / RMS(x)
    assert cfg["guardrail"]["normalize"] == "rms" and cfg["guardrail"]["meta"] == {"note": "test"}
    with safe_open(str(tmp_path / "sae_weights.safetensors"), "pt") as f:
        assert set(f.keys()) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    random_sae("jumprelu").save(tmp_path / "j")
    with safe_open(str(tmp_path / "j" / "sae_weights.safetensors"), "pt") as f:
        assert set(f.keys()) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}


def write_saelens(folder: Path, cfg: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "sae_weights.safetensors"))
    return folder


def jumprelu_tensors(seed: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g),
        "threshold": torch.rand(D_SAE, generator=g) + 0.05,
    }


def test_saelens_jumprelu_threshold_and_log_threshold_agree(tmp_path: Path):
    # Gemma Scope style: no b_dec subtraction, no normalisation, a per-latent threshold.
    cfg = {
        "architecture": "jumprelu",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "model_name": "gemma-3-270m",
        "hook_name": "blocks.5.hook_resid_post",
        "apply_b_dec_to_input": False,
        "normalize_activations": None,
    }
    t = jumprelu_tensors()
    a = Sae.load(write_saelens(tmp_path / "thr", cfg, t))
    logged = {**{k: v for k, v in t.items() if k != "threshold"}, "log_threshold": t["threshold"].log()}
    b = Sae.load(write_saelens(tmp_path / "log", cfg, logged))
    x = inputs()
    pre = x @ t["W_enc"] + t["b_enc"]
    reference = pre * (pre > t["threshold"])
    torch.testing.assert_close(a.encode(x), reference)
    torch.testing.assert_close(b.encode(x), reference, rtol=1e-5, atol=1e-5)
    assert a.cfg.hook_layer == 5 and a.cfg.backbone_layer == 6 and a.cfg.normalize == "none"


def test_saelens_topk_k_from_activation_fn_kwargs_and_old_spelling(tmp_path: Path):
    t = {k: v for k, v in jumprelu_tensors().items() if k != "threshold"}
    base = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "normalize_activations": "none"}
    new = Sae.load(write_saelens(tmp_path / "a", {**base, "architecture": "topk", "k": K}, t))
    old = Sae.load(
        write_saelens(
            tmp_path / "b",
            {
                **base,
                "architecture": "standard",
                "activation_fn_str": "topk",
                "activation_fn_kwargs": {"k": K},
            },
            t,
        )
    )
    x = inputs()
    reference = topk_reference((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"], K)  # b_dec subtracted by default
    torch.testing.assert_close(new.encode(x), reference)
    torch.testing.assert_close(old.encode(x), reference)


def test_saelens_relu_sae_reads_as_zero_threshold_jumprelu(tmp_path: Path):
    t = {k: v for k, v in jumprelu_tensors().items() if k != "threshold"}
    cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32"}
    sae = Sae.load(write_saelens(tmp_path, cfg, t))
    x = inputs()
    torch.testing.assert_close(sae.encode(x), ((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]).relu())


def test_saelens_expected_average_norm_needs_its_scale(tmp_path: Path):
    t = jumprelu_tensors()
    cfg = {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "normalize_activations": True}
    folder = write_saelens(tmp_path, cfg, t)
    with pytest.raises(SaeError, match="norm_scale"):
        Sae.load(folder)
    sae = Sae.load(folder, norm_scale=0.5)
    x = inputs()
    pre = (x * 0.5 - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    torch.testing.assert_close(sae.encode(x), pre * (pre > t["threshold"]))


def test_saelens_finetuning_scaling_factor_is_folded_into_the_decoder(tmp_path: Path):
    t = jumprelu_tensors()
    scale = torch.linspace(0.5, 2.0, D_SAE)
    cfg = {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "finetuning_scaling_factor": True}
    sae = Sae.load(write_saelens(tmp_path, cfg, {**t, "finetuning_scaling_factor": scale}))
    codes = torch.rand(3, D_SAE)
    torch.testing.assert_close(sae.decode(codes), (codes * scale) @ t["W_dec"] + t["b_dec"])


def test_dtype_is_kept_and_can_be_overridden(tmp_path: Path):
    sae = random_sae("topk", dtype="bfloat16")
    assert sae.W_enc.dtype == torch.bfloat16
    sae.save(tmp_path)
    assert Sae.load(tmp_path).W_dec.dtype == torch.bfloat16
    as_f32 = Sae.load(tmp_path, dtype="float32")
    assert as_f32.W_dec.dtype == torch.float32 and as_f32.encode(inputs()).dtype == torch.float32


# -- sparsify and Gemma Scope 2 layouts --------------------------------------------------------------


def write_sparsify(folder: Path, cfg: dict, seed: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "encoder.weight": torch.randn(D_SAE, D_IN, generator=g),  # nn.Linear layout
        "encoder.bias": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g),
    }
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae.safetensors"))
    return tensors


SPARSIFY_CFG = {
    "activation": "topk",
    "expansion_factor": 4,
    "normalize_decoder": True,
    "num_latents": 0,
    "k": K,
    "multi_topk": False,
    "skip_connection": False,
    "transcode": False,
}


@pytest.mark.parametrize("with_d_in", [True, False])
def test_sparsify_layout_matches_a_plain_torch_reference(tmp_path: Path, with_d_in: bool):
    folder = tmp_path / "layers.6"
    t = write_sparsify(folder, {**SPARSIFY_CFG, **({"d_in": D_IN} if with_d_in else {})})
    sae = Sae.load(folder)
    x = inputs()
    # sparsify: relu(linear(x - b_dec)), then the k largest; no input normalisation.
    pre = torch.nn.functional.linear(x - t["b_dec"], t["encoder.weight"], t["encoder.bias"]).relu()
    vals, idx = pre.topk(K, dim=-1)
    reference = torch.zeros(len(x), D_SAE).scatter(-1, idx, vals)
    torch.testing.assert_close(sae.encode(x), reference, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(sae.decode(reference), reference @ t["W_dec"] + t["b_dec"])
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k, sae.cfg.normalize) == (D_IN, D_SAE, K, "none")
    assert sae.cfg.hook_layer == 6 and sae.cfg.meta["source_layout"] == "sparsify"
    # Saved again, it is an ordinary SAELens folder that encodes the same.
    sae.save(tmp_path / "resaved")
    assert torch.equal(Sae.load(tmp_path / "resaved").encode(x), sae.encode(x))


def test_sparsify_rejects_inconsistent_widths_and_unsupported_options(tmp_path: Path):
    write_sparsify(tmp_path / "a", {**SPARSIFY_CFG, "d_in": D_IN})
    with pytest.raises(SaeError, match="d_in"):
        Sae.load(tmp_path / "a", d_in=D_IN + 1)
    write_sparsify(tmp_path / "b", {**SPARSIFY_CFG, "expansion_factor": 8})
    with pytest.raises(SaeError, match="latents"):
        Sae.load(tmp_path / "b")
    write_sparsify(tmp_path / "c", {**SPARSIFY_CFG, "transcode": True})
    with pytest.raises(SaeError, match="transcode"):
        Sae.load(tmp_path / "c")
    write_sparsify(tmp_path / "d", {**SPARSIFY_CFG, "activation": "groupmax"})
    with pytest.raises(SaeError, match="groupmax"):
        Sae.load(tmp_path / "d")


def test_gemma_scope_2_folder(tmp_path: Path):
    t = jumprelu_tensors()
    raw = {"w_enc": t["W_enc"], "w_dec": t["W_dec"], "b_enc": t["b_enc"], "b_dec": t["b_dec"]}
    folder = tmp_path / "layer_5_width_16k_l0_small"
    folder.mkdir()
    save_file({**raw, "threshold": t["threshold"]}, str(folder / "params.safetensors"))
    config = {
        "hf_hook_point_in": "model.layers.5.output",
        "hf_hook_point_out": "model.layers.5.output",
        "width": D_SAE,
        "model_name": "google/gemma-3-270m-pt",
        "architecture": "jump_relu",
        "l0": 20,
        "affine_connection": False,
        "type": "sae",
    }
    (folder / "config.json").write_text(json.dumps(config))
    sae = Sae.load(folder)
    x = inputs()
    pre = x @ t["W_enc"] + t["b_enc"]  # DeepMind's convention: b_dec is not subtracted
    torch.testing.assert_close(sae.encode(x), pre * (pre > t["threshold"]))
    assert sae.cfg.hook_name == "blocks.5.hook_resid_post" and sae.cfg.model_name == "google/gemma-3-270m-pt"
    (folder / "config.json").write_text(json.dumps({**config, "type": "transcoder"}))
    with pytest.raises(SaeError, match="transcoder"):
        Sae.load(folder)


# -- bad folders -------------------------------------------------------------------------------------


def test_bad_folders_raise_sae_error(tmp_path: Path):
    with pytest.raises(SaeError, match="no SAE folder"):
        Sae.load(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SaeError, match=r"sae_weights\.safetensors"):
        Sae.load(empty)
    (empty / "sae.pt").write_bytes(b"not read")
    with pytest.raises(SaeError, match="pickles"):
        Sae.load(empty)

    good = random_sae("jumprelu")
    folder = good.save(tmp_path / "good")
    (folder / "cfg.json").unlink()
    with pytest.raises(SaeError, match=r"missing cfg\.json"):
        Sae.load(folder)

    t = jumprelu_tensors()
    cfg = {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE}
    with pytest.raises(SaeError, match="threshold"):
        Sae.load(
            write_saelens(tmp_path / "no-threshold", cfg, {k: v for k, v in t.items() if k != "threshold"})
        )
    with pytest.raises(SaeError, match="W_dec"):
        Sae.load(write_saelens(tmp_path / "shape", cfg, {**t, "W_dec": torch.zeros(D_SAE, D_IN + 1)}))
    with pytest.raises(SaeError, match="expected"):
        Sae.load(write_saelens(tmp_path / "dims", {**cfg, "d_sae": D_SAE * 2}, t))
    with pytest.raises(SaeError, match="NaN"):
        Sae.load(write_saelens(tmp_path / "nan", cfg, {**t, "b_enc": torch.full((D_SAE,), math.nan)}))
    with pytest.raises(SaeError, match="gated"):
        Sae.load(write_saelens(tmp_path / "gated", {**cfg, "architecture": "gated"}, t))
    with pytest.raises(SaeError, match="k"):
        Sae.load(write_saelens(tmp_path / "no-k", {**cfg, "architecture": "topk"}, t))
    with pytest.raises(SaeError, match="d_in"):
        Sae.load(write_saelens(tmp_path / "no-d-in", {"architecture": "jumprelu", "d_sae": D_SAE}, t))
    with pytest.raises(SaeError, match="layer_norm"):
        Sae.load(write_saelens(tmp_path / "ln", {**cfg, "normalize_activations": "layer_norm"}, t))

    corrupt = write_saelens(tmp_path / "corrupt", cfg, t)
    (corrupt / "sae_weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(SaeError, match="unreadable"):
        Sae.load(corrupt)
    (corrupt / "sae_weights.safetensors").unlink()
    save_file(t, str(corrupt / "sae_weights.safetensors"))
    (corrupt / "cfg.json").write_text("{not json")
    with pytest.raises(SaeError, match="JSON"):
        Sae.load(corrupt)


def test_config_validation():
    with pytest.raises(SaeError, match="k"):
        SaeConfig(D_IN, D_SAE, "topk")
    with pytest.raises(SaeError, match="architecture"):
        SaeConfig(D_IN, D_SAE, "gated", k=K)  # type: ignore[arg-type]
    with pytest.raises(SaeError, match="normalize"):
        SaeConfig(D_IN, D_SAE, "topk", k=K, normalize="layer")  # type: ignore[arg-type]
    with pytest.raises(SaeError, match="dtype"):
        SaeConfig(D_IN, D_SAE, "topk", k=K, dtype="int8")


def test_no_pickle_loading_anywhere_in_the_module():
    source = Path(sae_module.__file__).read_text()
    assert "torch.load" not in source
    assert "import pickle" not in source and "allow_pickle" not in source and "np.load" not in source


# -- shuffle buffer ----------------------------------------------------------------------------------


def test_shuffle_buffer_yields_every_row_once_per_fill():
    rows = torch.arange(200).float()[:, None]
    buffer = ShuffleBuffer(capacity=100, batch_size=10, seed=0)
    out = list(buffer.minibatches(rows.split(25)))
    assert all(mb.shape == (10, 1) for mb in out)
    first_fill, second_fill = torch.cat(out[:10]).flatten(), torch.cat(out[10:]).flatten()
    assert sorted(first_fill.tolist()) == list(range(100))
    assert sorted(second_fill.tolist()) == list(range(100, 200))
    assert first_fill.tolist() != list(range(100))  # actually shuffled


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    capacity=st.integers(1, 60),
    batch_size=st.integers(1, 20),
)
def test_shuffle_buffer_loses_and_repeats_nothing(sizes: list[int], capacity: int, batch_size: int):
    capacity = max(capacity, batch_size)
    ids = torch.arange(sum(sizes)).float()[:, None]
    batches = list(ids.split(sizes)) if sizes else []
    out = list(ShuffleBuffer(capacity, batch_size, seed=1).minibatches(batches))
    got = torch.cat(out).flatten().tolist() if out else []
    assert sorted(got) == list(range(sum(sizes)))
    assert all(mb.shape[0] == batch_size for mb in out[:-1])
    dropped = list(ShuffleBuffer(capacity, batch_size, seed=1, drop_last=True).minibatches(batches))
    assert all(mb.shape[0] == batch_size for mb in dropped)
    assert len(dropped) == sum(sizes) // batch_size


# -- training ----------------------------------------------------------------------------------------


N_FEATURES, D_SYNTH = 32, 32


def synthetic(n: int, seed: int) -> torch.Tensor:
    """Rows that are sparse non-negative mixes of 32 fixed unit directions in R^32, plus small noise."""
    dirs = torch.randn(N_FEATURES, D_SYNTH, generator=torch.Generator().manual_seed(1234))
    dirs /= dirs.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(n, N_FEATURES, generator=g) < 3 / N_FEATURES
    on[torch.arange(n), torch.randint(0, N_FEATURES, (n,), generator=g)] = True  # never an empty row
    coef = on * (0.5 + torch.rand(n, N_FEATURES, generator=g))
    return coef @ dirs + 0.01 * torch.randn(n, D_SYNTH, generator=g)


def stream(n_batches: int, seed: int, rows: int = 512):
    """Activations arriving batch by batch, never held as one corpus."""
    for i in range(n_batches):
        yield synthetic(rows, seed * 10_000 + i)


def small_cfg(**overrides) -> TrainSaeConfig:
    base = {
        "d_sae": 64,
        "k": 4,
        "batch_size": 256,
        "buffer_size": 2048,
        "max_steps": 300,
        "dead_window": 1024,
        "warmup_steps": 10,
    }
    return TrainSaeConfig(**{**base, **overrides})


def test_training_recovers_a_sparse_dictionary():
    sae, log = train_sae(stream(200, seed=1), small_cfg(hook_layer=5), progress=False)
    held_out = evaluate(sae, stream(4, seed=99))
    assert held_out["fvu"] < 0.2, held_out
    assert held_out["dead_share"] < 0.15, held_out
    assert held_out["l0"] == pytest.approx(4.0)
    assert log.fvu[-1] < 0.2 < log.fvu[0]
    assert len(log.fvu) == len(log.l0) == len(log.dead_share) == len(log.tokens) == 300
    assert log.tokens[-1] == 300 * 256
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64), rtol=0, atol=1e-5)
    assert sae.cfg.architecture == "topk" and sae.cfg.normalize == "rms" and sae.cfg.hook_layer == 5
    assert sae.cfg.meta["training"]["steps"] == 300


def test_aux_k_revives_dead_latents():
    def run(aux_coef: float) -> float:
        init = Sae(SaeConfig(D_SYNTH, 64, "topk", k=4), seed=0)
        with torch.no_grad():
            init.b_enc[32:] = -5.0  # half the latents start far below every other pre-activation
        sae, log = train_sae(
            stream(200, seed=1), small_cfg(aux_coef=aux_coef, aux_k=16), init=init, progress=False
        )
        assert max(log.dead_share[5:20]) >= 0.45  # the forced half is seen as dead early on
        return evaluate(sae, stream(4, seed=99))["dead_share"]

    assert run(0.0) >= 0.45  # nothing brings them back without AuxK
    assert run(1 / 32) < 0.25


def test_evaluate_matches_forward_and_the_fvu_definition():
    sae, _ = train_sae(stream(20, seed=2), small_cfg(max_steps=20), progress=False)
    x = synthetic(512, seed=7)
    with torch.no_grad():
        out = sae(x)
    stats = evaluate(sae, [x[:200], x[200:]])
    assert stats["fvu"] == pytest.approx(out.fvu.item(), rel=1e-4)
    assert stats["l0"] == pytest.approx(float(out.l0))
    assert stats["dead_share"] == pytest.approx(1 - float((out.codes != 0).any(0).float().mean()))
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.copy_(sae.normalise(x).mean(0))  # predicting the mean explains nothing
    assert evaluate(sae, [x])["fvu"] == pytest.approx(1.0, abs=1e-4)


def test_constant_normalisation_is_fitted_to_the_data():
    sae, _ = train_sae(stream(4, seed=3), small_cfg(normalize="constant", max_steps=2), progress=False)
    x = synthetic(512, seed=3)
    mean_norm = float(sae.normalise(x).norm(dim=1).mean())
    assert mean_norm == pytest.approx(D_SYNTH**0.5, rel=0.1)


@pytest.mark.parametrize("architecture", ["topk", "jumprelu"])
def test_encode_selected_equals_the_dense_codes(architecture: str) -> None:
    cfg = SaeConfig(d_in=16, d_sae=64, architecture=architecture, k=8 if architecture == "topk" else None)
    sae = Sae(cfg, seed=3)
    if architecture == "jumprelu":
        with torch.no_grad():
            sae.threshold.fill_(0.05)
    x = torch.randn(30, 16) * 50
    latents = torch.tensor([0, 5, 17, 63])
    assert torch.allclose(sae.encode_selected(x, latents), sae.encode(x)[:, latents])


def test_encode_selected_with_a_global_threshold_reads_only_the_selected_latents():
    sae = random_sae("topk")
    x = inputs(50)
    latents = torch.tensor([5, 0, 17, 3])
    thr = sae.kth_threshold(x)
    pre = sae.pre_acts(x)
    kth = pre.topk(sae.cfg.k, dim=-1).values[:, -1]
    assert thr == pytest.approx(float(kth.float().mean()), rel=1e-5)
    got = sae.encode_selected(x, latents, threshold=thr)
    sel = pre[:, latents]
    assert torch.allclose(got, sel.relu() * (sel > thr), atol=1e-5)
    # the selection's encoder columns are cached, and follow a new selection
    other = torch.tensor([1, 2])
    assert torch.allclose(
        sae.encode_selected(x, other, threshold=thr), pre[:, other].relu() * (pre[:, other] > thr)
    )
    # on average about k latents of all d_sae pass the mean k-th threshold
    passed = (sae.encode_selected(x, torch.arange(sae.cfg.d_sae), threshold=thr) > 0).sum(1).float().mean()
    assert 0.5 * sae.cfg.k <= float(passed) <= 2 * sae.cfg.k
