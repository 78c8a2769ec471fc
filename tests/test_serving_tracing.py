"""OpenTelemetry spans of the sidecar: one per call with counts and times, the caller's trace as parent,
errors as error spans, never text; off (and OpenTelemetry not needed) without an endpoint."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardrail.client import GuardrailClient, SidecarError
from guardrail.pipeline import Guardrail
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings
from guardrail.serving.tracing import OtelTracing, Tracing, endpoint, tracing_for
from guardrail.vault import Vault

TEXTS = ["please call Ana Silva thanks", "I met Bob Stone see you soon"]
SECRETS = ("Ana Silva", "Bob Stone", "Silva")


@pytest.fixture(scope="module")
def traced(tiny_bundle_dir: Path):
    exporter = InMemorySpanExporter()
    guard = Guardrail.load(tiny_bundle_dir, dtype="fp32")
    settings = ServeSettings(port=0, max_wait_ms=5, vault_key=Vault.new_key())
    sidecar = SidecarThread(guard, settings, tracing=OtelTracing(exporter=exporter))
    with sidecar as sc, GuardrailClient(f"127.0.0.1:{sc.port}", timeout=30) as c:
        yield c, exporter


def _spans(exporter: InMemorySpanExporter, method: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == f"guardrail.v1.Guardrail/{method}"]


def test_one_span_per_call_with_counts_and_times(traced) -> None:
    client, exporter = traced
    exporter.clear()
    client.redact(TEXTS)
    (span,) = _spans(exporter, "Redact")
    a = span.attributes
    assert a["rpc.method"] == "Redact" and a["rpc.grpc.status_code"] == "OK"
    assert a["guardrail.texts"] == 2 and a["guardrail.chars"] == sum(map(len, TEXTS))
    assert a["guardrail.batches"] >= 1 and a["guardrail.batch_texts"] >= 2
    assert a["guardrail.model_seconds"] > 0 and a["guardrail.queue_seconds"] >= 0
    assert span.end_time - span.start_time >= a["guardrail.model_seconds"] * 1e9 * 0.5
    assert span.resource.attributes["service.name"] == "guardrail-sidecar"


def test_streams_and_restore_are_traced(traced) -> None:
    client, exporter = traced
    exporter.clear()
    text = " ".join(TEXTS)
    assert "".join(client.redact_stream([text[:10], text[10:]]))
    sealed = client.pseudonymise(TEXTS)
    client.restore("<PERSON_1>", sealed.mapping)
    assert "".join(client.restore_stream(["<PERS", "ON_1>"], sealed.mapping)) == "Ana Silva"
    (stream,) = _spans(exporter, "RedactStream")
    assert stream.attributes["guardrail.chars"] == len(text) and stream.attributes["guardrail.batches"] >= 1
    (restore,) = _spans(exporter, "Restore")
    assert restore.attributes["guardrail.texts"] == 1 and restore.attributes["guardrail.batches"] == 0
    assert _spans(exporter, "RestoreStream")[0].attributes["guardrail.chars"] == len("<PERSON_1>")


def test_errors_are_error_spans_and_no_span_holds_text(traced) -> None:
    client, exporter = traced
    exporter.clear()
    with pytest.raises(SidecarError):
        client.restore("Ana Silva <PERSON_1>", "grv1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    (span,) = _spans(exporter, "Restore")
    assert span.attributes["rpc.grpc.status_code"] == "INVALID_ARGUMENT" and not span.status.is_ok
    client.redact(TEXTS, operator="pseudonym")
    for s in exporter.get_finished_spans():
        dump = repr(dict(s.attributes)) + s.name + repr(s.events) + str(s.status.description)
        assert not any(x in dump for x in SECRETS)


def test_the_caller_s_trace_is_the_parent(traced) -> None:
    client, exporter = traced
    exporter.clear()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with grpc.insecure_channel(client.target) as ch:
        from guardrail.serving import guardrail_pb2 as pb
        from guardrail.serving import guardrail_pb2_grpc as pb_grpc

        pb_grpc.GuardrailStub(ch).Detect(
            pb.DetectRequest(texts=TEXTS), metadata=(("traceparent", f"00-{trace_id}-{parent_id}-01"),)
        )
    (span,) = _spans(exporter, "Detect")
    assert (
        format(span.context.trace_id, "032x") == trace_id and format(span.parent.span_id, "016x") == parent_id
    )


def test_no_endpoint_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    assert type(tracing_for(None)) is Tracing and not tracing_for(None).enabled
    assert endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) == "http://collector:4317"
    assert endpoint("http://a:4317", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4317"}) == "http://a:4317"
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"
    )  # nothing listens: spans are dropped
    t = tracing_for(None)
    assert isinstance(t, OtelTracing)
    t.shutdown()
