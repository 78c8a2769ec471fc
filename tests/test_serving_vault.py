"""Reversible pseudonyms through the sidecar: Redact with seal, Restore, RestoreStream, RedactStream with
seal, the library and the CLI; every refusal with its status code, and no value in any error or log."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import sys
from pathlib import Path

import grpc
import pytest

from guardrail import cli
from guardrail.client import AsyncGuardrailClient, GuardrailClient, SidecarError
from guardrail.pipeline import Guardrail
from guardrail.serving import guardrail_pb2 as pb
from guardrail.serving import guardrail_pb2_grpc as pb_grpc
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings
from guardrail.vault import KEY_ENV, Vault, VaultError
from tests.conftest import readme_block

# the tiny bundle's probe knows these names in these frames (tests/conftest.py)
TURN_1 = ["please call Ana Silva thanks, or mail ana.silva@example.com", "I met Bob Stone see you soon"]
TURN_2 = ["send it to Lena Vogt thanks", "the order for Bob Stone please call"]
NAMES = ["Ana Silva", "Bob Stone", "Lena Vogt", "ana.silva@example.com"]
KEY = Vault.new_key("k1")


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def sidecar(guard: Guardrail):
    with SidecarThread(guard, ServeSettings(port=0, max_wait_ms=5, vault_key=KEY)) as sc:
        yield sc


@pytest.fixture(scope="module")
def client(sidecar: SidecarThread):
    with GuardrailClient(f"127.0.0.1:{sidecar.port}", timeout=30) as c:
        yield c


def _refused(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(SidecarError) as e:
        call(*args, **kwargs)
    assert not any(n in e.value.message for n in NAMES)
    return e.value.code, e.value.message


def test_pseudonymise_then_restore_gives_the_text_back(client: GuardrailClient, guard: Guardrail) -> None:
    sealed = client.pseudonymise(TURN_1, scope="conv-1")
    assert [r.text for r in sealed.results] == [r.text for r in guard.redact(TURN_1, operator="pseudonym")]
    assert "<PERSON_1>" in sealed.results[0].text and not any(n in sealed.mapping for n in NAMES)
    back = client.restore([r.text for r in sealed.results], sealed.mapping, scope="conv-1")
    assert [r.text for r in back] == TURN_1
    # the library opens what the sidecar sealed, with the same key
    lib = guard.restore(
        [r.text for r in sealed.results], sealed.mapping, vault=Vault.from_spec(KEY), scope="conv-1"
    )
    assert [r.text for r in lib] == TURN_1
    assert client.info()["vault_key_id"] == "k1"


def test_the_next_turn_keeps_each_value_s_pseudonym(client: GuardrailClient) -> None:
    first = client.pseudonymise(TURN_1, scope="conv-2")
    second = client.pseudonymise(TURN_2, mapping=first.mapping, scope="conv-2")
    assert "<PERSON_3>" in second.results[0].text  # Lena Vogt, new
    assert "<PERSON_2>" in second.results[1].text  # Bob Stone, as in turn 1
    # the new mapping holds both turns
    answer = "<PERSON_1>, <PERSON_2> and <PERSON_3>"
    assert (
        client.restore(answer, second.mapping, scope="conv-2")[0].text == "Ana Silva, Bob Stone and Lena Vogt"
    )


def test_refusals_are_invalid_argument_and_quote_no_value(client: GuardrailClient) -> None:
    sealed = client.pseudonymise(TURN_1, scope="conv-3")
    m = sealed.mapping
    for bad in (m[:-6], m[:-3] + ("x" if m[-3] != "x" else "y") + m[-2:], "grv1.k1.AAAA", "hello"):
        code, msg = _refused(client.restore, "<PERSON_1>", bad, scope="conv-3")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "mapping" in msg
    code, msg = _refused(client.restore, "<PERSON_1>", m, scope="conv-4")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "scope" in msg
    code, msg = _refused(
        client.restore,
        "<PERSON_1>",
        Vault.from_spec(Vault.new_key("k7")).seal(Vault.from_spec(KEY).open(m, "conv-3")),
        scope="conv-3",
    )
    assert "key id 'k7'" in msg
    code, msg = _refused(client.restore, "ask <PERSON_9>", m, scope="conv-3")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "<PERSON_9>" in msg
    kept = client.restore("ask <PERSON_9> and <PERSON_1>", m, scope="conv-3", unknown="keep")[0]
    assert kept.text == "ask <PERSON_9> and Ana Silva" and kept.unknown == ("<PERSON_9>",)
    code, _ = _refused(client.pseudonymise, TURN_2, mapping=m[:-5], scope="conv-3")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    with grpc.insecure_channel(client.target) as ch:
        stub = pb_grpc.GuardrailStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.Redact(pb.RedactRequest(texts=TURN_1, operator="mask", seal=True))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pseudonym" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.Redact(pb.RedactRequest(texts=TURN_1, operator="pseudonym", mapping=m, scope="conv-3"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "seal" in e.value.details()


def test_no_vault_key_is_failed_precondition(guard: Guardrail) -> None:
    with SidecarThread(guard, ServeSettings(port=0)) as sc, GuardrailClient(f"127.0.0.1:{sc.port}") as c:
        code, msg = _refused(c.pseudonymise, TURN_1)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and KEY_ENV in msg
        code, _ = _refused(c.restore, "x", "grv1.k1.AAAA")
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert c.info()["vault_key_id"] == ""
        assert c.redact(TURN_1, operator="pseudonym")  # plain pseudonyms need no vault


def test_a_bad_vault_key_setting_is_refused_at_start() -> None:
    with pytest.raises(ValueError) as e:
        ServeSettings(vault_key="k1:tooshort")
    assert "tooshort" not in str(e.value)


def test_restore_stream_split_inside_placeholders_equals_restore(client: GuardrailClient) -> None:
    sealed = client.pseudonymise(TURN_1, scope="s")
    answer = "Hi < person_1 >, [PERSON-2] says &lt;PERSON_1&gt; is PERSON_2's friend."
    whole = client.restore(answer, sealed.mapping, scope="s")[0].text
    assert whole == "Hi Ana Silva, Bob Stone says Ana Silva is Bob Stone's friend."
    for size in (1, 2, 3, 7, 100):
        chunks = [answer[i : i + size] for i in range(0, len(answer), size)]
        assert "".join(client.restore_stream(chunks, sealed.mapping, scope="s")) == whole
    assert "".join(client.restore_stream([], sealed.mapping, scope="s")) == ""
    with pytest.raises(SidecarError) as e:
        list(client.restore_stream(["<PERS", "ON_8>"], sealed.mapping, scope="s"))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_async_client_and_redact_stream_with_seal(client: GuardrailClient, sidecar: SidecarThread) -> None:
    text = " ".join(TURN_1)

    async def run() -> None:
        async with AsyncGuardrailClient(f"127.0.0.1:{sidecar.port}", timeout=30) as c:
            sealed = await c.pseudonymise(TURN_1, scope="a")
            back = await c.restore([r.text for r in sealed.results], sealed.mapping, scope="a")
            assert [r.text for r in back] == TURN_1

            async def chunks():
                for piece in ("<PERSON", "_2> and <PER", "SON_1>"):
                    yield piece

            got = "".join([p async for p in c.restore_stream(chunks(), sealed.mapping, scope="a")])
            assert got == "Bob Stone and Ana Silva"

    asyncio.run(run())
    # RedactStream with seal: the final message carries the mapping of the streamed text
    with grpc.insecure_channel(client.target) as ch:
        stub = pb_grpc.GuardrailStub(ch)
        opts = pb.StreamOptions(operator="pseudonym", seal=True, scope="st")
        pieces = [text[i : i + 9] for i in range(0, len(text), 9)]
        reqs = [pb.RedactStreamRequest(options=opts, chunk=pieces[0])] + [
            pb.RedactStreamRequest(chunk=p) for p in pieces[1:]
        ]
        out = list(stub.RedactStream(iter(reqs)))
    assert out[-1].final and out[-1].mapping.startswith("grv1.k1.")
    assert all(not r.mapping for r in out[:-1])
    redacted = "".join(r.text for r in out)
    assert not any(n in redacted for n in NAMES[:2])
    assert client.restore(redacted, out[-1].mapping, scope="st")[0].text == text


def test_nothing_of_a_value_reaches_the_log(
    client: GuardrailClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        sealed = client.pseudonymise(TURN_1, scope="log")
        client.restore("<PERSON_1>", sealed.mapping, scope="log")
        for bad in (sealed.mapping[:-4], sealed.mapping):
            with contextlib.suppress(SidecarError):
                client.restore("<PERSON_5>", bad, scope="log")
    assert not any(n in caplog.text for n in NAMES)


def test_library_pseudonymise_and_restore(guard: Guardrail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    sealed = guard.pseudonymise(TURN_1, scope="lib")
    assert [
        r.text for r in guard.restore([r.text for r in sealed.results], sealed.mapping, scope="lib")
    ] == TURN_1
    nxt = guard.pseudonymise(TURN_2, mapping=sealed.mapping, scope="lib")
    assert "<PERSON_2>" in nxt.results[1].text
    with pytest.raises(VaultError):
        guard.restore("x", sealed.mapping, scope="other")


def test_cli_redact_seal_and_restore(
    tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TURN_1) + "\n")
    m1 = tmp_path / "m1"

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    bundle = ["--bundle", str(tiny_bundle_dir), "--device", "cpu", "--dtype", "fp32"]
    code, red, err = run(
        "redact", *bundle, "--operator", "pseudonym", "--seal-to", str(m1), "--scope", "c", str(src)
    )
    assert code == 0, err
    assert "Ana Silva" not in red and m1.read_text().startswith("grv1.k1.")
    assert run("restore", "--mapping", str(m1), "--scope", "c", stdin=red)[:2] == (0, src.read_text())
    code, out, err = run("restore", "--mapping", str(m1), "--scope", "other", stdin=red)
    assert code == 2 and out == "" and "scope" in err and not any(n in err for n in NAMES)
    code, out, err = run("restore", "--mapping", str(m1), "--scope", "c", stdin="<PERSON_9>")
    assert code == 2 and out == "" and "<PERSON_9>" in err
    code, out, err = run(
        "restore", "--mapping", str(m1), "--scope", "c", "--keep-unknown", stdin="<PERSON_9>"
    )
    assert code == 0 and out == "<PERSON_9>" and "1 placeholders" in err
    code, _, err = run("redact", *bundle, "--operator", "mask", "--seal-to", str(tmp_path / "m2"), str(src))
    assert code == 2 and "pseudonym" in err and not (tmp_path / "m2").exists()
    code, key, _ = run("vault-key", "--id", "k2")
    assert code == 0 and Vault.from_spec(key.strip()).key_id == "k2"
    monkeypatch.setenv(KEY_ENV, "")
    code, _, err = run("restore", "--mapping", str(m1), stdin="x")
    assert code == 2 and KEY_ENV in err


@pytest.mark.model
def test_readme_snippet_runs_as_written(
    real_guardrail: Guardrail, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's example on the default bundle: every printed line is the comment the README gives."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setattr(Guardrail, "load", classmethod(lambda cls, *a, **kw: real_guardrail))
    code = readme_block("Reversible pseudonyms")
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    promised = [c.split("# ", 1)[1] for c in re.findall(r"(?:print\(.*\)  |^)# .*", code, re.MULTILINE)]
    assert printed == promised
