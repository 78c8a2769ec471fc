"""Int8 linear layers (runtimes torch-int8 and onnx-int8): close to the float layer, every shape, in place."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.backbone import Backbone, BackboneError
from guardrail.quant import Int8Linear, OnnxInt8Linear, activation_bits, matmul_u8s8, quantize_linear


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 70), st.integers(1, 50), st.booleans(), st.integers(0, 2**16))
def test_int8_linear_is_close_to_the_float_layer(m: int, k: int, n: int, bias: bool, seed: int) -> None:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    x = torch.randn(2, m, k) * torch.logspace(-2, 3, m)[None, :, None]  # per-token scales far apart
    want = lin(x)
    got = Int8Linear(lin)(x)
    assert got.shape == want.shape and got.dtype == x.dtype
    # error of W8A8 with per-token and per-channel scales: a few percent of each token's output scale
    err = (got - want).norm(dim=-1) / (x.norm(dim=-1) * lin.weight.norm() / k**0.5 + 1e-6)
    assert float(err.max()) < 0.05


def test_int8_linear_keeps_bf16_inputs_bf16() -> None:
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    y = Int8Linear(lin)(x)
    assert y.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(y.float(), lin(x.float()), dim=-1)
    assert float(cos.min()) > 0.99


def test_quantize_linear_replaces_every_linear_in_place() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(16, 4))
    )
    assert quantize_linear(model) == 2
    assert isinstance(model[0], Int8Linear) and isinstance(model[2][0], Int8Linear)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert quantize_linear(model) == 0  # nothing left to replace


def test_torch_int8_runtime_on_the_tiny_model(tiny_model_dir) -> None:
    ref = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    bb = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32", runtime="torch-int8")
    assert bb.runtime == "torch-int8"
    assert sum(isinstance(m, Int8Linear) for m in bb._eager.modules()) == 2 * 7  # q k v o gate up down
    enc = bb.encode(["Call Ana Silva at +1 415 555 0100.", "Order #4821 shipped to 12 Main Street"])
    bb.warmup(batch_size=2)
    a, b = ref.residuals_flat(enc), bb.residuals_flat(enc)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert float(cos.min()) > 0.98


def test_torch_int8_runtime_refuses_cuda(tiny_model_dir, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(BackboneError, match="torch-int8 runtime runs on the CPU"):
        Backbone.load(str(tiny_model_dir), layer=2, device="cuda", runtime="torch-int8")


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 30), st.integers(1, 70), st.integers(1, 40), st.sampled_from([7, 8]), st.integers(0, 2**16)
)
def test_onnx_int8_linear_is_the_torch_int8_arithmetic(m: int, k: int, n: int, bits: int, seed: int) -> None:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n)
    x = torch.randn(3, m, k) * torch.logspace(-2, 3, m)[None, :, None]
    onnx = OnnxInt8Linear(lin, bits)
    got = onnx(x)
    if bits == 8:  # the same per-token scales and rounding as torch-int8: the same numbers
        assert torch.allclose(got, Int8Linear(lin)(x), rtol=1e-4, atol=1e-4)
    err = (got - lin(x)).norm(dim=-1) / (x.norm(dim=-1) * lin.weight.norm() / k**0.5 + 1e-6)
    assert float(err.max()) < (0.05 if bits == 8 else 0.1)


def test_seven_bit_activations_never_pass_127(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VNNI, uint8 x int8 pairs add in int16: activations must stay below 128 to never saturate."""
    import guardrail.quant as q

    seen = {}

    def spy(a, b, z):
        seen["a"], seen["z"] = a, z
        return matmul_u8s8(a, b, z)

    monkeypatch.setattr(q, "matmul_u8s8", spy)
    lin = torch.nn.Linear(16, 4)
    OnnxInt8Linear(lin, 7)(torch.randn(9, 16) * 1e4)
    assert int(seen["a"].max()) <= 127 and int(seen["a"].min()) >= 1 and int(seen["z"]) == 64
    assert activation_bits(["avx2", "avx512_vnni"]) == 8 and activation_bits(["avx2", "fma"]) == 7
    assert activation_bits(None) == 7
    with pytest.raises(ValueError, match="7 or 8"):
        OnnxInt8Linear(lin, 6)
