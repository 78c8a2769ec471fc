"""LangChain: ``redact | model | restore`` in-process and through the sidecar, sync, async, batched and
streamed; sessions across turns and side by side; errors without values; the README's snippet."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from pydantic import Field

from guardrail.client import AsyncGuardrailClient, GuardrailClient, SidecarError
from guardrail.integrations.langchain import (
    SESSION_KEY,
    GuardrailRedact,
    GuardrailRestore,
    PseudonymSession,
    guardrail_runnables,
)
from guardrail.pipeline import Guardrail
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings
from guardrail.vault import KEY_ENV, Vault, VaultError, VaultMissing
from tests.conftest import readme_block

# the tiny bundle's probe knows these names in these frames (tests/conftest.py)
ANA = "please call Ana Silva thanks"
BOB = "I met Bob Stone see you soon"
LENA = "send it to Lena Vogt thanks"
NAMES = ("Ana Silva", "Bob Stone", "Lena Vogt", "Ana", "Silva", "Bob", "Stone", "Lena", "Vogt")
SIDECAR_KEY = Vault.new_key("k1")
BACKENDS = ["in-process", "sidecar"]


class EchoModel(GenericFakeChatModel):
    """A fake chat model that answers ``noted: <the last message>``, streamed in ``size``-character
    chunks (so a placeholder arrives split), and records every prompt it read."""

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    seen: list[str] = Field(default_factory=list)
    size: int = 3
    fail_after: int | None = None
    """Stream that many chunks, then raise :class:`ModelDown`."""
    usage: bool = False
    """The last chunk carries token usage and a finish reason."""

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        self.seen.append("\n".join(_text(m) for m in messages))
        answer = AIMessage(content=f"noted: {_text(messages[-1])}", id="echo")
        return ChatResult(generations=[ChatGeneration(message=answer)])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        text = self._generate(messages).generations[0].message.content
        for n, i in enumerate(range(0, len(text), self.size)):
            if n == self.fail_after:
                raise ModelDown("the model went away")
            last = i + self.size >= len(text)
            extra: dict[str, Any] = {"chunk_position": "last"} if last else {}
            if last and self.usage:  # what a provider's last chunk carries besides text
                extra["usage_metadata"] = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
                extra["response_metadata"] = {"finish_reason": "stop"}
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=text[i : i + self.size], id="echo", **extra)
            )


class ModelDown(RuntimeError):
    pass


def _text(m: BaseMessage) -> str:
    return (
        m.content
        if isinstance(m.content, str)
        else " ".join(b["text"] for b in m.content if b.get("type") == "text")
    )


def _no_names(text: str) -> bool:
    return not any(n in text for n in NAMES)


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    torch.set_num_threads(1)
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def sidecar(guard: Guardrail) -> Iterator[SidecarThread]:
    with SidecarThread(guard, ServeSettings(port=0, max_wait_ms=5, vault_key=SIDECAR_KEY)) as sc:
        yield sc


@pytest.fixture(scope="module")
def address(sidecar: SidecarThread) -> str:
    return f"127.0.0.1:{sidecar.port}"


@pytest.fixture(autouse=True)
def vault_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process guardrail's key (the sidecar has its own)."""
    monkeypatch.setenv(KEY_ENV, Vault.new_key("local"))


@pytest.fixture
def make_session(guard: Guardrail, address: str) -> Iterator[Callable[..., PseudonymSession]]:
    """``make_session(backend, **kw)``: a session in-process or through the sidecar's address."""
    made: list[PseudonymSession] = []

    def make(backend: str, **kw: Any) -> PseudonymSession:
        source = guard if backend == "in-process" else address
        made.append(PseudonymSession(source, **({"timeout": 30} if backend == "sidecar" else {}), **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def model() -> EchoModel:
    return EchoModel()


# -- invoke, ainvoke, batch -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_model_reads_pseudonyms_and_the_user_reads_names(
    backend: str, make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    session = make_session(backend, scope="conv-1")
    chain = session.redact | model | session.restore
    answer = chain.invoke(ANA)
    assert isinstance(answer, AIMessage) and answer.content == f"noted: {ANA}" and answer.id == "echo"
    assert model.seen == ["please call <PERSON_1> thanks"]
    assert session.mapping.startswith("grv1.") and _no_names(session.mapping)
    assert "Ana" not in repr(session) and "Ana" not in repr(chain)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_input_shape_is_read_and_kept(
    backend: str, make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    session = make_session(backend)
    redact = session.redact
    assert redact.invoke(ANA) == "please call <PERSON_1> thanks"
    msgs = redact.invoke([SystemMessage("you help"), HumanMessage(BOB, id="h1")])
    assert [type(m) for m in msgs] == [SystemMessage, HumanMessage] and msgs[1].id == "h1"
    assert msgs[1].content == "I met <PERSON_2> see you soon"  # one session: Bob after Ana
    blocks = redact.invoke(HumanMessage([{"type": "text", "text": ANA}, {"type": "image", "url": "x"}]))
    assert blocks.content == [
        {"type": "text", "text": "please call <PERSON_1> thanks"},
        {"type": "image", "url": "x"},
    ]
    assert redact.invoke(StringPromptValue(text=LENA)) == StringPromptValue(
        text="send it to <PERSON_3> thanks"
    )
    chat = redact.invoke(ChatPromptValue(messages=[HumanMessage(ANA)]))
    assert isinstance(chat, ChatPromptValue) and chat.messages[0].content == "please call <PERSON_1> thanks"
    assert redact.invoke({"q": BOB, "n": 3, "flag": None, "history": [HumanMessage(LENA)]}) == {
        "q": "I met <PERSON_2> see you soon",
        "n": 3,
        "flag": None,
        "history": [HumanMessage("send it to <PERSON_3> thanks")],
    }
    # in chains: after a prompt template (a PromptValue), before one (its dict), with a string parser
    prompt = ChatPromptTemplate.from_messages([("system", "you help"), ("human", "{q}")])
    assert (prompt | redact | model | session.restore).invoke({"q": ANA}).content == f"noted: {ANA}"
    assert (redact | prompt | model | StrOutputParser() | session.restore).invoke(
        {"q": BOB}
    ) == f"noted: {BOB}"
    assert (PromptTemplate.from_template("{q}") | redact | model | session.restore).invoke(
        {"q": LENA}
    ).content == (f"noted: {LENA}")
    assert (
        all(_no_names(seen) for seen in model.seen)
        and "you help\nplease call <PERSON_1> thanks" in model.seen
    )


@pytest.mark.parametrize("backend", [*BACKENDS, "async client", "blocking client"])
def test_ainvoke(
    backend: str, make_session: Callable[..., PseudonymSession], address: str, model: EchoModel
) -> None:
    async def run() -> list[AIMessage]:
        if backend == "async client":
            client = AsyncGuardrailClient(address, timeout=30)
            session = PseudonymSession(client, scope="a")
        elif backend == "blocking client":
            client = GuardrailClient(address, timeout=30)
            session = PseudonymSession(client, scope="a")
        else:
            client, session = None, make_session(backend, scope="a")
        chain = session.redact | model | session.restore
        answers = [await chain.ainvoke(ANA), await chain.ainvoke(BOB)]
        answers += await chain.abatch([LENA, ANA])
        await session.aclose()
        if isinstance(client, AsyncGuardrailClient):
            await client.close()
        elif client is not None:
            client.close()
        return answers

    answers = asyncio.run(run())
    assert [a.content for a in answers] == [f"noted: {t}" for t in (ANA, BOB, LENA, ANA)]
    assert model.seen[:2] == ["please call <PERSON_1> thanks", "I met <PERSON_2> see you soon"]
    assert set(model.seen[2:]) == {"send it to <PERSON_3> thanks", "please call <PERSON_1> thanks"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_pseudonymises_in_one_call(
    backend: str, make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    session = make_session(backend)
    chain = session.redact | model | session.restore
    answers = chain.batch([ANA, BOB, ANA])
    assert [a.content for a in answers] == [f"noted: {t}" for t in (ANA, BOB, ANA)]
    assert sorted(model.seen) == sorted(
        ["please call <PERSON_1> thanks", "I met <PERSON_2> see you soon", "please call <PERSON_1> thanks"]
    )
    assert "turns=1" in repr(session)  # one guardrail call, one mapping for the batch


def test_batch_with_one_session_per_input(guard: Guardrail, model: EchoModel) -> None:
    base = PseudonymSession(guard)
    a, b = base.new("a"), base.new("b")
    chain = base.redact | model | base.restore
    answers = chain.batch([ANA, BOB, LENA], [a.config(), b.config(), a.config()])
    assert [x.content for x in answers] == [f"noted: {t}" for t in (ANA, BOB, LENA)]
    assert sorted(model.seen) == sorted(
        ["please call <PERSON_1> thanks", "I met <PERSON_1> see you soon", "send it to <PERSON_2> thanks"]
    )
    assert base.mapping is None and a.mapping and b.mapping


# -- streaming --------------------------------------------------------------------------------------
def _check_stream(chunks: list[Any], expected: str) -> None:
    """Restored text, a placeholder split across the model's chunks whole in one of ours, and the model's
    last-chunk marker in the merged rest at the end."""
    assert all(isinstance(c, AIMessageChunk) and c.id == "echo" for c in chunks)
    assert "".join(c.content for c in chunks) == expected
    assert any("Ana Silva" in c.content for c in chunks) and not any("<" in c.content for c in chunks)
    assert len(chunks) > 3  # released as it comes, not at the end
    assert chunks[-1].content == "" and chunks[-1].chunk_position == "last"
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.content == expected and total.chunk_position == "last"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_restores_placeholders_split_across_chunks(
    backend: str, make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    session = make_session(backend)
    chain = session.redact | model | session.restore
    model_chunks = [c.content for c in model.stream("please call <PERSON_1> thanks")]
    assert "<PERSON_1>" in "".join(model_chunks) and not any("<PERSON_1>" in c for c in model_chunks)  # split
    chunks = list(chain.stream(ANA))
    _check_stream(chunks, f"noted: {ANA}")
    text_chunks = list((session.redact | model | StrOutputParser() | session.restore).stream(ANA))
    assert all(isinstance(c, str) for c in text_chunks) and "".join(text_chunks) == f"noted: {ANA}"
    assert [c.content for c in chunks[:-1]] == text_chunks  # the same pieces
    assert all(_no_names(s) for s in model.seen)


def test_stream_pieces_are_the_same_in_process_and_through_the_sidecar(
    make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    pieces = {}
    for backend in BACKENDS:
        session = make_session(backend)
        chain = session.redact | model | session.restore
        pieces[backend] = [[c.content for c in chain.stream(t)] for t in (ANA, BOB, LENA)]
        pieces[backend].append([a.content for a in chain.batch([ANA, BOB])])
    assert pieces["in-process"] == pieces["sidecar"]


@pytest.mark.parametrize("backend", [*BACKENDS, "async client", "blocking client"])
def test_astream(
    backend: str, make_session: Callable[..., PseudonymSession], address: str, model: EchoModel
) -> None:
    async def run() -> tuple[list[Any], list[Any]]:
        client: Any = None
        if backend == "async client":
            client = AsyncGuardrailClient(address, timeout=30)
            session = PseudonymSession(client)
        elif backend == "blocking client":
            client = GuardrailClient(address, timeout=30)
            session = PseudonymSession(client)
        else:
            session = make_session(backend)
        chain = session.redact | model | session.restore
        chunks = [c async for c in chain.astream(ANA)]
        text = [c async for c in (session.redact | model | StrOutputParser() | session.restore).astream(BOB)]
        await session.aclose()
        if isinstance(client, AsyncGuardrailClient):
            await client.close()
        elif client is not None:
            client.close()
        return chunks, text

    chunks, text = asyncio.run(run())
    _check_stream(chunks, f"noted: {ANA}")
    assert "".join(text) == f"noted: {BOB}" and all(isinstance(c, str) for c in text)
    assert model.seen == ["please call <PERSON_1> thanks", "I met <PERSON_2> see you soon"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_model_error_mid_stream_is_the_model_s_own(
    backend: str, make_session: Callable[..., PseudonymSession]
) -> None:
    session = make_session(backend)
    chain = session.redact | EchoModel(fail_after=4) | session.restore
    got: list[str] = []
    with pytest.raises(ModelDown):
        for chunk in chain.stream(ANA):
            got.append(chunk.content)
    assert "".join(got) == "noted: pleas"  # what came before the error, restored

    async def run() -> list[str]:
        out = []
        with pytest.raises(ModelDown):
            async for chunk in chain.astream(ANA):
                out.append(chunk.content)
        await session.aclose()
        return out

    assert "".join(asyncio.run(run())) == "noted: pleas"


def test_the_model_s_other_chunk_fields_arrive_merged_at_the_end(guard: Guardrail) -> None:
    session = PseudonymSession(guard)
    chunks = list((session.redact | EchoModel(usage=True) | session.restore).stream(ANA))
    assert all(c.usage_metadata is None and not c.response_metadata for c in chunks[:-1])
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.content == f"noted: {ANA}" and total.response_metadata["finish_reason"] == "stop"
    assert total.usage_metadata["total_tokens"] == 12 and total.chunk_position == "last"


@pytest.mark.parametrize("backend", [*BACKENDS, "blocking client"])
def test_leaving_a_stream_early(
    backend: str, make_session: Callable[..., PseudonymSession], address: str
) -> None:
    client = GuardrailClient(address, timeout=30) if backend == "blocking client" else None
    session = PseudonymSession(client) if client else make_session(backend)
    chain = session.redact | EchoModel() | session.restore
    for _ in chain.stream(ANA):
        break

    async def run() -> str:
        async for _ in chain.astream(BOB):
            break
        return (await chain.ainvoke(LENA)).content  # the async client of a loop left unclosed: no harm

    assert asyncio.run(run()) == f"noted: {LENA}"
    assert chain.invoke(ANA).content == f"noted: {ANA}"  # the session goes on
    assert asyncio.run(run()) == f"noted: {LENA}"  # another loop, another async client
    if client:
        client.close()


def test_a_non_streaming_step_before_restore_is_restored_whole(guard: Guardrail, model: EchoModel) -> None:
    session = PseudonymSession(guard)
    whole = session.redact | model | (lambda m: {"answer": m}) | session.restore
    (out,) = list(whole.stream(ANA))
    assert out["answer"].content == f"noted: {ANA}"


# -- sessions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_turns_of_one_session_keep_each_value_s_pseudonym(
    backend: str, make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    session = make_session(backend, scope="conv-7")
    chain = session.redact | model | session.restore
    answers = [chain.invoke(t).content for t in (ANA, BOB, ANA)]
    assert answers == [f"noted: {t}" for t in (ANA, BOB, ANA)]
    assert model.seen == [
        "please call <PERSON_1> thanks",
        "I met <PERSON_2> see you soon",
        "please call <PERSON_1> thanks",
    ]
    # the sealed mapping is the whole state: a new session resumes the conversation from it
    again = make_session(backend, scope="conv-7", mapping=session.mapping)
    assert again.restore.invoke("<PERSON_2> and <PERSON_1>") == "Bob Stone and Ana Silva"
    assert again.redact.invoke(LENA) == "send it to <PERSON_3> thanks"


def test_sessions_are_independent(guard: Guardrail, model: EchoModel) -> None:
    first = PseudonymSession(guard, scope="alice")
    second = first.new("bob")
    chain = first.redact | model | first.restore
    assert SESSION_KEY in [s.id for s in chain.config_specs]
    assert chain.invoke(ANA).content == f"noted: {ANA}"
    assert chain.invoke(BOB, config=second.config()).content == f"noted: {BOB}"
    assert model.seen == ["please call <PERSON_1> thanks", "I met <PERSON_1> see you soon"]
    assert first.restore.invoke("<PERSON_1>") == "Ana Silva"
    assert second.restore.invoke("<PERSON_1>") == "Bob Stone"
    # one conversation's mapping does not open in another's scope
    with pytest.raises(VaultError, match="authentication") as e:
        PseudonymSession(guard, scope="alice", mapping=second.mapping).restore.invoke("<PERSON_1>")
    assert _no_names(str(e.value))
    redact, restore = guardrail_runnables(guard, scope="carol")
    assert isinstance(redact, GuardrailRedact) and isinstance(restore, GuardrailRestore)
    assert redact.session is restore.session and redact.session.scope == "carol"


def _counting(session: PseudonymSession) -> list[str]:
    """Count the session's guardrail calls (sync and async)."""
    backend, calls = session._backend, []
    sync, aio = backend.pseudonymise, backend.apseudonymise

    def pseudonymise(*args: Any) -> Any:
        calls.append("sync")
        return sync(*args)

    async def apseudonymise(*args: Any) -> Any:
        calls.append("async")
        return await aio(*args)

    backend.pseudonymise, backend.apseudonymise = pseudonymise, apseudonymise
    return calls


def test_concurrent_invocations_keep_their_own_mappings(guard: Guardrail, model: EchoModel) -> None:
    shared = PseudonymSession(guard, scope="shared")
    calls = _counting(shared)
    chain = shared.redact | model | shared.restore
    texts = [ANA, BOB, LENA, ANA, BOB, LENA]
    with ThreadPoolExecutor(4) as pool:  # one session: numbers stay one per value
        answers = list(pool.map(chain.invoke, texts))
    assert [a.content for a in answers] == [f"noted: {t}" for t in texts]
    numbers = {re.search(r"<PERSON_\d>", s).group(0) for s in model.seen}
    assert len(numbers) == 3 and all(_no_names(s) for s in model.seen)
    assert calls == ["sync"] * 6  # the turns waited for each other: none was redone

    async def run() -> list[str]:
        outs = await asyncio.gather(*(chain.ainvoke(t) for t in texts))  # tasks of one session take turns
        assert calls[6:] == ["async", "sync"] * 6  # one after the other (in a worker thread), none redone
        sessions = [shared.new(f"user-{i}") for i in range(3)]  # one session per invocation, in the config
        outs += await asyncio.gather(
            *(chain.ainvoke(t, config=s.config()) for t, s in zip(texts[:3], sessions, strict=True))
        )
        assert [s.restore.invoke("<PERSON_1>") for s in sessions] == ["Ana Silva", "Bob Stone", "Lena Vogt"]
        return [o.content for o in outs]

    assert asyncio.run(run()) == [f"noted: {t}" for t in texts + texts[:3]]
    assert shared.restore.invoke("<PERSON_1> <PERSON_2> <PERSON_3>") in {
        " ".join(p) for p in itertools.permutations(["Ana Silva", "Bob Stone", "Lena Vogt"])
    }


def test_a_turn_that_loses_the_race_is_redone_on_the_newer_mapping(guard: Guardrail) -> None:
    session = PseudonymSession(guard)
    backend = session._backend
    real = backend.pseudonymise
    raced: list[str] = []

    def racing(texts: list[str], *args: Any) -> Any:
        if not raced:  # another turn commits while this one is in flight
            raced.append("")
            raced[0] = session.redact.invoke(ANA)
        return real(texts, *args)

    backend.pseudonymise = racing
    assert session.redact.invoke(BOB) == "I met <PERSON_2> see you soon"  # not a second <PERSON_1>
    assert raced == ["please call <PERSON_1> thanks"]
    assert session.restore.invoke("<PERSON_1>, <PERSON_2>") == "Ana Silva, Bob Stone"


# -- errors -----------------------------------------------------------------------------------------
def test_no_vault_key_in_process(guard: Guardrail, model: EchoModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    session = PseudonymSession(guard)
    chain = session.redact | model | session.restore
    with pytest.raises(VaultMissing, match=KEY_ENV) as e:
        chain.invoke(ANA)
    assert model.seen == [] and _no_names(str(e.value))


def test_no_vault_key_in_the_sidecar(
    guard: Guardrail, model: EchoModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)  # the sidecar's settings read it too
    with (
        SidecarThread(guard, ServeSettings(port=0, max_wait_ms=5)) as keyless,
        PseudonymSession(f"127.0.0.1:{keyless.port}", timeout=30) as session,
        pytest.raises(SidecarError, match=KEY_ENV) as e,
    ):
        (session.redact | model | session.restore).invoke(ANA)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert model.seen == [] and _no_names(str(e.value))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tampered_mapping_is_refused(
    backend: str, make_session: Callable[..., PseudonymSession], model: EchoModel
) -> None:
    good = make_session(backend, scope="t")
    good.redact.invoke(ANA)
    body = good.mapping.rsplit(".", 1)
    tampered = f"{body[0]}.{body[1][:-4]}{'AAAA' if body[1][-4:] != 'AAAA' else 'BBBB'}"
    session = make_session(backend, scope="t", mapping=tampered)
    errors = (VaultError, SidecarError)
    with pytest.raises(errors) as redacting:
        (session.redact | model | session.restore).invoke(BOB)
    with pytest.raises(errors) as restoring:
        session.restore.invoke("<PERSON_1>")
    with pytest.raises(errors) as streaming:
        list(session.restore.stream(AIMessageChunk("hi <PERSON_1>")))
    for e in (redacting, restoring, streaming):
        assert "authentication" in str(e.value) and _no_names(str(e.value)) and tampered not in str(e.value)
    assert model.seen == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_placeholder_the_mapping_does_not_hold(
    backend: str, make_session: Callable[..., PseudonymSession]
) -> None:
    def liar() -> GenericFakeChatModel:
        return GenericFakeChatModel(messages=iter([AIMessage("ask <PERSON_7> and <PERSON_1>")] * 2))

    strict = make_session(backend)
    with pytest.raises((VaultError, SidecarError), match="PERSON_7") as e:
        (strict.redact | liar() | strict.restore).invoke(ANA)
    with pytest.raises((VaultError, SidecarError), match="PERSON_7"):
        list((strict.redact | liar() | strict.restore).stream(ANA))
    assert _no_names(str(e.value))
    lenient = make_session(backend, unknown="keep")
    assert (lenient.redact | liar() | lenient.restore).invoke(ANA).content == "ask <PERSON_7> and Ana Silva"
    # before any redaction there is no mapping: nothing to restore, and nothing to hold
    assert make_session(backend, unknown="keep").restore.invoke("hi <PERSON_1>") == "hi <PERSON_1>"
    with pytest.raises(VaultError, match="PERSON_1"):
        make_session(backend).restore.invoke("hi <PERSON_1>")


def test_what_cannot_be_read_is_refused(guard: Guardrail, address: str) -> None:
    session = PseudonymSession(guard)
    with pytest.raises(TypeError, match="cannot read the texts of a bytes") as e:
        session.redact.invoke({"q": b"Ana Silva"})
    assert _no_names(str(e.value))
    with pytest.raises(TypeError, match="PseudonymSession"):
        session.redact.invoke(ANA, config={"configurable": {SESSION_KEY: "conv-1"}})

    async def sync_call_on_an_async_client() -> None:
        async with AsyncGuardrailClient(address) as client:
            with pytest.raises(TypeError, match="GuardrailClient or the sidecar's address"):
                PseudonymSession(client).redact.invoke(ANA)

    asyncio.run(sync_call_on_an_async_client())
    with pytest.raises(TypeError, match="vault= goes with an in-process"):
        PseudonymSession(address, vault=Vault.from_spec(SIDECAR_KEY))
    with pytest.raises(TypeError, match="client options"):
        PseudonymSession(guard, timeout=3)
    with pytest.raises(ValueError, match="unknown must be one of"):
        PseudonymSession(guard, unknown="drop")


# -- README -----------------------------------------------------------------------------------------
def _run_readme(capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    namespace: dict = {}
    exec(compile(readme_block("LangChain"), "README.md", "exec"), namespace)
    return namespace, capsys.readouterr().out.strip()


README_OUTPUT = "Sure, I will call Ana Silva.\nAna Silva said yes."


def test_readme_snippet_runs(
    guard: Guardrail, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's snippet as written, with the tiny bundle for ``Guardrail.load()``."""
    monkeypatch.setattr(Guardrail, "load", classmethod(lambda cls, *a, **kw: guard))
    ns, printed = _run_readme(capsys)
    assert printed == README_OUTPUT
    assert ns["session"].restore.invoke("<PERSON_1>") == "Ana Silva"


@pytest.mark.model
def test_readme_snippet_runs_on_the_default_bundle(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, printed = _run_readme(capsys)
    assert printed == README_OUTPUT
