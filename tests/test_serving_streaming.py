"""Streaming redaction: released early, never a raw value, equal to unary Redact on the whole text."""

from __future__ import annotations

import asyncio
import queue
import re
from pathlib import Path

import grpc
import pytest

from guardrail.client import GuardrailClient, SidecarError
from guardrail.pipeline import Guardrail
from guardrail.redact import Redactor
from guardrail.serving import guardrail_pb2 as pb
from guardrail.serving import guardrail_pb2_grpc as pb_grpc
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings
from guardrail.serving.streaming import StreamRedactor

TEXT = "please call Ana Silva thanks, mail ana.silva@example.com or +1 415 555 0100 and see you soon"
VALUES = ("ana.silva@example.com", "+1 415 555 0100")


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def client(guard: Guardrail):
    with (
        SidecarThread(guard, ServeSettings(port=0, max_wait_ms=1)) as sc,
        GuardrailClient(f"127.0.0.1:{sc.port}", timeout=60) as c,
    ):
        yield c


def _stream(guard: Guardrail, chunks: list[str], operator: str = "placeholder", **kw: int) -> list[str]:
    """The pieces a StreamRedactor over ``guard`` releases for ``chunks`` (each chunk then a release)."""

    async def detect(text: str):
        return guard.detect([text])[0]

    async def run() -> list[str]:
        s = StreamRedactor(detect, Redactor(operator), **kw)
        out = []
        for c in chunks:
            s.feed(c)
            if (piece := await s.release()) is not None:
                out.append(piece.text)
        out.append((await s.finish()).text)
        return out

    return asyncio.run(run())


def test_unary_output_hides_the_values(guard: Guardrail) -> None:
    red = guard.redact([TEXT])[0].text
    assert all(v not in red for v in VALUES)


def test_every_split_of_the_values_equals_unary(client: GuardrailClient) -> None:
    expected = client.redact([TEXT])[0].text
    first, last = TEXT.index(VALUES[0]), TEXT.index(VALUES[1]) + len(VALUES[1])
    for i in range(first, last + 1):  # every boundary inside and between the two values
        pieces = list(client.redact_stream([TEXT[:i], TEXT[i:]]))
        assert "".join(pieces) == expected, i
        assert not any(v[:4] in p for p in pieces for v in VALUES)  # no fragment of a value, ever
    for a in range(first, first + len(VALUES[0]), 6):  # the email in three chunks
        for b in range(a + 2, first + len(VALUES[0]), 7):
            assert "".join(client.redact_stream([TEXT[:a], TEXT[a:b], TEXT[b:]])) == expected, (a, b)


def test_redactor_alone_every_split_of_the_phone(guard: Guardrail) -> None:
    expected = guard.redact([TEXT])[0].text
    at = TEXT.index(VALUES[1])
    for i in range(at, at + len(VALUES[1]) + 1):
        assert "".join(_stream(guard, [TEXT[:i], TEXT[i:]])) == expected, i


def test_token_sized_chunks_and_operators(client: GuardrailClient) -> None:
    chunks = [TEXT[i : i + 1] for i in range(len(TEXT))]  # one character at a time
    assert "".join(client.redact_stream(chunks)) == client.redact([TEXT])[0].text
    long = " ".join([TEXT] * 4)
    words = re.findall(r"\S+\s*", long)
    for op in ("mask", "pseudonym"):  # pseudonym numbers stay consistent across released pieces
        assert "".join(client.redact_stream(words, operator=op)) == client.redact([long], operator=op)[0].text
    key = "k"
    assert (
        "".join(client.redact_stream(words, operator="hash", key=key))
        == client.redact([long], operator="hash", key=key)[0].text
    )


def test_output_is_released_before_the_stream_ends(client: GuardrailClient) -> None:
    inbox: queue.Queue[str | None] = queue.Queue()

    def chunks():
        while (c := inbox.get()) is not None:
            yield c

    words = (TEXT + " ") * 3
    inbox.put(words)
    responses = client.redact_stream(chunks())
    first = next(responses)  # the stream is still open: nothing more has been sent
    assert first and len(first) < len(words)
    assert not any(v in first for v in VALUES)
    inbox.put("the end")
    inbox.put(None)
    assert first + "".join(responses) == client.redact([words + "the end"])[0].text


def test_long_stream_slides_its_window(guard: Guardrail) -> None:
    parts = [f"note {i}: mail ana{i}@example.com please " for i in range(150)]  # ~6000 chars
    kw = {"hold_words": 4, "hold_chars": 16, "max_hold_chars": 256, "window_chars": 1024}
    out = "".join(_stream(guard, parts, context_chars=256, **kw))
    assert "@example.com" not in out
    unary = guard.redact(["".join(parts)])[0].text
    assert out.count("[EMAIL]") == 150 and out[-200:] == unary[-200:]  # the last records: as unary


def _counted(guard: Guardrail, reads: list[int]):
    async def detect(text: str):
        reads.append(len(text))
        return guard.detect([text])[0]

    return detect


def test_word_by_word_stream_costs_at_most_3x_unary(guard: Guardrail) -> None:
    """2,100 characters sent one word at a time: the detector reads at most 3x the text (it read the
    whole text so far at each word: 56x in the issue), and the output still equals unary here (the
    released part stays within the context)."""
    text = " ".join([TEXT] * 23)[:2100]
    words = re.findall(r"\S+\s*", text)
    reads: list[int] = []

    async def run() -> str:
        s = StreamRedactor(_counted(guard, reads), Redactor("placeholder"))
        out = []
        for w in words:
            s.feed(w)
            if (piece := await s.release()) is not None:
                out.append(piece.text)
        out.append((await s.finish()).text)
        return "".join(out)

    out = asyncio.run(run())
    assert sum(reads) <= 3 * len(text), f"read {sum(reads)} characters for {len(text)}"
    assert not any(v in out for v in VALUES) and out.count("[EMAIL]") == text.count("@example.com")


def test_a_burst_is_read_window_by_window(guard: Guardrail) -> None:
    """Four 40,000-character chunks at once: no detection reads more than the window (it read all
    160,000 characters at the first release and at the flush), nothing raw goes out."""
    chunk = "mail ana.silva@example.com now " * 1290  # 39,990 characters
    reads: list[int] = []

    async def run() -> str:
        s = StreamRedactor(_counted(guard, reads), Redactor("placeholder"), window_chars=8192)
        out = []
        for _ in range(4):
            s.feed(chunk)
        if (piece := await s.release()) is not None:
            out.append(piece.text)
        out.append((await s.finish()).text)
        return "".join(out)

    out = asyncio.run(run())
    assert max(reads) <= 8192 and sum(reads) <= 3 * 4 * len(chunk)
    assert "@example.com" not in out and out.count("[EMAIL]") >= 4 * chunk.count("@example.com")


def test_stream_errors_and_empty_stream(client: GuardrailClient) -> None:
    assert list(client.redact_stream([])) == []
    with pytest.raises(SidecarError) as e:
        list(client.redact_stream(["x"], operator="shred"))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(SidecarError) as e:
        list(client.redact_stream(["x"], labels=["NAME"]))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with grpc.insecure_channel(client.target) as ch:
        stub = pb_grpc.GuardrailStub(ch)
        msgs = [
            pb.RedactStreamRequest(chunk="hello "),
            pb.RedactStreamRequest(options=pb.StreamOptions(), chunk="x"),
        ]
        with pytest.raises(grpc.RpcError) as r:
            list(stub.RedactStream(iter(msgs)))
        assert r.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "first message" in r.value.details()
        final = list(stub.RedactStream(iter([pb.RedactStreamRequest(chunk="a b")])))[-1]
        assert final.final and final.consumed == 3


def test_stream_spans_have_stream_offsets(client: GuardrailClient) -> None:
    with grpc.insecure_channel(client.target) as ch:
        stub = pb_grpc.GuardrailStub(ch)
        head = "Grüße 🎉 "
        text = head + TEXT
        reqs = [pb.RedactStreamRequest(chunk=text[i : i + 7]) for i in range(0, len(text), 7)]
        spans = [s for r in stub.RedactStream(iter(reqs)) for s in r.spans]
    raw = text.encode("utf-8")
    unary = client.redact([text])[0].spans
    assert [(s.start, s.end, s.label) for s in spans] == [(s.start, s.end, s.label) for s in unary]
    for s in spans:
        assert raw[s.start_byte : s.end_byte].decode() == text[s.start : s.end]


@pytest.mark.model
def test_real_default_stream_every_split_in_a_value(real_guardrail: Guardrail) -> None:
    text = "Hi, I am Ana Silva. Call me at +1 415 555 0100 or write to ana.silva@example.com today."
    expected = real_guardrail.redact([text])[0].text
    at = text.index("+1 415")
    for i in range(at, at + len("+1 415 555 0100") + 1):
        assert "".join(_stream(real_guardrail, [text[:i], text[i:]])) == expected, i


def test_corrupt_message_mid_stream_is_an_error_not_a_success(client: GuardrailClient) -> None:
    """A message that does not decode ends the stream with INVALID_ARGUMENT, never OK: nothing after it
    is dropped silently, and only redacted text has been released before it."""
    valid = pb.RedactStreamRequest(chunk=TEXT + " ").SerializeToString()
    corrupt = b"\x12\x04\xff\xfeok"  # field 2 (chunk) holding invalid UTF-8
    after = pb.RedactStreamRequest(chunk=f"then mail {VALUES[0]} again").SerializeToString()
    with grpc.insecure_channel(client.target) as ch:
        call = ch.stream_stream(
            "/guardrail.v1.Guardrail/RedactStream",
            request_serializer=lambda b: b,
            response_deserializer=pb.RedactStreamResponse.FromString,
        )
        responses = call(iter([valid, corrupt, after, after]), timeout=30)
        released: list[pb.RedactStreamResponse] = []
        with pytest.raises(grpc.RpcError) as e:
            released.extend(responses)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be read" in e.value.details() and "\ufffd" not in e.value.details()
    assert not any(r.final for r in released)
    assert not any(v in r.text for r in released for v in VALUES)
