"""OpenTelemetry traces of the sidecar's calls when an OTLP endpoint is configured; nothing otherwise.

One span per call, named after the method (``guardrail.v1.Guardrail/Redact``), child of the caller's
trace when the call carries W3C ``traceparent`` metadata. Its attributes are counts and times only:
texts, characters, forward passes, the largest batch the call's texts ran in, time queued before
the model, model time, and the outcome (gRPC status code). A span never holds text, a label of a
value, a key or a mapping.

Tracing is on when ``otlp_endpoint`` is set (``GUARDRAIL_OTLP_ENDPOINT``), or OpenTelemetry's own
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``. Without one, OpenTelemetry
is never imported (it is the ``otel`` extra) and a call costs one no-op method call.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""OpenTelemetry's own variables, read when the sidecar's ``otlp_endpoint`` is not set."""

SERVICE_NAME = "guardrail-sidecar"


@dataclass(slots=True)
class CallStats:
    """What one call did, in counts and seconds (the batcher adds its forward passes)."""

    texts: int = 0
    chars: int = 0
    batches: int = 0
    """Forward passes that read the call's texts."""
    batch_texts: int = 0
    """Texts in the largest of those passes (the call's and other callers')."""
    queue_s: float = 0.0
    """Time the call's texts waited for the model, summed over its passes."""
    model_s: float = 0.0
    """Model time of those passes."""

    def add_texts(self, texts: Sequence[str]) -> None:
        self.texts += len(texts)
        self.chars += sum(len(t) for t in texts)

    def add_batch(self, queue_s: float, model_s: float, batch_texts: int) -> None:
        self.batches += 1
        self.queue_s += queue_s
        self.model_s += model_s
        self.batch_texts = max(self.batch_texts, batch_texts)


CURRENT: contextvars.ContextVar[CallStats | None] = contextvars.ContextVar("guardrail_call", default=None)
"""The running call's stats: set by the servicer, added to by the batcher (same task, same context)."""


def current() -> CallStats | None:
    """The stats of the call this code runs in (None outside a call)."""
    return CURRENT.get()


class Tracing:
    """No tracing: :meth:`record` does nothing."""

    enabled = False

    def record(
        self,
        method: str,
        start_ns: int,
        end_ns: int,
        stats: CallStats,
        code: str,
        metadata: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        """Emit the span of one finished call (``code``: its gRPC status code's name)."""

    def shutdown(self) -> None:
        """Flush and stop (at server stop)."""


class OtelTracing(Tracing):
    """Spans through OpenTelemetry's SDK to ``exporter`` (default: OTLP over gRPC to ``endpoint``)."""

    enabled = True

    def __init__(self, endpoint: str | None = None, *, exporter: SpanExporter | None = None):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        import guardrail

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
            processor: Any = BatchSpanProcessor(exporter)  # off the serving path, in its own thread
        else:
            processor = SimpleSpanProcessor(exporter)
        resource = Resource.create({"service.name": SERVICE_NAME, "service.version": guardrail.__version__})
        # a provider of its own: the host application's global provider (if any) is left alone
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("guardrail.serving", guardrail.__version__)

    def record(
        self,
        method: str,
        start_ns: int,
        end_ns: int,
        stats: CallStats,
        code: str,
        metadata: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {k: v for k, v in metadata or () if k in ("traceparent", "tracestate")}
        span = self._tracer.start_span(
            f"guardrail.v1.Guardrail/{method}",
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes=_attributes(method, stats, code),
        )
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        self._provider.shutdown()


def _attributes(method: str, stats: CallStats, code: str) -> dict[str, Any]:
    return {
        "rpc.system": "grpc",
        "rpc.service": "guardrail.v1.Guardrail",
        "rpc.method": method,
        "rpc.grpc.status_code": code,
        "guardrail.texts": stats.texts,
        "guardrail.chars": stats.chars,
        "guardrail.batches": stats.batches,
        "guardrail.batch_texts": stats.batch_texts,
        "guardrail.queue_seconds": round(stats.queue_s, 6),
        "guardrail.model_seconds": round(stats.model_s, 6),
    }


def endpoint(configured: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The OTLP endpoint: the sidecar's setting, else OpenTelemetry's variables; None: no tracing."""
    env = os.environ if environ is None else environ
    return configured or next((env[k] for k in ENDPOINT_ENVS if env.get(k)), None)


def tracing_for(configured: str | None) -> Tracing:
    """:class:`OtelTracing` when an endpoint is configured, else the no-op :class:`Tracing`."""
    url = endpoint(configured)
    if url is None:
        return Tracing()
    try:
        return OtelTracing(url)
    except ImportError:
        raise RuntimeError(
            "an OTLP endpoint is configured but OpenTelemetry is not installed: pip install 'guardrail[otel]'"
        ) from None
