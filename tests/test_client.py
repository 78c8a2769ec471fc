"""The sync and async clients against a real sidecar: same results as the library, timeouts, retries."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest

from guardrail.client import AsyncGuardrailClient, GuardrailClient, SidecarError, channel_options
from guardrail.pipeline import Guardrail
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings

TEXTS = ["please call Ana Silva thanks", "mail ana.silva@example.com or +1 415 555 0100", ""]


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def sidecar(guard: Guardrail):
    with SidecarThread(guard, ServeSettings(port=0)) as sc:
        yield sc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_client_matches_the_library(guard: Guardrail, sidecar: SidecarThread) -> None:
    with GuardrailClient(f"127.0.0.1:{sidecar.port}") as c:
        assert c.detect(TEXTS) == guard.detect(TEXTS)
        assert c.detect(TEXTS[0]) == guard.detect(TEXTS[0])  # a lone str is a list of one, as in the library
        assert c.redact(TEXTS, operator="pseudonym") == guard.redact(TEXTS, operator="pseudonym")
        assert (
            "".join(c.redact_stream([w + " " for w in TEXTS[1].split(" ")]))
            == guard.redact([TEXTS[1] + " "])[0].text
        )
        info = c.info()
        assert info["labels"] == list(guard.labels)
        assert info["why"] == guard.backbone.why and info["cpu"]  # the pick, and the CPU it was made on
        assert c.health() == "SERVING"


def test_async_client_matches_the_library(guard: Guardrail, sidecar: SidecarThread) -> None:
    async def run() -> None:
        async with AsyncGuardrailClient(f"127.0.0.1:{sidecar.port}") as c:
            assert await c.detect(TEXTS) == guard.detect(TEXTS)
            results = await asyncio.gather(*(c.redact([t]) for t in TEXTS * 10))
            assert [r[0] for r in results] == [guard.redact([t])[0] for t in TEXTS * 10]

            async def chunks():
                for w in TEXTS[1].split(" "):
                    yield w + " "

            out = "".join([p async for p in c.redact_stream(chunks())])
            assert out == guard.redact([TEXTS[1] + " "])[0].text
            assert (await c.info())["bundle"] == guard.bundle.manifest.name
            assert await c.health() == "SERVING"
            with pytest.raises(SidecarError) as e:
                await c.redact(["x"], operator="shred")
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(run())


def test_timeout_is_deadline_exceeded(guard: Guardrail) -> None:
    with (
        SidecarThread(guard, ServeSettings(port=0, max_wait_ms=1000)) as sc,
        GuardrailClient(f"127.0.0.1:{sc.port}", timeout=0.2) as c,
    ):
        with pytest.raises(SidecarError) as e:
            c.detect(["slow"])
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert c.detect(["fine"], timeout=10)  # per-call override


def test_retries_on_unavailable_until_the_server_is_up(guard: Guardrail) -> None:
    port = _free_port()
    target = f"127.0.0.1:{port}"
    with GuardrailClient(target, retries=0, timeout=5) as once:
        with pytest.raises(SidecarError) as e:
            once.detect(["nobody listens"])
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
    sidecar = SidecarThread(guard, ServeSettings(port=port))
    starter = threading.Timer(0.15, sidecar.start)
    with GuardrailClient(target, retries=4, timeout=20) as patient:
        started = time.monotonic()
        starter.start()
        try:
            assert patient.detect(TEXTS) == guard.detect(TEXTS)  # the first attempts found no server
        finally:
            starter.join()
            sidecar.stop(grace_s=1)
    assert time.monotonic() - started >= 0.15


def test_bad_client_arguments() -> None:
    with pytest.raises(ValueError, match="retries"):
        channel_options(9)
    with pytest.raises(ValueError, match="go together"):
        GuardrailClient("127.0.0.1:1", private_key=b"k")
