"""Clients of the guardrail sidecar (``guardrail serve``): blocking and ``asyncio``.

>>> with GuardrailClient("127.0.0.1:50051") as c:
...     c.redact(["Please call Ana Silva at +1 415 555 0100"])[0].text
'Please call [PERSON] at [PHONE]'

Both return the package's own types (:class:`~guardrail.spans.Span`, :class:`~guardrail.redact.Redacted`),
so code written against :class:`~guardrail.pipeline.Guardrail` works against the sidecar too. Every call
has a deadline (``timeout``, seconds); calls that fail with UNAVAILABLE (server restarting, connection
refused) are retried by gRPC itself with exponential backoff (``retries`` more attempts, at most 4).
Errors are raised as :class:`SidecarError` carrying the gRPC status code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from guardrail.redact import Redacted
from guardrail.serving import guardrail_pb2 as pb
from guardrail.serving import guardrail_pb2_grpc as pb_grpc
from guardrail.spans import Feature, Span
from guardrail.vault import UNKNOWN, Restored, Sealed

SERVICE = "guardrail.v1.Guardrail"


class SidecarError(RuntimeError):
    """A call to the sidecar failed; ``code`` is the gRPC status (INVALID_ARGUMENT, UNAVAILABLE, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _error(e: grpc.RpcError) -> SidecarError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else None
    return SidecarError(code or grpc.StatusCode.UNKNOWN, details or "")


def _pem(x: bytes | str | Path | None) -> bytes | None:
    """PEM bytes from bytes or a file path."""
    if x is None or isinstance(x, bytes):
        return x
    return Path(x).read_bytes()


def channel_options(retries: int) -> list[tuple[str, Any]]:
    """Channel options: gRPC's own retry policy (UNAVAILABLE only) and no cap on response size."""
    if not 0 <= retries <= 4:
        raise ValueError("retries must be 0..4 (gRPC allows at most 5 attempts)")
    config = {
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": {
                    "maxAttempts": retries + 1,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
        if retries
        else []
    }
    return [
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", json.dumps(config)),
        ("grpc.max_receive_message_length", -1),
        # a restarted sidecar is found again within ~0.2-2 s, not gRPC's default of up to 2 minutes
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


def _credentials(
    tls: bool,
    root_certificates: bytes | str | Path | None,
    private_key: bytes | str | Path | None,
    certificate_chain: bytes | str | Path | None,
) -> grpc.ChannelCredentials | None:
    if not (tls or root_certificates or private_key or certificate_chain):
        return None
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("private_key and certificate_chain (the client certificate) go together")
    return grpc.ssl_channel_credentials(_pem(root_certificates), _pem(private_key), _pem(certificate_chain))


def _texts(texts: str | Iterable[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _spans(spans: Iterable[pb.Span]) -> list[Span]:
    # scores are float32 on the wire; the guardrail rounds them to 4 decimals, which this recovers
    return [
        Span(
            int(s.start),
            int(s.end),
            s.label,
            round(float(s.score), 4),
            s.source or "probe",
            tuple(_feature(f) for f in s.features),
        )
        for s in spans
    ]


def _feature(f: pb.Feature) -> Feature:
    return Feature(int(f.latent), f.activation, f.contribution, f.description)  # doubles on the wire: exact


def _stream_requests(chunks: Iterable[str], message: Any, options: Any) -> Iterator[Any]:
    """Stream messages of type ``message`` for ``chunks``; the first carries ``options`` (and goes out
    even when there is no chunk)."""
    first = True
    for chunk in chunks:
        yield message(options=options, chunk=chunk) if first else message(chunk=chunk)
        first = False
    if first:
        yield message(options=options)


async def _astream_requests(
    chunks: Iterable[str] | AsyncIterable[str], message: Any, options: Any
) -> AsyncIterator[Any]:
    """:func:`_stream_requests` of sync or async chunks."""
    if not isinstance(chunks, AsyncIterable):
        for request in _stream_requests(chunks, message, options):
            yield request
        return
    first = True
    async for chunk in chunks:
        yield message(options=options, chunk=chunk) if first else message(chunk=chunk)
        first = False
    if first:
        yield message(options=options)


def _stream_options(
    operator: str, labels: Sequence[str] | None, key: bytes | str | None, keep_placeholders: bool = False
) -> pb.StreamOptions:
    return pb.StreamOptions(
        operator=operator, labels=list(labels or ()), key=_key(key), keep_placeholders=keep_placeholders
    )


def _restore_options(mapping: str, scope: str, unknown: str) -> pb.RestoreOptions:
    if unknown not in UNKNOWN:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN)}")
    return pb.RestoreOptions(mapping=mapping, scope=scope, keep_unknown=unknown == "keep")


def _restore_request(texts: str | Iterable[str], mapping: str, scope: str, unknown: str) -> pb.RestoreRequest:
    o = _restore_options(mapping, scope, unknown)
    return pb.RestoreRequest(
        texts=_texts(texts), mapping=o.mapping, scope=o.scope, keep_unknown=o.keep_unknown
    )


def _restored(response: pb.RestoreResponse) -> list[Restored]:
    return [Restored(r.text, r.restored, tuple(r.unknown)) for r in response.results]


def _sealed(response: pb.RedactResponse) -> Sealed:
    return Sealed([Redacted(r.text, _spans(r.spans)) for r in response.results], response.mapping)


def _pseudonymise_request(
    texts: str | Iterable[str], mapping: str | None, scope: str, labels: Sequence[str] | None
) -> pb.RedactRequest:
    return pb.RedactRequest(
        texts=_texts(texts),
        operator="pseudonym",
        labels=list(labels or ()),
        seal=True,
        mapping=mapping or "",
        scope=scope,
    )


def _key(key: bytes | str | None) -> bytes:
    if key is None:
        return b""
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


class _Common:
    def __init__(
        self,
        target: str,
        *,
        timeout: float,
        token: str | None,
    ):
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None

    def _info(self, r: pb.GetInfoResponse) -> dict[str, Any]:
        return {
            "bundle": r.bundle,
            "backbone": r.backbone,
            "layer": r.layer,
            "labels": list(r.labels),
            "version": r.version,
            "operators": list(r.operators),
            "max_texts": r.max_texts,
            "max_text_chars": r.max_text_chars,
            "max_message_bytes": r.max_message_bytes,
            "device": r.device,
            "dtype": r.dtype,
            "runtime": r.runtime,
            "probe": r.probe,
            "patterns": r.patterns,
            "why": r.why,
            "cpu": r.cpu,
            "vault_key_id": r.vault_key_id,
            "explanations": r.explanations,
        }


class GuardrailClient(_Common):
    """Blocking client; thread-safe (one channel, many threads). Use as a context manager or ``close()``.

    ``target``: ``host:port``. TLS: ``tls=True`` (system roots) or ``root_certificates`` (PEM bytes or a
    path); mutual TLS: also ``private_key`` and ``certificate_chain``. ``token``: bearer token.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        private_key: bytes | str | Path | None = None,
        certificate_chain: bytes | str | Path | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ):
        super().__init__(target, timeout=timeout, token=token)
        opts = [*channel_options(retries), *options]
        creds = _credentials(tls, root_certificates, private_key, certificate_chain)
        self._channel = (
            grpc.secure_channel(target, creds, opts) if creds else grpc.insecure_channel(target, opts)
        )
        self._stub = pb_grpc.GuardrailStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise _error(e) from None

    def detect(
        self,
        texts: str | Iterable[str],
        *,
        labels: Sequence[str] | None = None,
        explain: bool = False,
        timeout: float | None = None,
    ) -> list[list[Span]]:
        """Spans per text, like :meth:`Guardrail.detect` (``explain``: with their SAE features, where the
        sidecar's ``info()["explanations"]``)."""
        request = pb.DetectRequest(texts=_texts(texts), labels=list(labels or ()), explain=explain)
        return [_spans(d.spans) for d in self._call(self._stub.Detect, request, timeout).results]

    def redact(
        self,
        texts: str | Iterable[str],
        *,
        operator: str = "placeholder",
        labels: Sequence[str] | None = None,
        key: bytes | str | None = None,
        keep_placeholders: bool = False,
        timeout: float | None = None,
    ) -> list[Redacted]:
        """Redacted texts, like :meth:`Guardrail.redact`; one call is one pseudonym scope.
        ``keep_placeholders``: pseudonym placeholders already in the texts stay as they are."""
        request = pb.RedactRequest(
            texts=_texts(texts),
            operator=operator,
            labels=list(labels or ()),
            key=_key(key),
            keep_placeholders=keep_placeholders,
        )
        return [
            Redacted(r.text, _spans(r.spans)) for r in self._call(self._stub.Redact, request, timeout).results
        ]

    def redact_stream(
        self,
        chunks: Iterable[str],
        *,
        operator: str = "placeholder",
        labels: Sequence[str] | None = None,
        key: bytes | str | None = None,
        keep_placeholders: bool = False,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """Redacted output of a chunked text, piece by piece as the server releases it.

        The pieces concatenated equal ``redact(''.join(chunks))[0].text``; ``timeout`` covers the stream.
        """
        requests = _stream_requests(
            chunks, pb.RedactStreamRequest, _stream_options(operator, labels, key, keep_placeholders)
        )
        try:
            for response in self._stub.RedactStream(
                requests, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
            ):
                if response.text:
                    yield response.text
        except grpc.RpcError as e:
            raise _error(e) from None

    def pseudonymise(
        self,
        texts: str | Iterable[str],
        *,
        mapping: str | None = None,
        scope: str = "",
        labels: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Sealed:
        """Pseudonymised texts and their sealed mapping, like :meth:`Guardrail.pseudonymise` (the sidecar's
        vault key seals it); ``mapping``: the conversation's previous one."""
        request = _pseudonymise_request(texts, mapping, scope, labels)
        return _sealed(self._call(self._stub.Redact, request, timeout))

    def restore(
        self,
        texts: str | Iterable[str],
        mapping: str,
        *,
        scope: str = "",
        unknown: str = "error",
        timeout: float | None = None,
    ) -> list[Restored]:
        """Texts with the placeholders of ``mapping`` put back, like :meth:`Guardrail.restore`."""
        request = _restore_request(texts, mapping, scope, unknown)
        return _restored(self._call(self._stub.Restore, request, timeout))

    def restore_stream(
        self,
        chunks: Iterable[str],
        mapping: str,
        *,
        scope: str = "",
        unknown: str = "error",
        timeout: float | None = None,
    ) -> Iterator[str]:
        """Restored output of a chunked text (a streamed answer), piece by piece; a placeholder split across
        chunks comes out whole. The pieces concatenated equal ``restore(''.join(chunks), ...)[0].text``."""
        options = _restore_options(mapping, scope, unknown)
        requests = _stream_requests(chunks, pb.RestoreStreamRequest, options)
        try:
            for response in self._stub.RestoreStream(
                requests, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
            ):
                if response.text:
                    yield response.text
        except grpc.RpcError as e:
            raise _error(e) from None

    def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        """What the server runs: bundle, backbone, layer, labels, version, operators, limits, and device,
        dtype, runtime, probe, patterns, why that runtime and dtype, the CPU's capabilities (servers older
        than these fields answer them empty)."""
        return self._info(self._call(self._stub.GetInfo, pb.GetInfoRequest(), timeout))

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """``SERVING`` or ``NOT_SERVING`` (``grpc.health.v1``); ``service`` '' is the whole server."""
        r = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GuardrailClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGuardrailClient(_Common):
    """``asyncio`` client (``grpc.aio``), same methods as :class:`GuardrailClient`, awaitable.

    Create it inside the running event loop; ``async with`` closes it.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        private_key: bytes | str | Path | None = None,
        certificate_chain: bytes | str | Path | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ):
        super().__init__(target, timeout=timeout, token=token)
        opts = [*channel_options(retries), *options]
        creds = _credentials(tls, root_certificates, private_key, certificate_chain)
        self._channel = (
            grpc.aio.secure_channel(target, creds, opts) if creds else grpc.aio.insecure_channel(target, opts)
        )
        self._stub = pb_grpc.GuardrailStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(
                request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise _error(e) from None

    async def detect(
        self,
        texts: str | Iterable[str],
        *,
        labels: Sequence[str] | None = None,
        explain: bool = False,
        timeout: float | None = None,
    ) -> list[list[Span]]:
        request = pb.DetectRequest(texts=_texts(texts), labels=list(labels or ()), explain=explain)
        return [_spans(d.spans) for d in (await self._call(self._stub.Detect, request, timeout)).results]

    async def redact(
        self,
        texts: str | Iterable[str],
        *,
        operator: str = "placeholder",
        labels: Sequence[str] | None = None,
        key: bytes | str | None = None,
        keep_placeholders: bool = False,
        timeout: float | None = None,
    ) -> list[Redacted]:
        request = pb.RedactRequest(
            texts=_texts(texts),
            operator=operator,
            labels=list(labels or ()),
            key=_key(key),
            keep_placeholders=keep_placeholders,
        )
        response = await self._call(self._stub.Redact, request, timeout)
        return [Redacted(r.text, _spans(r.spans)) for r in response.results]

    async def redact_stream(
        self,
        chunks: Iterable[str] | AsyncIterable[str],
        *,
        operator: str = "placeholder",
        labels: Sequence[str] | None = None,
        key: bytes | str | None = None,
        keep_placeholders: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[str]:
        """Redacted pieces of a chunked text (sync or async chunks), as the server releases them."""
        requests = _astream_requests(
            chunks, pb.RedactStreamRequest, _stream_options(operator, labels, key, keep_placeholders)
        )
        call = self._stub.RedactStream(
            requests, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
        )
        try:
            async for response in call:
                if response.text:
                    yield response.text
        except grpc.RpcError as e:
            raise _error(e) from None

    async def pseudonymise(
        self,
        texts: str | Iterable[str],
        *,
        mapping: str | None = None,
        scope: str = "",
        labels: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Sealed:
        request = _pseudonymise_request(texts, mapping, scope, labels)
        return _sealed(await self._call(self._stub.Redact, request, timeout))

    async def restore(
        self,
        texts: str | Iterable[str],
        mapping: str,
        *,
        scope: str = "",
        unknown: str = "error",
        timeout: float | None = None,
    ) -> list[Restored]:
        request = _restore_request(texts, mapping, scope, unknown)
        return _restored(await self._call(self._stub.Restore, request, timeout))

    async def restore_stream(
        self,
        chunks: Iterable[str] | AsyncIterable[str],
        mapping: str,
        *,
        scope: str = "",
        unknown: str = "error",
        timeout: float | None = None,
    ) -> AsyncIterator[str]:
        """Restored pieces of a chunked text (sync or async chunks), as the server releases them."""
        requests = _astream_requests(
            chunks, pb.RestoreStreamRequest, _restore_options(mapping, scope, unknown)
        )
        call = self._stub.RestoreStream(
            requests, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
        )
        try:
            async for response in call:
                if response.text:
                    yield response.text
        except grpc.RpcError as e:
            raise _error(e) from None

    async def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._info(await self._call(self._stub.GetInfo, pb.GetInfoRequest(), timeout))

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        r = await self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGuardrailClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
