"""Pattern stage (guardrail/patterns.py): Presidio's recognizers, checksums, thresholds, no network."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.labels import CANONICAL
from guardrail.spans import Span

pytest.importorskip("presidio_analyzer")

from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from guardrail.patterns import (
    DEFAULT_MIN_SCORE,
    ENTITY_TO_LABEL,
    GatedPhoneRecognizer,
    OfflineEmailRecognizer,
    PatternDetector,
    any_email_spans,
    drop_contained,
    fewest_phone_digits,
    has_phone_shape,
    longest_number_run,
    min_score_for,
)


@pytest.fixture(scope="module")
def detector(network_attempts: list[str]) -> PatternDetector:
    return PatternDetector()


def found(detector: PatternDetector, text: str) -> list[tuple[str, str]]:
    return [(s.label, text[s.start : s.end]) for s in detector.detect(text)]


def test_valid_card_found_and_luhn_failing_card_not(detector: PatternDetector) -> None:
    assert found(detector, "card 4111 1111 1111 1111 thanks") == [("CREDIT_CARD", "4111 1111 1111 1111")]
    assert found(detector, "card 4111-1111-1111-1111.") == [("CREDIT_CARD", "4111-1111-1111-1111")]
    assert found(detector, "card 4111 1111 1111 1112 thanks") == []  # Luhn fails


def test_valid_iban_found_and_mod97_failing_iban_not(detector: PatternDetector) -> None:
    assert found(detector, "IBAN DE89370400440532013000 ok") == [("IBAN", "DE89370400440532013000")]
    assert found(detector, "to GB82 WEST 1234 5698 7654 32.") == [("IBAN", "GB82 WEST 1234 5698 7654 32")]
    assert found(detector, "IBAN DE89370400440532013001 ok") == []  # mod-97 fails
    assert found(detector, "IBAN DE88370400440532013000 ok") == []  # wrong check digits


def test_email_is_one_email_span_not_also_a_url(detector: PatternDetector) -> None:
    text = "write to ana.silva@example.com or bob@mail.co.uk"
    assert found(detector, text) == [("EMAIL", "ana.silva@example.com"), ("EMAIL", "bob@mail.co.uk")]


def test_ip_addresses(detector: PatternDetector) -> None:
    assert found(detector, "from 192.168.10.1 today") == [("IP_ADDRESS", "192.168.10.1")]
    assert found(detector, "v6 2001:db8:85a3::8a2e:370:7334 up") == [
        ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334")
    ]
    assert found(detector, "version 999.1.1.1") == []  # not an IPv4 address


def test_phone_numbers(detector: PatternDetector) -> None:
    assert found(detector, "call (415) 555-0100 now") == [("PHONE", "(415) 555-0100")]
    assert found(detector, "ring +44 20 7946 0958") == [("PHONE", "+44 20 7946 0958")]


def test_ssn_is_an_id_not_a_phone(detector: PatternDetector) -> None:
    assert found(detector, "my SSN is 536-22-1234.") == [("ID_NUMBER", "536-22-1234")]
    assert ("ID_NUMBER", "000-22-1234") not in found(detector, "my SSN is 000-22-1234.")  # invalid area


def test_url(detector: PatternDetector) -> None:
    assert found(detector, "see https://www.example.com/a?b=1 now") == [
        ("URL", "https://www.example.com/a?b=1")
    ]


def test_weak_patterns_do_not_flood(detector: PatternDetector) -> None:
    # bank account (8-17 digits), driver licence, passport, bare SSN: Presidio's "very weak" regexes
    text = "order 12345678 ref A1234567 ticket 987654328 code 5551234 on 3/20"
    assert found(detector, text) == []


def test_min_score_overrides_every_per_entity_minimum() -> None:
    weak = PatternDetector(labels=["ID_NUMBER"], min_score=0.0)
    spans = weak.detect("order 12345678")
    assert spans and all(s.label == "ID_NUMBER" and s.score < DEFAULT_MIN_SCORE for s in spans)
    assert min_score_for("PHONE_NUMBER") == 0.4 and min_score_for("PHONE_NUMBER", 0.7) == 0.7
    assert min_score_for("US_BANK_NUMBER") == DEFAULT_MIN_SCORE


def test_labels_restrict_recognizers_and_results() -> None:
    only_email = PatternDetector(labels=["EMAIL"])
    assert [type(r) for r in only_email.recognizers] == [OfflineEmailRecognizer]
    text = "a@example.com 4111111111111111 10.0.0.1"
    assert [s.label for s in only_email.detect(text)] == ["EMAIL"]
    assert PatternDetector(labels=["PERSON"]).detect("Ana Silva, a@example.com") == []
    with pytest.raises(ValueError):
        PatternDetector(labels=["EMAIL_ADDRESS"])  # a Presidio entity, not a canonical label


def test_no_nlp_recognizer_and_every_entity_mapped(detector: PatternDetector) -> None:
    from presidio_analyzer import PatternRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    assert detector.recognizers
    for r in detector.recognizers:
        assert isinstance(r, (PatternRecognizer, PhoneRecognizer)), type(r)
        assert all(e in ENTITY_TO_LABEL for e in r.supported_entities)
    assert set(ENTITY_TO_LABEL.values()) <= set(CANONICAL)


def test_spans_are_sorted_canonical_pattern_spans(detector: PatternDetector) -> None:
    text = "b@example.org, 10.1.2.3, card 5555555555554444, call +1 415 555 0100, a@example.com"
    spans = detector.detect(text)
    assert spans == sorted(spans) and len(spans) == 5
    assert all(s.source == "pattern" and s.label in CANONICAL and 0 < s.score <= 1 for s in spans)
    assert detector.detect("") == [] and detector.detect("nothing to see") == []


def test_detect_batch_matches_detect(detector: PatternDetector) -> None:
    texts = ["a@example.com", "", "call (415) 555-0100", "IBAN DE89370400440532013000"]
    assert detector.detect_batch(texts) == [detector.detect(t) for t in texts]


def test_detect_batch_calls_its_checkpoint_before_each_text_and_stops_when_it_raises(
    detector: PatternDetector,
) -> None:
    """The sidecar's stop reaches the pattern stage: a checkpoint that raises stops the batch before the
    next text; one that does not leaves the spans as they are."""
    texts = ["mail a@b.com", "card 4111 1111 1111 1111", "nothing here", "ip 10.0.0.1"]
    calls: list[int] = []
    assert detector.detect_batch(texts, checkpoint=lambda: calls.append(1)) == detector.detect_batch(texts)
    assert len(calls) == len(texts)

    class Stopped(Exception):
        pass

    def stop_after_two() -> None:
        if len(seen) == 2:
            raise Stopped
        seen.append(1)

    seen: list[int] = []
    read: list[str] = []
    detect = detector.detect
    detector.detect = lambda t: read.append(t) or detect(t)  # type: ignore[method-assign]
    try:
        with pytest.raises(Stopped):
            detector.detect_batch(texts, checkpoint=stop_after_two)
    finally:
        del detector.detect
    assert read == texts[:2]


def test_detect_is_thread_safe(detector: PatternDetector) -> None:
    texts = [
        f"user{i}@example.com paid with 4111 1111 1111 1111 from 10.0.{i % 256}.1,"
        f" call (415) 555-01{i % 100:02d}"
        for i in range(64)
    ]
    expected = [detector.detect(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(detector.detect, texts))
    assert got == expected


def test_drop_contained_keeps_the_stronger_outer_span() -> None:
    spans = [
        Span(0, 20, "EMAIL", 1.0, "pattern"),
        Span(10, 20, "URL", 0.5, "pattern"),  # the email's domain
        Span(30, 46, "CREDIT_CARD", 1.0, "pattern"),
        Span(30, 40, "PHONE", 0.4, "pattern"),  # phone-shaped run inside the card
        Span(50, 60, "PHONE", 0.4, "pattern"),
        Span(55, 70, "URL", 0.6, "pattern"),  # overlaps, not contained: both kept
        Span(80, 90, "ID_NUMBER", 0.5, "pattern"),
        Span(80, 90, "PHONE", 0.4, "pattern"),  # same digits, weaker
        Span(100, 110, "DATE", 0.6, "pattern"),
        Span(102, 108, "ID_NUMBER", 1.0, "pattern"),  # stronger inner span: kept
    ]
    assert drop_contained(spans) == sorted(
        [spans[0], spans[2], spans[4], spans[5], spans[6], spans[8], spans[9]]
    )


def test_network_guard_records_attempts(network_attempts: list[str]) -> None:
    before = len(network_attempts)
    with pytest.raises(OSError):
        socket.create_connection(("example.com", 80))
    assert len(network_attempts) == before + 1
    del network_attempts[before:]


def test_no_network_access_attempted(detector: PatternDetector, network_attempts: list[str]) -> None:
    # a fresh detector too: construction loads the recognizers and warms up the suffix list
    PatternDetector(labels=["EMAIL", "URL"]).detect("mail ana@example.com, see www.example.org")
    detector.detect("mail ana@example.co.uk or bob@xn--80ak6aa92e.com")
    assert network_attempts == []


def test_phone_gate_needs_as_many_digits_as_the_shortest_number() -> None:
    regions = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
    assert fewest_phone_digits(regions, 1) == 4  # a German national number can have 4 digits
    assert fewest_phone_digits(("US",), 1) == 6  # "+CC number" of another plan can be shorter than a US one
    assert fewest_phone_digits(regions, 0) == 2  # POSSIBLE leniency counts local-only dialling


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(["+", "(", ")", "-", " ", ".", "/", "x", "call ", "Tel: ", "+49 ", "+1 ", "+683 "])
        | st.text(alphabet="0123456789", min_size=1, max_size=5),
        max_size=12,
    ).map("".join)
)
def test_phone_gate_loses_no_match_of_the_stock_recognizer(text: str) -> None:
    stock, gated = PhoneRecognizer(), GatedPhoneRecognizer()
    found = [(r.start, r.end, r.score) for r in stock.analyze(text, ["PHONE_NUMBER"])]
    assert [(r.start, r.end, r.score) for r in gated.analyze(text, ["PHONE_NUMBER"])] == found
    if sum(c.isdigit() for c in text) < gated.min_digits:
        assert found == []  # what the gate skips, the stock recognizer would not have matched


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("mail x.y@corp.internal now", "x.y@corp.internal"),
        ("to bob@mail.local.", "bob@mail.local"),
        ("user a@localhost", "a@localhost"),
        ("ops@[10.0.0.1] and", "ops@[10.0.0.1]"),
        ("root@[IPv6:2001:db8::1]", "root@[IPv6:2001:db8::1]"),
        ('say "john doe"@example.com ok', '"john doe"@example.com'),
        ('{"to": "\\"john doe\\"@example.com"}', '\\"john doe\\"@example.com'),
        ("{'email': 'ana@x.test'}", "ana@x.test"),
        ("?email=x.y%40corp.internal&next=1", "x.y%40corp.internal"),
        ("o'brien+tag@Sub.Corp.Internal", "o'brien+tag@Sub.Corp.Internal"),
        ("x..y@host", "x..y@host"),
    ],
)
def test_any_email_spans_every_shape(text: str, address: str) -> None:
    assert [text[s.start : s.end] for s in any_email_spans(text)] == [address]


def test_any_email_spans_leaves_code_and_handles_alone(detector: PatternDetector) -> None:
    for text in ('File "/srv/app.py", line 3, in <module>', "    @property", "meet @ 5pm", "@ana hi"):
        assert any_email_spans(text) == []
    assert [s.label for s in detector.detect("mail bob@mail.local now")] == []  # detect stays as it was


# Phones and person identifiers of the project's languages (en, ja, zh, de, fr, es; it beside es). The
# identifiers are the documented examples of python-stdnum, Presidio and the issuing authorities.


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("手机13800138000，随时联系", "13800138000"),  # Chinese mobile, no separators, after hanzi
        ("手机 138 0013 8000", "138 0013 8000"),
        ("电话：010-12345678", "010-12345678"),  # Beijing landline
        ("llama al 612 34 56 78", "612 34 56 78"),  # Spanish mobile, grouped as in Spain
        ("o al fijo 91 123 45 67", "91 123 45 67"),  # Madrid landline
        ("Mi móvil es el 612345678", "612345678"),  # a bare run, after a phone word
        ("llámame al 612 345 678", "612 345 678"),
        ("WhatsApp: 612345678", "612345678"),
    ],
)
def test_phones_of_the_project_regions(detector: PatternDetector, text: str, phone: str) -> None:
    assert found(detector, text) == [("PHONE", phone)]


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("電話は03-1234-5678です", "03-1234-5678"),
        ("携帯：０９０－１２３４－５６７８まで", "０９０－１２３４－５６７８"),  # full-width forms
        ("代表（０３）１２３４－５６７８", "（０３）１２３４－５６７８"),
        ("联系 +86 138 0013 8000", "+86 138 0013 8000"),
        ("appelez le 06 12 34 56 78", "06 12 34 56 78"),
        ("llama al +34 612 34 56 78", "+34 612 34 56 78"),
        ("ruf 030 1234567 an", "030 1234567"),
    ],
)
def test_phones_in_local_and_full_width_forms(detector: PatternDetector, text: str, phone: str) -> None:
    assert found(detector, text) == [("PHONE", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "im Jahr 2024 und 2025",
        "kostet 1.234,56 € statt 1.499,00 €",
        "am 12.06.2024 um 18:30",
        "das Spiel endete 3-1 (1-0)",
        "12 345 Einwohner, 10 Häuser",
        "| 2019 | 1234 | 5678 | 91011 |",
        "version 2.10.3, build 20240612",
        "ticket 987654328",  # 9 digits from 6 to 9: a Spanish number in shape only
        "población de 987 654 321 habitantes",
        "cuesta 612.345.678 euros",
        "Calle Mayor 612345678",
        "郵政編碼為012105。",  # an Italian fixed line in shape only
        "2024年6月12日、1999年から2005年まで",
        "价格 12,345.67 元，人口 1,400,000",
        "3:1 (1:0) vor 12.345 Zuschauern",
    ],
)
def test_plain_numbers_are_no_phones_or_ids(detector: PatternDetector, text: str) -> None:
    assert [label for label, _ in found(detector, text) if label in ("PHONE", "ID_NUMBER")] == []


def test_cued_regions_need_a_phone_shape_or_a_phone_word() -> None:
    assert has_phone_shape("612 34 56 78") and has_phone_shape("(+34) 612345678")
    assert has_phone_shape("347-123-4567")
    for plain in ("612345678", "987 654 321", "612.345.678", "612,345,678", "012105", "01 - 25 01"):
        assert not has_phone_shape(plain), plain
    es = GatedPhoneRecognizer(supported_regions=(), cued_regions=("ES",))
    spans = lambda text: [text[r.start : r.end] for r in es.analyze(text, ["PHONE_NUMBER"])]  # noqa: E731
    assert spans("ticket 987654328") == [] and spans("tel. 987654328") == ["987654328"]
    assert spans("número de móvil: 612 345 678") == ["612 345 678"]
    assert spans("Calle Mayor 612345678") == []  # "calle" is a street, not "call"
    assert spans("ref 612 34 56 78") == ["612 34 56 78"]


def test_phone_gate_counts_digits_in_one_run() -> None:
    assert longest_number_run("in 2019 and 2020, 3 of 4") == 4
    assert longest_number_run("call (415) 555-0100 or +49 30 1234567") == 11
    assert longest_number_run("０９０－１２３４－５６７８") == 11
    assert longest_number_run("no digits") == 0


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Steuer-ID 86095742719", "86095742719"),  # de: Steueridentifikationsnummer
        ("RVNR 65170839J003", "65170839J003"),  # de: Rentenversicherungsnummer
        ("KVNR A123456780", "A123456780"),  # de: Krankenversichertennummer
        ("DNI 12345678Z", "12345678Z"),  # es: NIF
        ("NIE X1234567L", "X1234567L"),  # es: NIE
        ("CF RSSMRA85T10A562S", "RSSMRA85T10A562S"),  # it: codice fiscale
        ("NIR 2 95 10 99 126 111 93", "2 95 10 99 126 111 93"),  # fr: NIR
        ("n° sécu 295109912611193", "295109912611193"),
        ("NIR 253072B07300470", "253072B07300470"),  # born in Corsica
        ("マイナンバーは621498320257です", "621498320257"),  # ja: My Number
        ("個人番号：６２１４－９８３２－０２５７", "６２１４－９８３２－０２５７"),
        ("身份证号360426199101010071。", "360426199101010071"),  # zh: resident ID
        ("身份证 36042619910101104X", "36042619910101104X"),
    ],
)
def test_national_identifiers_with_valid_check(detector: PatternDetector, text: str, number: str) -> None:
    assert found(detector, text) == [("ID_NUMBER", number)]


@pytest.mark.parametrize(
    "text",
    [
        "Steuer-ID 86095742718",
        "RVNR 65170839J004",
        "KVNR A123456781",
        "DNI 12345678A",
        "NIE X1234567A",
        "CF RSSMRA85T10A562T",
        "NIR 295109912611199",
        "個人番号 6214 9832 0258",
        "身份证号360426199101010072",
        "身份证号36042619910101007X",
        "card 6214 9832 0257 0000",  # a valid My Number as 12 of 16 digits: not one
        "XRSSMRA85T10A562S",  # a fiscal code inside a longer token
    ],
)
def test_national_identifiers_failing_their_check_are_dropped(detector: PatternDetector, text: str) -> None:
    assert [label for label, _ in found(detector, text) if label == "ID_NUMBER"] == []


def test_identifiers_without_a_check_digit_need_a_lower_min_score(detector: PatternDetector) -> None:
    unchecked = {
        "DeFuehrerscheinRecognizer",
        "EsPassportRecognizer",
        "ItDriverLicenseRecognizer",
        "ItIdentityCardRecognizer",
        "ItPassportRecognizer",
    }
    names = {type(r).__name__ for r in detector.recognizers}
    assert not unchecked & names
    assert {"DeTaxIdRecognizer", "EsNifRecognizer", "FrNirRecognizer", "CnResidentIdRecognizer"} <= names
    left_out = {"DeIdCardRecognizer", "DePassportRecognizer", "DeTaxNumberRecognizer", "DeKfzRecognizer"}
    assert not left_out & names
    weak = PatternDetector(labels=["ID_NUMBER"], min_score=0.0)
    assert unchecked <= {type(r).__name__ for r in weak.recognizers}
    assert all(r.supported_language == "en" for r in weak.recognizers)
