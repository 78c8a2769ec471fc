"""The gRPC sidecar (``guardrail serve``): a thin adapter over :class:`guardrail.pipeline.Guardrail`.

Modules: ``settings`` (configuration), ``batching`` (micro-batcher), ``streaming`` (chunked redaction),
``metrics`` (Prometheus), ``server`` (the service, health, reflection, TLS, auth, shutdown), ``stubs``
(regenerates the committed ``guardrail_pb2*`` modules from ``proto/guardrail/v1/guardrail.proto``).
"""
