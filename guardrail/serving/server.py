"""The gRPC sidecar: ``guardrail.v1.Guardrail`` on ``grpc.aio``, a thin adapter over :class:`Guardrail`.

The servicer translates: it checks limits, routes every detection through the micro-:class:`Batcher`
(one model instance, one model thread), redacts with :class:`guardrail.redact.Redactor`, and maps errors
to status codes. Health (``grpc.health.v1``) and server reflection are served beside it, metrics on
their own port. Nothing here logs, counts or echoes request text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import torch
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import guardrail
from guardrail.labels import CANONICAL
from guardrail.pipeline import Guardrail, GuardrailError
from guardrail.redact import OPERATORS, RedactionError, Redactor
from guardrail.serving import guardrail_pb2 as pb
from guardrail.serving import guardrail_pb2_grpc as pb_grpc
from guardrail.serving.batching import (
    Batcher,
    Closed,
    Expired,
    QueueFull,
    StoppableSession,
    checkpoint,
)
from guardrail.serving.metrics import ServingMetrics
from guardrail.serving.settings import ServeSettings
from guardrail.serving.streaming import StreamRedactor
from guardrail.serving.tracing import CURRENT, CallStats, Tracing, tracing_for
from guardrail.spans import Span
from guardrail.vault import RestoreStream, Vault, VaultError, VaultMissing, restore

log = logging.getLogger("guardrail.serving")

SERVICE = pb.DESCRIPTOR.services_by_name["Guardrail"].full_name
"""``guardrail.v1.Guardrail``."""
_HEALTH_PREFIX = "/grpc.health.v1.Health/"


class Invalid(Exception):
    """A request the server refuses to read (INVALID_ARGUMENT); the message never quotes its text."""


class StreamsFull(Exception):
    """As many streams are open as the settings allow (RESOURCE_EXHAUSTED)."""


def _status(e: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and message for an error raised while serving a call."""
    if isinstance(e, VaultMissing):
        return grpc.StatusCode.FAILED_PRECONDITION, str(e)
    if isinstance(e, Invalid | GuardrailError | RedactionError | VaultError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(e)
    if isinstance(e, QueueFull | StreamsFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {e}; retry with backoff"
    if isinstance(e, Expired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(e)
    if isinstance(e, Closed):
        return grpc.StatusCode.UNAVAILABLE, str(e)
    # An unexpected error may carry text in its message: only its type goes out, and to the log.
    log.error("internal error in a call: %s", type(e).__name__)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(e).__name__})"


def _cancelled(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The code of a call that gRPC cancelled: DEADLINE_EXCEEDED when its deadline had passed or was
    within 0.1 s (the client timed out: the server's deadline runs from the request's arrival, a little
    after the client's), else CANCELLED (the client went away)."""
    left = context.time_remaining()
    if left is not None and left <= 0.1:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _at_checkpoint(_module: Any, _args: Any) -> None:
    checkpoint()


class _SessionHook:
    """The handle of an ONNX Runtime session wrapped in a :class:`StoppableSession` (``.remove()``)."""

    def __init__(self, owner: Any, attr: str = "session"):
        self.owner, self.attr = owner, attr
        self.session = getattr(owner, attr)
        setattr(owner, attr, StoppableSession(self.session))

    def remove(self) -> None:
        if isinstance(getattr(self.owner, self.attr), StoppableSession):
            setattr(self.owner, self.attr, self.session)


def checkpoint_hooks(guard: Guardrail) -> list[Any]:
    """Hook ``guard``'s model so that a batch whose callers have all gone stops at its next checkpoint
    (:func:`~guardrail.serving.batching.checkpoint`): forward pre-hooks before each forward pass of the
    torch backbone and each of its blocks (a compiled model: at its forward passes only), and the ONNX
    Runtime sessions (the ``onnx-int8`` backbone, the exported ``onnx`` graph) wrapped in a
    :class:`~guardrail.serving.batching.StoppableSession` (a checkpoint before each window batch, and the
    running call terminated). Returns the hooks' handles (``.remove()``)."""
    hooks: list[Any] = []
    for owner in (guard.backbone, guard.graph):
        session = getattr(owner, "session", None)
        if session is not None and not isinstance(session, StoppableSession):
            hooks.append(_SessionHook(owner))
    model = getattr(guard.backbone, "model", None)
    if not isinstance(model, torch.nn.Module):
        return hooks
    modules = [model]
    if getattr(model, "_orig_mod", None) is None:  # not compiled: traced graphs skip later hooks
        modules += list(getattr(model, "layers", None) or [])
    return hooks + [m.register_forward_pre_hook(_at_checkpoint) for m in modules]


def pb_spans(text: str, spans: Sequence[Span], offset: int = 0, byte_offset: int = 0) -> list[pb.Span]:
    """Spans as messages, with UTF-8 byte offsets into ``text`` (shifted by ``offset``/``byte_offset``).

    ``spans`` index ``text``; the code-point offsets are reported plus ``offset``.
    """
    out: list[pb.Span] = []
    pos = nbytes = 0
    for s in sorted(spans, key=lambda s: s.start):
        start_b = nbytes + len(text[pos : s.start].encode("utf-8", "surrogatepass"))
        end_b = start_b + len(text[s.start : s.end].encode("utf-8", "surrogatepass"))
        pos, nbytes = s.end, end_b
        out.append(
            pb.Span(
                start=s.start + offset,
                end=s.end + offset,
                label=s.label,
                score=s.score,
                start_byte=start_b + byte_offset,
                end_byte=end_b + byte_offset,
                source=s.source,
                features=[
                    pb.Feature(
                        latent=f.latent,
                        activation=f.activation,
                        contribution=f.contribution,
                        description=f.description,
                    )
                    for f in s.features
                ],
            )
        )
    return out


def _observed(method: str):
    """Wrap a unary handler in :meth:`GuardrailService._call`."""

    def wrap(fn: Callable[..., Awaitable[Any]]):
        @functools.wraps(fn)
        async def handler(self: GuardrailService, request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._call(method, context):
                return await fn(self, request, context)

        return handler

    return wrap


class GuardrailService(pb_grpc.GuardrailServicer):
    """``guardrail.v1.Guardrail``: translates messages to :class:`Guardrail` calls and back."""

    def __init__(
        self,
        guard: Guardrail,
        batcher: Batcher,
        settings: ServeSettings,
        metrics: ServingMetrics,
        tracing: Tracing | None = None,
    ):
        self.guard = guard
        self.batcher = batcher
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self.vault = settings.vault()
        self._streams = 0  # RedactStream and RestoreStream calls open now

    @contextlib.asynccontextmanager
    async def _call(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One call, unary or streaming: its :class:`CallStats` in context (the batcher adds to them), its
        errors mapped to status codes, and at the end the call counted (metrics) and traced."""
        stats, code = CallStats(), grpc.StatusCode.OK
        token = CURRENT.set(stats)
        started, start_ns = time.perf_counter(), time.time_ns()
        done = False

        def finish() -> None:
            nonlocal done
            if done:
                return
            done = True
            with contextlib.suppress(ValueError):  # a stream closed from another context: nothing to reset
                CURRENT.reset(token)
            self.metrics.observe_call(method, code.name, time.perf_counter() - started)
            metadata = context.invocation_metadata()
            self.tracing.record(method, start_ns, time.time_ns(), stats, code.name, metadata)

        try:
            yield
        except asyncio.CancelledError:
            code = _cancelled(context)
            raise
        except Exception as e:
            code, message = _status(e)
            finish()  # counted and traced before the caller hears of it, as a call that succeeds is
            await context.abort(code, message)
        finally:
            finish()

    # -- request checks -------------------------------------------------------------------------
    def _check_texts(self, request: Any, texts: Sequence[str]) -> None:
        if (stats := CURRENT.get()) is not None:
            stats.add_texts(texts)  # every unary call with texts passes here first
        s = self.settings
        if (size := request.ByteSize()) > s.max_message_bytes:
            raise Invalid(f"request is {size} bytes; the limit is {s.max_message_bytes}")
        if len(texts) > s.max_texts:
            raise Invalid(f"request has {len(texts)} texts; the limit is {s.max_texts}")
        for i, t in enumerate(texts):
            if len(t) > s.max_text_chars:
                raise Invalid(f"texts[{i}] has {len(t)} characters; the limit is {s.max_text_chars}")

    @staticmethod
    def _labels(labels: Sequence[str]) -> list[str] | None:
        if not labels:
            return None
        if bad := [x for x in labels if x not in CANONICAL]:
            raise Invalid(f"unknown labels {bad}; expected some of {', '.join(CANONICAL)}")
        return list(labels)

    def _redactor(self, r: pb.RedactRequest | pb.StreamOptions) -> Redactor:
        """The redactor of a request (its operator, key, seal, mapping, scope, keep_placeholders); a
        missing hash or vault key, or a bad mapping, fails here, before any model time."""
        operator, keep = r.operator, r.keep_placeholders
        if operator and operator not in OPERATORS:
            raise Invalid(f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}")
        if not (r.seal or r.mapping):
            server_key = self.settings.hash_key.get_secret_value() if self.settings.hash_key else None
            return Redactor(operator or "placeholder", key=r.key or server_key, keep_placeholders=keep)
        # reversible pseudonyms: numbering that goes on from the conversation's previous mapping
        if operator not in ("", "pseudonym"):
            raise Invalid(f"seal and mapping go with the pseudonym operator, not {operator!r}")
        if r.mapping and not r.seal:
            raise Invalid("a previous mapping is only read to seal a new one: set seal")
        pseudonyms = self._vault().open(r.mapping, r.scope) if r.mapping else None
        return Redactor("pseudonym", pseudonyms=pseudonyms, keep_placeholders=keep)

    def _vault(self) -> Vault:
        if self.vault is None:
            raise VaultMissing("this sidecar has no vault key (GUARDRAIL_VAULT_KEY): no seal, no restore")
        return self.vault

    async def _detect(
        self,
        texts: Sequence[str],
        labels: list[str] | None,
        context: grpc.aio.ServicerContext,
        explain: bool = False,
    ) -> list[list[Span]]:
        return await self.batcher.detect(texts, labels, timeout=context.time_remaining(), explain=explain)

    # -- the service ----------------------------------------------------------------------------
    @_observed("Detect")
    async def Detect(self, request: pb.DetectRequest, context: grpc.aio.ServicerContext) -> pb.DetectResponse:
        texts = list(request.texts)
        self._check_texts(request, texts)
        if request.explain and not self.guard.explains:
            raise Invalid(
                f"explanations read SAE features under the torch runtime; this sidecar runs probe "
                f"{self.guard.probe_name!r} on {self.guard.describe()['runtime']} (GetInfo.explanations)"
            )
        found = await self._detect(texts, self._labels(request.labels), context, request.explain)
        return pb.DetectResponse(
            results=[pb.Detection(spans=pb_spans(t, s)) for t, s in zip(texts, found, strict=True)]
        )

    @_observed("Redact")
    async def Redact(self, request: pb.RedactRequest, context: grpc.aio.ServicerContext) -> pb.RedactResponse:
        texts = list(request.texts)
        self._check_texts(request, texts)
        redactor = self._redactor(request)
        found = await self._detect(texts, self._labels(request.labels), context)
        results = []
        for text, spans in zip(texts, found, strict=True):
            done = redactor.redact(text, spans)
            results.append(pb.Redacted(text=done.text, spans=pb_spans(text, done.spans)))
        mapping = self._vault().seal(redactor.pseudonyms, request.scope) if request.seal else ""
        return pb.RedactResponse(results=results, mapping=mapping)

    @_observed("Restore")
    async def Restore(
        self, request: pb.RestoreRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestoreResponse:
        texts = list(request.texts)
        self._check_texts(request, texts)
        pseudonyms = self._vault().open(request.mapping, request.scope)
        unknown = "keep" if request.keep_unknown else "error"
        done = [restore(t, pseudonyms, unknown=unknown) for t in texts]
        return pb.RestoreResponse(
            results=[pb.Restored(text=r.text, restored=r.restored, unknown=r.unknown) for r in done]
        )

    @_observed("GetInfo")
    async def GetInfo(
        self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInfoResponse:
        m = self.guard.bundle.manifest
        s = self.settings
        d = self.guard.describe()
        return pb.GetInfoResponse(
            bundle=d["bundle"],
            backbone=d["backbone"],
            layer=m.backbone.layer,
            labels=list(self.guard.labels),
            version=guardrail.__version__,
            operators=list(OPERATORS),
            max_texts=s.max_texts,
            max_text_chars=s.max_text_chars,
            max_message_bytes=s.max_message_bytes,
            device=d["device"],
            dtype=d["dtype"],
            runtime=d["runtime"],
            probe=d["probe"],
            patterns=self.guard.patterns is not None,
            why=d["why"],
            cpu=d["cpu"],
            vault_key_id=self.vault.key_id if self.vault is not None else "",
            explanations=self.guard.explains,
        )

    async def _streaming(self, method: str, body: AsyncIterator[Any], context: grpc.aio.ServicerContext):
        """Run a bidirectional stream's ``body`` in :meth:`_call`, counted against ``max_streams``."""
        async with self._call(method, context):
            if (limit := self.settings.max_streams) <= self._streams:
                raise StreamsFull(f"{self._streams} streams are open; the limit is {limit}")
            self._streams += 1
            try:
                async for response in body:
                    yield response
            finally:
                self._streams -= 1

    # async generators themselves: grpc.aio tells a streaming handler by its function type
    async def RedactStream(
        self, request_iterator: AsyncIterator[pb.RedactStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RedactStreamResponse]:
        body = self._stream(request_iterator, context)
        async for response in self._streaming("RedactStream", body, context):
            yield response

    async def RestoreStream(
        self, request_iterator: AsyncIterator[pb.RestoreStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RestoreStreamResponse]:
        body = self._restore_stream(request_iterator)
        async for response in self._streaming("RestoreStream", body, context):
            yield response

    async def _restore_stream(
        self, request_iterator: AsyncIterator[pb.RestoreStreamRequest]
    ) -> AsyncIterator[pb.RestoreStreamResponse]:
        stream: RestoreStream | None = None
        n = 0
        try:
            async for request in request_iterator:
                n += 1
                if stream is None:
                    opts = request.options
                    unknown = "keep" if opts.keep_unknown else "error"
                    stream = RestoreStream(self._vault().open(opts.mapping, opts.scope), unknown=unknown)
                elif request.HasField("options"):
                    raise Invalid("options may only be set in the first message of a stream")
                if len(request.chunk) > (limit := self.settings.max_text_chars):
                    raise Invalid(f"a chunk has {len(request.chunk)} characters; the limit is {limit}")
                _count_chunk(request.chunk)
                if piece := stream.feed(request.chunk):
                    yield pb.RestoreStreamResponse(text=piece)
        except DecodeError:
            raise Invalid(
                f"message {n + 1} of the stream could not be read (not a valid RestoreStreamRequest, "
                "e.g. a chunk that is not UTF-8); the stream was stopped there"
            ) from None
        if stream is None:
            raise Invalid("the stream ended before its first message (which carries the mapping)")
        yield pb.RestoreStreamResponse(
            text=stream.finish(), final=True, restored=stream.restored, unknown=stream.unknown
        )

    async def _stream(
        self, request_iterator: AsyncIterator[pb.RedactStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RedactStreamResponse]:
        s = self.settings
        # None: the client's stream ended; an exception: it could not be read further (raised in order,
        # after the chunks before it, so that a broken stream ends with an error, never as a success).
        # Bounded: a client that sends faster than the model redacts is held back by flow control.
        inbox: asyncio.Queue[pb.RedactStreamRequest | Exception | None] = asyncio.Queue(
            s.stream_queue_messages
        )

        async def read() -> None:
            n = 0
            try:
                async for request in request_iterator:
                    n += 1
                    await inbox.put(request)
            except DecodeError:
                await inbox.put(
                    Invalid(
                        f"message {n + 1} of the stream could not be read (not a valid RedactStreamRequest, "
                        "e.g. a chunk that is not UTF-8); the stream was stopped there"
                    )
                )
                return
            except Exception as e:
                await inbox.put(e)
                return
            await inbox.put(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            first = await inbox.get()
            if isinstance(first, Exception):
                raise first
            opts = first.options if first is not None else pb.StreamOptions()
            redactor = self._redactor(opts)
            sealed = (lambda: self._vault().seal(redactor.pseudonyms, opts.scope)) if opts.seal else str
            labels = self._labels(opts.labels)

            async def detect(text: str) -> list[Span]:
                return (await self._detect([text], labels, context))[0]

            max_hold = max(s.stream_hold_chars, 1024)
            stream = StreamRedactor(
                detect,
                redactor,
                hold_words=s.stream_hold_words,
                hold_chars=s.stream_hold_chars,
                max_hold_chars=max_hold,
                window_chars=max(s.stream_window_chars, 2 * (s.stream_context_chars + max_hold)),
                context_chars=s.stream_context_chars,
            )
            bytes_out = 0  # UTF-8 bytes of the input released so far: the byte offset of the next piece
            pending: list[pb.RedactStreamRequest | Exception | None] = [first]
            while True:
                # chunks that came in while the model ran: one detection for all, up to a window's worth
                # (the rest waits in the bounded inbox, and then in the client)
                buffered = sum(len(r.chunk) for r in pending if isinstance(r, pb.RedactStreamRequest))
                while not inbox.empty() and stream.pending + buffered < stream.window_chars:
                    request = inbox.get_nowait()
                    pending.append(request)
                    if isinstance(request, pb.RedactStreamRequest):
                        buffered += len(request.chunk)
                ended = False
                for request in pending:
                    if request is None:
                        ended = True
                        break
                    if isinstance(request, Exception):
                        raise request  # what was fed but not released is dropped: never sent unredacted
                    if request is not first and request.HasField("options"):
                        raise Invalid("options may only be set in the first message of a stream")
                    if len(request.chunk) > s.max_text_chars:
                        raise Invalid(
                            f"a chunk has {len(request.chunk)} characters; the limit is {s.max_text_chars}"
                        )
                    stream.feed(request.chunk)
                    _count_chunk(request.chunk)
                pending = []
                piece = await stream.finish() if ended else await stream.release()
                if piece is not None:
                    start = piece.consumed - len(piece.source)
                    local = [
                        Span(x.start - start, x.end - start, x.label, x.score, x.source) for x in piece.spans
                    ]
                    yield pb.RedactStreamResponse(
                        text=piece.text,
                        spans=pb_spans(piece.source, local, offset=start, byte_offset=bytes_out),
                        consumed=piece.consumed,
                        final=ended,
                        mapping=sealed() if ended else "",
                    )
                    bytes_out += len(piece.source.encode("utf-8", "surrogatepass"))
                elif ended:
                    yield pb.RedactStreamResponse(consumed=stream.consumed, final=True, mapping=sealed())
                if ended:
                    return
                pending.append(await inbox.get())
        finally:
            reader.cancel()


def _count_chunk(chunk: str) -> None:
    """A stream's characters in its call's stats (a stream counts as one text)."""
    if (stats := CURRENT.get()) is not None:
        stats.texts = 1
        stats.chars += len(chunk)


class _Gate(grpc.aio.ServerInterceptor):
    """What every call passes before its body is read.

    With a token: the bearer token, from the metadata (health checks pass without: orchestrators probe
    without credentials); a refused call's body is never read, however large. Then a unary request that
    does not parse (not protobuf, a string that is not UTF-8) is answered INVALID_ARGUMENT with one log
    line, where gRPC would answer UNKNOWN and log a traceback. Streams read their messages themselves
    (see ``GuardrailService._stream``).
    """

    def __init__(self, token: str | None, metrics: ServingMetrics):
        self._expected = f"Bearer {token}".encode() if token else None
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if self._expected is not None and not method.startswith(_HEALTH_PREFIX):
            given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
            given_bytes = given.encode() if isinstance(given, str) else bytes(given)
            if not hmac.compare_digest(given_bytes, self._expected):
                self._metrics.observe_call(method.rsplit("/", 1)[-1], "UNAUTHENTICATED", 0.0)
                return _refusal(handler)
        if handler.request_streaming:
            return handler
        return _lenient(handler, method, self._metrics)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler that answers UNAUTHENTICATED without reading the request: request-streaming whatever
    ``handler`` is (the wire is the same), so that no message is received, let alone parsed."""
    message = "missing or wrong bearer token (metadata 'authorization: Bearer <token>')"

    async def unary(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(_requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield None  # pragma: no cover - abort raises

    kw = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **kw)
    return grpc.stream_unary_rpc_method_handler(unary, **kw)


_UNREADABLE = object()
"""What the request deserializer gives for bytes that do not parse."""


def _lenient(handler: grpc.RpcMethodHandler, method: str, metrics: ServingMetrics) -> grpc.RpcMethodHandler:
    """``handler`` (unary request) with a deserializer that does not raise and an answer for what it could
    not read: INVALID_ARGUMENT, counted, one log line that names the method only."""
    deserialize = handler.request_deserializer
    behavior = handler.unary_unary or handler.unary_stream

    def read(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize is not None else data
        except DecodeError:
            return _UNREADABLE

    async def refuse(context: grpc.aio.ServicerContext) -> None:
        log.warning("%s: a request that is not a valid message; answered INVALID_ARGUMENT", method)
        metrics.observe_call(method.rsplit("/", 1)[-1], grpc.StatusCode.INVALID_ARGUMENT.name, 0.0)
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request could not be read: not a valid protobuf message of its type, or a string field "
            "that is not UTF-8",
        )

    kw = {"request_deserializer": read, "response_serializer": handler.response_serializer}
    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is _UNREADABLE:
                await refuse(context)
            return await behavior(request, context)

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(call, **kw)
        return grpc.unary_stream_rpc_method_handler(call, **kw)
    if inspect.isasyncgenfunction(behavior):

        async def responses(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request is _UNREADABLE:
                await refuse(context)
            async for response in behavior(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(responses, **kw)
    return handler  # a synchronous handler (none here): gRPC's own handling


def _read(path: Any) -> bytes:
    with open(path, "rb") as f:
        return f.read()


STOP_WAIT_S = 3.0
"""After the grace period: how long a stop waits for the model to reach a checkpoint (then the model's
daemon thread is left behind; the process exits without it)."""


class Sidecar:
    """One server: the service, health, reflection, the batcher and (optionally) the metrics endpoint."""

    def __init__(
        self, guard: Guardrail, settings: ServeSettings | None = None, tracing: Tracing | None = None
    ):
        self.guard = guard
        self.settings = settings or ServeSettings()
        self.metrics = ServingMetrics()
        self.tracing = tracing if tracing is not None else tracing_for(self.settings.otlp_endpoint)
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._metrics_http: Any = None
        self._batcher: Batcher | None = None
        self._hooks: list[Any] = []

    @property
    def batcher(self) -> Batcher:
        assert self._batcher is not None, "start() first"
        return self._batcher

    def _detect(self, texts: list[str], labels: list[str] | None, explain: bool = False) -> list[list[Span]]:
        # all windows of the batch in one forward pass when the budget allows
        # the pattern stage and tokenisation stop an abandoned batch too (the model: checkpoint_hooks)
        return self.guard.detect(
            texts,
            labels=labels,
            batch_size=max(16, self.settings.max_batch_texts),
            checkpoint=checkpoint,
            explain=explain,
        )

    async def start(self) -> int:
        """Bind, start serving (health SERVING), return the gRPC port."""
        s = self.settings
        if s.exposed_token and not s.allow_insecure:  # settings changed after their validation
            raise ValueError("a bearer token over plaintext on a non-loopback address needs allow_insecure")
        d = self.guard.describe()
        self.metrics.set_build(
            version=guardrail.__version__,
            **{k: d[k] for k in ("bundle", "probe", "device", "dtype", "runtime", "why", "cpu")},
        )
        self._batcher = Batcher(
            self._detect,
            max_batch_texts=s.max_batch_texts,
            max_batch_chars=s.max_batch_chars,
            max_wait_s=s.max_wait_ms / 1000,
            queue_texts=s.queue_texts,
            metrics=self.metrics,
        )
        self._batcher.start()
        self._hooks = checkpoint_hooks(self.guard)
        token = s.auth_token.get_secret_value() if s.auth_token else None
        server = grpc.aio.server(
            interceptors=[_Gate(token, self.metrics)],
            options=[
                # past our own limit a request still arrives (INVALID_ARGUMENT with a reason); past 4x
                # gRPC refuses it unread (RESOURCE_EXHAUSTED)
                ("grpc.max_receive_message_length", 4 * s.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_GuardrailServicer_to_server(
            GuardrailService(self.guard, self._batcher, s, self.metrics, self.tracing), server
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        address = f"{s.host}:{s.port}"
        if s.tls:
            creds = grpc.ssl_server_credentials(
                [(_read(s.tls_key), _read(s.tls_cert))],
                root_certificates=_read(s.tls_client_ca) if s.tls_client_ca else None,
                require_client_auth=s.tls_client_ca is not None,
            )
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
        if not port:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self._server, self.port = server, port
        if s.metrics_port is not None:
            self._metrics_http = self.metrics.serve_http(s.metrics_port, s.metrics_host)
            self.metrics_port = self._metrics_http.server_port
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, drain_s: float | None = None, grace_s: float | None = None) -> bool:
        """Graceful stop: health NOT_SERVING, ``drain_s`` of notice, refuse new calls, let in-flight
        calls finish for up to ``grace_s``; then cancel what is left (queued work is dropped, the running
        batch stops at the model's next checkpoint, waited for at most ``STOP_WAIT_S``) and stop the
        metrics endpoint. Returns within ``drain_s + grace_s + STOP_WAIT_S`` (and a little): True, or
        False when a model call was left running (in its daemon thread)."""
        s = self.settings
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        drain = s.drain_s if drain_s is None else drain_s
        if drain > 0:
            await asyncio.sleep(drain)
        if self._server is not None:
            await self._server.stop(s.grace_s if grace_s is None else grace_s)
        idle = True
        if self._batcher is not None:
            idle = await self._batcher.close(wait_s=STOP_WAIT_S)
        if idle:
            for hook in self._hooks:
                hook.remove()
            self._hooks = []
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None
        self.tracing.shutdown()
        return idle


class SidecarThread:
    """A :class:`Sidecar` on its own event loop in a background thread (tests, or a sync application).

    >>> with SidecarThread(guard, ServeSettings(port=0)) as sidecar:
    ...     client = GuardrailClient(f"127.0.0.1:{sidecar.port}")
    """

    def __init__(
        self, guard: Guardrail, settings: ServeSettings | None = None, tracing: Tracing | None = None
    ):
        self.sidecar = Sidecar(guard, settings, tracing)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="guardrail-sidecar", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        assert self.sidecar.port is not None
        return self.sidecar.port

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sidecar.start())
        except BaseException as e:
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> SidecarThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self, drain_s: float | None = None, grace_s: float | None = None) -> None:
        """Graceful stop (see :meth:`Sidecar.stop`); blocks until the thread has ended."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.sidecar.stop(drain_s, grace_s), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SidecarThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace_s=1.0)


def serve(settings: ServeSettings) -> int:
    """``guardrail serve``: load the model, serve until SIGTERM/SIGINT, stop gracefully; returns 0."""
    guard = Guardrail.load(
        settings.bundle,
        device=settings.device,
        dtype=settings.dtype,
        runtime=settings.runtime,
        compile=settings.compile,
        model=settings.model,
        patterns=settings.patterns,
        onnx_dir=settings.onnx_dir,
    )
    if settings.warmup:
        guard.warmup()
    return serve_guard(guard, settings)


def serve_guard(guard: Guardrail, settings: ServeSettings) -> int:
    """Serve ``guard`` until SIGTERM/SIGINT, then stop within ``drain_s + grace_s + STOP_WAIT_S``;
    returns 0 (or leaves the process with 0 when a model call could not be stopped)."""
    code, idle = asyncio.run(_serve(guard, settings))
    if not idle:
        # A model call that reached no checkpoint is still running in its daemon thread: the interpreter's
        # exit would wait on, or abort in, the native code it runs. Leave now, everything said and flushed.
        print("guardrail serve: a model call still running was abandoned", file=sys.stderr, flush=True)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


async def _serve(guard: Guardrail, settings: ServeSettings) -> tuple[int, bool]:
    """Serve until SIGTERM/SIGINT; returns the exit code and whether the model was left idle."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sidecar = Sidecar(guard, settings)
    port = await sidecar.start()
    scheme = "tls" if settings.tls else "plaintext"
    metrics = ""
    if sidecar.metrics_port:
        metrics = f", metrics on :{sidecar.metrics_port}/metrics ({settings.metrics_host})"
    print(
        f"guardrail serve: listening on {settings.host}:{port} ({scheme}){metrics}",
        file=sys.stderr,
        flush=True,
    )
    if settings.exposed_token:  # allowed with allow_insecure only (see ServeSettings)
        print(
            "guardrail serve: warning: the bearer token travels in plaintext (--allow-insecure)",
            file=sys.stderr,
            flush=True,
        )
    log.info("settings: %s", settings.public())
    await stop.wait()
    print("guardrail serve: stopping (NOT_SERVING, finishing in-flight calls)", file=sys.stderr, flush=True)
    idle = await sidecar.stop()
    print("guardrail serve: stopped", file=sys.stderr, flush=True)
    return 0, idle
