"""Int8 matrix products for the CPU backbone (runtime ``torch-int8``).

Each linear layer of the transformer blocks becomes :class:`Int8Linear`: weights int8 with one scale
per output channel, activations quantised per token at run time (absmax), products accumulated in
int32 by ``torch._int_mm`` (VNNI on x86: twice the bf16 multiply rate), rescaled to the input's dtype.
Per-token scales follow the huge spread of residual norms (BOS and a few tokens reach ~1e4; the inputs
of linear layers are normed, but their outliers differ per token), so one scale per tensor is avoided.

Eager, the extra element-wise passes (scale, round, rescale) cost what the int8 product saves; under
``torch.compile`` they fuse around the product, which is why the runtime always compiles. Measured on
the 2-core AVX512-BF16 dev VM: a 2048x640x1536 product 9.6 ms bf16, 6.1 ms int8 compiled.

:class:`OnnxInt8Linear` is the same arithmetic for the ``onnx-int8`` runtime's exported graph: the
product is ONNX ``MatMulInteger`` of uint8 activations (per-token scale, a fixed zero point) and the int8
weights, the form ONNX Runtime's int8 kernels take. ONNX Runtime's own dynamic quantisation gives a
whole batch one activation scale, which the BOS rows' outliers set: spans moved by up to 2.4 points of
leakage on the dev suite. Without VNNI its uint8 x int8 kernel adds pairs of products in int16, which
saturates for 8-bit activations, so those CPUs get 7-bit ones (:func:`activation_bits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

QMAX = 127


def token_scale(x: torch.Tensor, qmax: int) -> torch.Tensor:
    """Per-token (last axis) absmax scale ``[..., 1]`` that maps each token's activations onto
    ``-qmax..qmax``."""
    return x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / qmax


class Int8Linear(torch.nn.Module):
    """``y = x @ W.T`` (+ bias) with int8 weights and per-token int8 activations (W8A8, symmetric)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / QMAX
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        qweight = torch.empty((self.in_features, self.out_features), dtype=torch.int8)
        qweight.copy_((w / scale[:, None]).round().t())  # fresh row-major strides: a transposed view of
        # a one-column matrix is "contiguous" with strides (1, 1), which torch._int_mm misreads
        self.register_buffer("qweight", qweight)
        """``[in, out]`` int8, row-major: the layout ``torch._int_mm`` multiplies by."""
        self.register_buffer("scale", scale)
        """``[out]`` float32 per output channel."""
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        xf = x.reshape(-1, self.in_features).float()
        s = token_scale(xf, QMAX)
        q = (xf / s).round().clamp(-QMAX, QMAX).to(torch.int8)
        y = torch._int_mm(q, self.qweight).float() * (s * self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


@torch.library.custom_op("guardrail::matmul_u8s8", mutates_args=())
def matmul_u8s8(a: torch.Tensor, b: torch.Tensor, a_zero_point: torch.Tensor) -> torch.Tensor:
    """int32 ``(a - a_zero_point) @ b`` of uint8 ``a [..., K]`` and int8 ``b [K, N]``: ONNX
    ``MatMulInteger`` (exported as that op; run in torch only to check the arithmetic, slowly)."""
    return torch.matmul(a.to(torch.int64) - a_zero_point.to(torch.int64), b.to(torch.int64)).to(torch.int32)


@matmul_u8s8.register_fake
def _(a: torch.Tensor, b: torch.Tensor, a_zero_point: torch.Tensor) -> torch.Tensor:
    return a.new_empty((*a.shape[:-1], b.shape[-1]), dtype=torch.int32)


def _matmul_u8s8_onnx(a, b, a_zero_point):  # an ONNX Script translation for torch.onnx.export
    from onnxscript import opset18 as op

    return op.MatMulInteger(a, b, a_zero_point)


ONNX_TRANSLATIONS = {torch.ops.guardrail.matmul_u8s8.default: _matmul_u8s8_onnx}
"""``custom_translation_table`` for ``torch.onnx.export`` of a model holding :class:`OnnxInt8Linear`."""


def activation_bits(flags: Sequence[str] | None) -> int:
    """Activation bits for ONNX Runtime's uint8 x int8 product on a CPU with ``flags``: 8 with VNNI (or
    AMX), whose dot products accumulate in int32; 7 elsewhere, where pairs of products add in int16 and
    8-bit activations would saturate."""
    return 8 if set(flags or ()) & {"avx512_vnni", "avx_vnni", "amx_int8"} else 7


class OnnxInt8Linear(Int8Linear):
    """:class:`Int8Linear` for export: per-token activations as uint8 around a zero point of
    ``2 ** (bits - 1)`` (so ``bits - 1`` bits of magnitude), product by :func:`matmul_u8s8`."""

    def __init__(self, linear: torch.nn.Linear, bits: int = 8):
        super().__init__(linear)
        if bits not in (7, 8):
            raise ValueError(f"activation bits must be 7 or 8, got {bits}")
        self.qmax = 2 ** (bits - 1) - 1
        self.register_buffer("zero_point", torch.tensor(self.qmax + 1, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        s = token_scale(xf, self.qmax)
        q = ((xf / s).round() + (self.qmax + 1)).to(torch.uint8)
        y = matmul_u8s8(q, self.qweight, self.zero_point).float() * (s * self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype)


def quantize_linear(module: torch.nn.Module, onnx_bits: int | None = None) -> int:
    """Replace each ``torch.nn.Linear`` under ``module`` in place, by :class:`Int8Linear` or, with
    ``onnx_bits``, :class:`OnnxInt8Linear`; returns how many."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(
                    parent, name, Int8Linear(child) if onnx_bits is None else OnnxInt8Linear(child, onnx_bits)
                )
                n += 1
    return n
