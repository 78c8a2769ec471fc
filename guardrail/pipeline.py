"""The public API: one place where backbone -> probe -> spans (∪ patterns) -> redactor are composed.

>>> g = Guardrail.load()                      # the embedded default bundle
>>> g.detect(["Call Ana Silva at +1 415 555 0100"])
[[Span(start=5, end=14, label='PERSON', ...), Span(start=18, end=33, label='PHONE', ...)]]
>>> g.redact(["Call Ana Silva"])[0].text
'Call [PERSON]'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from guardrail.backbone import Backbone, pick_dtype
from guardrail.bundle import DEFAULT_BUNDLE, Bundle
from guardrail.labels import CANONICAL, OUTSIDE
from guardrail.probe import AnyProbe
from guardrail.redact import Redacted, Redactor
from guardrail.spans import Span, decode, merge


class GuardrailError(ValueError):
    """Bad input to the public API (the message never contains the input text)."""


@dataclass(slots=True)
class TokenScores:
    """Per-token probe output for one text."""

    offsets: np.ndarray
    """``[T, 2]`` character offsets."""
    probs: np.ndarray
    """``[T, C]`` probabilities over the probe's classes."""


def collapse(probs: np.ndarray, classes: Sequence[str], keep: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Fold the probability of classes outside ``keep`` into ``O``: ``[T, C] -> [T, 1 + len(keep)]``.

    A token the probe calls ORGANIZATION is "not reported" rather than "reported under another label".
    """
    idx = [classes.index(c) for c in keep if c in classes]
    kept = probs[:, idx]
    outside = np.clip(1.0 - kept.sum(axis=1, keepdims=True), 0.0, 1.0)
    return np.concatenate([outside, kept], axis=1), [OUTSIDE, *(classes[i] for i in idx)]


def _as_texts(texts: str | Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise GuardrailError(f"texts[{i}] is {type(t).__name__}, expected str")
    return out


class Guardrail:
    """Finds and redacts PII by reading a language model's residual stream."""

    def __init__(
        self, bundle: Bundle, backbone: Backbone, *, probe: str | None = None, patterns: bool = True
    ):
        self.bundle = bundle
        self.backbone = backbone
        m = bundle.manifest
        self.probe_name = probe or m.default_probe
        if self.probe_name not in bundle.probes:
            raise GuardrailError(f"bundle has no probe {self.probe_name!r}; it has {sorted(bundle.probes)}")
        self.probe: AnyProbe = bundle.probes[self.probe_name]
        entry = m.probes[self.probe_name]
        self.thresholds: dict[str, float] = dict(entry.thresholds)
        """Per-label thresholds on P(not O) of the active probe."""
        self.lone_min_score: float = entry.lone_min_score
        self.labels: list[str] = list(m.detect_labels)
        self._descriptions: dict[int, str] | None = None
        self.patterns = None
        if patterns and m.patterns:
            from guardrail.patterns import PatternDetector

            self.patterns = PatternDetector()

    @classmethod
    def load(
        cls,
        name_or_path: str | Path = DEFAULT_BUNDLE,
        *,
        device: str = "auto",
        dtype: str = "auto",
        runtime: str = "torch",
        probe: str | None = None,
        patterns: bool = True,
        compile: bool = False,
    ) -> Guardrail:
        """Load a bundle by name (``probes/<name>``) or path, and the backbone it names.

        ``runtime``: ``torch`` (default) or ``onnx-int8`` (CPU only; see ``backbone.RUNTIMES``).
        ``compile``: ``torch.compile`` the backbone (slow start, faster serving; call :meth:`warmup`).
        """
        bundle = Bundle.load(name_or_path)
        ref = bundle.manifest.backbone
        backbone = Backbone.load(
            ref.id, layer=ref.layer, device=device, dtype=dtype, runtime=runtime, compile=compile
        )
        if bundle.sae is not None:
            # residuals come back to the CPU (float32); the SAE reads them there, in bf16 where the CPU
            # has it (never fp16: residuals reach ~1e4)
            bundle.sae.to(dtype=pick_dtype(torch.device("cpu"), dtype))
        if ref.sha256 and backbone.info.get("sha256") not in (None, ref.sha256):
            raise GuardrailError(
                f"backbone file of {ref.id!r} differs from the one the bundle was trained on"
            )
        return cls(bundle, backbone, probe=probe, patterns=patterns)

    def warmup(self, batch_size: int = 16) -> Guardrail:
        """Prepare every input shape once (servers call this before taking traffic); returns self."""
        self.backbone.warmup(batch_size)
        if self.patterns is not None:
            self.patterns.detect("warm-up: a@b.example 4111 1111 1111 1111")
        return self

    def _run(self, items: list[str], batch_size: int) -> tuple[list[np.ndarray], list[torch.Tensor], list]:
        """Token offsets, probe features and probe probabilities for each text."""
        encoded = self.backbone.encode(items)
        resids = self.backbone.residuals(encoded, batch_size=batch_size)
        with torch.inference_mode():
            feats = self.probe.features_batch(resids)
            probs = self.probe.probs_of(feats)
        return [e.offsets for e in encoded], feats, [p.numpy() for p in probs]

    def scores(self, texts: str | Iterable[str], batch_size: int = 16) -> list[TokenScores]:
        """Per-token class probabilities of the probe, with the tokens' character offsets."""
        offsets, _, probs = self._run(_as_texts(texts), batch_size)
        return [TokenScores(o, p) for o, p in zip(offsets, probs, strict=True)]

    def _labels(self, labels: Iterable[str] | None) -> list[str]:
        if labels is None:
            return self.labels
        chosen = list(labels)
        if bad := [x for x in chosen if x not in CANONICAL]:
            raise GuardrailError(f"unknown labels {bad}; expected some of {', '.join(CANONICAL)}")
        return chosen

    def detect(
        self,
        texts: str | Iterable[str],
        *,
        labels: Iterable[str] | None = None,
        batch_size: int = 16,
        explain: bool = False,
    ) -> list[list[Span]]:
        """Spans of PII per text (sorted, non-overlapping, offsets in Python code points).

        ``texts`` is a list of strings (a single ``str`` counts as a list of one); ``labels`` narrows or
        widens the reported labels (default: the bundle's ``detect_labels``). ``explain=True`` fills each
        probe span's ``features`` with the SAE latents behind it (needs an SAE-feature probe).
        """
        items = _as_texts(texts)
        keep = self._labels(labels)
        if explain and self.probe.source != "sae":
            raise GuardrailError(
                f"explanations read SAE features; probe {self.probe_name!r} reads the raw residual "
                "(load the bundle with probe='sae')"
            )
        results: list[list[Span]] = []
        pattern_spans = self.patterns.detect_batch(items) if self.patterns else [[] for _ in items]
        offsets, feats, probs = self._run(items, batch_size)
        classes_all = list(self.probe.classes)
        for i, (text, pats) in enumerate(zip(items, pattern_spans, strict=True)):
            cp, classes = collapse(probs[i], classes_all, keep)
            spans = decode(text, offsets[i], cp, classes, self.thresholds, lone_min_score=self.lone_min_score)
            if explain and spans:
                spans = self._explain(feats[i], offsets[i], spans)
            spans += [s for s in pats if s.label in keep]
            results.append(merge(spans))
        return results

    def _explain(self, feats: torch.Tensor, offsets: np.ndarray, spans: list[Span]) -> list[Span]:
        from guardrail.bundle import load_descriptions
        from guardrail.features import explain

        if self._descriptions is None:
            self._descriptions = load_descriptions(self.bundle.folder)
        return [
            replace(s, features=explain(self.probe, feats, offsets, s, self._descriptions)) for s in spans
        ]

    def redact(
        self,
        texts: str | Iterable[str],
        *,
        operator: str = "placeholder",
        key: bytes | str | None = None,
        labels: Iterable[str] | None = None,
        batch_size: int = 16,
    ) -> list[Redacted]:
        """Redacted texts with the spans replaced; one call is one pseudonym scope."""
        redactor = Redactor(operator, key=key)  # fails before any work if e.g. hash has no key
        items = _as_texts(texts)
        found = self.detect(items, labels=labels, batch_size=batch_size)
        return [redactor.redact(t, s) for t, s in zip(items, found, strict=True)]
