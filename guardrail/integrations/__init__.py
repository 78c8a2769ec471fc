"""Adapters that plug the guardrail into other PII frameworks (:mod:`guardrail.integrations.presidio`).

Each adapter is a thin layer over :class:`guardrail.pipeline.Guardrail` or the sidecar's client; importing
this package imports no framework.
"""
