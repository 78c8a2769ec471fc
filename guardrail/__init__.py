"""PII guardrail: reads a language model's residual stream to find and redact personal data."""

from guardrail.labels import CANONICAL, PRIVACY
from guardrail.spans import Span

__all__ = ["CANONICAL", "PRIVACY", "Span"]
__version__ = "0.1.0"
