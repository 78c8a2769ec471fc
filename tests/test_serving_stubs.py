"""The committed gRPC stubs are what protoc makes of the committed proto (regenerated here and compared)."""

from __future__ import annotations

import re
from pathlib import Path

from guardrail.serving import guardrail_pb2, stubs


def _normalised(text: str) -> str:
    # the version stamps name the grpcio-tools that ran, not the contract
    text = re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = ''", text)
    return re.sub(r"ValidateProtobufRuntimeVersion\([^)]*\)", "ValidateProtobufRuntimeVersion()", text)


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = stubs.generate(tmp_path)
    assert [p.name for p in fresh] == list(stubs.FILES)
    for p in fresh:
        committed = (stubs.PACKAGE_DIR / p.name).read_text(encoding="utf-8")
        assert _normalised(p.read_text(encoding="utf-8")) == _normalised(committed), (
            f"{p.name} is stale: run `python -m guardrail.serving.stubs`"
        )


def test_contract_names() -> None:
    service = guardrail_pb2.DESCRIPTOR.services_by_name["Guardrail"]
    assert guardrail_pb2.DESCRIPTOR.package == "guardrail.v1"
    assert {m.name for m in service.methods} == {
        "Detect",
        "Redact",
        "RedactStream",
        "GetInfo",
        "Restore",
        "RestoreStream",
    }
    for name in ("RedactStream", "RestoreStream"):
        stream = service.methods_by_name[name]
        assert stream.client_streaming and stream.server_streaming
    assert {f.name for f in guardrail_pb2.Span.DESCRIPTOR.fields} >= {
        "start",
        "end",
        "label",
        "score",
        "start_byte",
    }
