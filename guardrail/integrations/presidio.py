"""Presidio drop-in: the guardrail as a Presidio ``EntityRecognizer``, in-process or through the sidecar.

>>> from guardrail.integrations.presidio import add_to
>>> add_to(analyzer, Guardrail.load())        # an existing AnalyzerEngine; in-process
>>> add_to(analyzer, "127.0.0.1:50051")       # or through the sidecar (guardrail serve)
>>> analyzer.analyze(text, language="en", entities=["PERSON", "US_SSN"])  # US_SSN: served by ID_NUMBER

One class, :class:`GuardrailRecognizer`, with two constructors: :meth:`~GuardrailRecognizer.from_guardrail`
wraps a :class:`~guardrail.pipeline.Guardrail`, :meth:`~GuardrailRecognizer.from_sidecar` calls the sidecar
through :class:`~guardrail.client.GuardrailClient`. They differ only in where the spans come from; entity
names, filtering, scores, metadata and explanations are one code path. Presidio's ``RemoteRecognizer`` is
not subclassed: in presidio-analyzer 2.2.366 it adds a no-op ``load()`` and abstract methods only, and
nothing in Presidio tests for it, while a second class would split what the two variants share.

Entities are Presidio's names (:data:`guardrail.labels.PRESIDIO_ENTITIES`: ``EMAIL_ADDRESS``,
``PHONE_NUMBER``, ..., and ``ADDRESS``, ``ID_NUMBER``, ``USERNAME``, ``PASSWORD``, ``OTHER`` where Presidio
has none), plus by default Presidio's narrower names as aliases (:data:`guardrail.labels.PRESIDIO_ALIASES`:
``US_SSN``, ``UK_NHS``, ... -> ID_NUMBER). A request for an alias is answered by the label that covers it,
and results carry that label's own entity name (``ID_NUMBER``): the probe does not tell one country's
identifier from another's. Entities a recognizer does not serve are ignored, as Presidio's own recognizers
do (the analyzer hands every recognizer the whole request); unknown names given at construction raise
:class:`~guardrail.labels.UnknownLabelError`.

The guardrail needs no NLP artifacts: ``load()`` does nothing and ``nlp_artifacts`` is not read, so it
runs under any NLP engine, Presidio's ``NoOpNlpEngine`` included. A failing sidecar raises
:class:`~guardrail.client.SidecarError` out of ``AnalyzerEngine.analyze`` (fail closed: an outage is never
mistaken for a text without PII). No message or explanation contains the analysed text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

from guardrail import __version__
from guardrail.client import GuardrailClient, SidecarError
from guardrail.labels import PRESIDIO_ALIASES, from_presidio, to_presidio
from guardrail.spans import Feature, Span

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpArtifacts

    from guardrail.pipeline import Guardrail

NAME = "GuardrailRecognizer"
"""Default recognizer name (``recognition_metadata["recognizer_name"]``, ``explanation.recognizer``)."""

T = TypeVar("T")


class PresidioConfigError(ValueError):
    """A :class:`GuardrailRecognizer` asked for what its source cannot give (explanations without an
    in-process SAE probe, a language the analyzer does not support)."""


class _Source(Protocol):
    """Where a recognizer's spans come from: the only part the two variants do not share."""

    def labels(self) -> list[str]:
        """The canonical labels the guardrail reports by default."""
        ...

    def names(self) -> tuple[str, str]:
        """The bundle's and the probe's names."""
        ...

    def spans(self, text: str, labels: list[str]) -> list[Span]:
        """The spans of ``labels`` in ``text``."""
        ...

    def close(self) -> None:
        """Release what the source owns."""
        ...


class _InProcess:
    """Spans from a :class:`~guardrail.pipeline.Guardrail` in this process."""

    def __init__(self, guard: Guardrail, explain: bool):
        if explain and not guard.explains:
            raise PresidioConfigError(
                f"explain=True reads SAE features under the torch runtime; probe {guard.probe_name!r} "
                "cannot (load the bundle with probe='sae-lr' and a torch runtime)"
            )
        self.guard = guard
        self.explain = explain

    def labels(self) -> list[str]:
        return list(self.guard.labels)

    def names(self) -> tuple[str, str]:
        return self.guard.bundle.manifest.name, self.guard.probe_name

    def spans(self, text: str, labels: list[str]) -> list[Span]:
        return self.guard.detect([text], labels=labels, explain=self.explain)[0]

    def close(self) -> None:
        pass


class _Sidecar:
    """Spans from the sidecar through a :class:`~guardrail.client.GuardrailClient`."""

    def __init__(self, client: GuardrailClient, owned: bool, explain: bool = False):
        self.client = client
        self.owned = owned
        self._info: dict[str, Any] | None = None
        if explain and not (info := self.info())["explanations"]:
            if owned:
                client.close()
            raise PresidioConfigError(
                f"explain=True reads SAE features under the torch runtime; the sidecar at {client.target} "
                f"runs probe {info['probe']!r} on {info['runtime']!r} (GetInfo.explanations)"
            )
        self.explain = explain

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except SidecarError as e:  # the same error, naming where it came from (never the text)
            raise SidecarError(e.code, f"guardrail sidecar at {self.client.target}: {e.message}") from None

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self._call(self.client.info)
        return self._info

    def labels(self) -> list[str]:
        return list(self.info()["labels"])

    def names(self) -> tuple[str, str]:
        info = self.info()
        return info["bundle"] or "unknown", info["probe"] or "unknown"  # servers before GetInfo.probe: ''

    def spans(self, text: str, labels: list[str]) -> list[Span]:
        return self._call(lambda: self.client.detect([text], labels=labels, explain=self.explain))[0]

    def close(self) -> None:
        if self.owned:
            self.client.close()


def _is_guardrail(obj: object) -> bool:
    # a Guardrail exists only once guardrail.pipeline is imported: the sidecar path never imports it
    pipeline = sys.modules.get("guardrail.pipeline")
    return pipeline is not None and isinstance(obj, pipeline.Guardrail)


def _sidecar(target: GuardrailClient | str, explain: bool, client_options: dict[str, Any]) -> _Sidecar:
    """The span source for a sidecar client (the caller's) or address (``host:port``: a client made here)."""
    if isinstance(target, str):
        return _Sidecar(GuardrailClient(target, **client_options), owned=True, explain=explain)
    if not isinstance(target, GuardrailClient):
        raise PresidioConfigError(
            f"expected a GuardrailClient or a sidecar address, got {type(target).__name__}"
        )
    if client_options:
        raise PresidioConfigError(f"client options {sorted(client_options)} go with a sidecar address")
    return _Sidecar(target, owned=False, explain=explain)


def _source(
    guardrail: Guardrail | GuardrailClient | str, explain: bool, client_options: dict[str, Any]
) -> _Source:
    """The span source for a Guardrail (in-process), or a sidecar client or address."""
    if not _is_guardrail(guardrail):
        return _sidecar(guardrail, explain, client_options)  # type: ignore[arg-type]
    if client_options:
        raise PresidioConfigError(f"client options {sorted(client_options)} go with a sidecar address")
    return _InProcess(guardrail, explain)  # type: ignore[arg-type]


def _served(source: _Source, entities: Iterable[str] | None) -> tuple[str, ...]:
    """The canonical labels a recognizer serves: those ``entities`` name, else the guardrail's defaults."""
    labels = source.labels() if entities is None else [from_presidio(e) for e in entities]
    if not labels:
        raise PresidioConfigError("a GuardrailRecognizer must serve at least one entity")
    return tuple(dict.fromkeys(labels))


class GuardrailExplanation(AnalysisExplanation):
    """Presidio's :class:`~presidio_analyzer.AnalysisExplanation` with the guardrail's provenance.

    ``recognizer`` is the recognizer's name and ``original_score`` the span's score, as Presidio's own
    recognizers fill them; ``textual_explanation`` says the same as the fields below in one line. Added:
    ``bundle`` and ``probe`` (what ran), ``detector`` (``probe``, or ``pattern``: the guardrail's Presidio
    pattern recognizers) and ``features``: the SAE latents behind a probe span when the recognizer was
    built with ``explain=True`` (dicts of :class:`~guardrail.spans.Feature`: ``latent``, ``activation``,
    ``contribution``, and ``description``, which comes from the bundle's ``features.json`` (synthetic
    training data), never from the analysed text); otherwise empty. ``to_dict()`` holds them all.
    """

    def __init__(
        self,
        recognizer: str,
        original_score: float,
        *,
        bundle: str,
        probe: str,
        detector: str,
        features: Sequence[Feature] = (),
    ):
        super().__init__(
            recognizer=recognizer,
            original_score=original_score,
            textual_explanation=_textual(bundle, probe, detector, features),
        )
        self.bundle = bundle
        self.probe = probe
        self.detector = detector
        self.features = [asdict(f) for f in features]


def _textual(bundle: str, probe: str, detector: str, features: Sequence[Feature]) -> str:
    line = f"found by the {detector} of guardrail bundle {bundle!r} (probe {probe!r})"
    if features:
        line += "; SAE latents " + ", ".join(f"{f.latent} ({f.contribution:+.3f})" for f in features)
    return line


class GuardrailRecognizer(EntityRecognizer):
    """The guardrail as a Presidio recognizer; build it with :meth:`from_guardrail` or :meth:`from_sidecar`
    (or register it in one call with :func:`add_to`).

    ``entities`` (Presidio names or aliases) picks the labels served; default: the labels the guardrail
    reports (``Guardrail.labels``, the sidecar's ``GetInfo``). ``supported_entities`` are those labels'
    entity names, then (``aliases=True``) the aliases they cover. :meth:`analyze` returns one
    :class:`~presidio_analyzer.RecognizerResult` per guardrail span of a requested label, with the span's
    score, Presidio's ``recognition_metadata`` (recognizer name and identifier) and a
    :class:`GuardrailExplanation` (kept by ``AnalyzerEngine.analyze(..., return_decision_process=True)``).
    """

    def __init__(
        self,
        source: _Source,
        *,
        entities: Iterable[str] | None = None,
        aliases: bool = True,
        name: str = NAME,
        supported_language: str = "en",
    ):
        self._source = source
        self.labels: tuple[str, ...] = _served(source, entities)
        """The canonical labels served."""
        supported = [to_presidio(label) for label in self.labels]
        if aliases:
            supported += [alias for alias, label in PRESIDIO_ALIASES.items() if label in self.labels]
        super().__init__(
            supported_entities=supported,
            name=name,
            supported_language=supported_language,
            version=__version__,
        )

    @classmethod
    def from_guardrail(
        cls,
        guard: Guardrail,
        *,
        entities: Iterable[str] | None = None,
        explain: bool = False,
        aliases: bool = True,
        name: str = NAME,
        supported_language: str = "en",
    ) -> GuardrailRecognizer:
        """In-process: spans from ``guard.detect``. ``explain=True`` adds the SAE latents behind each probe
        span to its explanation (an SAE probe under the torch runtime, e.g. ``probe='sae-lr'``; else
        :class:`PresidioConfigError` here)."""
        return cls(
            _InProcess(guard, explain),
            entities=entities,
            aliases=aliases,
            name=name,
            supported_language=supported_language,
        )

    @classmethod
    def from_sidecar(
        cls,
        target: str | GuardrailClient,
        *,
        entities: Iterable[str] | None = None,
        explain: bool = False,
        aliases: bool = True,
        name: str = NAME,
        supported_language: str = "en",
        **client_options: Any,
    ) -> GuardrailRecognizer:
        """Remote: spans from the sidecar's ``Detect``. ``target`` is ``host:port`` (``client_options`` go to
        :class:`~guardrail.client.GuardrailClient`: ``timeout``, ``retries``, ``token``, TLS; :meth:`close`
        closes that client) or a client the caller owns. Without ``entities`` the sidecar is asked here
        which labels it reports (``GetInfo``); with them, nothing is called before the first ``analyze``.
        ``explain=True`` asks the sidecar for the SAE latents behind each span; refused
        (:class:`PresidioConfigError`, one ``GetInfo`` call here) where its probe reads no SAE features."""
        return cls(
            _sidecar(target, explain, client_options),
            entities=entities,
            aliases=aliases,
            name=name,
            supported_language=supported_language,
        )

    def load(self) -> None:
        """Nothing to load: the guardrail brings its own model and needs no NLP artifacts."""

    def analyze(
        self, text: str, entities: list[str] | None = None, nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Results for the guardrail's spans of the requested ``entities`` in ``text`` (all served ones when
        ``entities`` is empty; entities not served are ignored). ``nlp_artifacts`` is not read."""
        wanted = self._wanted(entities)
        if not wanted or not text:
            return []
        spans = self._source.spans(text, wanted)
        bundle, probe = self._source.names()
        return [self._result(s, bundle, probe) for s in spans if s.label in wanted]

    def _wanted(self, entities: Sequence[str] | None) -> list[str]:
        if not entities:
            return list(self.labels)
        asked = {from_presidio(e) for e in entities if e in self.supported_entities}
        return [label for label in self.labels if label in asked]

    def _result(self, span: Span, bundle: str, probe: str) -> RecognizerResult:
        explanation = GuardrailExplanation(
            self.name, span.score, bundle=bundle, probe=probe, detector=span.source, features=span.features
        )
        return RecognizerResult(
            entity_type=to_presidio(span.label),
            start=span.start,
            end=span.end,
            score=span.score,
            analysis_explanation=explanation,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )

    def close(self) -> None:
        """Close the sidecar client this recognizer made (from an address); a no-op otherwise."""
        self._source.close()


def add_to(
    analyzer: AnalyzerEngine,
    guardrail: Guardrail | GuardrailClient | str,
    *,
    entities: Iterable[str] | None = None,
    explain: bool = False,
    aliases: bool = True,
    name: str = NAME,
    languages: Sequence[str] | None = None,
    **client_options: Any,
) -> list[GuardrailRecognizer]:
    """Register the guardrail in an existing ``AnalyzerEngine`` (``analyzer.registry.add_recognizer``):
    in-process for a :class:`~guardrail.pipeline.Guardrail`, through the sidecar for a
    :class:`~guardrail.client.GuardrailClient` or a ``host:port`` address (``client_options`` as in
    :meth:`GuardrailRecognizer.from_sidecar`).

    Presidio runs a recognizer for its own language only, and the guardrail reads any language: one
    recognizer is added per language of ``languages`` (default: every language the analyzer supports),
    all sharing one guardrail or client. Returns them (``close()`` on any closes a client made here).
    """
    langs = list(languages if languages is not None else analyzer.supported_languages)
    if bad := [lang for lang in langs if lang not in analyzer.supported_languages]:
        supported = analyzer.supported_languages
        raise PresidioConfigError(f"the analyzer does not support {bad}; it supports {supported}")
    source = _source(guardrail, explain, client_options)
    entities = None if entities is None else list(entities)  # read once per recognizer
    added = [
        GuardrailRecognizer(source, entities=entities, aliases=aliases, name=name, supported_language=lang)
        for lang in langs
    ]
    for recognizer in added:
        analyzer.registry.add_recognizer(recognizer)
    return added
