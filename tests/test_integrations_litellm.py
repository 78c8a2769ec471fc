"""The LiteLLM guardrail against a real sidecar over the tiny bundle, with LiteLLM's own machinery and a
mocked upstream model (a LiteLLM ``CustomLLM`` provider that records what it was sent): LiteLLM runs the
pre- and post-call hooks itself (``litellm.acompletion`` with ``guardrails=[...]``); the streaming
iterator hook, which only LiteLLM's proxy runs, is driven as the proxy does (``ProxyLogging``), over
LiteLLM's own stream of ``ModelResponseStream`` chunks. No network."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else importing litellm fetches a price list

import asyncio
import copy
import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
import torch
import yaml
from litellm.caching import DualCache
from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.llms.custom_llm import CustomLLM
from litellm.proxy.types_utils.utils import get_instance_fn
from litellm.types.guardrails import GuardrailEventHooks, LitellmParams
from litellm.types.proxy.auth.user_api_key_auth import UserAPIKeyAuth
from litellm.types.utils import GenericStreamingChunk, ModelResponse, ModelResponseStream

from guardrail.integrations.litellm import (
    MAPPING_HEADER,
    MAPPING_KEY,
    SCOPE_HEADER,
    SCOPE_KEY,
    TARGET_ENV,
    GuardrailSidecarError,
    SidecarGuardrail,
)
from guardrail.pipeline import Guardrail
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings
from guardrail.vault import Vault
from tests.conftest import TINY_NAMES, readme_block

MODEL = "guardrail-mock/echo"
EMAIL = "ana.silva@example.com"
RAW = [*TINY_NAMES, EMAIL]
"""What the upstream, errors and logs must never see (the tiny probe knows the names; patterns the email)."""
ASK = f"please call Ana Silva thanks, or mail {EMAIL}"
KEY = Vault.new_key("k1")
AUTH = UserAPIKeyAuth()
# LiteLLM's own types make pydantic warn about ReadOnly TypedDict items when first built
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning")


class Upstream(CustomLLM):
    """The model behind LiteLLM: records the messages it is sent, answers ``answer(messages)``, and
    streams that answer in pieces of ``chunk`` characters (so placeholders are split across chunks)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[dict]] = []
        self.answer: Callable[[list[dict]], str] = lambda messages: messages[-1]["content"]
        self.chunk = 3
        self.pieces: list[str] = []

    def _reply(self, messages: list[dict]) -> str:
        self.seen.append(copy.deepcopy(messages))
        return self.answer(messages)

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        content = self._reply(messages)
        message = {"role": "assistant", "content": content}
        return ModelResponse(model=model, choices=[{"index": 0, "finish_reason": "stop", "message": message}])

    async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any):  # type: ignore[override]
        text = self._reply(messages)
        self.pieces = [text[i : i + self.chunk] for i in range(0, len(text), self.chunk)]
        for i, piece in enumerate(self.pieces):
            last = i == len(self.pieces) - 1
            yield GenericStreamingChunk(
                text=piece,
                is_finished=last,
                finish_reason="stop" if last else "",
                usage=None,
                index=0,
                tool_use=None,
            )


@pytest.fixture(scope="module")
def sidecar(tiny_bundle_dir: Path) -> Iterator[SidecarThread]:
    torch.set_num_threads(1)
    guard = Guardrail.load(tiny_bundle_dir, dtype="fp32")
    with SidecarThread(guard, ServeSettings(port=0, max_wait_ms=5, vault_key=KEY)) as sc:
        yield sc


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(litellm, "custom_provider_map", [{"provider": "guardrail-mock", "custom_handler": up}])
        yield up


@pytest.fixture
def model(upstream: Upstream) -> Iterator[Upstream]:
    """The upstream, reset: records cleared, the echo answer, 3-character chunks."""
    upstream.seen.clear()
    upstream.answer = Upstream().answer
    upstream.chunk = 3
    yield upstream


def _guard(port: int, name: str = "pii", **kwargs: Any) -> SidecarGuardrail:
    return SidecarGuardrail(
        guardrail_name=name,
        event_hook=["pre_call", "post_call"],
        default_on=True,
        api_base=f"127.0.0.1:{port}",
        timeout=30,
        **kwargs,
    )


@pytest.fixture
def pii(sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch) -> SidecarGuardrail:
    """The guardrail, registered with LiteLLM as its proxy would (``litellm.callbacks``)."""
    g = _guard(sidecar.port)
    monkeypatch.setattr(litellm, "callbacks", [g])
    return g


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_raw(x: object) -> bool:
    text = x if isinstance(x, str) else json.dumps(x, default=str)
    return not any(v in text for v in RAW)


def _complete(guard: SidecarGuardrail, messages: list[dict], metadata: dict | None = None) -> ModelResponse:
    """One ``litellm.acompletion`` through the guardrail (the SDK's way of naming a guardrail)."""
    kwargs = {"metadata": metadata} if metadata is not None else {}
    return asyncio.run(
        litellm.acompletion(model=MODEL, messages=messages, guardrails=[guard.guardrail_name], **kwargs)
    )


def _proxy_stream(guard: SidecarGuardrail, data: dict) -> tuple[dict, list[ModelResponseStream]]:
    """A streamed call in the proxy's order: pre-call hook on the request, the model call with what it
    returned, the streaming iterator hook over LiteLLM's stream."""

    async def run() -> tuple[dict, list[ModelResponseStream]]:
        request = await guard.async_pre_call_hook(
            user_api_key_dict=AUTH, cache=DualCache(), data=data, call_type="acompletion"
        )
        stream = await litellm.acompletion(model=MODEL, messages=request["messages"], stream=True)
        hook = guard.async_post_call_streaming_iterator_hook(
            user_api_key_dict=AUTH, response=stream, request_data=request
        )
        return request, [chunk async for chunk in hook]

    return asyncio.run(run())


def _text(chunks: list[ModelResponseStream]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks)


# ---- pre-call and post-call, run by LiteLLM ----------------------------------------------------------


def test_upstream_sees_placeholders_and_the_caller_the_values(
    pii: SidecarGuardrail, model: Upstream, network_attempts: list[str]
) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    messages = [
        {"role": "system", "content": "I met Bob Stone see you soon"},
        {"role": "user", "content": [{"type": "text", "text": "the order for Lena Vogt please call"}, image]},
        {"role": "user", "content": ASK},
    ]
    sent = copy.deepcopy(messages)
    metadata: dict = {}
    answer = _complete(pii, messages, metadata)

    seen = model.seen[-1]
    assert _no_raw(seen)
    assert seen[0] == {"role": "system", "content": "I met <PERSON_1> see you soon"}
    assert seen[1]["content"] == [{"type": "text", "text": "the order for <PERSON_2> please call"}, image]
    assert seen[2]["content"] == "please call <PERSON_3> thanks, or mail <EMAIL_1>"
    assert answer.choices[0].message.content == ASK  # restored by the post-call hook
    assert messages == sent  # the caller's messages are not rewritten in place
    # the sealed mapping rides in the request's metadata (here the caller's own dict) and in the headers
    assert metadata[MAPPING_KEY].startswith("grv1.k1.") and _no_raw(metadata[MAPPING_KEY])
    assert metadata[SCOPE_KEY]  # no session id: the call's own id
    headers = asyncio.run(
        pii.async_post_call_response_headers_hook(
            data={"metadata": metadata}, user_api_key_dict=AUTH, response=answer
        )
    )
    assert headers == {MAPPING_HEADER: metadata[MAPPING_KEY], SCOPE_HEADER: metadata[SCOPE_KEY]}
    assert network_attempts == []


def test_post_call_restores_a_copy_with_tool_call_arguments(pii: SidecarGuardrail, model: Upstream) -> None:
    metadata: dict = {}
    _complete(pii, [{"role": "user", "content": ASK}], metadata)
    tool_call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "mail", "arguments": '{"to": "<EMAIL_1>"}'},
    }
    message = {
        "role": "assistant",
        "content": "mailing <PERSON_1>; ask <PERSON_9>",
        "tool_calls": [tool_call],
    }
    upstream = ModelResponse(
        model="m", choices=[{"index": 0, "finish_reason": "tool_calls", "message": message}]
    )
    before = upstream.model_dump()
    out = asyncio.run(
        pii.async_post_call_success_hook(
            data={"metadata": metadata}, user_api_key_dict=AUTH, response=upstream
        )
    )
    assert out.choices[0].message.content == "mailing Ana Silva; ask <PERSON_9>"  # an unknown one is kept
    assert json.loads(out.choices[0].message.tool_calls[0].function.arguments) == {"to": EMAIL}
    assert upstream.model_dump() == before  # the upstream's answer object is left as it is
    strict = _guard(int(pii.target.rsplit(":", 1)[1]), name="strict", unknown="error")
    with pytest.raises(GuardrailSidecarError) as e:
        asyncio.run(
            strict.async_post_call_success_hook(
                data={"metadata": metadata}, user_api_key_dict=AUTH, response=upstream
            )
        )
    assert e.value.status_code == 400 and "<PERSON_9>" in e.value.message and _no_raw(e.value.message)


def test_two_turns_keep_each_value_s_pseudonym(pii: SidecarGuardrail, model: Upstream) -> None:
    turn_1 = [
        {"role": "user", "content": "please call Ana Silva thanks"},
        {"role": "user", "content": "I met Bob Stone see you soon"},
    ]
    first: dict = {"session_id": "conv-1"}
    answer_1 = _complete(pii, turn_1, first).choices[0].message.content
    assert answer_1 == "I met Bob Stone see you soon" and first[SCOPE_KEY] == "conv-1"

    # the next turn, sent with the mapping the first one returned (the history trimmed)
    turn_2 = [
        {"role": "user", "content": "send it to Lena Vogt thanks"},
        {"role": "user", "content": "the order for Bob Stone please call"},
    ]
    second = {"session_id": "conv-1", MAPPING_KEY: first[MAPPING_KEY]}
    answer_2 = _complete(pii, turn_2, second).choices[0].message.content
    assert [m["content"] for m in model.seen[-1]] == [
        "send it to <PERSON_3> thanks",  # new
        "the order for <PERSON_2> please call",  # Bob Stone, as in turn 1
    ]
    assert answer_2 == "the order for Bob Stone please call"
    assert second[MAPPING_KEY] != first[MAPPING_KEY]  # the new mapping holds both turns

    # the whole history (the assistant's restored answer included) is pseudonymised too
    history = [*turn_1, {"role": "assistant", "content": answer_1}, turn_2[1]]
    _complete(pii, history, {"session_id": "conv-1", MAPPING_KEY: second[MAPPING_KEY]})
    assert [m["content"] for m in model.seen[-1]] == [
        "please call <PERSON_1> thanks",
        "I met <PERSON_2> see you soon",
        "I met <PERSON_2> see you soon",
        "the order for <PERSON_2> please call",
    ]
    # without the mapping, a new conversation numbers afresh
    _complete(pii, turn_2, {"session_id": "conv-2"})
    assert model.seen[-1][0]["content"] == "send it to <PERSON_1> thanks"


# ---- streaming, as LiteLLM's proxy runs it -----------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 4])
def test_a_streamed_answer_is_restored_across_chunk_splits(
    pii: SidecarGuardrail, model: Upstream, chunk: int
) -> None:
    model.chunk = chunk
    data = {
        "model": MODEL,
        "messages": [{"role": "user", "content": ASK}],
        "litellm_call_id": f"call-{chunk}",
    }
    request, chunks = _proxy_stream(pii, data)
    assert _no_raw(model.seen[-1]) and request["metadata"][SCOPE_KEY] == f"call-{chunk}"
    assert not any("<PERSON_1>" in p for p in model.pieces)  # the upstream split every placeholder
    assert all(isinstance(c, ModelResponseStream) for c in chunks)
    assert _text(chunks) == ASK
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert not any("<" in (c.choices[0].delta.content or "") for c in chunks)  # no half placeholder out


def test_a_stream_without_mapping_passes_through(pii: SidecarGuardrail, model: Upstream) -> None:
    async def run() -> list[ModelResponseStream]:
        messages = [{"role": "user", "content": "hello there"}]
        stream = await litellm.acompletion(model=MODEL, messages=messages, stream=True)
        hook = pii.async_post_call_streaming_iterator_hook(
            user_api_key_dict=AUTH, response=stream, request_data={}
        )
        return [c async for c in hook]

    pieces = [c.choices[0].delta.content for c in asyncio.run(run())]
    assert [p for p in pieces if p] == model.pieces


# ---- redact_output: the model's own PII --------------------------------------------------------------


def _invents_a_name(messages: list[dict]) -> str:
    placeholder = messages[-1]["content"].split()[2]  # "please call <PERSON_1> thanks"
    return f"please call {placeholder} thanks, I met Jun Sato see you soon"


def test_redact_output_hides_the_model_s_own_pii_and_restores_the_caller_s(
    sidecar: SidecarThread, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = _guard(sidecar.port, name="pii-out", redact_output=True)
    monkeypatch.setattr(litellm, "callbacks", [guard])
    model.answer = _invents_a_name
    want = "please call Ana Silva thanks, I met [PERSON] see you soon"
    # the tiny probe takes the placeholder in a name's place for a name: it must still be restored
    assert (
        _complete(guard, [{"role": "user", "content": "please call Ana Silva thanks"}])
        .choices[0]
        .message.content
        == want
    )
    for chunk in (1, 5):
        model.chunk = chunk
        data = {"model": MODEL, "messages": [{"role": "user", "content": "please call Ana Silva thanks"}]}
        assert _text(_proxy_stream(guard, data)[1]) == want


# ---- failing closed ----------------------------------------------------------------------------------


def test_a_sidecar_that_is_down_fails_the_request_before_the_upstream(
    model: Upstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="guardrail")
    down = _guard(_free_port(), name="pii-down", retries=0)
    down.timeout = 2
    monkeypatch.setattr(litellm, "callbacks", [down])
    with pytest.raises(GuardrailSidecarError) as e:
        _complete(down, [{"role": "user", "content": ASK}])
    assert model.seen == []  # nothing went upstream
    assert e.value.code == "UNAVAILABLE" and e.value.status_code == 503 and _no_raw(str(e.value))
    # the post-call and streaming hooks fail closed too
    metadata = {MAPPING_KEY: "grv1.k1.AAAA", SCOPE_KEY: "s"}
    answer = ModelResponse(choices=[{"message": {"role": "assistant", "content": "call <PERSON_1>"}}])
    with pytest.raises(GuardrailSidecarError):
        asyncio.run(
            down.async_post_call_success_hook(
                data={"metadata": metadata}, user_api_key_dict=AUTH, response=answer
            )
        )
    for guard in (down, _guard(_free_port(), name="pii-down-out", retries=0, redact_output=True)):
        guard.timeout = 2
        with pytest.raises(GuardrailSidecarError) as e:
            _stream_through(guard, {"metadata": dict(metadata)})
        assert e.value.status_code == 503 and _no_raw(str(e.value))
    assert caplog.records and all(_no_raw(r.getMessage()) for r in caplog.records)


def _stream_through(guard: SidecarGuardrail, request_data: dict) -> list[ModelResponseStream]:
    """An upstream stream through the streaming iterator hook alone."""

    async def run() -> list[ModelResponseStream]:
        messages = [{"role": "user", "content": "call <PERSON_1> thanks"}]
        stream = await litellm.acompletion(model=MODEL, messages=messages, stream=True)
        hook = guard.async_post_call_streaming_iterator_hook(
            user_api_key_dict=AUTH, response=stream, request_data=request_data
        )
        return [c async for c in hook]

    return asyncio.run(run())


def test_a_bad_mapping_fails_the_request(
    pii: SidecarGuardrail, model: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="guardrail")
    metadata: dict = {"session_id": "conv-9"}
    _complete(pii, [{"role": "user", "content": ASK}], metadata)
    model.seen.clear()
    m = metadata[MAPPING_KEY]
    for bad, session in ((m[:-3] + ("x" if m[-3] != "x" else "y") + m[-2:], "conv-9"), (m, "conv-10")):
        with pytest.raises(GuardrailSidecarError) as e:
            _complete(pii, [{"role": "user", "content": ASK}], {"session_id": session, MAPPING_KEY: bad})
        assert (
            e.value.code == "INVALID_ARGUMENT" and e.value.status_code == 400 and "mapping" in e.value.message
        )
        assert _no_raw(str(e.value))
    assert model.seen == []
    assert all(_no_raw(r.getMessage()) for r in caplog.records)


def test_requests_it_cannot_pseudonymise_are_refused(pii: SidecarGuardrail) -> None:
    data = {"model": MODEL, "input": ASK}
    with pytest.raises(GuardrailRaisedException) as e:
        asyncio.run(
            pii.async_pre_call_hook(
                user_api_key_dict=AUTH, cache=DualCache(), data=data, call_type="aembedding"
            )
        )
    assert "input" in e.value.message and _no_raw(e.value.message)


def test_modes_other_than_pre_and_post_call_are_refused(sidecar: SidecarThread) -> None:
    for mode in ("during_call", "logging_only", ["pre_call", "during_call"]):
        with pytest.raises(ValueError, match="not in the supported event hooks"):
            SidecarGuardrail(guardrail_name="x", event_hook=mode)
    with pytest.raises(ValueError, match="fails closed"):
        SidecarGuardrail(guardrail_name="x", unreachable_fallback="fail_open")
    assert SidecarGuardrail(guardrail_name="x").event_hook == ["pre_call", "post_call"]


# ---- the README ---------------------------------------------------------------------------------------


def test_readme_config_builds_the_guardrail_as_litellm_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TARGET_ENV, "sidecar.internal:50051")
    config = yaml.safe_load(readme_block("LiteLLM", "yaml"))
    (entry,) = config["guardrails"]
    params = LitellmParams(**entry["litellm_params"])  # LiteLLM's own validation of the entry
    cls = get_instance_fn(params.guardrail)  # how LiteLLM's proxy imports `guardrail: module.Class`
    assert cls is SidecarGuardrail and issubclass(cls, CustomGuardrail)
    modes = params.mode if isinstance(params.mode, list) else [params.mode]
    assert set(modes) <= {h.value for h in GuardrailEventHooks} and set(modes) == {"pre_call", "post_call"}
    # as LiteLLM's initialize_custom_guardrail builds it: every set parameter as a keyword
    extra = {
        k: v
        for k, v in params.model_dump(exclude_none=True).items()
        if k not in ("guardrail", "mode", "default_on", "stream_scope")
    }
    g = cls(
        guardrail_name=entry["guardrail_name"], event_hook=params.mode, default_on=params.default_on, **extra
    )
    assert g.target == "sidecar.internal:50051" and g.default_on is True
    assert g.should_run_guardrail({"messages": []}, GuardrailEventHooks.pre_call)
    assert g.should_run_guardrail({"messages": []}, GuardrailEventHooks.post_call)
    assert not g.should_run_guardrail({"messages": []}, GuardrailEventHooks.during_call)
