"""LiteLLM guardrail: reversible pseudonyms around every model call, through the guardrail sidecar.

In the LiteLLM proxy's ``config.yaml`` (README, "LiteLLM")::

    guardrails:
      - guardrail_name: pii-pseudonyms
        litellm_params:
          guardrail: guardrail.integrations.litellm.SidecarGuardrail
          mode: [pre_call, post_call]
          default_on: true

What each LiteLLM mode does here:

- ``pre_call`` (:meth:`SidecarGuardrail.async_pre_call_hook`): the text of every chat message (a string
  ``content``, the ``text`` of ``type: text`` parts, tool-call arguments; other parts such as images are
  left alone) and Anthropic's top-level ``system`` are pseudonymised in one sidecar call (``Redact`` with
  ``seal``), so one value gets one placeholder (``<PERSON_1>``) across the whole conversation. The sealed
  mapping goes into the request's metadata (:data:`MAPPING_KEY`, :data:`SCOPE_KEY`), which LiteLLM hands
  to the post-call hooks. A request carrying other text fields (``prompt``, ``input``, ``instructions``)
  is refused rather than forwarded raw.
- ``post_call``: the answer's message contents and tool-call arguments are restored
  (:meth:`~SidecarGuardrail.async_post_call_success_hook`, ``Restore``); a streamed answer is restored
  as it streams (:meth:`~SidecarGuardrail.async_post_call_streaming_iterator_hook`, ``RestoreStream``:
  a placeholder split across chunks comes out whole). LiteLLM runs the streaming iterator hook of
  ``post_call`` guardrails. With ``redact_output: true`` the model's output is first redacted
  (``Redact`` / ``RedactStream``, ``[PERSON]``), so PII the model produced itself (from its training
  data, a tool, a guess) never reaches the caller while the caller's own values come back.
- ``during_call`` is refused at start-up: LiteLLM runs it alongside the model call, which has by then
  received the request, so it could only block, never pseudonymise.

Across turns: the response carries the sealed mapping and its scope as headers (:data:`MAPPING_HEADER`,
:data:`SCOPE_HEADER`; in the SDK, the request's own ``metadata`` dict holds them). A caller that sends
them back (``metadata.guardrail_mapping``) with a session id (``litellm_session_id`` or
``metadata.session_id``, the mapping's scope) keeps each value's pseudonym; without a session id each
request is its own scope. The mapping is sealed (AES-GCM under the sidecar's ``GUARDRAIL_VAULT_KEY``),
so LiteLLM's metadata, logs and headers learn nothing from it; it is still a key to its values, to be
kept like the conversation itself.

It fails closed: a sidecar that is down, slow or refuses (a tampered, expired or foreign mapping) makes
the hook raise :class:`GuardrailSidecarError` (LiteLLM's ``GuardrailRaisedException``), so LiteLLM answers
an error and raw text is never sent upstream. No message or log line of this module holds request text.
Placeholders in the answer that the mapping does not hold (a model inventing ``<PERSON_7>``) are kept as
they are (``unknown: keep``; ``error`` refuses such an answer).

Connection (``litellm_params``, else the environment): ``api_base`` (``host:port``, ``grpc://`` or
``grpcs://``; :data:`TARGET_ENV`, default ``127.0.0.1:50051``), ``api_key`` (the sidecar's bearer token;
:data:`TOKEN_ENV`), ``tls`` (:data:`TLS_ENV`), ``root_certificates`` (a PEM path; :data:`CA_ENV`, implies
TLS), ``private_key`` and ``certificate_chain`` (mutual TLS), ``timeout`` (seconds per sidecar call,
default 10) and ``retries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from litellm.caching import DualCache
from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import (
    CustomGuardrail,
    get_session_id_from_request_data,
    log_guardrail_information,
)
from litellm.litellm_core_utils.core_helpers import (
    get_metadata_variable_name_from_kwargs,
    get_or_create_metadata_bucket,
)
from litellm.types.guardrails import GuardrailEventHooks
from litellm.types.proxy.auth.user_api_key_auth import UserAPIKeyAuth
from litellm.types.utils import ModelResponse, ModelResponseStream
from pydantic import BaseModel

from guardrail.client import AsyncGuardrailClient, SidecarError
from guardrail.vault import UNKNOWN

TARGET_ENV = "GUARDRAIL_SIDECAR"
"""The sidecar's address when ``api_base`` is not given."""
TOKEN_ENV = "GUARDRAIL_AUTH_TOKEN"
"""The sidecar's bearer token when ``api_key`` is not given (the variable ``guardrail serve`` reads)."""
TLS_ENV = "GUARDRAIL_SIDECAR_TLS"
"""``true``: TLS with the system's roots when ``tls`` is not given."""
CA_ENV = "GUARDRAIL_SIDECAR_CA"
"""PEM file of the roots that sign the sidecar's certificate when ``root_certificates`` is not given."""
DEFAULT_TARGET = "127.0.0.1:50051"

MAPPING_KEY = "guardrail_mapping"
"""Request metadata key of the sealed mapping: the caller's previous one in, this request's out."""
SCOPE_KEY = "guardrail_scope"
"""Request metadata key of the scope the mapping was sealed for (set by the pre-call hook)."""
MAPPING_HEADER = "x-guardrail-mapping"
"""Response header with the request's sealed mapping (for the caller's next turn)."""
SCOPE_HEADER = "x-guardrail-scope"
"""Response header with the scope of :data:`MAPPING_HEADER`."""

MODES = (GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call)
"""The LiteLLM modes this guardrail runs in (``during_call`` cannot keep text from the model)."""

UNHANDLED_FIELDS = ("prompt", "input", "instructions")
"""Request fields with text that the pre-call hook does not pseudonymise: such requests are refused."""

_STATUS = {
    "INVALID_ARGUMENT": 400,  # a tampered, expired or foreign mapping, a text over the sidecar's limits
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_TRUE = ("1", "true", "yes", "on")

log = logging.getLogger(__name__)
Rewrite = Callable[[str], str]


class GuardrailSidecarError(GuardrailRaisedException):
    """The sidecar failed or refused (``code``: its gRPC status name); the request fails closed.

    ``status_code`` is what the LiteLLM proxy answers: 400 for a bad mapping, 429, 503 or 504 for an
    overloaded, unreachable or slow sidecar, 500 otherwise. The message holds no request text.
    """

    def __init__(self, guardrail_name: str | None, stage: str, code: str, detail: str):
        super().__init__(
            guardrail_name=guardrail_name,
            message=f"{stage}: guardrail sidecar {code}: {detail}",
            status_code=_STATUS.get(code, 500),
        )
        self.code = code


class SidecarGuardrail(CustomGuardrail):
    """A LiteLLM ``CustomGuardrail`` that pseudonymises requests and restores answers through the
    guardrail sidecar (``guardrail serve`` with ``GUARDRAIL_VAULT_KEY``); see the module's docstring.

    LiteLLM's proxy builds it from ``config.yaml`` (``guardrail_name``, ``event_hook`` = ``mode``,
    ``default_on`` and the other ``litellm_params``); in the SDK, put an instance in ``litellm.callbacks``
    and name it in a call's ``guardrails=[...]``. ``labels``: what to pseudonymise (default: the bundle's).
    ``unknown``: ``keep`` or ``error`` for answer placeholders the mapping does not hold.
    ``redact_output``: also redact PII the model's output brings that the mapping does not.
    """

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        tls: bool | str | None = None,
        root_certificates: str | Path | None = None,
        private_key: str | Path | None = None,
        certificate_chain: str | Path | None = None,
        retries: int = 2,
        labels: Sequence[str] | None = None,
        unknown: str = "keep",
        redact_output: bool = False,
        **kwargs: Any,
    ):
        if kwargs.get("unreachable_fallback") == "fail_open":
            raise ValueError("SidecarGuardrail fails closed: unreachable_fallback 'fail_open' is refused")
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {', '.join(UNKNOWN)}")
        kwargs["supported_event_hooks"] = list(MODES)
        if kwargs.get("event_hook") is None:
            kwargs["event_hook"] = [m.value for m in MODES]
        super().__init__(**kwargs)
        self.target, scheme_tls = _target(api_base or os.environ.get(TARGET_ENV) or DEFAULT_TARGET)
        ca = root_certificates or os.environ.get(CA_ENV) or None
        self.tls = scheme_tls or _flag(tls if tls is not None else os.environ.get(TLS_ENV)) or ca is not None
        self._pems = tuple(Path(p).read_bytes() if p else None for p in (ca, private_key, certificate_chain))
        self._token = api_key or os.environ.get(TOKEN_ENV) or None
        self.retries = retries
        self.labels = list(labels) if labels else None
        self.unknown = unknown
        self.redact_output = _flag(redact_output)
        self._clients: dict[asyncio.AbstractEventLoop, AsyncGuardrailClient] = {}

    def __repr__(self) -> str:  # never the token
        return f"SidecarGuardrail(name={self.guardrail_name!r}, target={self.target!r}, tls={self.tls})"

    @classmethod
    def get_supported_event_hooks(cls) -> list[GuardrailEventHooks]:
        return list(MODES)

    # ---- the sidecar ----------------------------------------------------------------------------------

    def client(self) -> AsyncGuardrailClient:
        """The sidecar client of the running event loop (a ``grpc.aio`` channel belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]
            ca, key, chain = self._pems
            self._clients[loop] = AsyncGuardrailClient(
                self.target,
                timeout=float(self.timeout or 10.0),
                retries=self.retries,
                token=self._token,
                tls=self.tls,
                root_certificates=ca,
                private_key=key,
                certificate_chain=chain,
            )
        return self._clients[loop]

    async def aclose(self) -> None:
        """Close the running loop's sidecar channel."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def _refused(self, stage: str, e: SidecarError) -> GuardrailSidecarError:
        log.warning("guardrail sidecar at %s failed %s: %s", self.target, stage, e.code.name)
        return GuardrailSidecarError(self.guardrail_name, stage, e.code.name, e.message)

    async def _call(self, stage: str, call: Any) -> Any:
        try:
            return await call
        except SidecarError as e:
            raise self._refused(stage, e) from None

    async def _output(self, texts: list[str], mapping: str | None, scope: str) -> list[str]:
        """The model's ``texts`` as the caller gets them: redacted (``redact_output``; ``Redact`` keeping
        the placeholders, which a detector may read as names), then restored (``Restore``)."""
        if not texts:
            return texts
        c = self.client()
        if self.redact_output:
            call = c.redact(texts, labels=self.labels, keep_placeholders=True)
            texts = [r.text for r in await self._call("post_call redact", call)]
        if mapping:
            restored = await self._call(
                "post_call restore", c.restore(texts, mapping, scope=scope, unknown=self.unknown)
            )
            texts = [r.text for r in restored]
        return texts

    async def _output_stream(
        self, texts: AsyncIterable[str], mapping: str | None, scope: str
    ) -> AsyncIterator[str]:
        """:meth:`_output` of a streamed text, piece by piece (``RedactStream``, ``RestoreStream``)."""
        c = self.client()
        pieces: AsyncIterable[str] = texts
        if self.redact_output:
            pieces = c.redact_stream(pieces, labels=self.labels, keep_placeholders=True)
        if mapping:
            pieces = c.restore_stream(pieces, mapping, scope=scope, unknown=self.unknown)
        try:
            async with contextlib.aclosing(pieces) as stream:
                async for piece in stream:
                    yield piece
        except SidecarError as e:
            raise self._refused("post_call stream", e) from None

    # ---- LiteLLM hooks --------------------------------------------------------------------------------

    @log_guardrail_information
    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict, call_type: str
    ) -> dict:
        """Pseudonymise the request's messages; keep the sealed mapping and its scope in its metadata."""
        unhandled = [f for f in UNHANDLED_FIELDS if data.get(f)]
        if unhandled:
            raise GuardrailRaisedException(
                guardrail_name=self.guardrail_name,
                message=f"pre_call: {call_type} requests with {', '.join(unhandled)} are not pseudonymised; "
                "refused rather than sent upstream",
            )
        texts: list[str] = []
        _rewrite_request(data, _collect(texts))  # reads only
        previous = _mapping(data)[0]
        scope = get_session_id_from_request_data(data) or str(data.get("litellm_call_id") or uuid.uuid4())
        if not texts and not previous:
            return data
        sealed = await self._call(
            "pre_call", self.client().pseudonymise(texts, mapping=previous, scope=scope, labels=self.labels)
        )
        data.update(_rewrite_request(data, _replay([r.text for r in sealed.results])))
        metadata = get_or_create_metadata_bucket(data)[1]
        metadata[MAPPING_KEY] = sealed.mapping
        metadata[SCOPE_KEY] = scope
        return data

    async def async_post_call_success_hook(
        self, data: dict, user_api_key_dict: UserAPIKeyAuth, response: Any
    ) -> Any:
        """A copy of a chat answer with its placeholders restored (and its own PII redacted with
        ``redact_output``); the upstream's response object is left as it is."""
        mapping, scope = _mapping(data)
        if not isinstance(response, ModelResponse) or not (mapping or self.redact_output):
            return response
        answer = copy.deepcopy(response)
        texts: list[str] = []
        _rewrite_answer(answer, _collect(texts))
        _rewrite_answer(answer, _replay(await self._output(texts, mapping, scope)))
        return answer

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: UserAPIKeyAuth, response: Any, request_data: dict
    ) -> AsyncIterator[ModelResponseStream]:
        """The streamed answer with placeholders restored as they complete (and the model's own PII
        redacted with ``redact_output``); see :func:`_restored_chunks`."""
        mapping, scope = _mapping(request_data)
        if not (mapping or self.redact_output):
            async for chunk in response:
                yield chunk
            return
        stream = _restored_chunks(response, lambda texts: self._output_stream(texts, mapping, scope))
        async for chunk in stream:
            yield chunk

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: UserAPIKeyAuth,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        """The sealed mapping and its scope as response headers, for the caller's next turn."""
        mapping, scope = _mapping(data)
        return {MAPPING_HEADER: mapping, SCOPE_HEADER: scope} if mapping else None


# ---- the request's and the answer's texts ----------------------------------------------------------------


def _collect(into: list[str]) -> Rewrite:
    """A rewrite that appends each text to ``into`` and changes nothing."""

    def read(text: str) -> str:
        into.append(text)
        return text

    return read


def _replay(texts: Sequence[str]) -> Rewrite:
    """A rewrite that gives back ``texts`` in order (the texts a :func:`_collect` pass read, changed)."""
    it = iter(texts)
    return lambda _: next(it)


def _as_dict(x: Any) -> dict[str, Any]:
    if isinstance(x, Mapping):
        return dict(x)
    if isinstance(x, BaseModel):
        return x.model_dump(exclude_none=True)
    raise GuardrailRaisedException(message=f"pre_call: a message of type {type(x).__name__} cannot be read")


def _rewrite_content(content: Any, fn: Rewrite) -> Any:
    """A string, or a list of parts whose ``type: text`` parts are rewritten (others are kept)."""
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        return [
            {**p, "text": fn(p["text"])}
            if isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
            else p
            for p in content
        ]
    return content


def _rewrite_tool_call(call: Any, fn: Rewrite) -> Any:
    call = _as_dict(call)
    function = call.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
        call["function"] = {**function, "arguments": fn(function["arguments"])}
    return call


def _rewrite_message(message: Any, fn: Rewrite) -> dict[str, Any]:
    """A copy of a chat message with its texts rewritten: content and tool-call arguments."""
    m = _as_dict(message)
    if "content" in m:
        m["content"] = _rewrite_content(m["content"], fn)
    if isinstance(m.get("tool_calls"), list):
        m["tool_calls"] = [_rewrite_tool_call(c, fn) for c in m["tool_calls"]]
    return m


def _rewrite_request(data: Mapping[str, Any], fn: Rewrite) -> dict[str, Any]:
    """New ``messages`` and ``system`` for ``data`` with their texts rewritten (``data`` is not changed)."""
    out: dict[str, Any] = {}
    if isinstance(data.get("messages"), list):
        out["messages"] = [_rewrite_message(m, fn) for m in data["messages"]]
    if data.get("system") is not None:
        out["system"] = _rewrite_content(data["system"], fn)
    return out


def _rewrite_answer(answer: ModelResponse, fn: Rewrite) -> None:
    """Rewrite, in place, the texts of a chat answer: each choice's content and tool-call arguments."""
    for choice in answer.choices:
        message = getattr(choice, "message", None)
        if message is None:
            continue
        if isinstance(message.content, str):
            message.content = fn(message.content)
        for call in getattr(message, "tool_calls", None) or ():
            if isinstance(call.function.arguments, str):
                call.function.arguments = fn(call.function.arguments)


def _mapping(data: Mapping[str, Any]) -> tuple[str | None, str]:
    """The sealed mapping and scope that the request's metadata carries (``None``, '' if none)."""
    metadata = data.get(get_metadata_variable_name_from_kwargs(data))
    if not isinstance(metadata, Mapping):
        return None, ""
    mapping = metadata.get(MAPPING_KEY)
    scope = metadata.get(SCOPE_KEY) or get_session_id_from_request_data(data) or ""
    return (mapping if isinstance(mapping, str) and mapping else None), str(scope)


# ---- streams ---------------------------------------------------------------------------------------------


def _delta_text(chunk: ModelResponseStream) -> str | None:
    """The text of a streamed chunk's only choice (streams of several choices are refused)."""
    if len(chunk.choices) > 1 or any(c.index for c in chunk.choices):
        raise GuardrailRaisedException(message="post_call: a stream of several choices (n > 1) is refused")
    delta = chunk.choices[0].delta if chunk.choices else None
    text = getattr(delta, "content", None)
    return text if isinstance(text, str) and text else None


def _without_text(chunk: ModelResponseStream) -> ModelResponseStream | None:
    """A copy of a chunk whose text went into the stream, if it carries more (an end, usage, tool calls)."""
    choice = chunk.choices[0]
    more = choice.finish_reason or getattr(chunk, "usage", None) or getattr(choice.delta, "tool_calls", None)
    if not more:
        return None
    rest = copy.deepcopy(chunk)
    rest.choices[0].delta.content = None
    rest.choices[0].delta.role = None
    return rest


def _piece(template: ModelResponseStream, text: str, first: bool) -> ModelResponseStream:
    """A chunk like ``template`` (the first chunk with text) holding ``text``."""
    chunk = copy.deepcopy(template)
    choice = chunk.choices[0]
    choice.delta.content = text
    choice.finish_reason = None
    if not first:
        choice.delta.role = None
    if getattr(chunk, "usage", None) is not None:
        del chunk.usage
    return chunk


async def _restored_chunks(
    response: AsyncIterable[ModelResponseStream],
    transform: Callable[[AsyncIterable[str]], AsyncIterator[str]],
) -> AsyncIterator[ModelResponseStream]:
    """The chunks of ``response`` with their text passed through ``transform`` (a sidecar stream).

    Chunks without text before the first text (the role) come first; the text comes out as the sidecar
    releases it, in chunks like the first one with text; then the rest of what chunks carried besides
    text (tool-call deltas, the finish reason, usage), in order. An upstream failure ends the text stream
    (what the sidecar holds is flushed) and is raised after it.
    """
    head: list[ModelResponseStream] = []
    tail: list[ModelResponseStream] = []
    template: list[ModelResponseStream] = []
    failed: list[BaseException] = []

    async def texts() -> AsyncIterator[str]:
        try:
            async for chunk in response:
                text = _delta_text(chunk)
                if text is None:
                    (tail if template else head).append(chunk)
                    continue
                if not template:
                    template.append(chunk)
                if (rest := _without_text(chunk)) is not None:
                    tail.append(rest)
                yield text
        except Exception as e:
            failed.append(e)

    first = True
    async with contextlib.aclosing(transform(texts())) as pieces:  # the sidecar call ends with the consumer
        async for piece in pieces:
            while head:
                yield head.pop(0)
            yield _piece(template[0], piece, first)
            first = False
    for chunk in (*head, *tail):
        yield chunk
    if failed:
        raise failed[0]


# ---- configuration ---------------------------------------------------------------------------------------


def _flag(x: bool | str | None) -> bool:
    return x if isinstance(x, bool) else str(x or "").strip().lower() in _TRUE


def _target(address: str) -> tuple[str, bool]:
    """``host:port`` and whether the scheme asked for TLS (``grpcs://``)."""
    scheme, sep, rest = address.strip().partition("://")
    if not sep:
        return scheme, False
    if scheme not in ("grpc", "grpcs"):
        raise ValueError(f"the sidecar's address is host:port, grpc:// or grpcs://, not {scheme}://")
    return rest.rstrip("/"), scheme == "grpcs"
