"""The sidecar against real clients on a loopback port: results, limits, errors, security, shutdown."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import guardrail
from guardrail import cpu
from guardrail.client import GuardrailClient, SidecarError
from guardrail.pipeline import Guardrail
from guardrail.serving import guardrail_pb2 as pb
from guardrail.serving import guardrail_pb2_grpc as pb_grpc
from guardrail.serving.server import SERVICE, SidecarThread, pb_spans
from guardrail.serving.settings import ServeSettings
from guardrail.spans import Span

TEXTS = [
    "please call Ana Silva thanks, or mail ana.silva@example.com",
    "send it to Bob Stone at +1 415 555 0100, card 4111 1111 1111 1111",
    "Grüße von Lena Vogt 🎉 — 東京 see you soon",
    "",
    "the order for Jun Sato",
]
SECRET = "ana.silva@example.com"


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def sidecar(guard: Guardrail):
    with SidecarThread(guard, ServeSettings(port=0, metrics_port=0, max_wait_ms=5)) as sc:
        yield sc


@pytest.fixture(scope="module")
def client(sidecar: SidecarThread):
    with GuardrailClient(f"127.0.0.1:{sidecar.port}", timeout=30) as c:
        yield c


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(SidecarError) as e:
        call(*args, **kwargs)
    return e.value.code, e.value.message


def test_detect_and_redact_equal_the_library(guard: Guardrail, client: GuardrailClient) -> None:
    assert client.detect(TEXTS) == guard.detect(TEXTS)
    for op in ("placeholder", "mask", "pseudonym"):
        assert client.redact(TEXTS, operator=op) == guard.redact(TEXTS, operator=op)
    assert client.redact(TEXTS, operator="hash", key="k1") == guard.redact(TEXTS, operator="hash", key="k1")
    assert client.detect(TEXTS, labels=["EMAIL"]) == guard.detect(TEXTS, labels=["EMAIL"])
    assert client.detect([]) == []
    assert SECRET in TEXTS[0] and SECRET not in client.redact(TEXTS)[0].text


def test_byte_offsets_match_utf8(client: GuardrailClient, sidecar: SidecarThread) -> None:
    text = "Grüße 🎉 von Lena Vogt, 東京 — mail ana.silva@example.com"
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        (det,) = pb_grpc.GuardrailStub(ch).Detect(pb.DetectRequest(texts=[text])).results
    raw = text.encode("utf-8")
    assert det.spans
    for s in det.spans:
        assert raw[s.start_byte : s.end_byte].decode("utf-8") == text[s.start : s.end]
    # the helper alone, on spans that start after multi-byte characters
    (m,) = pb_spans("é🎉x yz", [Span(2, 3, "PERSON"), Span(4, 6, "PERSON")])[:1]
    assert (m.start_byte, m.end_byte) == (6, 7)


def test_64_concurrent_requests_equal_single_requests(
    guard: Guardrail, client: GuardrailClient, sidecar: SidecarThread
) -> None:
    texts = [f"{TEXTS[i % 3]} #{i}" for i in range(64)]
    single = [guard.redact([t])[0] for t in texts]
    batches_before = _metric(sidecar, "guardrail_batch_texts_count")
    start = threading.Barrier(64)

    def call(t: str):
        start.wait()
        return client.redact([t])[0]

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, texts))
    assert results == single
    batches = _metric(sidecar, "guardrail_batch_texts_count") - batches_before
    assert batches < 64, "64 concurrent requests should share forward passes"


def _metrics_text(sidecar: SidecarThread) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.sidecar.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def _metric(sidecar: SidecarThread, name: str, labels: str = "") -> float:
    m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", _metrics_text(sidecar), re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_calls_and_never_hold_text(client: GuardrailClient, sidecar: SidecarThread) -> None:
    client.redact(TEXTS)
    _code(client.redact, TEXTS, operator="nope")
    body = _metrics_text(sidecar)
    assert _metric(sidecar, "guardrail_requests_total", '{code="OK",method="Redact"}') >= 1
    assert _metric(sidecar, "guardrail_requests_total", '{code="INVALID_ARGUMENT",method="Redact"}') >= 1
    for name in ("guardrail_request_seconds_bucket", "guardrail_batch_texts_bucket", "guardrail_queue_texts"):
        assert name in body
    assert "Silva" not in body and "example.com" not in body


def _device() -> str:
    """What the fixtures' device="auto" guard runs on: ``cpu`` here, ``cuda:0 <name>`` on a GPU host."""
    import torch

    return f"cuda:0 {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def test_build_info_metric(sidecar: SidecarThread, guard: Guardrail) -> None:
    (line,) = [x for x in _metrics_text(sidecar).splitlines() if x.startswith("guardrail_build_info{")]
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    assert labels == {
        "version": guardrail.__version__,
        "bundle": guard.bundle.manifest.name,
        "probe": "raw",
        "device": _device(),
        "dtype": "float32",
        "runtime": "torch",
        "why": guard.backbone.why,
        "cpu": guard.describe()["cpu"],
    }
    assert labels["why"].startswith("runtime torch") and "dtype fp32" in labels["why"]
    caps = cpu.probe()
    assert labels["cpu"].startswith(f"{caps.arch} ") and f"capability {caps.capability}" in labels["cpu"]
    assert line.endswith(" 1.0")


def test_get_info_shows_the_runtime_pick_why_and_the_cpu(sidecar: SidecarThread, guard: Guardrail) -> None:
    """GetInfo says which runtime and dtype run and why (:attr:`Backbone.why`), and what the CPU does fast
    (:func:`guardrail.cpu.probe`); nothing else than what the server runs."""
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        info = pb_grpc.GuardrailStub(ch).GetInfo(pb.GetInfoRequest(), timeout=10)
    assert info.why == guard.backbone.why and info.why.startswith("runtime torch")
    caps = cpu.probe()
    assert info.cpu.startswith(f"{caps.arch} {caps.model}".strip())
    assert f"capability {caps.capability}" in info.cpu
    assert (f"int8 {caps.int8}" if caps.int8 else f"int8 slow ({caps.int8_why})") in info.cpu
    assert (f"bf16 {caps.bf16}" if caps.bf16 else f"bf16 slow ({caps.bf16_why})") in info.cpu


def test_bad_input_is_invalid_argument_with_a_reason(client: GuardrailClient, sidecar: SidecarThread) -> None:
    s = sidecar.sidecar.settings
    code, msg = _code(client.detect, ["x"] * (s.max_texts + 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limit" in msg
    code, msg = _code(client.detect, ["a" * (s.max_text_chars + 1)])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "characters" in msg
    code, msg = _code(client.redact, ["hi"], operator="shred")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "operator" in msg
    code, msg = _code(client.detect, ["hi"], labels=["NAME"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "labels" in msg
    env = os.environ.pop("GUARDRAIL_HASH_KEY", None)
    try:
        code, msg = _code(client.redact, [TEXTS[0]], operator="hash")
    finally:
        if env is not None:
            os.environ["GUARDRAIL_HASH_KEY"] = env
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "key" in msg
    # errors never quote the text
    code, msg = _code(client.redact, [SECRET], operator="shred")
    assert SECRET not in msg


def test_message_size_limits(guard: Guardrail) -> None:
    settings = ServeSettings(port=0, max_message_bytes=64 * 1024, max_text_chars=1_000_000)
    with SidecarThread(guard, settings) as sc, GuardrailClient(f"127.0.0.1:{sc.port}", retries=0) as c:
        code, msg = _code(c.detect, ["word " * 20_000])  # 100 kB: over our limit, under gRPC's cap (4x)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in msg
        code, _ = _code(c.detect, ["word " * 60_000])  # 300 kB: over the transport cap, refused unread
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert c.detect(["short and fine"])  # the server is still fine


def test_queue_full_is_resource_exhausted(guard: Guardrail) -> None:
    # the first request waits 1 s for company, so the queue (3 texts) holds its 2 texts meanwhile
    settings = ServeSettings(port=0, queue_texts=3, max_wait_ms=1000)
    with (
        SidecarThread(guard, settings) as sc,
        GuardrailClient(f"127.0.0.1:{sc.port}", retries=0) as c,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(c.detect, ["one", "two"])
        time.sleep(0.3)
        code, msg = _code(c.detect, ["three", "four"])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "queued" in msg
        assert len(first.result()) == 2


def test_deadline_exceeded_and_the_work_dropped(guard: Guardrail) -> None:
    settings = ServeSettings(port=0, max_wait_ms=800, metrics_port=0)
    with SidecarThread(guard, settings) as sc, GuardrailClient(f"127.0.0.1:{sc.port}", retries=0) as c:
        code, _ = _code(c.detect, ["late text"], timeout=0.2)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(1.0)  # past the batch wait: the abandoned request must not have reached the model
        assert _metric(sc, "guardrail_texts_total") == 0
        assert c.detect(["on time"], timeout=5)
        assert _metric(sc, "guardrail_texts_total") == 1


def test_info_health_and_reflection(
    client: GuardrailClient, sidecar: SidecarThread, guard: Guardrail
) -> None:
    info = client.info()
    assert info["bundle"] == guard.bundle.manifest.name and info["labels"] == list(guard.labels)
    assert info["layer"] == guard.bundle.manifest.backbone.layer and info["version"]
    assert info["backbone"] == guard.bundle.manifest.backbone.id
    assert (info["device"], info["dtype"], info["runtime"]) == (_device(), "float32", "torch")
    assert info["probe"] == guard.probe_name == "raw" and info["patterns"] is True
    assert client.health() == "SERVING" and client.health("guardrail.v1.Guardrail") == "SERVING"
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        (reply,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in reply.list_services_response.service}
    assert {"guardrail.v1.Guardrail", "grpc.health.v1.Health"} <= names


def test_bearer_token(guard: Guardrail) -> None:
    settings = ServeSettings(port=0, auth_token="s3cret")
    with SidecarThread(guard, settings) as sc:
        target = f"127.0.0.1:{sc.port}"
        with GuardrailClient(target, retries=0) as anonymous:
            assert _code(anonymous.detect, ["hi"])[0] == grpc.StatusCode.UNAUTHENTICATED
            assert _code(anonymous.redact_stream(["hi"]).__next__)[0] == grpc.StatusCode.UNAUTHENTICATED
            assert anonymous.health() == "SERVING"  # orchestrators probe without credentials
        with GuardrailClient(target, retries=0, token="wrong") as wrong:
            assert _code(wrong.info)[0] == grpc.StatusCode.UNAUTHENTICATED
        with GuardrailClient(target, token="s3cret") as ok:
            assert ok.detect(["hi"]) == guard.detect(["hi"])
            assert (
                "".join(ok.redact_stream(["please call ", "Ana Silva"]))
                == guard.redact(["please call Ana Silva"])[0].text
            )


def _raw(port: int, method: str, body: bytes, token: str | None = None) -> tuple[grpc.StatusCode, str]:
    """A unary call whose ``body`` goes out as it is (no serializer): bytes that need not be a message."""
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            ch.unary_unary(f"/{SERVICE}/{method}")(body, timeout=30, metadata=metadata)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def _not_utf8(text: str) -> bytes:
    """A ``DetectRequest``/``RedactRequest`` whose first text (field 1) is ``text`` and then bytes that
    are not UTF-8."""
    raw = text.encode() + b" \xff\xfe"
    assert len(raw) < 128  # a one-byte length
    return b"\x0a" + bytes([len(raw)]) + raw


def test_unreadable_unary_request_is_invalid_argument_in_one_log_line(
    client: GuardrailClient, sidecar: SidecarThread, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = {"not protobuf": b"\xff\xff\xff\xff", "not UTF-8": _not_utf8(SECRET)}
    for method in ("Detect", "Redact"):
        for what, body in bodies.items():
            caplog.clear()
            with caplog.at_level(logging.INFO):
                code, msg = _raw(sidecar.port, method, body)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "could not be read" in msg, (method, what)
            (record,) = [r for r in caplog.records if r.name.startswith(("grpc", "guardrail"))]
            assert record.exc_info is None and "\n" not in record.getMessage()
            assert SECRET not in caplog.text and SECRET not in msg and "Traceback" not in caplog.text
    assert _metric(sidecar, "guardrail_requests_total", '{code="INVALID_ARGUMENT",method="Detect"}') >= 2
    assert client.detect(["hi"])  # still serving
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:  # a unary-stream call passes the gate too
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


class _CountingReads:
    """Stands for the generated messages module: counts how often a ``DetectRequest`` is parsed."""

    def __init__(self) -> None:
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(pb, name)

    @property
    def DetectRequest(self) -> object:
        outer = self

        class Counted:
            @staticmethod
            def FromString(data: bytes) -> pb.DetectRequest:
                outer.reads += 1
                return pb.DetectRequest.FromString(data)

        return Counted


def test_bearer_token_is_checked_before_the_body_is_read(
    guard: Guardrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingReads()
    monkeypatch.setattr(pb_grpc, "guardrail_dot_v1_dot_guardrail__pb2", counting)
    with SidecarThread(guard, ServeSettings(port=0, auth_token="s3cret")) as sc:
        assert _raw(sc.port, "Detect", b"\xff\xff\xff\xff")[0] == grpc.StatusCode.UNAUTHENTICATED
        big = pb.DetectRequest(texts=["word " * 600_000]).SerializeToString()  # 3 MB
        assert _raw(sc.port, "Detect", big)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert _raw(sc.port, "Detect", big, token="wrong")[0] == grpc.StatusCode.UNAUTHENTICATED
        assert counting.reads == 0  # refused unparsed
        code, msg = _raw(sc.port, "Detect", _not_utf8(SECRET), token="s3cret")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and SECRET not in msg
        ok = pb.DetectRequest(texts=["hi"]).SerializeToString()
        assert _raw(sc.port, "Detect", ok, token="s3cret")[0] == grpc.StatusCode.OK
        assert counting.reads == 2


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import trustme

    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("agent@example.test")
    other_ca = trustme.CA()
    paths = {
        "ca": folder / "ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
        "other_ca": folder / "other.pem",
    }
    ca.cert_pem.write_to_path(paths["ca"])
    server.private_key_pem.write_to_path(paths["server_key"])
    paths["server_cert"].write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    client.private_key_pem.write_to_path(paths["client_key"])
    paths["client_cert"].write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))
    other_ca.cert_pem.write_to_path(paths["other_ca"])
    return paths


def test_tls(guard: Guardrail, certs: dict[str, Path]) -> None:
    settings = ServeSettings(port=0, tls_cert=certs["server_cert"], tls_key=certs["server_key"])
    with SidecarThread(guard, settings) as sc:
        target = f"localhost:{sc.port}"
        with GuardrailClient(target, root_certificates=certs["ca"]) as c:
            assert c.detect(TEXTS) == guard.detect(TEXTS)
        with GuardrailClient(target, root_certificates=certs["other_ca"], retries=0, timeout=3) as c:
            assert _code(c.detect, ["hi"])[0] == grpc.StatusCode.UNAVAILABLE  # server not trusted
        with GuardrailClient(target, retries=0, timeout=3) as plain:
            assert _code(plain.detect, ["hi"])[0] == grpc.StatusCode.UNAVAILABLE  # plaintext refused


def test_mutual_tls(guard: Guardrail, certs: dict[str, Path]) -> None:
    settings = ServeSettings(
        port=0, tls_cert=certs["server_cert"], tls_key=certs["server_key"], tls_client_ca=certs["ca"]
    )
    with SidecarThread(guard, settings) as sc:
        target = f"localhost:{sc.port}"
        with GuardrailClient(
            target,
            root_certificates=certs["ca"],
            private_key=certs["client_key"],
            certificate_chain=certs["client_cert"],
        ) as c:
            assert c.redact(TEXTS) == guard.redact(TEXTS)
        with GuardrailClient(target, root_certificates=certs["ca"], retries=0, timeout=3) as no_cert:
            assert _code(no_cert.detect, ["hi"])[0] == grpc.StatusCode.UNAVAILABLE


def _serve(bundle: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardrail.cli", "serve", "--bundle", str(bundle), "--port", "0", *extra],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GUARDRAIL_WARMUP": "false", **(env or {})},
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if m := re.search(r"listening on [\d.]+:(\d+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("guardrail serve did not start")


def test_cli_serve_sigterm_is_graceful(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("max_wait_ms = 1500\ndrain_s = 1.0\ngrace_s = 10\n")  # an in-flight call for 1.5 s
    proc, port = _serve(tiny_bundle_dir, "--config", str(config))
    try:
        with (
            GuardrailClient(f"127.0.0.1:{port}", retries=0) as c,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            in_flight = pool.submit(c.redact, [TEXTS[0]])
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.4)
            assert c.health() == "NOT_SERVING"  # during the drain
            assert SECRET not in in_flight.result().pop().text  # finished, not cut off
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_bad_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from guardrail.cli import main

    assert main(["serve", "--tls-cert", str(tmp_path / "c.pem")]) == 2  # a cert without its key
    err = capsys.readouterr().err
    assert "tls" in err and err.count("\n") == 1
    assert main(["serve", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("max_wait_ms = -1\n")
    assert main(["serve", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "max_wait_ms" in capsys.readouterr().err


def test_cli_serve_refuses_a_plaintext_token_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from guardrail.cli import main
    from guardrail.serving import server

    served: list[ServeSettings] = []
    monkeypatch.setattr(server, "serve", lambda settings: served.append(settings) or 0)
    monkeypatch.setenv("GUARDRAIL_AUTH_TOKEN", "s3cr3t-value")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "plaintext" in err and "--allow-insecure" in err and err.count("\n") == 1 and "s3cr3t" not in err
    assert not served  # refused before the model loads
    assert main(["serve", "--host", "0.0.0.0", "--allow-insecure", "--metrics-host", "0.0.0.0"]) == 0
    ((settings,),) = [served]
    assert settings.allow_insecure and settings.exposed_token and settings.metrics_host == "0.0.0.0"
    assert main(["serve"]) == 0  # loopback: a token in plaintext stays on this machine
    monkeypatch.setattr(served[-1], "host", "0.0.0.0")  # changed after validation: start() refuses too
    with pytest.raises(ValueError, match="allow_insecure"):
        SidecarThread(Guardrail.__new__(Guardrail), served[-1]).start()


def test_metrics_bind_loopback_whatever_the_host(guard: Guardrail) -> None:
    with SidecarThread(guard, ServeSettings(host="0.0.0.0", port=0, metrics_port=0)) as sc:
        assert sc.sidecar._metrics_http.server_address[0] == "127.0.0.1"  # no authentication: not exposed
        assert "guardrail_build_info" in _metrics_text(sc)
    with SidecarThread(guard, ServeSettings(port=0, metrics_port=0, metrics_host="0.0.0.0")) as sc:
        assert sc.sidecar._metrics_http.server_address[0] == "0.0.0.0"  # chosen


def test_cli_serve_model_and_no_patterns(
    tiny_bundle_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guardrail.cli import main
    from guardrail.serving import server

    served: list[tuple[Guardrail, ServeSettings]] = []

    async def fake_serve(guard: Guardrail, settings: ServeSettings) -> tuple[int, bool]:
        served.append((guard, settings))
        return 0, True

    monkeypatch.setattr(server, "_serve", fake_serve)
    monkeypatch.setenv("GUARDRAIL_WARMUP", "false")
    monkeypatch.setenv("GUARDRAIL_DTYPE", "fp32")
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # probe only: Presidio need not import
    monkeypatch.setitem(sys.modules, "guardrail.patterns", None)
    args = ["serve", "--bundle", str(tiny_bundle_dir), "--model", str(tiny_model_dir), "--no-patterns"]
    assert main(args) == 0
    ((guard, settings),) = served
    assert settings.model == str(tiny_model_dir) and settings.patterns is False
    assert guard.patterns is None and guard.backbone.info["id"] == str(tiny_model_dir)
    with (
        SidecarThread(guard, ServeSettings(port=0)) as sc,
        GuardrailClient(f"127.0.0.1:{sc.port}", timeout=30) as c,
    ):
        info = c.info()
        assert info["patterns"] is False and info["backbone"] == str(tiny_model_dir)
        (spans,) = c.detect(["mail ana.silva@example.com"])
        assert all(s.source == "probe" for s in spans)


def test_health_stub_direct(sidecar: SidecarThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert r.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.model
def test_real_default_bundle_end_to_end(real_guardrail: Guardrail) -> None:
    text = "Hi, I am Ana Silva. Call me at +1 415 555 0100 or write to ana.silva@example.com."
    with (
        SidecarThread(real_guardrail, ServeSettings(port=0)) as sc,
        GuardrailClient(f"127.0.0.1:{sc.port}") as c,
    ):
        (red,) = c.redact([text])
        assert red == real_guardrail.redact([text])[0]
        assert "Ana Silva" not in red.text and "555 0100" not in red.text and "example.com" not in red.text
        chunks = [text[i : i + 3] for i in range(0, len(text), 3)]  # token-sized pieces
        assert "".join(c.redact_stream(chunks)) == red.text
        assert c.info()["bundle"] == real_guardrail.bundle.manifest.name


def test_explain_needs_an_sae_probe(client: GuardrailClient) -> None:
    """The tiny bundle's raw probe reads no SAE features: Detect(explain) says so, GetInfo tells first
    (the explained path through the sidecar: tests/test_integrations_presidio.py)."""
    assert client.info()["explanations"] is False
    code, message = _code(client.detect, TEXTS, explain=True)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SAE features" in message and SECRET not in message
