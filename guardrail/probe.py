"""Probe stage: per-token features -> label probabilities over ``O`` + the canonical labels.

Stored as plain arrays (safetensors + JSON metadata), applied with torch. Three heads read the same
standardised features: multinomial logistic regression (``linear``, scikit-learn), a random forest
(``forest``, scikit-learn) and a one-hidden-layer network (``mlp``, fitted in torch). The features of a
token are its own residual (RMS-normalised: raw values reach ~1e4) concatenated with those of a few
neighbours, since a causal model's token has not yet seen the words to its right ("Paris" vs "Paris
Hilton").
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from guardrail.labels import OUTSIDE, PROBE_CLASSES

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier

    from guardrail.sae import Sae


class ProbeError(ValueError):
    """A probe file that is missing, malformed or inconsistent."""


def rms_normalise(x: torch.Tensor) -> torch.Tensor:
    """Scale each token vector to unit RMS: ``[T, d] -> [T, d]``."""
    return x / x.pow(2).mean(dim=-1, keepdim=True).add(1e-6).sqrt()


def with_context(x: torch.Tensor, context: Sequence[int] = (0,)) -> torch.Tensor:
    """Each row concatenated with its neighbours' at ``context`` offsets: ``[T, F] -> [T, F * len(context)]``.

    Neighbours past either end are zeros.
    """
    return with_context_flat(x, [x.shape[0]], context)


def _positions(sizes: Sequence[int], n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows of texts stacked text after text (``sizes`` rows each, ``n`` in all): each row's position
    in its text and its text's length, ``[n]`` each."""
    lengths = torch.as_tensor(list(sizes), dtype=torch.long, device=device)
    starts = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(n, device=device) - torch.repeat_interleave(starts, lengths, output_size=n)
    return pos, torch.repeat_interleave(lengths, lengths, output_size=n)


def with_context_flat(x: torch.Tensor, sizes: Sequence[int], context: Sequence[int] = (0,)) -> torch.Tensor:
    """:func:`with_context` for several texts' rows stacked text after text (``sizes`` rows each), in
    one pass: a neighbour in another text counts as past the end (zeros)."""
    n = x.shape[0]
    if tuple(context) == (0,):
        return x
    pos, length = _positions(sizes, n, x.device)
    parts = []
    for off in context:
        if off == 0:
            parts.append(x)
            continue
        shifted = torch.zeros_like(x)
        if 0 < off < n:
            shifted[: n - off] = x[off:]
        elif off < 0 and -off < n:
            shifted[-off:] = x[: n + off]
        inside = ((pos + off >= 0) & (pos + off < length)).unsqueeze(-1)
        parts.append(torch.where(inside, shifted, torch.zeros((), dtype=x.dtype, device=x.device)))
    return torch.cat(parts, dim=-1)


def token_features(resid: torch.Tensor, context: Sequence[int] = (0,)) -> torch.Tensor:
    """Features of each token: its normalised residual and its neighbours' at ``context`` offsets.

    ``resid`` is ``[T, d]``; returns ``[T, d * len(context)]``. Neighbours past either end are zeros.
    """
    return with_context(rms_normalise(resid.float()), context)


def sae_features(
    resids: Sequence[torch.Tensor],
    sae: Sae,
    latents: torch.Tensor,
    context: Sequence[int] = (0,),
    threshold: float | None = None,
) -> list[torch.Tensor]:
    """SAE codes of the ``latents`` ``[L]`` for each text's tokens and their neighbours: one
    ``[T_i, L * len(context)]`` per residual ``[T_i, d]``; the SAE encodes all tokens in one pass."""
    if not resids:
        return []
    sizes = [len(r) for r in resids]
    flat = torch.cat(list(resids))
    return list(sae_features_flat(flat, sizes, sae, latents, context, threshold).split(sizes))


def sae_features_flat(
    flat: torch.Tensor,
    sizes: Sequence[int],
    sae: Sae,
    latents: torch.Tensor,
    context: Sequence[int] = (0,),
    threshold: float | None = None,
) -> torch.Tensor:
    """:func:`sae_features` of texts' residuals stacked text after text: ``[sum T_i, L * len(context)]``.
    ``threshold``: see :meth:`Sae.encode_selected`."""
    return with_context_flat(sae.encode_selected(flat, latents, threshold).float(), sizes, context)


class _Features:
    """What a probe reads: raw residuals or SAE codes of selected latents, with neighbours."""

    context: tuple[int, ...]
    source: str
    latents: torch.Tensor | None
    sae: Sae | None

    def to(self, device: torch.device | str) -> _Features:
        """Move the probe's arrays (and the SAE it reads) to ``device``, where the backbone leaves its
        residuals (a CUDA backbone then hands back only class probabilities); returns self."""
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.to(device))
        if self.sae is not None:
            self.sae.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """Where the probe's arrays are."""
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                return value.device
        return torch.device("cpu")

    def features(self, resid: torch.Tensor) -> torch.Tensor:
        """Features ``[T, F]`` of a residual ``[T, d]``."""
        return self.features_batch([resid])[0]

    def features_batch(self, resids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Features of several texts' residuals (SAE probes encode all their tokens in one pass)."""
        if not resids:
            return []
        sizes = [len(r) for r in resids]
        return list(self.features_flat(torch.cat(list(resids)), sizes).split(sizes))

    def features_flat(self, flat: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Features ``[sum T_i, F]`` of texts' residuals stacked text after text (``sizes`` tokens each),
        in one pass whatever the number of texts."""
        if self.source == "raw":
            return with_context_flat(rms_normalise(flat.float()), sizes, self.context)
        if self.sae is None or self.latents is None:
            raise ProbeError("an SAE-feature probe needs its SAE attached (Bundle.load does it)")
        return sae_features_flat(flat, sizes, self.sae, self.latents, self.context, self.sae_threshold)

    @property
    def sae_threshold(self) -> float | None:
        """The global threshold an SAE probe encodes its latents with (``meta["sae_threshold"]``), or
        None for the SAE's own rule (TopK: each token's k-th largest pre-activation)."""
        value = getattr(self, "meta", {}).get("sae_threshold")
        return None if value is None else float(value)

    def probs_batch(self, resids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Class probabilities ``[T_i, C]`` for each residual ``[T_i, d]``, in one head call."""
        if not resids:
            return []
        sizes = [len(r) for r in resids]
        return list(self.probs_flat(torch.cat(list(resids)), sizes).split(sizes))

    def probs_flat(self, flat: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Class probabilities ``[sum T_i, C]`` of texts' residuals stacked text after text: :meth:`probs`
        of :meth:`features_flat` (a head may get there without building the feature table)."""
        return self.probs(self.features_flat(flat, sizes))

    def feature_name(self, i: int) -> tuple[int, int]:
        """Feature column ``i`` as ``(token offset, latent or residual dimension)``."""
        width = len(self.latents) if self.latents is not None else None
        if width is None:
            width = self.n_features // len(self.context)
        off, j = divmod(i, width)
        unit = int(self.latents[j]) if self.latents is not None else j
        return self.context[off], unit

    @property
    def n_features(self) -> int:
        raise NotImplementedError

    def _stored_meta(self) -> dict[str, object]:
        meta: dict[str, object] = {"classes": list(self.classes), "context": list(self.context)}
        meta.update({"source": self.source, "head": getattr(self, "head", "linear")})
        meta.update(getattr(self, "meta", {}))
        return meta

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[T, C]`` straight from a residual ``[T, d]``."""
        return self.probs(self.features(resid))


def _check_source(source: str, latents: torch.Tensor | None, where: str) -> None:
    if source not in SOURCES:
        raise ProbeError(f"{where}: unknown feature source {source!r}; expected one of {SOURCES}")
    if (source == "sae") != (latents is not None):
        raise ProbeError(f"{where}: an 'sae' probe needs its latent selection, a 'raw' one none")


@dataclass(slots=True)
class Probe(_Features):
    """A linear head ``softmax(((f - mean) / scale) @ weight.T + bias)`` over token features."""

    weight: torch.Tensor
    """``[C, F]``."""
    bias: torch.Tensor
    """``[C]``."""
    mean: torch.Tensor
    """``[F]`` feature means of the training set."""
    scale: torch.Tensor
    """``[F]`` feature standard deviations of the training set."""
    classes: tuple[str, ...] = PROBE_CLASSES
    context: tuple[int, ...] = (0,)
    """Token offsets whose features are concatenated (0 = the token itself)."""
    source: str = "raw"
    """What the features are: ``raw`` residual or ``sae`` codes of :attr:`latents`."""
    meta: dict[str, object] = field(default_factory=dict)
    latents: torch.Tensor | None = None
    """``[L]`` SAE latents read (``sae`` probes): the selection is part of the probe."""
    sae: Sae | None = field(default=None, repr=False, compare=False)
    """The SAE an ``sae`` probe reads; attached at load, never stored with the probe."""

    head = "linear"

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[T, C]`` for features ``[T, F]``."""
        z = (feats.float() - self.mean) / self.scale
        return torch.softmax(z @ self.weight.T + self.bias, dim=-1)

    def contributions(self, feats: torch.Tensor, cls: int) -> torch.Tensor:
        """Each feature's share ``[T, F]`` of the log-odds of class ``cls`` against ``O``."""
        z = (feats.float() - self.mean) / self.scale
        return z * (self.weight[cls] - self.weight[0])

    def save(self, path: str | Path, prefix: str = "") -> None:
        """Write the arrays to a safetensors file; ``prefix`` lets several probes share one file."""
        tensors = {
            f"{prefix}weight": self.weight,
            f"{prefix}bias": self.bias,
            f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale,
        }
        _write(path, prefix, tensors, self._stored_meta(), self.latents)

    @classmethod
    def load(cls, path: str | Path, prefix: str = "") -> Probe:
        """Read a linear probe written by :meth:`save`; validates shapes and class names."""
        p = Path(path)
        t, meta = _read(p, prefix, ("weight", "bias", "mean", "scale"))
        w, b, m, s = (t[k].float() for k in ("weight", "bias", "mean", "scale"))
        classes, context, source, latents = _common(meta, t, p.name)
        if w.ndim != 2 or w.shape[0] != len(classes) or b.shape != (len(classes),):
            raise ProbeError(f"{p.name}: weight/bias shapes do not match {len(classes)} classes")
        _check_standardisation(m, s, w.shape[1], p.name)
        probe = cls(w, b, m, s, classes, context, source, meta, latents)
        _check_width(probe, p.name)
        return probe


@dataclass(slots=True)
class ForestProbe(_Features):
    """A random forest over token features, stored as padded node arrays and walked with torch.

    Every tree has ``M`` node slots; a leaf points to itself, so walking ``depth`` steps from the root
    lands every token on its leaf whatever the tree's own depth. A node goes left when
    ``feature <= threshold`` (scikit-learn's rule; thresholds kept in float64 as scikit-learn does).
    """

    feature: torch.Tensor
    """``[n_trees, M]`` int64 split feature (0 at leaves)."""
    threshold: torch.Tensor
    """``[n_trees, M]`` float64 split threshold."""
    left: torch.Tensor
    """``[n_trees, M]`` int64 left child (the node itself at leaves)."""
    right: torch.Tensor
    """``[n_trees, M]`` int64 right child (the node itself at leaves)."""
    value: torch.Tensor
    """``[n_trees, M, C]`` class distribution of the training tokens reaching each node."""
    n_features_in: int
    classes: tuple[str, ...] = PROBE_CLASSES
    context: tuple[int, ...] = (0,)
    source: str = "sae"
    meta: dict[str, object] = field(default_factory=dict)
    latents: torch.Tensor | None = None
    sae: Sae | None = field(default=None, repr=False, compare=False)

    head = "forest"

    @property
    def n_features(self) -> int:
        return self.n_features_in

    @property
    def depth(self) -> int:
        return int(self.meta.get("depth", self.feature.shape[1]))

    def _walk(self, feats: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each of the ``depth`` steps from the roots: ``(split feature, node, child)``, each
        ``[T, n_trees]``."""
        x = feats.double()
        trees = torch.arange(self.feature.shape[0], device=self.feature.device)
        node = torch.zeros(x.shape[0], len(trees), dtype=torch.long, device=self.feature.device)
        for _ in range(self.depth):
            f = self.feature[trees, node]
            go_left = x.gather(1, f) <= self.threshold[trees, node]
            child = torch.where(go_left, self.left[trees, node], self.right[trees, node])
            yield f, node, child
            node = child

    def leaves(self, feats: torch.Tensor) -> torch.Tensor:
        """Leaf index ``[T, n_trees]`` of every token in every tree."""
        node = torch.zeros(
            feats.shape[0], self.feature.shape[0], dtype=torch.long, device=self.feature.device
        )
        for _, _, node in self._walk(feats):  # noqa: B007  (the last child is the leaf)
            pass
        return node

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[T, C]`` (the mean of the trees' leaf distributions)."""
        if feats.shape[0] == 0:
            return torch.zeros(0, len(self.classes), device=self.feature.device)
        node = self.leaves(feats)
        trees = torch.arange(self.feature.shape[0], device=self.feature.device)
        return self.value[trees, node].mean(1).float()

    def contributions(self, feats: torch.Tensor, cls: int) -> torch.Tensor:
        """Each feature's share ``[T, F]`` of P(class ``cls``), path by path (Saabas's attribution):
        a split moves the class probability from its node's value to its child's, and that move is
        credited to the split's feature; averaged over the trees."""
        trees = torch.arange(self.feature.shape[0], device=self.feature.device)
        out = torch.zeros(feats.shape[0], self.n_features, dtype=torch.float64, device=self.feature.device)
        for f, node, child in self._walk(feats):
            delta = (self.value[trees, child, cls] - self.value[trees, node, cls]).double()
            out.scatter_add_(1, f, delta)  # leaves loop onto themselves: delta 0
        return (out / len(trees)).float()

    def save(self, path: str | Path, prefix: str = "") -> None:
        # stored compactly: node indices as int32, class distributions as float16 (probabilities in
        # [0, 1]: 3 significant digits are plenty); thresholds stay float64, as scikit-learn compares
        tensors = {
            f"{prefix}feature": self.feature.int(),
            f"{prefix}threshold": self.threshold,
            f"{prefix}left": self.left.int(),
            f"{prefix}right": self.right.int(),
            f"{prefix}value": self.value.half(),
        }
        _write(path, prefix, tensors, {**self._stored_meta(), "n_features": self.n_features_in}, self.latents)

    @classmethod
    def load(cls, path: str | Path, prefix: str = "") -> ForestProbe:
        p = Path(path)
        names = ("feature", "threshold", "left", "right", "value")
        t, meta = _read(p, prefix, names)
        classes, context, source, latents = _common(meta, t, p.name)
        n_feat = meta.pop("n_features", None)
        feature, left, right = (t[k].long() for k in ("feature", "left", "right"))
        threshold, value = t["threshold"].double(), t["value"].float()
        shape = feature.shape
        if not isinstance(n_feat, int) or n_feat < 1 or len(shape) != 2:
            raise ProbeError(f"{p.name}: malformed forest (feature count or node arrays)")
        if any(t[k].shape != shape for k in ("threshold", "left", "right")) or value.shape != (
            *shape,
            len(classes),
        ):
            raise ProbeError(f"{p.name}: forest node arrays disagree in shape")
        for a in (feature, left, right):
            lim = n_feat if a is feature else shape[1]
            if bool((a < 0).any()) or bool((a >= lim).any()):
                raise ProbeError(f"{p.name}: forest node arrays point out of range")
        depth = meta.get("depth")
        if not isinstance(depth, int) or not 1 <= depth <= shape[1]:
            raise ProbeError(f"{p.name}: forest depth missing or out of range")
        probe = cls(feature, threshold, left, right, value, n_feat, classes, context, source, meta, latents)
        _check_width(probe, p.name)
        return probe


@dataclass(slots=True)
class MlpProbe(_Features):
    """A small non-linear head: ``softmax(gelu(z @ w1.T + b1) @ w2.T + b2)`` over standardised token
    features ``z = (f - mean) / scale``. One hidden layer separates what a linear read cannot ("n't" or
    a single kanji of a common word against a name) at a few percent of the backbone's cost."""

    w1: torch.Tensor
    """``[H, F]``."""
    b1: torch.Tensor
    """``[H]``."""
    w2: torch.Tensor
    """``[C, H]``."""
    b2: torch.Tensor
    """``[C]``."""
    mean: torch.Tensor
    """``[F]`` feature means of the training set."""
    scale: torch.Tensor
    """``[F]`` feature standard deviations of the training set."""
    classes: tuple[str, ...] = PROBE_CLASSES
    context: tuple[int, ...] = (0,)
    source: str = "raw"
    meta: dict[str, object] = field(default_factory=dict)
    latents: torch.Tensor | None = None
    sae: Sae | None = field(default=None, repr=False, compare=False)
    _folded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """``(w1, w1 / scale, bias)`` of :meth:`probs_flat`, kept while ``w1`` is the same tensor."""

    head = "mlp"

    @property
    def n_features(self) -> int:
        return int(self.w1.shape[1])

    def head_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits ``[T, C]`` for standardised features ``z`` ``[T, F]`` (the ONNX graph's too)."""
        return torch.nn.functional.gelu(z @ self.w1.T + self.b1) @ self.w2.T + self.b2

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Class logits ``[T, C]`` for features ``[T, F]``."""
        return self.head_logits((feats.float() - self.mean) / self.scale)

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[T, C]`` for features ``[T, F]``."""
        return torch.softmax(self.logits(feats), dim=-1)

    def probs_flat(self, flat: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """:meth:`probs` of :meth:`features_flat`, for a raw-residual head without the feature table.

        The table is ``len(context)`` shifted copies of each token's residual, standardised, so the first
        layer is a sum over context offsets of the neighbour's residual times that offset's block of
        ``w1 / scale``. Each block multiplies the residuals (``d`` wide) and is added, shifted, into the
        rows whose neighbour at that offset lies in the same text; a neighbour past either end adds
        nothing. The standardisation's offset goes into the bias, which also carries what a missing
        neighbour's zeros would give. The multiply-adds are the same; the table of ``d * len(context)``
        columns is never built, standardised and read (it was a third of the head's time, and the
        head a fifth of the default bundle's on the CPU). Equal to :meth:`probs` up to float rounding."""
        if self.source != "raw":  # not super(): a slots dataclass is a new class, the cell names the old
            return _Features.probs_flat(self, flat, sizes)
        x = rms_normalise(flat.float())
        n, d = x.shape
        w, bias = self._fold()
        h = bias.expand(n, -1).clone()
        pos, length = _positions(sizes, n, x.device)
        for j, off in enumerate(self.context):
            block = w[:, j * d : (j + 1) * d]
            if off == 0:
                h.addmm_(x, block.T)
            elif abs(off) < n:
                y = x[off:] @ block.T if off > 0 else x[: n + off] @ block.T
                inside = ((pos + off >= 0) & (pos + off < length)).to(y.dtype).unsqueeze(1)
                if off > 0:  # row t reads token t + off of the same text
                    h[: n - off].addcmul_(y, inside[: n - off])
                else:
                    h[-off:].addcmul_(y, inside[-off:])
        return torch.softmax(torch.nn.functional.gelu(h) @ self.w2.T + self.b2, dim=-1)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``w1 / scale`` ``[H, F]`` and the bias that carries the standardisation's offset, computed once
        per probe (and again after :meth:`to` moves ``w1``), not on every call."""
        if self._folded is None or self._folded[0] is not self.w1:
            w = self.w1 / self.scale
            self._folded = (self.w1, w, self.b1 - w @ self.mean)
        return self._folded[1], self._folded[2]

    def contributions(self, feats: torch.Tensor, cls: int) -> torch.Tensor:
        """Each feature's share ``[T, F]`` of the log-odds of class ``cls`` against ``O``, by gradient
        times input (exact for the linear head; for this one, the first-order share at the token)."""
        with torch.enable_grad():
            z = ((feats.float() - self.mean) / self.scale).detach().requires_grad_(True)
            h = self.head_logits(z)
            (grad,) = torch.autograd.grad((h[:, cls] - h[:, 0]).sum(), z)
        return (z * grad).detach()

    def save(self, path: str | Path, prefix: str = "") -> None:
        """Write the arrays to a safetensors file; ``prefix`` lets several probes share one file."""
        names = ("w1", "b1", "w2", "b2", "mean", "scale")
        tensors = {f"{prefix}{k}": getattr(self, k) for k in names}
        _write(path, prefix, tensors, self._stored_meta(), self.latents)

    @classmethod
    def load(cls, path: str | Path, prefix: str = "") -> MlpProbe:
        """Read an MLP probe written by :meth:`save`; validates shapes and class names."""
        p = Path(path)
        t, meta = _read(p, prefix, ("w1", "b1", "w2", "b2", "mean", "scale"))
        w1, b1, w2, b2, m, s = (t[k].float() for k in ("w1", "b1", "w2", "b2", "mean", "scale"))
        classes, context, source, latents = _common(meta, t, p.name)
        if w1.ndim != 2 or b1.shape != (w1.shape[0],):
            raise ProbeError(f"{p.name}: hidden layer shapes disagree")
        if w2.shape != (len(classes), w1.shape[0]) or b2.shape != (len(classes),):
            raise ProbeError(f"{p.name}: output layer shapes do not match {len(classes)} classes")
        _check_standardisation(m, s, w1.shape[1], p.name)
        probe = cls(w1, b1, w2, b2, m, s, classes, context, source, meta, latents)
        _check_width(probe, p.name)
        return probe


AnyProbe = Probe | ForestProbe | MlpProbe
SOURCES = ("raw", "sae")
HEADS = ("linear", "forest", "mlp")


def load_probe(path: str | Path, prefix: str = "") -> AnyProbe:
    """Read whichever head (``linear``, ``forest`` or ``mlp``) is stored under ``prefix``."""
    p = Path(path)
    _, meta = _read(p, prefix, ())
    head = meta.get("head", "linear")
    if head == "linear":
        return Probe.load(p, prefix)
    if head == "forest":
        return ForestProbe.load(p, prefix)
    if head == "mlp":
        return MlpProbe.load(p, prefix)
    raise ProbeError(f"{p.name}: unknown probe head {head!r}")


def _write(
    path: str | Path,
    prefix: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, object],
    latents: torch.Tensor | None = None,
) -> None:
    """Add ``tensors`` (and ``meta`` as JSON metadata) under ``prefix`` to a safetensors file."""
    from safetensors import safe_open

    if latents is not None:
        tensors = {**tensors, f"{prefix}latents": latents.long()}
    existing: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    p = Path(path)
    if p.exists() and prefix:
        existing = load_file(str(p))
        with safe_open(str(p), "pt") as f:
            metadata = dict(f.metadata() or {})
    for k, v in tensors.items():
        v = v.contiguous()
        keep_dtype = not v.is_floating_point() or v.dtype in (torch.float64, torch.float16)
        existing[k] = v if keep_dtype else v.float()
    metadata[f"{prefix}meta"] = json.dumps(meta)
    save_file(existing, str(p), metadata=metadata)


def _read(p: Path, prefix: str, names: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Tensors ``names`` (and ``latents`` when present) under ``prefix``, and the JSON metadata."""
    from safetensors import safe_open

    if not p.is_file():
        raise ProbeError(f"no probe file at {p}")
    try:
        with safe_open(str(p), "pt") as f:
            metadata = f.metadata() or {}
            keys = set(f.keys())
            need = [f"{prefix}{k}" for k in names]
            if missing := [k for k in need if k not in keys]:
                raise ProbeError(f"{p.name}: missing tensors {missing}")
            out = {k: f.get_tensor(f"{prefix}{k}") for k in names}
            if f"{prefix}latents" in keys:
                out["latents"] = f.get_tensor(f"{prefix}latents").long()
        meta = json.loads(metadata.get(f"{prefix}meta", "{}"))
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise ProbeError(f"{p.name}: unreadable probe ({type(e).__name__})") from e
    if not isinstance(meta, dict):
        raise ProbeError(f"{p.name}: probe metadata is not an object")
    return out, meta


def _common(
    meta: dict[str, object], tensors: dict[str, torch.Tensor], where: str
) -> tuple[tuple[str, ...], tuple[int, ...], str, torch.Tensor | None]:
    """Pop and check the fields every head shares: classes, context, source, latents."""
    classes = tuple(str(c) for c in meta.pop("classes", PROBE_CLASSES))  # type: ignore[union-attr]
    context = tuple(int(c) for c in meta.pop("context", [0]))  # type: ignore[union-attr]
    source = str(meta.pop("source", "raw"))
    meta.pop("head", None)
    latents = tensors.get("latents")
    if not classes or classes[0] != "O":
        raise ProbeError(f"{where}: first class must be 'O'")
    if not context:
        raise ProbeError(f"{where}: empty context")
    _check_source(source, latents, where)
    if latents is not None and (latents.ndim != 1 or len(latents) == 0 or bool((latents < 0).any())):
        raise ProbeError(f"{where}: malformed latent selection")
    return classes, context, source, latents


def _check_standardisation(mean: torch.Tensor, scale: torch.Tensor, width: int, where: str) -> None:
    """Feature means and scales ``[F]`` that match the head's input width, scales positive."""
    if mean.shape != (width,) or scale.shape != (width,) or bool((scale <= 0).any()):
        raise ProbeError(f"{where}: standardisation arrays do not match the weight")


def _check_width(probe: AnyProbe, where: str) -> None:
    """An ``sae`` probe's feature count is latents x context."""
    if probe.latents is not None and probe.n_features != len(probe.latents) * len(probe.context):
        raise ProbeError(f"{where}: {probe.n_features} features for {len(probe.latents)} latents x context")


def fit(
    feats: np.ndarray,
    labels: np.ndarray,
    *,
    classes: Sequence[str] = PROBE_CLASSES,
    context: Sequence[int] = (0,),
    c: float = 1.0,
    max_iter: int = 300,
    seed: int = 0,
    latents: torch.Tensor | None = None,
    min_scale: float = 1e-4,
) -> Probe:
    """Fit the head with scikit-learn's multinomial logistic regression.

    ``feats`` is ``[N, F]`` (from :func:`token_features`, or :func:`sae_features` when ``latents``
    names the SAE latents read), ``labels`` ``[N]`` class indices into ``classes``. Classes absent from
    ``labels`` get a bias of -inf-like (-30) so they are never chosen.
    """
    from sklearn.linear_model import LogisticRegression

    feats = np.asarray(feats, dtype=np.float32)
    mean = feats.mean(axis=0)
    scale = feats.std(axis=0) + min_scale  # SAE codes: a floor keeps rare latents from blowing up
    z = (feats - mean) / scale
    clf = LogisticRegression(C=c, max_iter=max_iter, tol=1e-4, random_state=seed)
    clf.fit(z, labels)
    n_classes, n_feats = len(classes), feats.shape[1]
    weight = np.zeros((n_classes, n_feats), dtype=np.float32)
    bias = np.full(n_classes, -30.0, dtype=np.float32)
    seen = clf.classes_.astype(int)
    if len(seen) == 2:  # sklearn stores one row for a binary problem
        weight[seen[1]], bias[seen[1]] = clf.coef_[0], clf.intercept_[0]
        bias[seen[0]] = 0.0
    else:
        weight[seen], bias[seen] = clf.coef_, clf.intercept_
    return Probe(
        torch.from_numpy(weight),
        torch.from_numpy(bias),
        torch.from_numpy(mean.astype(np.float32)),
        torch.from_numpy(scale.astype(np.float32)),
        tuple(classes),
        tuple(context),
        source="raw" if latents is None else "sae",
        meta={"n_train_tokens": len(labels), "C": c},
        latents=latents,
    )


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Subnormal floats flushed to zero while inside: Adam's moment estimates and small gradients can
    decay into them, and x86 computes them on a slow microcode path (a probe cannot tell the
    difference). torch has no getter: the process default (off) is put back."""
    flushed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def fit_mlp(
    rows: Callable[[torch.Tensor], torch.Tensor],
    labels: np.ndarray,
    *,
    classes: Sequence[str] = PROBE_CLASSES,
    context: Sequence[int] = (0,),
    hidden: int = 512,
    epochs: int = 4,
    o_keep: float = 0.35,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    dropout: float = 0.1,
    batch_size: int = 512,
    seed: int = 0,
    latents: torch.Tensor | None = None,
    min_scale: float = 1e-4,
    progress: bool = True,
    repeat: Mapping[str, int] | None = None,
) -> MlpProbe:
    """Fit an :class:`MlpProbe` with AdamW and a one-cycle learning rate, in torch.

    ``rows(idx)`` returns the features ``[len(idx), F]`` of training tokens ``idx`` (indices into
    ``labels``), so the token table never has to be expanded with its neighbours at once. ``labels`` are
    class indices into ``classes``; negative labels (masked, :data:`guardrail.realdata.MASKED`) are never
    trained on. Each epoch sees every PII token and a fresh ``o_keep`` share of the ``O`` tokens; the
    tokens of a class named in ``repeat`` are seen that many times an epoch (a class weight).
    """
    from tqdm.auto import tqdm

    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(classes) < 2 or not len(y) or not bool((y > 0).any()):
        raise ProbeError("an MLP head needs labelled PII tokens to fit on")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pii = torch.nonzero(y > 0).squeeze(1)
    outside = torch.nonzero(y == 0).squeeze(1)
    usable = torch.cat([pii, outside])
    n_tokens = len(usable)
    for name, times in (repeat or {}).items():
        if name not in classes or name == OUTSIDE or times < 1:
            raise ProbeError(
                f"repeat needs a PII class of the probe and a count of at least 1, got {name}: {times}"
            )
        own = pii[y[pii] == classes.index(name)]
        pii = torch.cat([pii, *([own] * (times - 1))])
    sample = usable[torch.randperm(len(usable), generator=gen)[:200_000]]
    with torch.no_grad():
        f = rows(sample).float()
        mean, scale = f.mean(0), f.std(0) + min_scale
    n_feat = f.shape[1]
    del f
    model = torch.nn.Sequential(
        torch.nn.Linear(n_feat, hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, len(classes)),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n_outside = min(len(outside), round(len(outside) * o_keep))
    per_epoch = -(-(len(pii) + n_outside) // batch_size)
    # one spare step per epoch in the schedule: the learning rate ends a little above its floor
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=(per_epoch + 1) * epochs + 1)
    model.train()
    with (
        flush_denormal(),
        tqdm(total=epochs * per_epoch, desc="fitting MLP head", unit="step", disable=not progress) as bar,
    ):
        for epoch in range(epochs):
            draw = torch.rand(len(outside), generator=gen)  # the smallest draws pick this epoch's O tokens
            keep = outside if n_outside == len(outside) else outside[draw.argsort()[:n_outside]]
            order = torch.cat([pii, keep])
            order = order[torch.randperm(len(order), generator=gen)]
            total, seen = 0.0, 0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                z = (rows(idx).float() - mean) / scale
                loss = torch.nn.functional.cross_entropy(model(z), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / max(seen, 1):.4f}")
    model.eval()
    first, last = model[0], model[3]
    return MlpProbe(
        first.weight.detach().clone(),
        first.bias.detach().clone(),
        last.weight.detach().clone(),
        last.bias.detach().clone(),
        mean.float(),
        scale.float(),
        tuple(classes),
        tuple(context),
        source="raw" if latents is None else "sae",
        meta={
            "n_train_tokens": n_tokens,
            "hidden": hidden,
            "epochs": epochs,
            "o_keep": o_keep,
            "lr": lr,
            "weight_decay": weight_decay,
            "dropout": dropout,
            **({"repeat": dict(repeat)} if repeat else {}),
        },
        latents=latents,
    )


def fit_forest(
    feats: np.ndarray,
    labels: np.ndarray,
    *,
    latents: torch.Tensor | None,
    classes: Sequence[str] = PROBE_CLASSES,
    context: Sequence[int] = (0,),
    n_trees: int = 100,
    max_depth: int = 14,
    min_samples_leaf: int = 3,
    class_weight: str | None = None,
    seed: int = 0,
) -> ForestProbe:
    """Fit a scikit-learn random forest and keep it as node arrays (``class_weight`` as scikit-learn's:
    the training set already keeps only a share of ``O`` tokens, so None is the default)."""
    from sklearn.ensemble import RandomForestClassifier

    feats = np.asarray(feats, dtype=np.float32)
    clf = RandomForestClassifier(
        n_estimators=n_trees,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        max_features="sqrt",
        class_weight=class_weight,
        n_jobs=-1,
        random_state=seed,
    )
    clf.fit(feats, labels)
    probe = forest_from_sklearn(clf, latents=latents, classes=classes, context=context)
    probe.meta["n_train_tokens"] = len(labels)
    return probe


def forest_from_sklearn(
    clf: RandomForestClassifier,
    *,
    latents: torch.Tensor | None,
    classes: Sequence[str] = PROBE_CLASSES,
    context: Sequence[int] = (0,),
) -> ForestProbe:
    """A fitted scikit-learn forest (or single-output tree ensemble) as node arrays; ``clf.classes_``
    are indices into ``classes``."""
    seen = clf.classes_.astype(int)
    trees = [est.tree_ for est in clf.estimators_]
    width = max(t.node_count for t in trees)
    n_cls = len(classes)
    feature = np.zeros((len(trees), width), dtype=np.int64)
    threshold = np.zeros((len(trees), width), dtype=np.float64)
    left = np.tile(np.arange(width, dtype=np.int64), (len(trees), 1))
    right = left.copy()
    value = np.zeros((len(trees), width, n_cls), dtype=np.float32)
    for i, t in enumerate(trees):
        n = t.node_count
        inner = t.children_left[:n] >= 0
        feature[i, :n] = np.where(inner, t.feature[:n], 0)
        threshold[i, :n] = np.where(inner, t.threshold[:n], 0.0)
        left[i, :n] = np.where(inner, t.children_left[:n], np.arange(n))
        right[i, :n] = np.where(inner, t.children_right[:n], np.arange(n))
        v = t.value[:n, 0, :].astype(np.float64)
        value[i, :n][:, seen] = v / np.clip(v.sum(1, keepdims=True), 1e-12, None)
    depth = max(int(est.get_depth()) for est in clf.estimators_)
    return ForestProbe(
        torch.from_numpy(feature),
        torch.from_numpy(threshold),
        torch.from_numpy(left),
        torch.from_numpy(right),
        torch.from_numpy(value),
        int(clf.n_features_in_),
        tuple(classes),
        tuple(context),
        source="raw" if latents is None else "sae",
        meta={"depth": max(1, depth), "n_trees": len(trees)},
        latents=latents,
    )


def select_latents(
    class_means: np.ndarray, std: np.ndarray, n: int, min_count: np.ndarray | None = None
) -> np.ndarray:
    """The ``n`` latents that best tell PII classes from ``O``, by standardised class-mean difference.

    ``class_means`` ``[C, d_sae]`` (row 0 is ``O``), ``std`` ``[d_sae]``; ``min_count`` ``[C]`` marks
    classes seen too rarely to rank (False rows are skipped). Each PII class ranks the latents by
    ``(mean_c - mean_O) / std``; the classes take turns picking their next best latent (so rare
    classes are represented) until ``n`` are chosen. Returns sorted latent indices.
    """
    d_sae = class_means.shape[1]
    ranks = []
    for c in range(1, class_means.shape[0]):
        if min_count is not None and not min_count[c]:
            continue
        ranks.append(np.argsort(-(class_means[c] - class_means[0]) / (std + 1e-3)))
    chosen: list[int] = []
    taken: set[int] = set()
    pos = [0] * len(ranks)
    target = min(n, d_sae)
    while len(chosen) < target and ranks:
        for r, order in enumerate(ranks):
            while pos[r] < d_sae and int(order[pos[r]]) in taken:
                pos[r] += 1
            if pos[r] < d_sae and len(chosen) < target:
                chosen.append(int(order[pos[r]]))
                taken.add(chosen[-1])
    return np.array(sorted(chosen), dtype=np.int64)
