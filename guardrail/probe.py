"""Probe stage: per-token features -> label probabilities over ``O`` + the canonical labels.

Fitted with scikit-learn, stored as plain arrays (safetensors + JSON metadata), applied with torch.
The head is multinomial logistic regression over standardised features; the features of a token are
its own residual (RMS-normalised: raw values reach ~1e4) concatenated with those of a few neighbours,
since a causal model's token has not yet seen the words to its right ("Paris" vs "Paris Hilton").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from guardrail.labels import PROBE_CLASSES


class ProbeError(ValueError):
    """A probe file that is missing, malformed or inconsistent."""


def rms_normalise(x: torch.Tensor) -> torch.Tensor:
    """Scale each token vector to unit RMS: ``[T, d] -> [T, d]``."""
    return x / x.pow(2).mean(dim=-1, keepdim=True).add(1e-6).sqrt()


def token_features(resid: torch.Tensor, context: Sequence[int] = (0,)) -> torch.Tensor:
    """Features of each token: its normalised residual and its neighbours' at ``context`` offsets.

    ``resid`` is ``[T, d]``; returns ``[T, d * len(context)]``. Neighbours past either end are zeros.
    """
    x = rms_normalise(resid.float())
    n = x.shape[0]
    parts = []
    for off in context:
        if off == 0:
            parts.append(x)
            continue
        shifted = torch.zeros_like(x)
        if off > 0 and off < n:
            shifted[: n - off] = x[off:]
        elif off < 0 and -off < n:
            shifted[-off:] = x[: n + off]
        parts.append(shifted)
    return torch.cat(parts, dim=-1)


@dataclass(slots=True)
class Probe:
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
    """What the features are: ``raw`` residual (or ``sae`` codes, later)."""
    meta: dict[str, object] = field(default_factory=dict)

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[T, C]`` for features ``[T, F]``."""
        z = (feats.float() - self.mean) / self.scale
        return torch.softmax(z @ self.weight.T + self.bias, dim=-1)

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[T, C]`` straight from a residual ``[T, d]``."""
        return self.probs(token_features(resid, self.context))

    def save(self, path: str | Path, prefix: str = "") -> None:
        """Write the arrays to a safetensors file; ``prefix`` lets several probes share one file."""
        tensors = {
            f"{prefix}weight": self.weight,
            f"{prefix}bias": self.bias,
            f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale,
        }
        meta = {"classes": list(self.classes), "context": list(self.context), "source": self.source}
        meta.update(self.meta)
        existing: dict[str, torch.Tensor] = {}
        metadata: dict[str, str] = {}
        p = Path(path)
        if p.exists() and prefix:
            existing = load_file(str(p))
            from safetensors import safe_open

            with safe_open(str(p), "pt") as f:
                metadata = dict(f.metadata() or {})
        existing.update({k: v.contiguous().float() for k, v in tensors.items()})
        metadata[f"{prefix}meta"] = json.dumps(meta)
        save_file(existing, str(p), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, prefix: str = "") -> Probe:
        """Read a probe written by :meth:`save`; validates shapes and class names."""
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise ProbeError(f"no probe file at {p}")
        try:
            with safe_open(str(p), "pt") as f:
                metadata = f.metadata() or {}
                keys = set(f.keys())
                need = [f"{prefix}{k}" for k in ("weight", "bias", "mean", "scale")]
                if missing := [k for k in need if k not in keys]:
                    raise ProbeError(f"{p.name}: missing tensors {missing}")
                w, b, m, s = (f.get_tensor(k).float() for k in need)
            meta = json.loads(metadata.get(f"{prefix}meta", "{}"))
        except (OSError, json.JSONDecodeError, SafetensorError) as e:
            raise ProbeError(f"{p.name}: unreadable probe ({type(e).__name__})") from e
        classes = tuple(meta.pop("classes", PROBE_CLASSES))
        context = tuple(int(c) for c in meta.pop("context", [0]))
        source = str(meta.pop("source", "raw"))
        if w.ndim != 2 or w.shape[0] != len(classes) or b.shape != (len(classes),):
            raise ProbeError(f"{p.name}: weight/bias shapes do not match {len(classes)} classes")
        if m.shape != (w.shape[1],) or s.shape != (w.shape[1],) or bool((s <= 0).any()):
            raise ProbeError(f"{p.name}: standardisation arrays do not match the weight")
        if classes[0] != "O":
            raise ProbeError(f"{p.name}: first class must be 'O'")
        return cls(w, b, m, s, classes, context, source, meta)


def fit(
    feats: np.ndarray,
    labels: np.ndarray,
    *,
    classes: Sequence[str] = PROBE_CLASSES,
    context: Sequence[int] = (0,),
    c: float = 1.0,
    max_iter: int = 300,
    seed: int = 0,
) -> Probe:
    """Fit the head with scikit-learn's multinomial logistic regression.

    ``feats`` is ``[N, F]`` (from :func:`token_features`), ``labels`` ``[N]`` class indices into
    ``classes``. Classes absent from ``labels`` get a bias of -inf-like (-30) so they are never chosen.
    """
    from sklearn.linear_model import LogisticRegression

    feats = np.asarray(feats, dtype=np.float32)
    mean = feats.mean(axis=0)
    scale = feats.std(axis=0) + 1e-4
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
        meta={"n_train_tokens": len(labels), "C": c},
    )
