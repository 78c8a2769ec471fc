"""The public API: one place where backbone -> probe -> spans (∪ patterns) -> redactor are composed.

>>> g = Guardrail.load()                      # the embedded default bundle
>>> g.detect(["Please call Ana Silva at +1 415 555 0100"])
[[Span(start=12, end=21, label='PERSON', ...), Span(start=25, end=40, label='PHONE', ...)]]
>>> g.redact(["Please call Ana Silva"])[0].text
'Please call [PERSON]'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from guardrail.backbone import RUNTIMES as BACKBONE_RUNTIMES
from guardrail.backbone import Backbone, pick_dtype
from guardrail.bundle import DEFAULT_BUNDLE, Bundle
from guardrail.invisible import strip_invisible, to_original
from guardrail.labels import CANONICAL, OUTSIDE
from guardrail.probe import AnyProbe
from guardrail.redact import Pseudonyms, Redacted, Redactor
from guardrail.spans import Span, bridge, decode_batch, merge
from guardrail.vault import Restored, Sealed, Vault, restore

log = logging.getLogger(__name__)

RUNTIMES = (*BACKBONE_RUNTIMES, "onnx")
"""What :meth:`Guardrail.load` runs on: the backbone runtimes, or ``onnx``: the whole probe as the graph
``guardrail export-onnx`` wrote."""


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


def residual_width(probe: AnyProbe) -> int | None:
    """Width of the residual stream ``probe`` reads (the backbone's hidden size), or None when an SAE
    probe has no SAE attached."""
    if probe.source == "sae":
        return probe.sae.cfg.d_in if probe.sae is not None else None
    return probe.n_features // len(probe.context)


@dataclass(frozen=True, slots=True)
class Prepared:
    """:meth:`Guardrail.prepare`'s output: texts without their invisible characters, the kept positions
    (:func:`guardrail.invisible.strip_invisible`), pattern spans, token offsets, probe features and
    class probabilities ``[sum T_i, C]``."""

    texts: list[str]
    kept: list[list[int] | None]
    patterns: list[list[Span]]
    offsets: list[np.ndarray]
    feats: torch.Tensor
    probs: np.ndarray


def _as_texts(texts: str | Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise GuardrailError(f"texts[{i}] is {type(t).__name__}, expected str")
    return out


def _check_provenance(bundle: Bundle, backbone: Backbone, model: str | None) -> None:
    """Refuse a backbone file other than the one the bundle was trained on (by sha256 of the GGUF file);
    warn when a ``model`` override carries no provenance to compare."""
    ref = bundle.manifest.backbone
    got = backbone.info.get("sha256")
    if ref.sha256 and got is not None and got != ref.sha256:
        which = f"backbone {model!r}" if model is not None else f"backbone file of {ref.id!r}"
        raise GuardrailError(
            f"{which} ({backbone.info.get('file', '?')}, sha256 {got[:12]}…) differs from the one bundle "
            f"{bundle.manifest.name!r} was trained on ({ref.file or ref.id}, sha256 {ref.sha256[:12]}…)"
        )
    if model is not None and (not ref.sha256 or got is None):
        missing = "the bundle records no sha256" if not ref.sha256 else "the model has no source.json"
        log.warning(
            "backbone %s: cannot check that it is the model bundle %s was trained on (%s); loading it anyway",
            Path(model).name,
            bundle.manifest.name,
            missing,
        )


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
        width = residual_width(self.probe)
        if width is not None and width != backbone.d_model:
            raise GuardrailError(
                f"backbone {backbone.info.get('id', '?')!r} has hidden size {backbone.d_model}, but probe "
                f"{self.probe_name!r} of bundle {m.name!r} reads {width}: it was trained on another model"
            )
        if backbone.residual_device.type != "cpu":
            self.probe.to(backbone.residual_device)  # read the residuals where the model leaves them
        entry = m.probes[self.probe_name]
        self.thresholds: dict[str, float] = dict(entry.thresholds)
        """Per-label thresholds on P(not O) of the active probe."""
        self.lone_min_score: float = entry.lone_min_score
        self.lone_min_unspaced: float | None = entry.lone_min_unspaced
        self.thresholds_unspaced: dict[str, float] | None = (
            None if entry.thresholds_unspaced is None else dict(entry.thresholds_unspaced)
        )
        """Per-label thresholds for tokens of scripts without spaces (None: :attr:`thresholds`)."""
        self.thresholds_grow: dict[str, float] | None = (
            None if entry.thresholds_grow is None else dict(entry.thresholds_grow)
        )
        """Per-label scores a token needs to join a span next to it (None: spans do not grow)."""
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
        runtime: str | None = None,
        probe: str | None = None,
        patterns: bool = True,
        compile: bool = False,
        model: str | None = None,
        onnx_dir: str | Path | None = None,
    ) -> Guardrail:
        """Load a bundle by name (``probes/<name>``) or path, and the backbone it names.

        ``runtime``: by default (None or ``auto``) the one the bundle's probe was fitted on
        (``backbone.runtime`` of the manifest) where this machine runs it fast, else the best it does
        (``backbone.choose``: a torch-int8 bundle runs onnx-int8 or torch on a CPU without VNNI/AMX,
        ``torch`` on a GPU); the choice and why are ``backbone.why``. ``torch``, ``torch-int8`` (int8
        products, compiled in :meth:`warmup` or with ``compile``; CPU), ``onnx-int8`` (the backbone
        alone in ONNX Runtime, CPU only; see ``backbone.RUNTIMES``) or ``onnx``: the whole probe as the graph
        ``guardrail export-onnx`` wrote into ``onnx_dir`` (ONNX Runtime's CUDA provider where
        ``onnxruntime-gpu`` and a GPU are there, else the CPU's; only the tokenizer is loaded here; no
        explanations).
        ``compile``: ``torch.compile`` the backbone (slow start, faster serving; call :meth:`warmup`).
        ``patterns=False``: the probe alone, without Presidio's pattern recognisers (nor Presidio).
        ``model``: load this backbone instead of the bundle's ``backbone.id``, at the bundle's layer — a
        converted model folder (e.g. carried into an air-gapped host or a container), a ``.gguf`` file,
        an embedded alias or a hub id. It must be the model the bundle was trained on: a different
        sha256 (a converted folder keeps its GGUF's in ``source.json``) or hidden size is refused; a
        folder without provenance is loaded with a warning.
        """
        bundle = Bundle.load(name_or_path)
        if runtime is None:
            runtime = "auto"  # the bundle's runtime where it is fast here (Backbone.for_bundle)
        if runtime == "onnx":
            return cls._load_graph(bundle, onnx_dir, device, probe, patterns, model)
        if onnx_dir is not None:
            raise GuardrailError("onnx_dir goes with runtime='onnx'")
        backbone = Backbone.for_bundle(
            bundle, model, device=device, dtype=dtype, runtime=runtime, compile=compile
        )
        if bundle.sae is not None:
            # the SAE reads the residuals where the probe does: on a CUDA backbone's GPU (the probe is
            # moved there), else on the CPU; in bf16 where the hardware has it (never fp16: residuals
            # reach ~1e4)
            bundle.sae.to(dtype=pick_dtype(backbone.residual_device, dtype))
        _check_provenance(bundle, backbone, model)
        return cls(bundle, backbone, probe=probe, patterns=patterns)

    @classmethod
    def _load_graph(
        cls,
        bundle: Bundle,
        onnx_dir: str | Path | None,
        device: str,
        probe: str | None,
        patterns: bool,
        model: str | None,
    ) -> Guardrail:
        from guardrail.export import ExportError, OnnxProbe

        if onnx_dir is None:
            raise GuardrailError("runtime 'onnx' needs onnx_dir: the folder guardrail export-onnx wrote")
        ref = bundle.manifest.backbone
        try:
            graph = OnnxProbe(onnx_dir, device)
            name = probe or graph.manifest["probe"]
            if name not in bundle.probes:
                raise GuardrailError(f"bundle has no probe {name!r}; it has {sorted(bundle.probes)}")
            graph.check(bundle.manifest.name, name, bundle.probes[name].classes, ref.sha256, bundle.folder)
        except ExportError as e:
            raise GuardrailError(str(e)) from e
        backbone = Backbone.tokenizer_only(model or ref.id, ref.layer)
        _check_provenance(bundle, backbone, model)
        guard = cls(bundle, backbone, probe=name, patterns=patterns)
        guard.graph = graph
        return guard

    graph = None
    """The exported probe graph (:class:`guardrail.export.OnnxProbe`) under runtime ``onnx``, else None."""

    @property
    def explains(self) -> bool:
        """Whether ``detect(explain=True)`` works: an SAE-feature probe on the torch runtime."""
        return self.probe.source == "sae" and self.graph is None

    def describe(self) -> dict[str, str]:
        """What runs, as strings (``GetInfo`` and the sidecar's build metric): bundle, backbone, probe,
        device (``cpu``, ``cuda:0 NVIDIA H200``), dtype (``bfloat16``, ``float32``), runtime (``torch``,
        ``onnx-int8``), patterns (``true``/``false``), why (the runtime and dtype picked and why:
        :attr:`Backbone.why <guardrail.backbone.Backbone.why>`) and cpu (the CPU as the model's libraries
        see it, :func:`guardrail.cpu.probe`: ``x86_64 <model>; capability AVX2; int8 slow (no ...);
        bf16 slow (...)``)."""
        from guardrail import cpu

        c = cpu.probe()
        caps = [f"{c.arch} {c.model}".strip(), f"capability {c.capability}"]
        if c.onednn_max_isa:
            caps.append(f"ONEDNN_MAX_CPU_ISA={c.onednn_max_isa}")
        caps += [
            f"{kind} {fast}" if fast else f"{kind} slow ({why})"
            for kind, fast, why in (("int8", c.int8, c.int8_why), ("bf16", c.bf16, c.bf16_why))
        ]
        return {
            "bundle": self.bundle.manifest.name,
            "backbone": self.backbone.info.get("id", self.bundle.manifest.backbone.id),
            "probe": self.probe_name,
            "device": self._device_name(),
            "dtype": self.backbone.dtype_name,
            "runtime": self.backbone.runtime,
            "patterns": "true" if self.patterns is not None else "false",
            "why": self.backbone.why,
            "cpu": "; ".join(caps),
        }

    def _device_name(self) -> str:
        if self.graph is None:
            return self.backbone.device_name
        return "cuda (ONNX Runtime)" if self.graph.device.type == "cuda" else "cpu"

    def _batch(self, batch_size: int | None) -> int:
        """Rows of <= 128 token slots per forward pass (short windows share a row): as asked, else 16
        on the CPU (more gains nothing there) and 256 on a GPU (measured on an H200 before packing: 16
        windows reach ~1/3 of the throughput of 256-512)."""
        if batch_size is not None:
            if batch_size < 1:
                raise GuardrailError(f"batch_size must be at least 1, got {batch_size}")
            return batch_size
        runs_on = self.graph.device if self.graph is not None else self.backbone.device
        return 16 if runs_on.type == "cpu" else 256

    def warmup(self, batch_size: int = 16) -> Guardrail:
        """Prepare every input shape once (servers call this before taking traffic); returns self."""
        if self.graph is not None:
            self.detect(["warm-up: Ana Silva, a@b.example"])
        else:
            self.backbone.warmup(batch_size)
        if self.patterns is not None:
            self.patterns.detect("warm-up: a@b.example 4111 1111 1111 1111")
        return self

    def _run(self, items: list[str], batch_size: int) -> tuple[list[np.ndarray], list[torch.Tensor], list]:
        """Token offsets, probe features and probe probabilities for each text."""
        offsets, feats, probs = self._probe(self.backbone.encode(items), batch_size)
        sizes = [len(o) for o in offsets]
        if not sizes:
            return [], [], []
        return offsets, list(feats.split(sizes)), np.split(probs, np.cumsum(sizes)[:-1])

    def scores(self, texts: str | Iterable[str], batch_size: int | None = None) -> list[TokenScores]:
        """Per-token class probabilities of the probe, with the tokens' character offsets."""
        offsets, _, probs = self._run(_as_texts(texts), self._batch(batch_size))
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
        batch_size: int | None = None,
        explain: bool = False,
        checkpoint: Callable[[], None] | None = None,
    ) -> list[list[Span]]:
        """Spans of PII per text (sorted, non-overlapping, offsets in Python code points).

        Invisible characters (soft hyphens, zero-width spaces and joiners: see :mod:`guardrail.invisible`)
        are read past, and a span covers those inside its value.

        ``texts`` is a list of strings (a single ``str`` counts as a list of one); ``labels`` narrows or
        widens the reported labels (default: the bundle's ``detect_labels``). ``explain=True`` fills each
        probe span's ``features`` with the SAE latents behind it (needs an SAE-feature probe).
        ``batch_size``: rows of <= 128 token slots per forward pass, short windows sharing a row
        (default: 16 on the CPU, 256 on a GPU). ``checkpoint`` is called between texts of the pattern
        stage and before tokenisation, and may raise to stop the call there (the sidecar stops a batch
        whose callers have all gone; the model's own checkpoints are hooks, see
        :func:`guardrail.serving.server.checkpoint_hooks`).
        """
        items = _as_texts(texts)
        keep = self._labels(labels)
        if explain and self.graph is not None:
            raise GuardrailError(
                "explanations need the torch runtime (the exported graph returns scores only)"
            )
        if explain and self.probe.source != "sae":
            raise GuardrailError(
                f"explanations read SAE features; probe {self.probe_name!r} reads the raw residual "
                "(load the bundle with probe='sae')"
            )
        return self.spans_of(self.prepare(items, batch_size=batch_size, checkpoint=checkpoint), keep, explain)

    def prepare(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> Prepared:
        """The work of :meth:`detect` that does not depend on thresholds: the probe's token scores and
        the pattern spans of each text. :meth:`spans_of` turns them into spans at the current thresholds
        (a benchmark tries many operating points on one forward pass)."""
        # invisible characters (a soft hyphen inside a name) must not split a value: detect without them
        stripped = [strip_invisible(t) for t in texts]
        seen = [t for t, _ in stripped]
        if self.patterns is not None:
            pattern_spans = self.patterns.detect_batch(seen, checkpoint=checkpoint)
        else:
            pattern_spans = [[] for _ in seen]
        if checkpoint is not None:
            checkpoint()
        encoded = self.backbone.encode(seen)
        offsets, feats, probs = self._probe(encoded, self._batch(batch_size))
        return Prepared(seen, [kept for _, kept in stripped], pattern_spans, offsets, feats, probs)

    def spans_of(
        self, prepared: Prepared, labels: Iterable[str] | None = None, explain: bool = False
    ) -> list[list[Span]]:
        """:meth:`detect`'s spans from :meth:`prepare`, at the current thresholds."""
        keep = self._labels(labels)
        found = self._decode(prepared.texts, prepared.offsets, prepared.feats, prepared.probs, keep, explain)
        return [
            to_original(bridge(text, merge(spans + [s for s in pats if s.label in keep])), kept)
            for text, spans, pats, kept in zip(
                prepared.texts, found, prepared.patterns, prepared.kept, strict=True
            )
        ]

    def _probe(self, encoded: list, batch_size: int) -> tuple[list[np.ndarray], torch.Tensor, np.ndarray]:
        """Token offsets of each encoded text; the probe's features ``[sum T_i, F]`` and class
        probabilities ``[sum T_i, C]`` of all the texts' tokens, text after text. The probe reads the
        residuals where the backbone leaves them (on a GPU: one copy of the probabilities comes back)."""
        if self.graph is not None:
            probs = self.graph.probs(encoded, batch_size, self.backbone.bos_id, self.backbone.pad_id)
            return [e.offsets for e in encoded], torch.zeros((len(probs), 0)), probs
        sizes = [len(e.ids) for e in encoded]
        flat = self.backbone.residuals_flat(encoded, batch_size=batch_size, on_device=True)
        with torch.inference_mode():
            if not self.explains:  # the features are read only to explain: never build the table
                feats = flat.new_zeros((len(flat), 0))
                probs = self.probe.probs_flat(flat, sizes)
            else:
                feats = self.probe.features_flat(flat, sizes)
                probs = self.probe.probs(feats)
        return [e.offsets for e in encoded], feats, probs.float().cpu().numpy()

    def _decode(
        self,
        items: list[str],
        offsets: list[np.ndarray],
        feats: torch.Tensor,
        probs: np.ndarray,
        keep: list[str],
        explain: bool,
    ) -> list[list[Span]]:
        """The probe's spans of each text (with their SAE features when ``explain``)."""
        cp, classes = collapse(probs, list(self.probe.classes), keep)
        found = decode_batch(
            items,
            offsets,
            cp,
            classes,
            self.thresholds,
            lone_min_score=self.lone_min_score,
            lone_min_unspaced=self.lone_min_unspaced,
            thresholds_unspaced=self.thresholds_unspaced,
            thresholds_grow=self.thresholds_grow,
        )
        if explain:
            per_text = feats.split([len(o) for o in offsets])
            found = [
                self._explain(per_text[i], offsets[i], spans) if spans else spans
                for i, spans in enumerate(found)
            ]
        return found

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
        batch_size: int | None = None,
        pseudonyms: Pseudonyms | None = None,
        keep_placeholders: bool = False,
    ) -> list[Redacted]:
        """Redacted texts with the spans replaced; one call is one pseudonym scope, unless ``pseudonyms``
        (``operator="pseudonym"``) carries the numbering on from earlier calls. ``keep_placeholders``:
        pseudonym placeholders already in the texts (a model's answer) stay as they are."""
        # fails before any work if e.g. hash has no key
        redactor = Redactor(operator, key=key, pseudonyms=pseudonyms, keep_placeholders=keep_placeholders)
        items = _as_texts(texts)
        found = self.detect(items, labels=labels, batch_size=batch_size)
        return [redactor.redact(t, s) for t, s in zip(items, found, strict=True)]

    def pseudonymise(
        self,
        texts: str | Iterable[str],
        *,
        vault: Vault | None = None,
        mapping: str | None = None,
        scope: str = "",
        labels: Iterable[str] | None = None,
        batch_size: int | None = None,
    ) -> Sealed:
        """Texts with each value replaced by its pseudonym (``<PERSON_1>``), and the mapping back sealed by
        ``vault`` (default: ``GUARDRAIL_VAULT_KEY``) for ``scope`` (e.g. the conversation id).

        ``mapping``: the sealed mapping of the conversation's earlier turns; a value seen there keeps its
        pseudonym and the new mapping holds the old entries too. :meth:`restore` puts the values back."""
        vault = vault or Vault.from_env()
        pseudonyms = vault.open(mapping, scope) if mapping else Pseudonyms()
        done = self.redact(
            texts, operator="pseudonym", labels=labels, batch_size=batch_size, pseudonyms=pseudonyms
        )
        return Sealed(done, vault.seal(pseudonyms, scope))

    def restore(
        self,
        texts: str | Iterable[str],
        mapping: str,
        *,
        vault: Vault | None = None,
        scope: str = "",
        unknown: str = "error",
    ) -> list[Restored]:
        """Texts (e.g. the agent's answers) with the placeholders of a sealed ``mapping`` replaced by the
        values they stand for (see :mod:`guardrail.vault`); needs no model. ``unknown``: a placeholder the
        mapping does not hold is an error (``"error"``) or left as it is (``"keep"``)."""
        pseudonyms = (vault or Vault.from_env()).open(mapping, scope)
        return [restore(t, pseudonyms, unknown=unknown) for t in _as_texts(texts)]
