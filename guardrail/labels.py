"""The canonical label set (DESIGN.md), defined once and imported everywhere."""

from __future__ import annotations

CANONICAL: tuple[str, ...] = (
    "PERSON",
    "EMAIL",
    "PHONE",
    "ADDRESS",
    "LOCATION",
    "ORGANIZATION",
    "DATE",
    "ID_NUMBER",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "URL",
    "USERNAME",
    "PASSWORD",
    "OTHER",
)
"""Every label a span may carry."""

PRIVACY: tuple[str, ...] = (
    "PERSON",
    "EMAIL",
    "PHONE",
    "ADDRESS",
    "LOCATION",
    "ID_NUMBER",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "USERNAME",
)
"""Labels that identify a person: the set the quality targets are measured over."""

OUTSIDE = "O"
"""The probe's class for tokens that are not PII."""

PROBE_CLASSES: tuple[str, ...] = (OUTSIDE, *CANONICAL)
"""Class order of the per-token probe: index 0 is ``O``, then the canonical labels."""


class UnknownLabelError(ValueError):
    """A label outside :data:`CANONICAL`."""


def check_label(label: str) -> str:
    """Return ``label`` if canonical, else raise :class:`UnknownLabelError`."""
    if label not in CANONICAL:
        raise UnknownLabelError(f"unknown label {label!r}; expected one of {', '.join(CANONICAL)}")
    return label


PRESIDIO_ENTITIES: dict[str, str] = {
    "PERSON": "PERSON",
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE": "PHONE_NUMBER",
    "ADDRESS": "ADDRESS",
    "LOCATION": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "ID_NUMBER": "ID_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "URL": "URL",
    "USERNAME": "USERNAME",
    "PASSWORD": "PASSWORD",
    "OTHER": "OTHER",
}
"""Canonical label -> Presidio entity name, one to one. Presidio's own name where it has one; where it has
none (ADDRESS, ID_NUMBER, USERNAME, PASSWORD, OTHER) a custom entity of the guardrail's own name."""

_ID_ENTITIES = """
    ID US_SSN US_ITIN US_PASSPORT US_DRIVER_LICENSE US_BANK_NUMBER US_MBI US_NPI
    US_HEALTH_INSURANCE_MEMBER_ID US_CLAIM_NUMBER US_PRESCRIPTION_NUMBER US_PRIOR_AUTHORIZATION_NUMBER
    US_REFERRAL_NUMBER MEDICAL_LICENSE UK_NHS UK_NINO UK_PASSPORT UK_DRIVING_LICENCE UK_VEHICLE_REGISTRATION
    CA_SIN AU_TFN AU_MEDICARE SG_NRIC_FIN IN_PAN IN_AADHAAR IN_PASSPORT IN_VOTER IN_VEHICLE_REGISTRATION
    ES_NIF ES_NIE ES_PASSPORT IT_FISCAL_CODE IT_DRIVER_LICENSE IT_IDENTITY_CARD IT_PASSPORT PL_PESEL
    FI_PERSONAL_IDENTITY_CODE SE_PERSONNUMMER KR_RRN KR_FRN KR_DRIVER_LICENSE KR_PASSPORT PH_PASSPORT PH_TIN
    PH_UMID NG_NIN NG_VEHICLE_REGISTRATION TH_TNIN TR_NATIONAL_ID TR_LICENSE_PLATE ZA_ID_NUMBER ZA_PASSPORT
    ZA_DRIVER_LICENSE ZA_INCOME_TAX_NUMBER ZA_LICENSE_PLATE ZA_TRAFFIC_REGISTER_NUMBER DE_TAX_ID
    DE_TAX_NUMBER DE_PASSPORT DE_ID_CARD DE_SOCIAL_SECURITY DE_HEALTH_INSURANCE DE_FUEHRERSCHEIN DE_KFZ
    DE_LANR FR_NIR JP_MY_NUMBER CN_RESIDENT_ID
"""
"""Presidio's identifiers of a person (government, tax, health, licence, passport, personal account)."""

_OTHER_ENTITIES = """
    NRP AGE CRYPTO MAC_ADDRESS UUID ABA_ROUTING_NUMBER US_PROVIDER_TAX_ID AU_ABN AU_ACN SG_UEN IN_GSTIN
    IT_VAT_CODE KR_BRN SE_ORGANISATIONSNUMMER ZA_COMPANY_REGISTRATION ZA_VAT_NUMBER DE_BSNR
    DE_HANDELSREGISTER DE_VAT_ID
"""
"""Presidio entities that identify a group, device, wallet, record or organisation rather than a person."""

PRESIDIO_ALIASES: dict[str, str] = {
    **dict.fromkeys(_ID_ENTITIES.split(), "ID_NUMBER"),
    **dict.fromkeys(_OTHER_ENTITIES.split(), "OTHER"),
    **dict.fromkeys(("UK_POSTCODE", "CA_POSTAL_CODE", "DE_PLZ"), "ADDRESS"),  # postal codes: address parts
    **dict.fromkeys(("ZA_MOBILE_NUMBER", "ZA_TELEPHONE_NUMBER"), "PHONE"),
    "EMAIL": "EMAIL",
    "GPE": "LOCATION",
}
"""Other Presidio entity names -> the canonical label whose spans cover them (``US_SSN`` -> ID_NUMBER).
One way only: the guardrail does not tell one country's identifier from another's."""

_FROM_PRESIDIO: dict[str, str] = {**PRESIDIO_ALIASES, **{e: label for label, e in PRESIDIO_ENTITIES.items()}}


def to_presidio(label: str) -> str:
    """The Presidio entity name of a canonical label (``EMAIL`` -> ``EMAIL_ADDRESS``)."""
    return PRESIDIO_ENTITIES[check_label(label)]


def from_presidio(entity: str) -> str:
    """The canonical label of a Presidio entity name or alias (``EMAIL_ADDRESS`` -> ``EMAIL``,
    ``US_SSN`` -> ``ID_NUMBER``); :class:`UnknownLabelError` for a name in neither table."""
    if entity not in _FROM_PRESIDIO:
        raise UnknownLabelError(
            f"unknown Presidio entity {entity!r}; expected one of {', '.join(PRESIDIO_ENTITIES.values())} "
            "or an alias in guardrail.labels.PRESIDIO_ALIASES"
        )
    return _FROM_PRESIDIO[entity]
