"""Pattern stage: structured identifiers (email, card, IBAN, IP, phone, IDs) from Presidio's recognizers.

Runs presidio-analyzer's own predefined recognizers (regexes plus their checksums: Luhn for cards,
mod-97 for IBAN, region metadata for phones, ``ipaddress`` for IPs) through an ``AnalyzerEngine``
with Presidio's no-op NLP engine, so no spaCy model is loaded and nothing touches the network. The
spans found here are unioned with the probe's spans downstream.

Beyond Presidio's English set: phones of the project's other languages' regions (:data:`PHONE_REGIONS`),
Presidio's German, Spanish and Italian person identifiers, and French, Japanese and Chinese ones
validated by python-stdnum (:data:`NATIONAL_ID_RECOGNIZERS`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

import phonenumbers
import tldextract
from phonenumbers import phonenumberutil
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import (
    DeFuehrerscheinRecognizer,
    DeHealthInsuranceRecognizer,
    DeSocialSecurityRecognizer,
    DeTaxIdRecognizer,
    EmailRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    EsPassportRecognizer,
    ItDriverLicenseRecognizer,
    ItFiscalCodeRecognizer,
    ItIdentityCardRecognizer,
    ItPassportRecognizer,
    PhoneRecognizer,
)
from stdnum.cn import ric
from stdnum.fr import nir
from stdnum.jp import in_

from guardrail.labels import check_label
from guardrail.spans import Span

LANGUAGE = "en"
"""Presidio's predefined recognizers are loaded for English (their context words and defaults)."""

ENTITY_TO_LABEL: dict[str, str] = {
    # generic structured identifiers
    "EMAIL_ADDRESS": "EMAIL",
    "EMAIL": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "ZA_MOBILE_NUMBER": "PHONE",
    "ZA_TELEPHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "URL": "URL",
    "DATE_TIME": "DATE",
    # identifiers of a person: government, tax, health, licence, passport, personal bank account
    **dict.fromkeys(
        (
            "ID",
            "US_SSN",
            "US_ITIN",
            "US_PASSPORT",
            "US_DRIVER_LICENSE",
            "US_BANK_NUMBER",
            "US_MBI",
            "US_NPI",
            "US_HEALTH_INSURANCE_MEMBER_ID",
            "US_CLAIM_NUMBER",
            "US_PRESCRIPTION_NUMBER",
            "US_PRIOR_AUTHORIZATION_NUMBER",
            "US_REFERRAL_NUMBER",
            "MEDICAL_LICENSE",
            "UK_NHS",
            "UK_NINO",
            "UK_PASSPORT",
            "UK_DRIVING_LICENCE",
            "UK_VEHICLE_REGISTRATION",
            "CA_SIN",
            "AU_TFN",
            "AU_MEDICARE",
            "SG_NRIC_FIN",
            "IN_PAN",
            "IN_AADHAAR",
            "IN_PASSPORT",
            "IN_VOTER",
            "IN_VEHICLE_REGISTRATION",
            "ES_NIF",
            "ES_NIE",
            "ES_PASSPORT",
            "IT_FISCAL_CODE",
            "IT_DRIVER_LICENSE",
            "IT_IDENTITY_CARD",
            "IT_PASSPORT",
            "PL_PESEL",
            "FI_PERSONAL_IDENTITY_CODE",
            "SE_PERSONNUMMER",
            "KR_RRN",
            "KR_FRN",
            "KR_DRIVER_LICENSE",
            "KR_PASSPORT",
            "PH_PASSPORT",
            "PH_TIN",
            "PH_UMID",
            "NG_NIN",
            "NG_VEHICLE_REGISTRATION",
            "TH_TNIN",
            "TR_NATIONAL_ID",
            "TR_LICENSE_PLATE",
            "ZA_ID_NUMBER",
            "ZA_PASSPORT",
            "ZA_DRIVER_LICENSE",
            "ZA_INCOME_TAX_NUMBER",
            "ZA_LICENSE_PLATE",
            "ZA_TRAFFIC_REGISTER_NUMBER",
            "DE_TAX_ID",
            "DE_TAX_NUMBER",
            "DE_PASSPORT",
            "DE_ID_CARD",
            "DE_SOCIAL_SECURITY",
            "DE_HEALTH_INSURANCE",
            "DE_FUEHRERSCHEIN",
            "DE_KFZ",
            "DE_LANR",
            "FR_NIR",
            "JP_MY_NUMBER",
            "CN_RESIDENT_ID",
        ),
        "ID_NUMBER",
    ),
    # postal codes are address parts (the dev sets file ZIP codes under ADDRESS)
    "UK_POSTCODE": "ADDRESS",
    "CA_POSTAL_CODE": "ADDRESS",
    "DE_PLZ": "ADDRESS",
    # NER entities (used by the Presidio+spaCy baseline)
    "PERSON": "PERSON",
    "LOCATION": "LOCATION",
    "GPE": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "NRP": "OTHER",
    "AGE": "OTHER",
    # identify a device, a wallet, a record or an organisation rather than a person: kept, as OTHER
    **dict.fromkeys(
        (
            "CRYPTO",
            "MAC_ADDRESS",
            "UUID",
            "ABA_ROUTING_NUMBER",
            "US_PROVIDER_TAX_ID",
            "AU_ABN",
            "AU_ACN",
            "SG_UEN",
            "IN_GSTIN",
            "IT_VAT_CODE",
            "KR_BRN",
            "SE_ORGANISATIONSNUMMER",
            "ZA_COMPANY_REGISTRATION",
            "ZA_VAT_NUMBER",
            "DE_BSNR",
            "DE_HANDELSREGISTER",
            "DE_VAT_ID",
        ),
        "OTHER",
    ),
}
"""Presidio entity type -> canonical label (guardrail.labels.CANONICAL)."""

DEFAULT_MIN_SCORE = 0.5
"""Minimum Presidio score for an entity not listed in :data:`MIN_SCORE`.

Presidio grades its regexes "very weak" (0.01-0.1), "weak" (0.3) and "medium" (0.5); checksum-validated
results are raised to 1.0. The weak tiers are meant to be lifted by context words around the match
(LemmaContextAwareEnhancer), which needs tokens and lemmas from an NLP engine. The no-op engine gives
none, so no context enhancement happens here (no predefined recognizer overrides its own
``enhance_using_context`` either) and a weak match stays weak: US_BANK_NUMBER (any 8-17 digits, 0.05),
US_DRIVER_LICENSE (any 6-14 digits 0.01; letter+digits 0.3, which also hits IPv6 groups like "c617"),
US_PASSPORT (any 9 digits, 0.05), bare 9-digit SSN/ITIN (0.05-0.3), mm/yy dates (0.1-0.2, i.e. fractions)
would flood every order or invoice number. 0.5 keeps the medium tier and everything validated.
"""

MIN_SCORE: dict[str, float] = {
    # PhoneRecognizer gives every match the same 0.4; python-phonenumbers has already checked the
    # number against a region's numbering plan. A bare digit run that happens to be a valid number
    # (an order number "1234567890") cannot be told from a phone without context, and a leaked phone
    # costs more than a masked order number, so phones are kept. Phone-shaped runs inside a card
    # number, an IP or an SSN are dropped by the containment rule in :meth:`PatternDetector.detect`.
    "PHONE_NUMBER": 0.4,
}
"""Per-entity minimum score, overriding :data:`DEFAULT_MIN_SCORE`."""


@functools.cache
def offline_tld_extractor() -> tldextract.TLDExtract:
    """A TLDExtract that uses the public suffix list bundled with tldextract: no download, no disk cache."""
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's EmailRecognizer with its domain check on the bundled suffix list.

    The stock recognizer calls ``tldextract.extract``, whose default extractor first tries to download
    the public suffix list: a network call per process (and a stall where there is no network).
    """

    def validate_result(self, pattern_text: str) -> bool:
        """True when the text ends in a known public suffix."""
        return offline_tld_extractor()(pattern_text).fqdn != ""


# A local part is at most 64 characters (RFC 5321): the bound keeps the search linear in the text.
_HEAD = r"[\w!#$%*+/^{|}~.-]"  # not ' or ` (a quote before the address), nor = ? & (a URL's query)
_LOCAL = rf"{_HEAD}[\w!#$%'*+/^`{{|}}~.-]{{0,63}}"  # dots anywhere: applications log malformed ones too
_QUOTED = r'\\?"(?:[^"\\\r\n]|\\[^"\r\n]){1,64}?\\?"'  # "john doe"@, and \"john doe\"@ in JSON
_HOST = r"[\w-]+(?:\.[\w-]+)*"  # one label or more, any top-level name (.internal, .local, .test)
_IP_LITERAL = r"\[(?:IPv6:)?[0-9A-Fa-f:.]{2,45}\]"

ANY_EMAIL = re.compile(rf"(?:{_QUOTED}|{_LOCAL})(?:@|%40)(?:{_IP_LITERAL}|{_HOST})", re.IGNORECASE)
"""Every shape of address, with no check of the domain: dot-atom or quoted local part, ``@`` (or ``%40``
in a URL), any host name (``localhost``, internal and reserved top-level names), or an IP literal."""


def any_email_spans(text: str) -> list[Span]:
    """Spans of :data:`ANY_EMAIL` in ``text`` (label EMAIL, source ``pattern``).

    Presidio's recogniser (the pattern stage of :class:`PatternDetector`) keeps only addresses at a known
    public suffix, which suits text where ``x@y.z`` is often no address. Where a miss writes an address
    out raw and a false hit costs a placeholder — the logging hook's fallback — this catches every shape.
    """
    if "@" not in text and "%40" not in text:
        return []
    return [Span(m.start(), m.end(), "EMAIL", 1.0, "pattern") for m in ANY_EMAIL.finditer(text)]


PHONE_REGIONS: tuple[str, ...] = (*PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS, "JP", "CN")
"""Regions whose national formats (no ``+`` and country code) the phone recognizer reads: Presidio's
eight, and Japan and China for the project's languages (Spain and Italy: :data:`CUED_PHONE_REGIONS`).
Japanese and Chinese numbers in full-width digits and separators (０３－１２３４－５６７８) are read by
python-phonenumbers as they are. TW, AT, CH and BE were left out: on typical numbers of theirs
(0912-345-678, 0664 1234567, 079 123 45 67, 0470 12 34 56) these regions already match, and each region
is one more matcher pass over every text. HK and KR too: HK reads any 8-digit run that starts with 2, 3,
5, 6 or 9 (counts, table cells) as a local number."""

CUED_PHONE_REGIONS: tuple[str, ...] = ("ES", "IT")
"""Regions whose national numbers look like plain numbers: a Spanish one is any 9 digits from 6 to 9
(no trunk 0), so a ticket 987654328, a count 987 654 321 or a price 612.345.678 would read as phones;
an Italian fixed line can have 6 digits (a postcode 012105). A match only these regions read counts
when it has a phone's grouping (612 34 56 78, 91 123 45 67, 347-123-4567), or when a phone word comes
shortly before it (:data:`PHONE_CUE`); a bare digit run, a thousands grouping or fewer than 8 digits
alone do not."""

PLAIN_NUMBER = re.compile(r"\d+|\d{1,3}(?:[ .,\u00a0\u202f]\d{3})+")
"""A digit run, or digits in thousands groups (space, dot, comma, no-break spaces): a number's shape."""

PHONE_CUE = re.compile(
    r"(?<!\w)(?:tel|tfno|tlf|m[oó]vil|cel|ll[aá]m|whats\s?app|fax|phone|call(?!e)|mobile|contact|chiam)",
    re.IGNORECASE,
)
"""Words that announce a phone in en, es, it (tel. teléfono telefono, móvil, celular cellulare, llamar
llámame, chiamare, contacto contatto; not "calle", a street): looked for in the
:data:`PHONE_CUE_WINDOW` characters before a match of :data:`CUED_PHONE_REGIONS`."""

PHONE_CUE_WINDOW = 40


def has_phone_shape(raw: str) -> bool:
    """Whether a matched number is written like a phone rather than a plain number: a ``+`` or ``(``, or
    a grouping other than thousands, and at least 8 digits."""
    if "+" in raw or "(" in raw:
        return True
    return sum(ch.isdigit() for ch in raw) >= 8 and PLAIN_NUMBER.fullmatch(raw) is None


def fewest_phone_digits(regions: Iterable[str], leniency: int | None) -> int:
    """The fewest digits a number python-phonenumbers can match for ``regions`` holds: the shortest
    national number of their numbering plans (with local-only dialling when the leniency is POSSIBLE,
    0, which asks for no valid number), or of any plan behind a ``+`` and its country code."""
    from phonenumbers import PhoneMetadata

    def shortest(desc: object, local: bool) -> int:
        lengths = list(desc.possible_length) + (list(desc.possible_length_local_only) if local else [])  # type: ignore[attr-defined]
        return min((n for n in lengths if n > 0), default=1)

    fewest = []
    for region in regions:
        meta = PhoneMetadata.metadata_for_region(region.upper())
        if meta is not None:
            fewest.append(shortest(meta.general_desc, not leniency))
    for region in phonenumbers.SUPPORTED_REGIONS:  # "+CC national number", whatever the region
        meta = PhoneMetadata.metadata_for_region(region)
        cc = phonenumbers.country_code_for_region(region)
        fewest.append(len(str(cc)) + shortest(meta.general_desc, False))
    for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        meta = PhoneMetadata.metadata_for_nongeo_region(cc)
        fewest.append(len(str(cc)) + shortest(meta.general_desc, False))
    return max(1, min(fewest, default=1))


NUMBER_RUN = re.compile(
    "[" + phonenumberutil._VALID_PUNCTUATION + phonenumberutil._PLUS_CHARS + "\\d\\s]+",
    re.UNICODE | re.IGNORECASE,
)
"""Digits with every character python-phonenumbers' matcher allows between or before them (its
punctuation, brackets, plus signs; any white space): a phone number, less its extension, lies in one run."""


def longest_number_run(text: str) -> int:
    """The most digits in one :data:`NUMBER_RUN` of ``text``: no phone of more digits fits in it."""
    return max((sum(ch.isdigit() for ch in m.group()) for m in NUMBER_RUN.finditer(text)), default=0)


class GatedPhoneRecognizer(PhoneRecognizer):
    """Presidio's PhoneRecognizer that runs a region's matcher only on a text with a run of digits as long
    as the shortest number it could match, and reads ``cued_regions`` (none by default) only where a
    match looks like a phone.

    Its matcher runs once per region (eight by default) over every text: half the pattern stage's time
    on the synthetic set, where most texts hold no phone-length digit run at all (a year is 4 digits, most
    regions' shortest number 6). The gate cannot lose a match: a number of fewer digits is invalid in the
    region, and a number's digits lie in one :data:`NUMBER_RUN`. A match of a cued region counts when it
    :func:`has_phone_shape` or follows a :data:`PHONE_CUE` word.
    """

    def __init__(self, cued_regions: Sequence[str] = (), **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cued_regions = tuple(r for r in cued_regions if r not in self.supported_regions)
        self.fewest = {
            r: fewest_phone_digits((r,), self.leniency) for r in (*self.supported_regions, *self.cued_regions)
        }
        self.min_digits = min(self.fewest.values(), default=1)

    def _matches(self, text: str, region: str) -> Iterable[phonenumbers.PhoneNumberMatch]:
        return phonenumbers.PhoneNumberMatcher(text, region, leniency=self.leniency)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list:
        """The stock recognizer's results (each region's matcher skipped where it cannot match), and the
        cued regions' matches that look like phones."""
        if sum(ch.isdigit() for ch in text) < self.min_digits:
            return []
        longest = longest_number_run(text)
        results = [
            self._get_recognizer_result(match, text, region, nlp_artifacts)
            for region in self.supported_regions
            if longest >= self.fewest[region]
            for match in self._matches(text, region)
        ]
        results += [
            self._get_recognizer_result(match, text, region, nlp_artifacts)
            for region in self.cued_regions
            if longest >= self.fewest[region]
            for match in self._matches(text, region)
            if has_phone_shape(match.raw_string)
            or PHONE_CUE.search(text, max(0, match.start - PHONE_CUE_WINDOW), match.start)
        ]
        return EntityRecognizer.remove_duplicates(results)


_SEP = r"[ \-\u3000\uff0d]"  # space, hyphen, and their full-width forms (Japanese and Chinese text)
_OPEN = rf"(?<!\p{{Nd}}(?:{_SEP}|\.)?)(?<!\p{{Latin}})"
"""Not inside a longer number (nor a digit group of one, like 12 digits of a 16-digit card) or a word;
unlike ``\b``, a number right after kanji, kana or hanzi still starts here."""
_CLOSE = rf"(?!(?:{_SEP}|\.)?\p{{Nd}})(?!\p{{Latin}})"


class StdnumRecognizer(PatternRecognizer):
    """One regex whose matches count only when python-stdnum's validator accepts them (check digits, and
    the birth date and place where the number holds them). A match that fails is dropped, so none is
    ever kept at a weak score; full-width digits and separators are folded (NFKC) before validating.
    """

    ENTITY: str
    REGEX: str

    @staticmethod
    def is_valid(number: str) -> bool:  # pragma: no cover - each subclass names its validator
        raise NotImplementedError

    def __init__(self, supported_language: str = LANGUAGE, context: list[str] | None = None):
        super().__init__(
            supported_entity=self.ENTITY,
            patterns=[Pattern(self.ENTITY, self.REGEX, 0.5)],
            supported_language=supported_language,
            context=context,
        )

    def validate_result(self, pattern_text: str) -> bool:
        """True when python-stdnum accepts the number: Presidio then scores it 1.0, else drops it."""
        return self.is_valid(unicodedata.normalize("NFKC", pattern_text))


class FrNirRecognizer(StdnumRecognizer):
    """French NIR (numéro de sécurité sociale, INSEE number): 15 digits (2A/2B for Corsica), mod-97 key."""

    ENTITY = "FR_NIR"
    REGEX = (
        rf"{_OPEN}[1-478][ .]?\d{{2}}[ .]?\d{{2}}[ .]?(?:\d{{2}}|2[AB])"  # sex, year, month, department
        rf"[ .]?\d{{3}}[ .]?\d{{3}}[ .]?\d{{2}}{_CLOSE}"  # commune, serial, key
    )
    is_valid = staticmethod(nir.is_valid)


class JpMyNumberRecognizer(StdnumRecognizer):
    """Japanese Individual Number (個人番号, My Number): 12 digits, plain or 4-4-4, mod-11 check digit."""

    ENTITY = "JP_MY_NUMBER"
    REGEX = rf"{_OPEN}\d{{4}}{_SEP}?\d{{4}}{_SEP}?\d{{4}}{_CLOSE}"
    is_valid = staticmethod(in_.is_valid)


class CnResidentIdRecognizer(StdnumRecognizer):
    """Chinese resident identity card number (居民身份证号码): 18 characters holding a place code, a birth
    date and an ISO 7064 check character (digit or X); python-stdnum checks all three."""

    ENTITY = "CN_RESIDENT_ID"
    REGEX = rf"{_OPEN}\d{{6}}(?:18|19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{{3}}[\dX]{_CLOSE}"
    is_valid = staticmethod(ric.is_valid)


class ItFiscalCodeTokenRecognizer(ItFiscalCodeRecognizer):
    """Presidio's codice fiscale recognizer (same regex, same check letter) on whole 16-character tokens:
    the edge test spares its long alternation a try at every letter (a third of its time on the dev
    suite), and a code inside a longer token is no code."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(p.name, r"(?<![A-Z0-9])(?=[A-Z0-9]{16}(?![A-Z0-9]))" + p.regex, p.score)
        for p in ItFiscalCodeRecognizer.PATTERNS
    ]


NATIONAL_ID_RECOGNIZERS: tuple[type[PatternRecognizer], ...] = (
    DeTaxIdRecognizer,  # Steuer-IdNr: 11 digits, ISO 7064 check digit
    DeSocialSecurityRecognizer,  # Rentenversicherungsnummer: birth date, VKVV check digit
    DeHealthInsuranceRecognizer,  # Krankenversichertennummer: check digit
    DeFuehrerscheinRecognizer,  # no check digit: 0.35 only
    EsNifRecognizer,  # DNI/NIF: mod-23 letter
    EsNieRecognizer,  # NIE: mod-23 letter
    EsPassportRecognizer,  # no check digit: 0.05 only
    ItFiscalCodeTokenRecognizer,  # codice fiscale: check letter (unchecked matches stay at 0.3)
    ItDriverLicenseRecognizer,  # no check digit: 0.2 only
    ItIdentityCardRecognizer,  # no check digit: 0.01 only
    ItPassportRecognizer,  # no check digit: 0.01 only
    FrNirRecognizer,
    JpMyNumberRecognizer,
    CnResidentIdRecognizer,
)
"""Recognizers of numbers that identify a person in Germany, Spain, Italy, France, Japan and China,
loaded for :data:`LANGUAGE` (Presidio registers its German, Spanish and Italian ones for those languages
only). Those without a check digit score below :data:`DEFAULT_MIN_SCORE` on any match and are skipped
unless a lower ``min_score`` asks for them. Left out as not a person's: vehicle plates, postcodes,
company registers, VAT and tax numbers of businesses (the German Steuernummer: 13 digits, no check
digit), doctors' and practices' numbers. Left out too: Presidio's German ID card and passport
recognizers. Their 9-character document number carries no check digit; the ICAO one follows it in the
machine-readable zone only (passport specimen C01X00T47, MRZ "C01X00T478"), and the recognizers test the
9th character as if it were one: about 9 in 10 real numbers as printed fail, 1 in 10 look-alike codes
pass. Without the check they score 0.4 (and 0.5 for the legacy T+8 digits), a product code as often."""


def no_op_nlp_engine() -> NoOpNlpEngine:
    """Presidio's NLP engine that loads no model and returns empty artifacts."""
    engine = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "no_op"}])
    engine.load()
    return engine


def make_offline(recognizers: Iterable[EntityRecognizer]) -> list[EntityRecognizer]:
    """Replace Presidio's EmailRecognizer by :class:`OfflineEmailRecognizer` (same patterns and context),
    and its PhoneRecognizer by :class:`GatedPhoneRecognizer` (its regions and :data:`PHONE_REGIONS`,
    :data:`CUED_PHONE_REGIONS` where a match looks like a phone, same leniency and context)."""
    out: list[EntityRecognizer] = []
    for r in recognizers:
        if type(r) is EmailRecognizer:
            r = OfflineEmailRecognizer(
                patterns=r.patterns, context=r.context, supported_language=r.supported_language
            )
        elif type(r) is PhoneRecognizer:
            r = GatedPhoneRecognizer(
                context=r.context,
                supported_language=r.supported_language,
                supported_regions=tuple(dict.fromkeys((*r.supported_regions, *PHONE_REGIONS))),
                cued_regions=CUED_PHONE_REGIONS,
                leniency=r.leniency,
            )
        out.append(r)
    return out


def min_score_for(entity: str, min_score: float | None = None) -> float:
    """The minimum score kept for a Presidio entity (``min_score`` overrides every per-entity default)."""
    return min_score if min_score is not None else MIN_SCORE.get(entity, DEFAULT_MIN_SCORE)


def _can_reach(recognizer: EntityRecognizer, threshold: float) -> bool:
    """Whether any result of ``recognizer`` can score ``>= threshold`` (validation lifts it to 1.0)."""
    if not isinstance(recognizer, PatternRecognizer):
        return True
    validates = type(recognizer).validate_result is not PatternRecognizer.validate_result
    return validates or max((p.score for p in recognizer.patterns), default=0.0) >= threshold


def pattern_recognizers(
    labels: Iterable[str] | None = None, min_score: float | None = None
) -> list[EntityRecognizer]:
    """Presidio's default English recognizers that need no NLP model, and :data:`NATIONAL_ID_RECOGNIZERS`,
    restricted to ``labels``.

    NLP-backed recognizers (spaCy/Stanza/transformers NER, GLiNER, LLM ones) are left out: only
    ``PatternRecognizer`` subclasses and the phonenumbers-based ``PhoneRecognizer`` are self-contained.
    Recognizers that can never reach their minimum score are skipped: they would cost time and yield
    nothing.
    """
    wanted = None if labels is None else {check_label(x) for x in labels}
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=no_op_nlp_engine())
    loaded = {type(r) for r in registry.recognizers}
    national = [cls(supported_language=LANGUAGE) for cls in NATIONAL_ID_RECOGNIZERS if cls not in loaded]
    keep = []
    for r in make_offline([*registry.recognizers, *national]):
        if not isinstance(r, (PatternRecognizer, PhoneRecognizer)) or r.supported_language != LANGUAGE:
            continue
        entities = r.supported_entities
        if not all(e in ENTITY_TO_LABEL for e in entities):
            continue
        if wanted is not None and not any(ENTITY_TO_LABEL[e] in wanted for e in entities):
            continue
        if not any(_can_reach(r, min_score_for(e, min_score)) for e in entities):
            continue
        keep.append(r)
    return keep


def drop_contained(spans: Iterable[Span]) -> list[Span]:
    """Drop every span that lies wholly inside a kept span of at least its score (ties: longer wins).

    Presidio removes contained results of the same entity only; across entities its recognizers
    overlap in known ways (the domain of an email is also a URL; phonenumbers finds phones inside
    card numbers, IPv4 addresses and SSNs). The inner span adds nothing to redaction and mislabels it.
    """
    kept: list[Span] = []
    for s in sorted(spans, key=lambda s: (-s.score, s.start - s.end, s.start, s.label)):
        if not any(k.start <= s.start and s.end <= k.end for k in kept):
            kept.append(s)
    return sorted(kept)


class PatternDetector:
    """Structured identifiers from Presidio's pattern recognizers, as canonical :class:`Span` s.

    Build once per process (loading Presidio's recognizer config takes well under a second; importing
    presidio-analyzer takes a few). ``detect`` is thread-safe: all lazy state (compiled regexes,
    phone metadata, the suffix list) is warmed up here, and each call only reads it.
    """

    def __init__(self, labels: Iterable[str] | None = None, min_score: float | None = None):
        self.labels = None if labels is None else tuple(check_label(x) for x in labels)
        self.min_score = min_score
        self.recognizers = pattern_recognizers(self.labels, min_score)
        self._entities = sorted({e for r in self.recognizers for e in r.supported_entities})
        if not self.recognizers:  # e.g. labels=["PERSON"]: nothing here detects them
            return
        registry = RecognizerRegistry(recognizers=self.recognizers, supported_languages=[LANGUAGE])
        self._engine = AnalyzerEngine(
            registry=registry, nlp_engine=no_op_nlp_engine(), supported_languages=[LANGUAGE]
        )
        # compiles every regex, loads the phone metadata, the suffix list and python-stdnum's table of
        # Chinese place codes before any thread calls (the IDs are python-stdnum's documented examples)
        self.detect(
            "warm up: a@b.com 4111 1111 1111 1111 DE89370400440532013000 10.0.0.1 +1 415 555 0100"
            " 2 95 10 99 126 111 93, 6214 9832 0257, 360426199101010071"
        )

    def detect(self, text: str) -> list[Span]:
        """Pattern spans of ``text`` (source ``pattern``), sorted by position."""
        if not self.recognizers or not text:
            return []
        results = self._engine.analyze(text, language=LANGUAGE, entities=self._entities, score_threshold=0.0)
        spans = [
            Span(r.start, r.end, ENTITY_TO_LABEL[r.entity_type], float(r.score), "pattern")
            for r in results
            if r.score >= min_score_for(r.entity_type, self.min_score)
            and (self.labels is None or ENTITY_TO_LABEL[r.entity_type] in self.labels)
        ]
        return drop_contained(spans)

    def detect_batch(
        self, texts: Sequence[str], checkpoint: Callable[[], None] | None = None
    ) -> list[list[Span]]:
        """:meth:`detect` for each text (patterns need no batching: there is no model to amortise).

        ``checkpoint`` is called before each text and may raise to stop the batch there (the sidecar's
        :func:`guardrail.serving.batching.checkpoint`: a batch whose callers have all gone)."""
        if checkpoint is None:
            return [self.detect(t) for t in texts]
        out = []
        for t in texts:
            checkpoint()
            out.append(self.detect(t))
        return out
