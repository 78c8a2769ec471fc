"""SAE stage: a layer's residual ``[T, d_in]`` -> sparse feature codes ``[T, d_sae]``.

One :class:`Sae` covers the three activation rules the project reads: TopK, BatchTopK (TopK at
inference) and JumpReLU. Its encoder is

    pre   = (normalise(x) - b_dec * apply_b_dec_to_input) @ W_enc + b_enc      [T, d_sae]
    codes = TopK_k(ReLU(pre))                        topk, batchtopk
          | ReLU(pre) * (pre > threshold)            jumprelu (= pre * (pre > threshold) when threshold >= 0)

and its decoder ``codes @ W_dec + b_dec`` works in the normalised space. On disk it reads and writes
the SAELens layout (``cfg.json`` + ``sae_weights.safetensors``), and also reads EleutherAI sparsify
folders (``cfg.json`` + ``sae.safetensors``) and raw Gemma Scope 2 folders (``config.json`` +
``params.safetensors``); the layout is told by the files present. Weights are safetensors only: an
SAE is data, never code, so nothing here unpickles.

Layer numbering: ``hook_layer`` is the SAELens / TransformerLens block index, so
``blocks.{hook_layer}.hook_resid_post`` (HF ``model.layers.{hook_layer}.output``) is the residual after
``hook_layer + 1`` blocks, i.e. what :class:`guardrail.backbone.Backbone` returns for
``layer = hook_layer + 1`` (see :attr:`SaeConfig.backbone_layer`).

Training (:func:`train_sae`) follows Gao et al. 2024: TopK with an AuxK loss on dead latents, unit-norm
decoder rows, encoder initialised from the decoder transpose, ``b_dec`` from the data mean, Adam.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from guardrail.probe import rms_normalise

Architecture = Literal["topk", "batchtopk", "jumprelu"]
Normalize = Literal["none", "rms", "constant"]
ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "jumprelu")
NORMALIZATIONS: tuple[str, ...] = ("none", "rms", "constant")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_CFG = "cfg.json"
SPARSIFY_WEIGHTS = "sae.safetensors"
GEMMA_SCOPE_CFG = "config.json"
GEMMA_SCOPE_WEIGHTS = "params.safetensors"
FORMAT_VERSION = 1

# Our normalisation <-> SAELens ``normalize_activations``. SAELens's constant_norm_rescale scales each
# token to norm sqrt(d_in), which is exactly x / RMS(x); expected_average_only_in multiplies by one
# dataset-wide scalar (the same meaning as our ``norm_scale``).
_TO_SAELENS_NORM = {"none": "none", "rms": "constant_norm_rescale", "constant": "expected_average_only_in"}
_FROM_SAELENS_NORM = {v: k for k, v in _TO_SAELENS_NORM.items()}


class SaeError(ValueError):
    """An SAE folder or config that is missing, malformed, unsupported or inconsistent."""


def _dtype(name: str) -> torch.dtype:
    """``"float32"`` or ``"torch.float32"`` -> ``torch.float32``."""
    key = str(name).removeprefix("torch.")
    if key not in DTYPES:
        raise SaeError(f"unsupported dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[key]


@dataclass(slots=True)
class SaeConfig:
    """Shape, activation rule, input normalisation and provenance of one SAE."""

    d_in: int
    d_sae: int
    architecture: Architecture = "topk"
    k: int | None = None
    """Active latents per token (topk, batchtopk); None for jumprelu."""
    normalize: Normalize = "rms"
    """Input normalisation: ``rms`` (x / RMS(x), the default: raw residuals reach ~1e4), ``constant``
    (x * ``norm_scale``) or ``none``."""
    norm_scale: float = 1.0
    """Multiplier applied to every input when ``normalize == "constant"`` (SAELens's scaling factor)."""
    apply_b_dec_to_input: bool = True
    """Subtract ``b_dec`` before encoding (SAELens standard/topk and sparsify: yes; Gemma Scope: no)."""
    batch_threshold: float | None = None
    """BatchTopK only: a learned global threshold; when set, inference keeps ``pre > batch_threshold``
    (variable count per token) instead of the k largest."""
    dtype: str = "float32"
    model_name: str | None = None
    hook_layer: int | None = None
    """Block index of the residual read (SAELens ``blocks.{hook_layer}.hook_resid_post``)."""
    hook_name: str | None = None
    """Defaults to ``blocks.{hook_layer}.hook_resid_post``; kept as found when loaded."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form provenance (training data, metrics, source layout...); must be JSON-serialisable."""

    def __post_init__(self) -> None:
        if not (
            isinstance(self.d_in, int) and isinstance(self.d_sae, int) and self.d_in > 0 and self.d_sae > 0
        ):
            raise SaeError(f"d_in and d_sae must be positive integers, got {self.d_in!r}, {self.d_sae!r}")
        if self.architecture not in ARCHITECTURES:
            raise SaeError(f"unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if self.architecture == "jumprelu":
            self.k = None
        elif not (isinstance(self.k, int) and 1 <= self.k <= self.d_sae):
            raise SaeError(f"{self.architecture} needs an integer k in 1..{self.d_sae}, got {self.k!r}")
        if self.normalize not in NORMALIZATIONS:
            raise SaeError(f"unknown normalize {self.normalize!r}; expected one of {NORMALIZATIONS}")
        if not (math.isfinite(self.norm_scale) and self.norm_scale > 0):
            raise SaeError(f"norm_scale must be a positive finite number, got {self.norm_scale!r}")
        if self.batch_threshold is not None and self.architecture != "batchtopk":
            raise SaeError("batch_threshold only applies to the batchtopk architecture")
        _dtype(self.dtype)
        if self.hook_name is None and self.hook_layer is not None:
            self.hook_name = f"blocks.{self.hook_layer}.hook_resid_post"

    @property
    def backbone_layer(self) -> int | None:
        """The ``layer`` argument of :meth:`Backbone.load` whose output this SAE reads."""
        return None if self.hook_layer is None else self.hook_layer + 1


class EncoderOutput(NamedTuple):
    """Sparse codes as (values, indices), the TopK fast path."""

    top_acts: Tensor
    """``[T, k]`` activations of the selected latents (after ReLU; may hold zeros)."""
    top_indices: Tensor
    """``[T, k]`` indices of the selected latents."""
    pre_acts: Tensor
    """``[T, d_sae]`` encoder pre-activations, before ReLU and selection."""


class ForwardOutput(NamedTuple):
    """One encode-decode pass, with its quality numbers."""

    recon: Tensor
    """``[T, d_in]`` reconstruction, in the normalised space."""
    codes: Tensor
    """``[T, d_sae]`` dense codes, zeros off-support."""
    target: Tensor
    """``[T, d_in]`` normalised input that ``recon`` approximates."""
    fvu: Tensor
    """Scalar: sum((target - recon)^2) / sum((target - mean(target))^2) over the batch."""
    l0: Tensor
    """Scalar: mean number of non-zero codes per token."""


def fvu(target: Tensor, recon: Tensor) -> Tensor:
    """Fraction of variance unexplained of ``recon`` for ``target``, both ``[T, d]``; a scalar."""
    total = (target - target.mean(0)).pow(2).sum()
    return (target - recon).pow(2).sum() / total.clamp_min(torch.finfo(target.dtype).tiny)


class Sae(nn.Module):
    """A sparse autoencoder over one layer's residual stream (see the module docstring)."""

    threshold: nn.Parameter | None

    def __init__(self, cfg: SaeConfig, *, seed: int | None = 0, init: bool = True):
        """Parameters in ``cfg.dtype`` on the CPU; ``init=False`` leaves them unset (a loader fills them)."""
        super().__init__()
        self.cfg = cfg
        dt = _dtype(cfg.dtype)
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dt))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dt))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dt))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dt))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dt))
        else:
            self.register_parameter("threshold", None)
        if init:
            self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = 0) -> None:
        """Gao et al. init: random unit-norm decoder rows, encoder = decoder transpose, zero biases."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.randn(self.cfg.d_sae, self.cfg.d_in, generator=gen, dtype=torch.float32)
        w /= w.norm(dim=1, keepdim=True)
        self.W_dec.copy_(w)
        self.W_enc.copy_(w.T)
        self.b_enc.zero_()
        self.b_dec.zero_()
        if self.threshold is not None:
            self.threshold.zero_()

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    # -- encoder -----------------------------------------------------------------------------------

    def normalise(self, x: Tensor) -> Tensor:
        """The input as the SAE sees it: ``[T, d_in] -> [T, d_in]`` in the weights' dtype.

        Normalised in float32 whatever the weights' dtype: squaring residuals of ~1e4 overflows fp16.
        """
        return self._normalise_f32(x).to(self.dtype)

    def _normalise_f32(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"expected inputs [..., {self.cfg.d_in}], got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if self.cfg.normalize == "rms":
            x = rms_normalise(x)
        elif self.cfg.normalize == "constant":
            x = x * self.cfg.norm_scale
        return x

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations ``[T, d_sae]`` of a raw input ``[T, d_in]``."""
        return self._pre(self.normalise(x))

    def _pre(self, xn: Tensor) -> Tensor:
        """Pre-activations ``[T, d_sae]`` of an already normalised input ``[T, d_in]``."""
        if self.cfg.apply_b_dec_to_input:
            xn = xn - self.b_dec
        return xn @ self.W_enc + self.b_enc

    def _uses_topk(self) -> bool:
        return self.cfg.architecture == "topk" or (
            self.cfg.architecture == "batchtopk" and self.cfg.batch_threshold is None
        )

    def encode_topk(self, x: Tensor) -> EncoderOutput:
        """The k largest ReLU'd pre-activations per token, as values and indices (``[T, k]`` each).

        The inference fast path for topk and batchtopk (BatchTopK selects k per token *on average*
        over a training batch; per token at inference, as Bussmann et al. 2024 do without a threshold).
        """
        if not self._uses_topk():
            raise SaeError("encode_topk needs a topk SAE (or batchtopk without a global threshold)")
        pre = self.pre_acts(x)
        return EncoderOutput(*self._topk(pre), pre)

    def _topk(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """The k largest ReLU'd pre-activations ``[T, k]`` and their indices ``[T, k]``."""
        assert self.cfg.k is not None
        return pre.relu().topk(self.cfg.k, dim=-1, sorted=False)

    def encode(self, x: Tensor) -> Tensor:
        """Dense codes ``[T, d_sae]`` of a raw input ``[T, d_in]``, zeros off-support."""
        return self._activate(self.pre_acts(x))

    def encode_selected(self, x: Tensor, latents: Tensor, threshold: float | None = None) -> Tensor:
        """Codes ``[T, L]`` of the ``latents`` ``[L]`` only, equal to ``encode(x)[:, latents]``.

        The probes' fast path: no dense ``[T, d_sae]`` code matrix is built. TopK still needs every
        pre-activation to find each token's k-th largest; a selected latent keeps its value when it
        reaches that (ties at the k-th value may keep one more latent than ``encode``).

        ``threshold``: one global threshold instead of each token's k-th largest (the inference rule of
        BatchTopK; see :meth:`kth_threshold`). Then, as for JumpReLU SAEs, only the selected latents'
        pre-activations are computed: ``L`` columns of the encoder instead of ``d_sae``.
        """
        if self._uses_topk() and threshold is None:
            pre = self.pre_acts(x)
            sel = pre[:, latents]
            assert self.cfg.k is not None
            kth = pre.topk(self.cfg.k, dim=-1, sorted=False).values.min(-1, keepdim=True).values
            return sel.relu() * (sel >= kth)
        # In float32: the threshold is a hard cut, so rounding noise at the cut switches latents on or
        # off; L columns are cheap (~1.5 ms more than bf16 at 8 x 128 tokens on the 2-core dev CPU).
        xn = self._normalise_f32(x)
        if self.cfg.apply_b_dec_to_input:
            xn = xn - self.b_dec.float()
        w, b = self._selected(latents)
        sel = torch.addmm(b, xn, w)
        thr = threshold
        if thr is None:
            thr = self.threshold[latents].float() if self.threshold is not None else self.cfg.batch_threshold
        return (sel.relu() * (sel > thr)).to(self.dtype)

    def _selected(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder's columns and biases of ``latents`` in float32, kept while weights and selection
        stay. Traced (``torch.export`` for ONNX, ``torch.compile``) they are computed in the graph: a
        traced tensor has no data pointer to key a cache on."""
        try:
            key = (
                latents.data_ptr(),
                latents.numel(),
                self.W_enc.data_ptr(),
                self.W_enc.dtype,
                self.W_enc.device,
            )
        except RuntimeError:  # fake or functional tensors while tracing: no cache
            key = None
        cached = self.__dict__.get("_selection")
        if key is not None and cached is not None and cached[0] == key:
            return cached[1], cached[2]
        idx = latents.to(self.W_enc.device)
        w, b = self.W_enc[:, idx].float().contiguous(), self.b_enc[idx].float().contiguous()
        if key is not None:
            self.__dict__["_selection"] = (key, w, b)
        return w, b

    @torch.no_grad()
    def kth_threshold(self, x: Tensor, chunk: int = 4096) -> float:
        """Mean over the tokens of ``x`` ``[T, d_in]`` of each token's k-th largest pre-activation: the
        global threshold that keeps ~k latents per token on such inputs (how BatchTopK SAEs infer)."""
        if self.cfg.k is None:
            raise SaeError("kth_threshold needs a TopK SAE (k)")
        total, n = 0.0, 0
        for i in range(0, len(x), chunk):
            pre = self.pre_acts(x[i : i + chunk]).float()
            total += float(pre.topk(self.cfg.k, dim=-1).values[:, -1].sum())
            n += len(pre)
        return total / max(n, 1)

    def _activate(self, pre: Tensor) -> Tensor:
        """Codes ``[T, d_sae]`` from pre-activations ``[T, d_sae]``."""
        if self._uses_topk():
            acts, idx = self._topk(pre)
            return torch.zeros_like(pre).scatter_(-1, idx, acts)
        # JumpReLU, and BatchTopK with its global threshold. The ReLU matters only for a negative
        # threshold; it keeps codes non-negative as SAELens does.
        thr = self.threshold if self.threshold is not None else self.cfg.batch_threshold
        return pre.relu() * (pre > thr)

    # -- decoder -----------------------------------------------------------------------------------

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[T, d_in]`` (normalised space) of dense codes ``[T, d_sae]``."""
        return codes.to(self.dtype) @ self.W_dec + self.b_dec

    def decode_sparse(self, top_acts: Tensor, top_indices: Tensor, *, bias: bool = True) -> Tensor:
        """Reconstruction ``[T, d_in]`` from ``[T, k]`` values and indices, without a dense ``[T, d_sae]``."""
        flat_idx = top_indices.reshape(-1, top_indices.shape[-1])
        flat_acts = top_acts.reshape(flat_idx.shape).to(self.dtype)
        y = F.embedding_bag(flat_idx, self.W_dec, per_sample_weights=flat_acts, mode="sum")
        y = y.reshape(*top_indices.shape[:-1], self.cfg.d_in)
        return y + self.b_dec if bias else y

    def forward(self, x: Tensor) -> ForwardOutput:
        """Encode and decode a raw input ``[T, d_in]``; FVU and L0 over the batch."""
        target = self.normalise(x)
        codes = self._activate(self._pre(target))
        recon = self.decode(codes)
        l0 = (codes != 0).sum(-1).float().mean()
        return ForwardOutput(recon, codes, target, fvu(target, recon), l0)

    # -- on disk -----------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors``; returns the folder.

        BatchTopK is written as SAELens ``topk`` (or as ``jumprelu`` with a constant threshold when it
        has a global threshold), which SAELens itself encodes identically; the ``guardrail`` key of
        ``cfg.json`` restores the exact config here.
        """
        c = self.cfg
        as_jumprelu = c.architecture == "jumprelu" or c.batch_threshold is not None
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        if c.batch_threshold is not None:
            tensors["threshold"] = torch.full((c.d_sae,), c.batch_threshold, dtype=self.dtype)
        cfg: dict[str, Any] = {
            "architecture": "jumprelu" if as_jumprelu else "topk",
            "d_in": c.d_in,
            "d_sae": c.d_sae,
            "dtype": c.dtype,
            "device": "cpu",
            "model_name": c.model_name,
            "hook_name": c.hook_name,
            "hook_layer": c.hook_layer,
            "hook_head_index": None,
            "apply_b_dec_to_input": c.apply_b_dec_to_input,
            "normalize_activations": _TO_SAELENS_NORM[c.normalize],
            # Pre-6.0 SAELens configs (no sae_lens_version) read k from activation_fn_kwargs.
            "activation_fn": "relu" if as_jumprelu else "topk",
            "activation_fn_kwargs": {} if as_jumprelu else {"k": c.k},
            "finetuning_scaling_factor": False,
            "prepend_bos": True,  # the backbone starts every window with BOS
            "guardrail": {
                "format_version": FORMAT_VERSION,
                "architecture": c.architecture,
                "k": c.k,
                "normalize": c.normalize,
                "norm_scale": c.norm_scale,
                "batch_threshold": c.batch_threshold,
                "meta": c.meta,
            },
        }
        if not as_jumprelu:
            cfg["k"] = c.k
        text = json.dumps(cfg, indent=2) + "\n"  # before writing anything: meta may not serialise
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(out / SAELENS_WEIGHTS))
        (out / SAELENS_CFG).write_text(text, encoding="utf-8")
        return out

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        d_in: int | None = None,
        dtype: str | None = None,
        norm_scale: float | None = None,
    ) -> Sae:
        """Read an SAE folder in the SAELens, sparsify or Gemma Scope 2 layout (told by its files).

        ``d_in`` checks (or, for sparsify folders without one, supplies) the input width; ``dtype``
        overrides the stored one; ``norm_scale`` supplies the dataset scalar of an SAELens
        ``expected_average_only_in`` SAE, which SAELens keeps outside the folder. Raises
        :class:`SaeError` on anything missing, unsupported or inconsistent. Never unpickles.
        """
        path = Path(folder)
        if not path.is_dir():
            raise SaeError(f"no SAE folder at {path}")
        try:
            cfg, tensors = _read_folder(path, d_in, norm_scale)
        except SaeError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as e:  # a config field of the wrong type
            raise SaeError(f"{path.name}: malformed SAE config ({type(e).__name__}: {e})") from e
        if d_in is not None and cfg.d_in != d_in:
            raise SaeError(f"{path.name}: SAE reads d_in={cfg.d_in}, the caller expects {d_in}")
        if dtype is not None:
            _dtype(dtype)
            cfg.dtype = dtype
        return _build(cls, cfg, tensors, path.name)


# -- layout readers: each returns our config and the tensors under SAELens names --------------------


def _read_folder(
    path: Path, d_in: int | None, norm_scale: float | None
) -> tuple[SaeConfig, dict[str, Tensor]]:
    """Dispatch on the weights file present: each layout names its file differently."""
    if (path / SAELENS_WEIGHTS).is_file():
        return _read_saelens(path, norm_scale)
    if (path / SPARSIFY_WEIGHTS).is_file():
        return _read_sparsify(path, d_in)
    if (path / GEMMA_SCOPE_WEIGHTS).is_file():
        return _read_gemma_scope(path)
    pickled = sorted(f.name for f in path.iterdir() if f.suffix in {".pt", ".pth", ".bin", ".pkl", ".npz"})
    hint = (
        f" ({', '.join(pickled)} may hold pickles and are never read: convert to safetensors)"
        if pickled
        else ""
    )
    raise SaeError(
        f"{path}: no {SAELENS_WEIGHTS} (SAELens), {SPARSIFY_WEIGHTS} (sparsify) or "
        f"{GEMMA_SCOPE_WEIGHTS} (Gemma Scope 2){hint}"
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SaeError(f"{path.parent.name}: missing {path.name}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SaeError(f"{path.parent.name}/{path.name}: unreadable JSON ({e})") from e
    if not isinstance(raw, dict):
        raise SaeError(f"{path.parent.name}/{path.name}: expected a JSON object")
    return raw


def _read_tensors(path: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is no mapping)
    except (OSError, SafetensorError) as e:
        raise SaeError(f"{path.parent.name}/{path.name}: unreadable safetensors ({e})") from e


def _int_field(raw: dict[str, Any], key: str, where: str) -> int:
    value = raw.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not float(value).is_integer()
        or value < 1
    ):
        raise SaeError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return int(value)


def _layer_of_hook(hook_name: str | None) -> int | None:
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", hook_name or "")
    return int(match.group(1)) if match else None


def _read_saelens(path: Path, norm_scale: float | None) -> tuple[SaeConfig, dict[str, Tensor]]:
    where = path.name
    raw = _read_json(path / SAELENS_CFG)
    tensors = _read_tensors(path / SAELENS_WEIGHTS)
    own = raw.get("guardrail") or {}
    if not isinstance(own, dict):
        raise SaeError(f"{where}: 'guardrail' in {SAELENS_CFG} must be an object")
    # SAELens >= 6 nests provenance under "metadata" (briefly "meta"); older configs keep it flat.
    nested = raw.get("metadata") or raw.get("meta") or {}
    prov = {**raw, **nested} if isinstance(nested, dict) else raw

    arch = raw.get("architecture", "standard")
    act_fn = raw.get("activation_fn", raw.get("activation_fn_str", "relu"))
    kwargs = raw.get("activation_fn_kwargs") or {}
    k_raw = raw.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
    if arch == "standard" and act_fn == "topk":  # pre-6.0 SAELens spelled TopK this way
        arch = "topk"
    elif arch == "standard" and act_fn == "relu":
        # A ReLU SAE is a JumpReLU SAE with a zero threshold: read it as one.
        arch = "jumprelu"
        tensors.setdefault("threshold", torch.zeros(tensors["b_enc"].shape) if "b_enc" in tensors else None)
    if arch not in ARCHITECTURES:
        raise SaeError(
            f"{where}: unsupported architecture {arch!r} (activation {act_fn!r}); expected {ARCHITECTURES}"
        )
    batch_threshold = None
    if own.get("architecture") == "batchtopk":
        arch, k_raw = "batchtopk", own.get("k", k_raw)
        batch_threshold = own.get("batch_threshold")
        tensors.pop("threshold", None)  # the broadcast copy written for SAELens
    k = None
    if arch != "jumprelu":
        # SAELens's BatchTopK k is an average (a float); inference keeps that many per token.
        if isinstance(k_raw, float) and arch == "batchtopk":
            k_raw = max(1, round(k_raw))
        k = _int_field({"k": k_raw}, "k", where)

    if "normalize" in own:
        normalize, scale = own["normalize"], float(own.get("norm_scale", 1.0))
    else:
        norm_raw = raw.get("normalize_activations", "none")
        norm_raw = {None: "none", False: "none", True: "expected_average_only_in"}.get(norm_raw, norm_raw)
        if norm_raw not in _FROM_SAELENS_NORM:
            raise SaeError(f"{where}: unsupported normalize_activations {norm_raw!r}")
        normalize, scale = _FROM_SAELENS_NORM[norm_raw], 1.0
        if normalize == "constant":
            found = norm_scale if norm_scale is not None else raw.get("norm_scaling_factor")
            if found is None:
                raise SaeError(
                    f"{where}: normalize_activations is expected_average_only_in but no scaling factor "
                    "is stored; pass norm_scale= (SAELens keeps it in its pretrained directory)"
                )
            scale = float(found)

    if "log_threshold" in tensors and "threshold" not in tensors:  # SAELens training checkpoints
        tensors["threshold"] = tensors.pop("log_threshold").float().exp()
    legacy = tensors.pop("scaling_factor", None)  # the older name of the same tensor
    scaling = tensors.pop("finetuning_scaling_factor", legacy)
    if scaling is not None and "W_dec" in tensors:
        # SAELens decodes (codes * s) @ W_dec; fold s into the decoder rows (encoding is unchanged).
        tensors["W_dec"] = tensors["W_dec"] * scaling.to(tensors["W_dec"].dtype).reshape(-1, 1)

    hook_name = prov.get("hook_name", prov.get("hook_point"))
    hook_layer = prov.get("hook_layer", prov.get("hook_point_layer"))
    if hook_layer is None:
        hook_layer = _layer_of_hook(hook_name)
    try:
        cfg = SaeConfig(
            d_in=_int_field(raw, "d_in", where),
            d_sae=_int_field(raw, "d_sae", where),
            architecture=arch,
            k=k,
            normalize=normalize,
            norm_scale=scale,
            apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
            batch_threshold=None if batch_threshold is None else float(batch_threshold),
            dtype=str(raw.get("dtype", "float32")),
            model_name=prov.get("model_name"),
            hook_layer=None if hook_layer is None else int(hook_layer),
            hook_name=hook_name,
            meta=dict(own["meta"]) if isinstance(own.get("meta"), dict) else {"source_layout": "saelens"},
        )
    except (TypeError, ValueError) as e:
        raise SaeError(f"{where}: {e}") from e
    return cfg, {k_: v for k_, v in tensors.items() if v is not None}


def _read_sparsify(path: Path, d_in: int | None) -> tuple[SaeConfig, dict[str, Tensor]]:
    where = path.name
    raw = _read_json(path / SPARSIFY_CFG)
    tensors = _read_tensors(path / SPARSIFY_WEIGHTS)
    if raw.get("activation", "topk") != "topk":
        raise SaeError(f"{where}: unsupported sparsify activation {raw.get('activation')!r} (only topk)")
    # Each of these changes what is encoded or decoded beyond the plain SAE read here.
    for flag in ("transcode", "skip_connection", "embed_skip", "gram_lookup", "signed"):
        if raw.get(flag):
            raise SaeError(f"{where}: sparsify option {flag!r} is not supported")
    missing = [n for n in ("encoder.weight", "encoder.bias", "W_dec", "b_dec") if n not in tensors]
    if missing:
        raise SaeError(f"{where}/{SPARSIFY_WEIGHTS}: missing tensors {missing}")
    enc = tensors["encoder.weight"]
    if enc.ndim != 2:
        raise SaeError(f"{where}: encoder.weight must be [num_latents, d_in], got {tuple(enc.shape)}")
    width = int(raw["d_in"]) if "d_in" in raw else (d_in if d_in is not None else enc.shape[1])
    if enc.shape[1] != width:
        raise SaeError(f"{where}: encoder.weight is {tuple(enc.shape)} but d_in is {width}")
    num_latents = raw.get("num_latents") or 0
    expected = int(num_latents) if num_latents else int(raw.get("expansion_factor", 32)) * width
    if enc.shape[0] != expected:
        raise SaeError(f"{where}: encoder.weight has {enc.shape[0]} latents, the config implies {expected}")
    hookpoint = re.fullmatch(r"(?:model\.)?layers\.(\d+)", path.name)
    try:
        cfg = SaeConfig(
            d_in=width,
            d_sae=expected,
            architecture="topk",
            k=_int_field(raw, "k", where),
            normalize="none",  # sparsify trains on raw activations
            apply_b_dec_to_input=True,  # sparsify encodes x - b_dec
            dtype=str(enc.dtype).removeprefix("torch."),
            hook_layer=int(hookpoint.group(1)) if hookpoint else None,
            meta={
                "source_layout": "sparsify",
                "hookpoint": path.name,
                **{key: raw[key] for key in ("normalize_decoder", "multi_topk") if key in raw},
            },
        )
    except (TypeError, ValueError) as e:
        raise SaeError(f"{where}: {e}") from e
    # sparsify keeps the encoder as an nn.Linear ([d_sae, d_in]); SAELens's W_enc is its transpose.
    renamed = {
        "W_enc": enc.T,
        "b_enc": tensors["encoder.bias"],
        "W_dec": tensors["W_dec"],
        "b_dec": tensors["b_dec"],
    }
    return cfg, renamed


def _read_gemma_scope(path: Path) -> tuple[SaeConfig, dict[str, Tensor]]:
    where = path.name
    raw = _read_json(path / GEMMA_SCOPE_CFG)
    tensors = _read_tensors(path / GEMMA_SCOPE_WEIGHTS)
    arch = raw.get("architecture", "jump_relu")
    if arch not in ("jump_relu", "jumprelu"):
        raise SaeError(f"{where}: unsupported Gemma Scope architecture {arch!r} (only jump_relu)")
    hook_in, hook_out = raw.get("hf_hook_point_in"), raw.get("hf_hook_point_out")
    if raw.get("type", "sae") != "sae" or raw.get("affine_connection") or (hook_out and hook_out != hook_in):
        raise SaeError(f"{where}: a transcoder or crosscoder, not an SAE")
    # Gemma Scope names its tensors w_enc/w_dec (lower case); the rest match SAELens.
    renamed = {("W" + n[1:] if n in ("w_enc", "w_dec") else n): t for n, t in tensors.items()}
    if "W_enc" not in renamed or renamed["W_enc"].ndim != 2:
        raise SaeError(f"{where}/{GEMMA_SCOPE_WEIGHTS}: missing or malformed w_enc")
    width_in, width = (int(s) for s in renamed["W_enc"].shape)
    if "width" in raw and int(raw["width"]) != width:
        raise SaeError(f"{where}: config width {raw['width']} but w_enc has {width} latents")
    layer = re.fullmatch(r"model\.layers\.(\d+)\.output", hook_in or "")
    try:
        cfg = SaeConfig(
            d_in=width_in,
            d_sae=width,
            architecture="jumprelu",
            normalize="none",
            # DeepMind's JumpReLU SAEs encode x @ W_enc + b_enc, without subtracting b_dec.
            apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", False)),
            dtype=str(renamed["W_enc"].dtype).removeprefix("torch."),
            model_name=raw.get("model_name"),
            hook_layer=int(layer.group(1)) if layer else None,
            hook_name=None if layer else hook_in,
            meta={
                "source_layout": "gemma-scope-2",
                **{k: raw[k] for k in ("hf_hook_point_in", "l0") if k in raw},
            },
        )
    except (TypeError, ValueError) as e:
        raise SaeError(f"{where}: {e}") from e
    return cfg, renamed


def _build(cls: type[Sae], cfg: SaeConfig, tensors: dict[str, Tensor], where: str) -> Sae:
    """Check names, shapes and values of SAELens-named tensors and wrap them in an SAE."""
    shapes = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_dec": (cfg.d_in,),
    }
    if cfg.architecture == "jumprelu":
        shapes["threshold"] = (cfg.d_sae,)
    missing = [n for n in shapes if n not in tensors]
    if missing:
        raise SaeError(f"{where}: missing tensors {missing} for a {cfg.architecture} SAE")
    for name, shape in shapes.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise SaeError(
                f"{where}: {name} is {tuple(t.shape)}, expected {shape} (d_in={cfg.d_in}, d_sae={cfg.d_sae})"
            )
        if not t.is_floating_point():
            raise SaeError(f"{where}: {name} must be floating point, got {t.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise SaeError(f"{where}: {name} holds NaN or infinite values")
    sae = cls(cfg, init=False)
    dt = _dtype(cfg.dtype)
    sae.load_state_dict({n: tensors[n].to(dt) for n in shapes}, strict=True)
    return sae


# -- training ---------------------------------------------------------------------------------------


class ShuffleBuffer:
    """Mixes a stream of activation batches: fill ``capacity`` rows, shuffle them, yield minibatches.

    Consecutive rows come from the same document and are strongly correlated; shuffling across many
    documents keeps each optimiser step representative without ever holding the whole corpus.
    """

    def __init__(self, capacity: int, batch_size: int, *, seed: int = 0, drop_last: bool = False):
        if batch_size < 1 or capacity < batch_size:
            raise ValueError(f"need 1 <= batch_size <= capacity, got {batch_size} and {capacity}")
        self.capacity = capacity
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        """Drop the final short minibatch (a tiny batch has an ill-defined FVU)."""

    def minibatches(self, batches: Iterable[Tensor]) -> Iterator[Tensor]:
        """Shuffled minibatches ``[batch_size, d]`` of the rows of ``batches`` (each ``[N, d]``).

        Every row is yielded exactly once: the rows left over from a fill (fewer than a minibatch) open
        the next fill, and the end of the stream flushes what remains.
        """
        gen = torch.Generator().manual_seed(self.seed)
        pending: list[Tensor] = []
        count = 0
        for batch in batches:
            if batch.ndim != 2:
                raise ValueError(f"activation batches must be [N, d], got {tuple(batch.shape)}")
            pending.append(batch.detach())
            count += batch.shape[0]
            if count < self.capacity:
                continue
            rows = torch.cat(pending)
            rows = rows[torch.randperm(rows.shape[0], generator=gen).to(rows.device)]
            full = rows.shape[0] // self.batch_size * self.batch_size
            yield from rows[:full].split(self.batch_size)
            pending, count = [rows[full:]], rows.shape[0] - full
        if count:
            rows = torch.cat(pending)
            rows = rows[torch.randperm(rows.shape[0], generator=gen).to(rows.device)]
            for mb in rows.split(self.batch_size):
                if mb.shape[0] == self.batch_size or not self.drop_last:
                    yield mb


@dataclass(slots=True)
class TrainSaeConfig:
    """Hyper-parameters of :func:`train_sae` (defaults after Gao et al. 2024 and sparsify)."""

    d_sae: int = 8192
    k: int = 32
    lr: float | None = None
    """Adam learning rate; None = 2e-4 / sqrt(d_sae / 2**14), the scaling law of Gao et al."""
    batch_size: int = 4096
    """Tokens per optimiser step."""
    buffer_size: int = 262_144
    """Rows held by the :class:`ShuffleBuffer`."""
    aux_k: int | None = None
    """Dead latents used by the AuxK loss; None = d_in // 2 (Gao et al., appendix B.1)."""
    aux_coef: float = 1 / 32
    dead_window: int = 10_000_000
    """A latent that has not fired for this many tokens counts as dead."""
    max_tokens: int | None = None
    max_steps: int | None = None
    warmup_steps: int = 100
    """Linear learning-rate warm-up."""
    normalize: Normalize = "rms"
    b_dec_init: Literal["mean", "median"] = "median"
    """``b_dec`` starts at the plain or geometric mean (median) of the first minibatch."""
    seed: int = 0
    device: str = "cpu"
    model_name: str | None = None
    hook_layer: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TrainLog:
    """Per-step training curves."""

    fvu: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    dead_share: list[float] = field(default_factory=list)
    """Share of latents that have not fired within ``dead_window`` tokens."""
    aux_loss: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    """Tokens seen after each step."""


def geometric_median(x: Tensor, iters: int = 20) -> Tensor:
    """Weiszfeld's geometric median of the rows of ``x`` ``[N, d]`` -> ``[d]``."""
    med = x.mean(0)
    for _ in range(iters):
        w = 1 / (x - med).norm(dim=1).clamp_min(1e-8)
        med = (w[:, None] * x).sum(0) / w.sum()
    return med


def _new_sae(first: Tensor, cfg: TrainSaeConfig) -> Sae:
    """A fresh TopK SAE for inputs like ``first`` ``[N, d_in]``, with data-dependent init."""
    d_in = first.shape[1]
    sae_cfg = SaeConfig(
        d_in=d_in,
        d_sae=cfg.d_sae,
        architecture="topk",
        k=cfg.k,
        normalize=cfg.normalize,
        model_name=cfg.model_name,
        hook_layer=cfg.hook_layer,
        meta=dict(cfg.meta),
    )
    if cfg.normalize == "constant":
        # SAELens's convention: scale the data so that the average token norm is sqrt(d_in).
        sae_cfg.norm_scale = float(d_in**0.5 / first.float().norm(dim=1).mean().clamp_min(1e-12))
    sae = Sae(sae_cfg, seed=cfg.seed)
    with torch.no_grad():
        xn = sae.normalise(first)
        sae.b_dec.copy_(geometric_median(xn) if cfg.b_dec_init == "median" else xn.mean(0))
    return sae


class _StepOut(NamedTuple):
    """One training step's loss and what the bookkeeping needs."""

    loss: Tensor
    """Scalar to minimise: fvu + aux_coef * aux."""
    fvu: Tensor
    """Scalar FVU of the minibatch."""
    aux: Tensor
    """Scalar AuxK loss (FVU-scaled), zero when no latent is dead."""
    top_acts: Tensor
    """``[N, k]`` selected activations."""
    top_indices: Tensor
    """``[N, k]`` selected latents."""


def _train_step(sae: Sae, xn: Tensor, dead: Tensor, aux_k: int, aux_coef: float) -> _StepOut:
    """Loss of one minibatch ``xn`` ``[N, d_in]`` (normalised): FVU + aux_coef * AuxK."""
    pre = sae._pre(xn)
    acts, idx = sae._topk(pre)
    err = xn - sae.decode_sparse(acts, idx)
    total = (xn - xn.mean(0)).pow(2).sum().clamp_min(1e-12)
    fvu_ = err.pow(2).sum() / total
    aux = fvu_.new_zeros(())
    n_dead = int(dead.sum())
    if n_dead and aux_coef > 0:
        # The top dead latents try to reconstruct what the live ones missed. Raw pre-activations (no
        # ReLU, as SAELens does) keep a gradient even for latents that went negative on every input.
        dead_pre = pre.masked_fill(~dead, float("-inf"))
        aux_acts, aux_idx = dead_pre.topk(min(aux_k, n_dead), dim=-1, sorted=False)
        aux = (sae.decode_sparse(aux_acts, aux_idx, bias=False) - err.detach()).pow(2).sum() / total
        if not torch.isfinite(aux):
            aux = fvu_.new_zeros(())
    return _StepOut(fvu_ + aux_coef * aux, fvu_, aux, acts, idx)


@torch.no_grad()
def _constrain_decoder_grad(sae: Sae) -> None:
    """Drop the gradient component along each decoder row: rows stay on the unit sphere."""
    w, g = sae.W_dec.data, sae.W_dec.grad
    if g is not None:
        g -= (g * w).sum(dim=1, keepdim=True) * w


@torch.no_grad()
def _renormalise_decoder(sae: Sae) -> None:
    sae.W_dec.data /= sae.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-12)


def train_sae(
    batches: Iterable[Tensor],
    cfg: TrainSaeConfig,
    *,
    init: Sae | None = None,
    progress: bool = True,
) -> tuple[Sae, TrainLog]:
    """Train a TopK SAE on a stream of raw activation batches (each ``[N, d_in]``).

    Stops at ``cfg.max_steps``, ``cfg.max_tokens`` or the end of the stream. ``init`` continues from an
    existing TopK SAE, trained in place (its normalisation and ``b_dec`` are kept). Returns the SAE
    (float32, on ``cfg.device``) and its per-step :class:`TrainLog`.
    """
    torch.manual_seed(cfg.seed)
    buffer = ShuffleBuffer(cfg.buffer_size, cfg.batch_size, seed=cfg.seed, drop_last=True)
    stream = buffer.minibatches(batches)
    first = next(stream, None)
    if first is None:
        raise ValueError(f"train_sae needs at least one full minibatch of {cfg.batch_size} rows")
    if init is None:
        sae = _new_sae(first, cfg)
    elif init.cfg.architecture != "topk" or init.cfg.d_in != first.shape[1]:
        raise ValueError(f"init must be a topk SAE with d_in={first.shape[1]}")
    else:
        sae = init
    sae = sae.to(device=cfg.device, dtype=torch.float32).train()
    sae.cfg.dtype = "float32"
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    aux_k = cfg.aux_k or max(1, d_in // 2)
    lr = cfg.lr if cfg.lr is not None else 2e-4 / math.sqrt(d_sae / 2**14)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999), eps=6.25e-10)
    warmup = max(1, cfg.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=cfg.device)
    log = TrainLog()
    seen = 0
    bar = tqdm(total=cfg.max_tokens, disable=not progress, unit="tok", unit_scale=True, desc="sae")

    def minibatches() -> Iterator[Tensor]:
        yield first
        yield from stream

    for step, x in enumerate(minibatches()):
        if (cfg.max_steps is not None and step >= cfg.max_steps) or (
            cfg.max_tokens is not None and seen >= cfg.max_tokens
        ):
            break
        xn = sae.normalise(x)
        out = _train_step(sae, xn, since_fired >= cfg.dead_window, aux_k, cfg.aux_coef)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        _constrain_decoder_grad(sae)
        opt.step()
        sched.step()
        _renormalise_decoder(sae)

        with torch.no_grad():
            fired = out.top_indices[out.top_acts > 0]
            since_fired += xn.shape[0]
            since_fired[fired] = 0
            seen += xn.shape[0]
            log.fvu.append(float(out.fvu))
            log.l0.append(float((out.top_acts > 0).sum(-1).float().mean()))
            log.dead_share.append(float((since_fired >= cfg.dead_window).float().mean()))
            log.aux_loss.append(float(out.aux))
            log.tokens.append(seen)
        bar.update(xn.shape[0])
        if step % 10 == 0:
            bar.set_postfix(
                fvu=f"{log.fvu[-1]:.3f}", l0=f"{log.l0[-1]:.1f}", dead=f"{log.dead_share[-1]:.1%}"
            )
    bar.close()
    sae.eval()
    if log.tokens:
        sae.cfg.meta["training"] = {
            "tokens": log.tokens[-1],
            "steps": len(log.tokens),
            "lr": lr,
            "aux_k": aux_k,
            "aux_coef": cfg.aux_coef,
            "final_fvu": log.fvu[-1],
            "final_dead_share": log.dead_share[-1],
        }
    return sae, log


@torch.no_grad()
def evaluate(sae: Sae, batches: Iterable[Tensor]) -> dict[str, float]:
    """Held-out quality over raw batches (each ``[N, d_in]``), in the SAE's normalised space.

    ``fvu`` = sum((x - x̂)²) / sum((x - mean(x))²) with the mean over all tokens; ``l0`` = mean active
    latents per token; ``dead_share`` = share of latents never active on these batches.
    """
    sse = sum_sq = 0.0
    sum_x = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    n = active = 0
    for x in batches:
        xn = sae.normalise(x)
        if sae._uses_topk():
            acts, idx = sae._topk(sae._pre(xn))
            recon = sae.decode_sparse(acts, idx)
            on = idx[acts > 0]
            active += int((acts > 0).sum())
        else:
            codes = sae._activate(sae._pre(xn))
            recon = sae.decode(codes)
            on = (codes != 0).any(0).nonzero().squeeze(1)
            active += int((codes != 0).sum())
        fired[on.cpu()] = True
        t = xn.double().cpu()
        sse += float((t - recon.double().cpu()).pow(2).sum())
        sum_x += t.sum(0)
        sum_sq += float(t.pow(2).sum())
        n += t.shape[0]
    if n < 2:
        raise ValueError("evaluate needs at least two tokens")
    total = sum_sq - float(sum_x.pow(2).sum()) / n
    return {
        "fvu": sse / max(total, 1e-12),
        "l0": active / n,
        "dead_share": 1.0 - float(fired.float().mean()),
        "tokens": float(n),
    }
