"""LangChain: runnables that pseudonymise a model's input and restore its answer (redact | model | restore).

>>> session = PseudonymSession(Guardrail.load(), scope="conversation-42")  # or "127.0.0.1:50051": sidecar
>>> chain = session.redact | model | session.restore                       # any chat model or LLM
>>> chain.invoke("please call Ana Silva").content     # the model read "please call <PERSON_1>"
'... Ana Silva ...'

:class:`GuardrailRedact` replaces each value with its pseudonym (``<PERSON_1>``, the ``pseudonym``
operator) and seals the mapping back; :class:`GuardrailRestore` puts the values back into what the model
wrote, also while it streams (a placeholder split across chunks comes out whole). Both are LangChain
runnables (``RunnableSerializable``): ``invoke``, ``ainvoke``, ``batch``, ``abatch``, ``stream``,
``astream``, ``transform``, ``atransform``, callbacks and tracing as any runnable.

**Where the mapping travels.** A chain ``redact | model | restore`` passes the model's input and answer
from step to step and nothing else, so the sealed mapping cannot ride along with the data without making
the user rewrite the chain (``RunnablePassthrough.assign`` plumbing around the model). It lives instead in
a :class:`PseudonymSession`: one conversation's state, its ``scope`` (the conversation id the mapping is
bound to) and its latest sealed mapping. ``session.redact`` and ``session.restore`` are the two runnables
bound to it. Each turn's redaction passes the session's mapping on, so a value keeps its pseudonym across
turns (``Ana Silva`` is ``<PERSON_1>`` in every turn) and the mapping only grows; restoring uses the
latest one, which holds every pseudonym the session has handed out. Concurrent invocations of one session
are safe: their redactions take turns (a lock for threads, one per event loop for tasks; held for the
guardrail call only, not the model's), and across threads and loops at once a redaction commits its new
mapping only if no other committed in between (compare and swap; otherwise it is redone on the newer
mapping). So two turns never give one number to two values, and restoring with the latest mapping is
right for every turn of the session.

**What is shared.** A session is one conversation: everything invoked through its runnables shares its
pseudonyms, which is what a conversation wants and what two users must not do. An application serving
many conversations builds the chain once and hands each invocation its conversation's session in the
config, LangChain's way of passing per-invocation state (as ``RunnableWithMessageHistory`` does with
``session_id``): ``chain.invoke(text, config=session.config())``, i.e.
``{"configurable": {"pseudonym_session": session}}``; both runnables read it there before falling back to
the session they were built from. ``session.new(scope)`` makes another conversation's session over the same
guardrail (one model, one sidecar connection); the sealed ``session.mapping`` is the whole state, safe to
store anywhere, and ``PseudonymSession(..., scope=..., mapping=stored)`` resumes it.

**Backends.** A :class:`~guardrail.pipeline.Guardrail` runs in-process and seals with
``GUARDRAIL_VAULT_KEY`` (or ``vault=``); its async paths run the model in a worker thread
(``asyncio.to_thread``). The sidecar (``guardrail serve``, holding the key) is reached through a
:class:`~guardrail.client.GuardrailClient`, an :class:`~guardrail.client.AsyncGuardrailClient`, or an
address (``host:port``, clients made here with ``client_options``: blocking for the sync paths, an async one
per event loop for the async paths). Both backends give the same text.

**Shapes.** The redact runnable takes a ``str``, a message, a list of messages, a ``PromptValue`` (what a
prompt template yields) or a dict (what a prompt template takes: every ``str``, message or list value;
numbers, booleans and ``None`` pass as they are) and returns the same shape, all texts of one input
pseudonymised in one call. Messages of every role are read (a system prompt or an earlier answer may hold
PII too): their text content, a ``str`` or the text blocks of a list; other blocks, and the arguments of
tool calls, are left as they are. The restore runnable takes the model's answer: an ``AIMessage``, a
``str`` (after ``StrOutputParser``), any of the redact runnable's shapes; streamed, message chunks
(``AIMessageChunk``) or ``str`` chunks. Anything else is refused with :class:`TypeError` (fail closed:
no text passes unread).

**Streaming.** ``restore`` releases text as soon as no later chunk can change it (it holds back only a tail
that may be the start of a placeholder). Its chunks carry the text, the message kind and id; what else the
model's chunks carry (finish reason, usage, tool-call chunks, ``chunk_position``) comes in one chunk at the
end, so the chunks added up are the whole answer. ``redact`` reads a prompt whole: it streams one output.

**Errors.** No vault key: :class:`~guardrail.vault.VaultMissing` in-process, a
:class:`~guardrail.client.SidecarError` ``FAILED_PRECONDITION`` from the sidecar, both naming
``GUARDRAIL_VAULT_KEY``; a changed, foreign or expired mapping: :class:`~guardrail.vault.VaultError`
(``SidecarError`` ``INVALID_ARGUMENT``); a placeholder the mapping does not hold: the same, unless
``unknown="keep"``; an error of the model's stream: that error, after the text restored before it. No
message holds a value.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ensure_config
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import ConfigDict

from guardrail.client import AsyncGuardrailClient, GuardrailClient
from guardrail.redact import Pseudonyms
from guardrail.vault import UNKNOWN, RestoreStream, Sealed, Vault, restore

if TYPE_CHECKING:
    from guardrail.pipeline import Guardrail

SESSION_KEY = "pseudonym_session"
"""The ``configurable`` key of a :class:`PseudonymSession` given per invocation."""

MAX_TRIES = 16
"""How often a redaction is tried when turns of one session from other threads or event loops keep
committing first (turns from one loop, or from threads, wait for each other instead)."""

_END = object()


class SessionContention(RuntimeError):
    """A redaction lost to concurrent turns of the same session :data:`MAX_TRIES` times (sync and async
    callers, or several event loops, redacting in one session at once)."""


# -- backends ---------------------------------------------------------------------------------------
class _Backend(Protocol):
    """What the runnables need from the guardrail: the only part in-process and sidecar do not share."""

    def pseudonymise(
        self, texts: list[str], mapping: str | None, scope: str, labels: list[str] | None
    ) -> Sealed:
        """``texts`` pseudonymised, the numbering carried on from ``mapping``; the new mapping sealed."""
        ...

    async def apseudonymise(
        self, texts: list[str], mapping: str | None, scope: str, labels: list[str] | None
    ) -> Sealed: ...

    def restore(self, texts: list[str], mapping: str, scope: str, unknown: str) -> list[str]:
        """``texts`` with the placeholders of ``mapping`` put back."""
        ...

    async def arestore(self, texts: list[str], mapping: str, scope: str, unknown: str) -> list[str]: ...

    def restore_stream(self, chunks: Iterator[str], mapping: str, scope: str, unknown: str) -> Iterator[str]:
        """Restored pieces of a chunked text, none empty, as soon as no later chunk can change them."""
        ...

    def arestore_stream(
        self, chunks: AsyncIterator[str], mapping: str, scope: str, unknown: str
    ) -> AsyncIterator[str]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _pieces(stream: RestoreStream, chunks: Iterator[str]) -> Iterator[str]:
    for chunk in chunks:
        if out := stream.feed(chunk):
            yield out
    if tail := stream.finish():
        yield tail


async def _apieces(stream: RestoreStream, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        if out := stream.feed(chunk):
            yield out
    if tail := stream.finish():
        yield tail


class _InProcess:
    """A :class:`~guardrail.pipeline.Guardrail` in this process; the model runs in a worker thread when
    called from async code (restoring needs no model and runs where it is called)."""

    def __init__(self, guard: Guardrail, vault: Vault | None):
        self.guard = guard
        self.vault = vault

    def _vault(self) -> Vault:
        return self.vault or Vault.from_env()  # read at each call, as Guardrail.pseudonymise does

    def pseudonymise(
        self, texts: list[str], mapping: str | None, scope: str, labels: list[str] | None
    ) -> Sealed:
        return self.guard.pseudonymise(
            texts, vault=self._vault(), mapping=mapping, scope=scope, labels=labels
        )

    async def apseudonymise(
        self, texts: list[str], mapping: str | None, scope: str, labels: list[str] | None
    ) -> Sealed:
        return await asyncio.to_thread(self.pseudonymise, texts, mapping, scope, labels)

    def restore(self, texts: list[str], mapping: str, scope: str, unknown: str) -> list[str]:
        return [
            r.text
            for r in self.guard.restore(texts, mapping, vault=self._vault(), scope=scope, unknown=unknown)
        ]

    async def arestore(self, texts: list[str], mapping: str, scope: str, unknown: str) -> list[str]:
        return self.restore(texts, mapping, scope, unknown)

    def restore_stream(self, chunks: Iterator[str], mapping: str, scope: str, unknown: str) -> Iterator[str]:
        return _pieces(RestoreStream(self._vault().open(mapping, scope), unknown=unknown), chunks)

    def arestore_stream(
        self, chunks: AsyncIterator[str], mapping: str, scope: str, unknown: str
    ) -> AsyncIterator[str]:
        return _apieces(RestoreStream(self._vault().open(mapping, scope), unknown=unknown), chunks)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class _Sidecar:
    """The sidecar, through a blocking client, an async one, or both made here from an address (an async
    client per event loop: a ``grpc.aio`` channel belongs to the loop it was made in)."""

    def __init__(
        self,
        sync: GuardrailClient | None,
        aio: AsyncGuardrailClient | None,
        target: str | None,
        client_options: dict[str, Any],
    ):
        self._sync = sync
        self._aio = aio
        self._target = target  # set: the clients are made, and closed, here
        self._options = client_options
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncGuardrailClient] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> GuardrailClient:
        with self._lock:
            if self._sync is None and self._target is not None:
                self._sync = GuardrailClient(self._target, **self._options)
        if self._sync is None:
            raise TypeError(
                "this session was given only an AsyncGuardrailClient: invoke, batch and stream need a "
                "GuardrailClient or the sidecar's address (ainvoke, abatch, astream work)"
            )
        return self._sync

    def _aclient(self) -> AsyncGuardrailClient | None:
        """The async client of the running loop; ``None``: only a blocking client (run it in a thread)."""
        if self._aio is not None or self._target is None:
            return self._aio
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._loops.get(loop)
            if client is None:
                client = self._loops[loop] = AsyncGuardrailClient(self._target, **self._options)
        return client

    def pseudonymise(
        self, texts: list[str], mapping: str | None, scope: str, labels: list[str] | None
    ) -> Sealed:
        return self._client().pseudonymise(texts, mapping=mapping, scope=scope, labels=labels)

    async def apseudonymise(
        self, texts: list[str], mapping: str | None, scope: str, labels: list[str] | None
    ) -> Sealed:
        if (aio := self._aclient()) is None:
            return await asyncio.to_thread(self.pseudonymise, texts, mapping, scope, labels)
        return await aio.pseudonymise(texts, mapping=mapping, scope=scope, labels=labels)

    def restore(self, texts: list[str], mapping: str, scope: str, unknown: str) -> list[str]:
        return [r.text for r in self._client().restore(texts, mapping, scope=scope, unknown=unknown)]

    async def arestore(self, texts: list[str], mapping: str, scope: str, unknown: str) -> list[str]:
        if (aio := self._aclient()) is None:
            return await asyncio.to_thread(self.restore, texts, mapping, scope, unknown)
        return [r.text for r in await aio.restore(texts, mapping, scope=scope, unknown=unknown)]

    def restore_stream(self, chunks: Iterator[str], mapping: str, scope: str, unknown: str) -> Iterator[str]:
        return self._client().restore_stream(chunks, mapping, scope=scope, unknown=unknown)

    def arestore_stream(
        self, chunks: AsyncIterator[str], mapping: str, scope: str, unknown: str
    ) -> AsyncIterator[str]:
        if (aio := self._aclient()) is None:
            return _in_thread(lambda c: self.restore_stream(c, mapping, scope, unknown), chunks)
        return aio.restore_stream(chunks, mapping, scope=scope, unknown=unknown)

    def close(self) -> None:
        """Close the blocking client made here (async ones: :meth:`aclose` in their loop)."""
        if self._target is not None and self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """Close the clients made here that this loop can close."""
        self.close()
        if self._target is not None:
            with self._lock:
                client = self._loops.pop(asyncio.get_running_loop(), None)
            if client is not None:
                await client.close()


async def _in_thread(
    stream: Callable[[Iterator[str]], Iterator[str]], chunks: AsyncIterator[str]
) -> AsyncIterator[str]:
    """A blocking ``stream`` (chunks in, pieces out) run in a worker thread over async ``chunks``."""
    loop = asyncio.get_running_loop()
    inbox: queue.Queue[Any] = queue.Queue()
    outbox: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

    def requests() -> Iterator[str]:
        while (chunk := inbox.get()) is not _END:
            yield chunk

    def pump() -> None:
        error: BaseException | None = None
        try:
            for piece in stream(requests()):
                loop.call_soon_threadsafe(outbox.put_nowait, (piece, None))
        except BaseException as e:  # handed to the loop, raised there
            error = e
        loop.call_soon_threadsafe(outbox.put_nowait, (_END, error))

    async def feed() -> None:
        try:
            async for chunk in chunks:
                inbox.put(chunk)
        finally:
            inbox.put(_END)  # the request stream ends with the input, also when reading it failed

    feeder = asyncio.ensure_future(feed())
    worker = loop.run_in_executor(None, pump)
    try:
        while (item := await outbox.get())[0] is not _END:
            yield item[0]
        if item[1] is not None:
            raise item[1]
        await feeder  # the input's own error, if reading it failed
        await worker
    finally:
        if not feeder.done():
            feeder.cancel()
            inbox.put(_END)


def _is_guardrail(obj: object) -> bool:
    # a Guardrail exists only once guardrail.pipeline is imported: the sidecar path never imports it
    pipeline = sys.modules.get("guardrail.pipeline")
    return pipeline is not None and isinstance(obj, pipeline.Guardrail)


def _backend(
    guardrail: Guardrail | GuardrailClient | AsyncGuardrailClient | str,
    vault: Vault | None,
    client_options: dict[str, Any],
) -> _Backend:
    """The backend for a Guardrail (in-process), or a sidecar client or address."""
    if _is_guardrail(guardrail):
        if client_options:
            raise TypeError(f"client options {sorted(client_options)} go with a sidecar address")
        return _InProcess(guardrail, vault)  # type: ignore[arg-type]
    if vault is not None:
        raise TypeError("vault= goes with an in-process Guardrail: the sidecar seals with its own key")
    if isinstance(guardrail, str):
        return _Sidecar(None, None, guardrail, client_options)
    if client_options:
        raise TypeError(f"client options {sorted(client_options)} go with a sidecar address")
    if isinstance(guardrail, GuardrailClient):
        return _Sidecar(guardrail, None, None, {})
    if isinstance(guardrail, AsyncGuardrailClient):
        return _Sidecar(None, guardrail, None, {})
    raise TypeError(
        "expected a Guardrail, a GuardrailClient, an AsyncGuardrailClient or a sidecar address, "
        f"got {type(guardrail).__name__}"
    )


# -- the texts of LangChain's values -----------------------------------------------------------------
def _content(content: str | list, fn: Callable[[str], str]) -> str | list:
    if isinstance(content, str):
        return fn(content)
    out: list = []
    for block in content:
        if isinstance(block, str):
            out.append(fn(block))
        elif isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append({**block, "text": fn(block["text"])})
        else:
            out.append(block)  # an image, a tool call, reasoning: not text to read
    return out


def _walk(obj: Any, fn: Callable[[str], str]) -> Any:
    """``obj`` rebuilt with ``fn`` applied to each of its texts, in a fixed order."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, BaseMessage):
        return obj.model_copy(update={"content": _content(obj.content, fn)})
    if isinstance(obj, StringPromptValue):
        return obj.model_copy(update={"text": fn(obj.text)})
    if isinstance(obj, ChatPromptValue):
        return obj.model_copy(update={"messages": [_walk(m, fn) for m in obj.messages]})
    if isinstance(obj, dict):
        return {k: _walk(v, fn) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_walk(v, fn) for v in obj)
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    raise TypeError(
        f"cannot read the texts of a {type(obj).__name__}: give a str, a message, a list of messages, "
        "a PromptValue or a dict of them"
    )


def _texts(obj: Any) -> list[str]:
    texts: list[str] = []
    _walk(obj, lambda s: texts.append(s) or s)
    return texts


def _rebuild(obj: Any, texts: Sequence[str]) -> Any:
    it = iter(texts)
    return _walk(obj, lambda _: next(it))


# -- the session ------------------------------------------------------------------------------------
class PseudonymSession:
    """One conversation's pseudonyms: its ``scope`` and latest sealed ``mapping``, and the two runnables
    bound to it, ``redact`` and ``restore`` (see the module docstring for why state lives here).

    ``guardrail``: a :class:`~guardrail.pipeline.Guardrail` (in-process; ``vault``: its keys, default
    ``GUARDRAIL_VAULT_KEY`` read at each call), a :class:`~guardrail.client.GuardrailClient`, an
    :class:`~guardrail.client.AsyncGuardrailClient`, or the sidecar's address (``client_options``:
    ``timeout``, ``retries``, ``token``, TLS, for the clients made here). ``scope``: the conversation id the
    mapping is bound to. ``mapping``: the sealed mapping of earlier turns, to resume a conversation.
    ``labels``: what to pseudonymise (default: the guardrail's labels). ``unknown``: a placeholder the
    mapping does not hold, in the model's answer, is an error (``"error"``) or left as written (``"keep"``).
    """

    def __init__(
        self,
        guardrail: Guardrail | GuardrailClient | AsyncGuardrailClient | str,
        *,
        scope: str = "",
        mapping: str | None = None,
        labels: Sequence[str] | None = None,
        unknown: str = "error",
        vault: Vault | None = None,
        **client_options: Any,
    ):
        self._setup(_backend(guardrail, vault, client_options), scope, mapping, labels, unknown)
        self._owner = True

    def _setup(
        self, backend: _Backend, scope: str, mapping: str | None, labels: Sequence[str] | None, unknown: str
    ) -> None:
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {', '.join(UNKNOWN)}")
        if not isinstance(scope, str):
            raise TypeError("scope must be a str (e.g. the conversation id)")
        self._backend = backend
        self.scope = scope
        """The conversation id the mapping is bound to."""
        self.labels = list(labels) if labels is not None else None
        """The labels pseudonymised (``None``: the guardrail's)."""
        self.unknown = unknown
        self._mapping = mapping or None
        self._version = 0
        self._lock = threading.Lock()  # guards the state below, held for no call
        self._turn = threading.RLock()  # one sync turn at a time (re-entrant: a callback may redact)
        self._aturns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._runnables: tuple[GuardrailRedact, GuardrailRestore] | None = None

    def __repr__(self) -> str:
        state = "sealed mapping" if self._mapping else "no mapping yet"
        return f"PseudonymSession(scope={self.scope!r}, {state}, turns={self._version})"  # never a value

    def new(self, scope: str, *, mapping: str | None = None) -> PseudonymSession:
        """Another conversation's session over the same guardrail (model or sidecar connection), labels
        and ``unknown``; closing it closes nothing (close this one)."""
        other = object.__new__(PseudonymSession)
        other._setup(self._backend, scope, mapping, self.labels, self.unknown)
        other._owner = False
        return other

    @property
    def mapping(self) -> str | None:
        """The latest sealed mapping (``None`` before the first redaction): the session's whole state."""
        return self._mapping

    @property
    def redact(self) -> GuardrailRedact:
        """The runnable that pseudonymises the model's input in this session."""
        return self._pair()[0]

    @property
    def restore(self) -> GuardrailRestore:
        """The runnable that restores the model's answer in this session."""
        return self._pair()[1]

    def _pair(self) -> tuple[GuardrailRedact, GuardrailRestore]:
        if self._runnables is None:
            self._runnables = GuardrailRedact(session=self), GuardrailRestore(session=self)
        return self._runnables

    def config(self, config: RunnableConfig | None = None) -> RunnableConfig:
        """``config`` (default: empty) with this session as the invocation's: ``chain.invoke(x,
        config=session.config())`` runs a chain built from any session's runnables in this one."""
        config = dict(config or {})
        config["configurable"] = {**config.get("configurable", {}), SESSION_KEY: self}
        return RunnableConfig(**config)

    # state: turns of one session wait for each other (a lock for threads, one per event loop for tasks);
    # between threads and loops a redaction commits only on top of the mapping it started from (compare
    # and swap), else it is redone on the newer one
    def _aturn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._lock:
            if (lock := self._aturns.get(loop)) is None:
                lock = self._aturns[loop] = asyncio.Lock()
        return lock

    def _read(self) -> tuple[int, str | None]:
        with self._lock:
            return self._version, self._mapping

    def _commit(self, version: int, mapping: str) -> bool:
        with self._lock:
            if self._version != version:
                return False
            self._version, self._mapping = version + 1, mapping
            return True

    def _pseudonymise(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        with self._turn:
            for _ in range(MAX_TRIES):
                version, mapping = self._read()
                sealed = self._backend.pseudonymise(texts, mapping, self.scope, self.labels)
                if self._commit(version, sealed.mapping):
                    return [r.text for r in sealed.results]
        raise SessionContention(f"{MAX_TRIES} concurrent turns of one session committed first; retry")

    async def _apseudonymise(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        async with self._aturn():
            for _ in range(MAX_TRIES):
                version, mapping = self._read()
                sealed = await self._backend.apseudonymise(texts, mapping, self.scope, self.labels)
                if self._commit(version, sealed.mapping):
                    return [r.text for r in sealed.results]
        raise SessionContention(f"{MAX_TRIES} concurrent turns of one session committed first; retry")

    # restoring reads the latest mapping: it holds every pseudonym this session handed out
    def _restore(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        if (mapping := self.mapping) is None:
            return [restore(t, Pseudonyms(), unknown=self.unknown).text for t in texts]
        return self._backend.restore(texts, mapping, self.scope, self.unknown)

    async def _arestore(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        if (mapping := self.mapping) is None:
            return self._restore(texts)
        return await self._backend.arestore(texts, mapping, self.scope, self.unknown)

    def _restore_stream(self, chunks: Iterator[str]) -> Iterator[str]:
        if (mapping := self.mapping) is None:
            return _pieces(RestoreStream(Pseudonyms(), unknown=self.unknown), chunks)
        return self._backend.restore_stream(chunks, mapping, self.scope, self.unknown)

    def _arestore_stream(self, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        if (mapping := self.mapping) is None:
            return _apieces(RestoreStream(Pseudonyms(), unknown=self.unknown), chunks)
        return self._backend.arestore_stream(chunks, mapping, self.scope, self.unknown)

    def close(self) -> None:
        """Close the sidecar clients this session made from an address (not the sessions' of :meth:`new`)."""
        if self._owner:
            self._backend.close()

    async def aclose(self) -> None:
        """:meth:`close`, and the async client this session made for the running loop."""
        if self._owner:
            await self._backend.aclose()

    def __enter__(self) -> PseudonymSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def guardrail_runnables(
    guardrail: Guardrail | GuardrailClient | AsyncGuardrailClient | str,
    *,
    scope: str = "",
    mapping: str | None = None,
    labels: Sequence[str] | None = None,
    unknown: str = "error",
    vault: Vault | None = None,
    **client_options: Any,
) -> tuple[GuardrailRedact, GuardrailRestore]:
    """``redact, restore`` of a new :class:`PseudonymSession` (arguments as there): ``redact | model |
    restore``. The session is ``redact.session``."""
    session = PseudonymSession(
        guardrail, scope=scope, mapping=mapping, labels=labels, unknown=unknown, vault=vault, **client_options
    )
    return session.redact, session.restore


def _session(config: RunnableConfig | None, default: PseudonymSession) -> PseudonymSession:
    session = ensure_config(config).get("configurable", {}).get(SESSION_KEY, default)
    if not isinstance(session, PseudonymSession):
        raise TypeError(
            f"configurable[{SESSION_KEY!r}] must be a PseudonymSession, got {type(session).__name__}"
        )
    return session


_SPEC = ConfigurableFieldSpec(
    id=SESSION_KEY,
    annotation=PseudonymSession,
    name="Pseudonym session",
    description="The conversation's PseudonymSession (default: the one the runnable was built from)",
    default=None,
)


class _SessionRunnable(RunnableSerializable[Any, Any]):
    """A runnable bound to a :class:`PseudonymSession`, which an invocation's config may replace."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: PseudonymSession
    """The session used when the invocation's config names none."""

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return [_SPEC]


class GuardrailRedact(_SessionRunnable):
    """Pseudonymises the model's input (a ``str``, message, list of messages, ``PromptValue`` or dict; the
    same shape out) in its session, which keeps the sealed mapping for :class:`GuardrailRestore`."""

    def _run(self, input: Any, config: RunnableConfig) -> Any:
        return _rebuild(input, _session(config, self.session)._pseudonymise(_texts(input)))

    async def _arun(self, input: Any, config: RunnableConfig) -> Any:
        return _rebuild(input, await _session(config, self.session)._apseudonymise(_texts(input)))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._run, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._arun, input, config)

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """One guardrail call per session for the whole batch (one mapping for all its inputs)."""
        return self._batch_with_config(self._run_batch, inputs, config, return_exceptions=return_exceptions)

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        return await self._abatch_with_config(
            self._arun_batch, inputs, config, return_exceptions=return_exceptions
        )

    def _groups(
        self, inputs: list[Any], configs: list[RunnableConfig]
    ) -> dict[int, tuple[PseudonymSession, list[int]]]:
        """The inputs' indices by session, in order."""
        groups: dict[int, tuple[PseudonymSession, list[int]]] = {}
        for i, config in enumerate(configs):
            session = _session(config, self.session)
            groups.setdefault(id(session), (session, []))[1].append(i)
        return groups

    def _run_batch(self, inputs: list[Any], config: list[RunnableConfig]) -> list[Any]:
        out: list[Any] = [None] * len(inputs)
        for session, indices in self._groups(inputs, config).values():
            texts = [_texts(inputs[i]) for i in indices]
            done = iter(session._pseudonymise([t for ts in texts for t in ts]))
            for i, ts in zip(indices, texts, strict=True):
                out[i] = _rebuild(inputs[i], list(itertools.islice(done, len(ts))))
        return out

    async def _arun_batch(self, inputs: list[Any], config: list[RunnableConfig]) -> list[Any]:
        out: list[Any] = [None] * len(inputs)
        for session, indices in self._groups(inputs, config).values():
            texts = [_texts(inputs[i]) for i in indices]
            done = iter(await session._apseudonymise([t for ts in texts for t in ts]))
            for i, ts in zip(indices, texts, strict=True):
                out[i] = _rebuild(inputs[i], list(itertools.islice(done, len(ts))))
        return out


# -- restoring a stream ------------------------------------------------------------------------------
def _split(chunk: Any) -> tuple[str, BaseMessageChunk | None]:
    """A streamed chunk's text, and (a message chunk) the rest of it: the chunk with that text taken out."""
    if isinstance(chunk, str):
        return chunk, None
    if not isinstance(chunk, BaseMessageChunk):
        raise TypeError(f"cannot restore a stream of {type(chunk).__name__}: give str or message chunks")
    if isinstance(chunk.content, str):
        return chunk.content, chunk.model_copy(update={"content": ""})
    texts: list[str] = []
    _content(chunk.content, lambda s: texts.append(s) or s)
    others = [b for b in chunk.content if not isinstance(b, str) and b.get("type") != "text"]
    return "".join(texts), chunk.model_copy(update={"content": others or ""})


def _bare(chunk: BaseMessageChunk) -> BaseMessageChunk:
    """``chunk``'s kind, id, name and required fields (a tool message's call id), nothing else."""
    keep = {"content", "id", "type", "name"}
    reset = {
        name: field.get_default(call_default_factory=True)
        for name, field in type(chunk).model_fields.items()
        if name not in keep and not field.is_required()
    }
    return chunk.model_copy(update={**reset, "content": ""})


class _Tap:
    """Reads a stream of chunks for its text, keeping what else they carry (merged), and an error of the
    stream that feeds it (raised after the restored text, not inside a gRPC request stream)."""

    def __init__(self, first: Any):
        self.bare = None if isinstance(first, str) else _bare(first)
        self.rest: BaseMessageChunk | None = None
        self.error: Exception | None = None

    def _take(self, chunk: Any) -> str:
        text, rest = _split(chunk)
        if rest is not None:
            self.rest = rest if self.rest is None else self.rest + rest
        return text

    def texts(self, chunks: Iterator[Any]) -> Iterator[str]:
        try:
            for chunk in chunks:
                if text := self._take(chunk):
                    yield text
        except Exception as e:
            self.error = e

    async def atexts(self, chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                if text := self._take(chunk):
                    yield text
        except Exception as e:
            self.error = e

    def piece(self, text: str) -> Any:
        return text if self.bare is None else self.bare.model_copy(update={"content": text})

    def tail(self) -> BaseMessageChunk | None:
        """The chunks' merged rest, if they carried anything besides text."""
        if self.rest is None or self.rest == _bare(self.rest):
            return None
        return self.rest

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _streamable(item: Any) -> bool:
    return isinstance(item, str | BaseMessageChunk)


class GuardrailRestore(_SessionRunnable):
    """Puts the values of its session's pseudonyms back into the model's answer (``AIMessage``, ``str``, or
    any shape :class:`GuardrailRedact` takes; the same shape out); streamed, as soon as no later chunk can
    change the text."""

    def _item(self, item: Any, session: PseudonymSession) -> Any:
        return _rebuild(item, session._restore(_texts(item)))

    async def _aitem(self, item: Any, session: PseudonymSession) -> Any:
        return _rebuild(item, await session._arestore(_texts(item)))

    def _run(self, input: Any, config: RunnableConfig) -> Any:
        return self._item(input, _session(config, self.session))

    async def _arun(self, input: Any, config: RunnableConfig) -> Any:
        return await self._aitem(input, _session(config, self.session))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._run, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._arun, input, config)

    def _chunks(self, chunks: Iterator[Any], config: RunnableConfig) -> Iterator[Any]:
        session = _session(config, self.session)
        if (first := next(chunks, _END)) is _END:
            return
        # the mapping is read now: the model has answered, so this turn's redaction has committed
        chunks = itertools.chain([first], chunks)
        if not _streamable(first):  # whole values (a non-streaming step's message, a dict)
            for item in chunks:
                yield self._item(item, session)
            return
        tap = _Tap(first)
        for piece in session._restore_stream(tap.texts(chunks)):
            yield tap.piece(piece)
        tap.raise_error()
        if (tail := tap.tail()) is not None:
            yield tail

    async def _achunks(self, chunks: AsyncIterator[Any], config: RunnableConfig) -> AsyncIterator[Any]:
        session = _session(config, self.session)
        if (first := await anext(chunks, _END)) is _END:
            return

        async def again() -> AsyncIterator[Any]:
            yield first
            async for chunk in chunks:
                yield chunk

        if not _streamable(first):
            async for item in again():
                yield await self._aitem(item, session)
            return
        tap = _Tap(first)
        async for piece in session._arestore_stream(tap.atexts(again())):
            yield tap.piece(piece)
        tap.raise_error()
        if (tail := tap.tail()) is not None:
            yield tail

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, self._chunks, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for out in self._atransform_stream_with_config(input, self._achunks, config):
            yield out

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for out in self.atransform(one(), config):
            yield out


__all__ = [
    "MAX_TRIES",
    "SESSION_KEY",
    "GuardrailRedact",
    "GuardrailRestore",
    "PseudonymSession",
    "SessionContention",
    "guardrail_runnables",
]
