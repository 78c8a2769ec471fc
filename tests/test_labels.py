"""The canonical labels and their Presidio names: one to one both ways, aliases one way."""

from __future__ import annotations

import pytest

from guardrail.labels import (
    CANONICAL,
    PRESIDIO_ALIASES,
    PRESIDIO_ENTITIES,
    UnknownLabelError,
    check_label,
    from_presidio,
    to_presidio,
)


@pytest.mark.parametrize("label", CANONICAL)
def test_every_canonical_label_round_trips(label: str) -> None:
    entity = to_presidio(label)
    assert from_presidio(entity) == label and to_presidio(from_presidio(entity)) == entity


def test_the_table_is_one_to_one_and_aliases_never_shadow_it() -> None:
    assert set(PRESIDIO_ENTITIES) == set(CANONICAL)
    assert len(set(PRESIDIO_ENTITIES.values())) == len(CANONICAL)
    assert not set(PRESIDIO_ALIASES) & set(PRESIDIO_ENTITIES.values())
    assert set(PRESIDIO_ALIASES.values()) <= set(CANONICAL)


def test_presidio_names_where_presidio_has_them() -> None:
    assert [to_presidio(x) for x in ("EMAIL", "PHONE", "IBAN", "DATE", "PERSON")] == [
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "IBAN_CODE",
        "DATE_TIME",
        "PERSON",
    ]
    assert [to_presidio(x) for x in ("ADDRESS", "ID_NUMBER", "USERNAME", "PASSWORD")] == [
        "ADDRESS",
        "ID_NUMBER",
        "USERNAME",
        "PASSWORD",
    ]


@pytest.mark.parametrize(
    "entity", ["US_SSN", "UK_NHS", "US_PASSPORT", "ES_NIF", "IT_FISCAL_CODE", "DE_TAX_ID"]
)
def test_country_identifiers_are_id_numbers(entity: str) -> None:
    assert from_presidio(entity) == "ID_NUMBER"


def test_unknown_names_are_refused_with_a_clear_error() -> None:
    with pytest.raises(UnknownLabelError, match="unknown Presidio entity 'SSN'"):
        from_presidio("SSN")
    with pytest.raises(UnknownLabelError, match="unknown label 'EMAIL_ADDRESS'"):
        to_presidio("EMAIL_ADDRESS")  # a Presidio name is not a label
    with pytest.raises(ValueError):  # UnknownLabelError is a ValueError
        check_label("person")


def test_patterns_map_agrees_with_the_table() -> None:
    """guardrail.patterns keeps its own entity map; it must say what guardrail.labels says."""
    from guardrail.patterns import ENTITY_TO_LABEL

    assert {e: from_presidio(e) for e in ENTITY_TO_LABEL} == ENTITY_TO_LABEL
