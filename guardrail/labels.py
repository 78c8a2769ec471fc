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
