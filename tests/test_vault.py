"""Sealed pseudonym mappings and restoring: round trips, every way a mapping can be wrong, the placeholder
forms a model writes, and streams split anywhere."""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.redact import Pseudonyms, RedactionError, Redactor
from guardrail.spans import Span
from guardrail.vault import KEY_ENV, RestoreStream, Vault, VaultError, VaultMissing, restore

VALUES = [
    ("PERSON", "Ana Silva"),
    ("PERSON", "Bob Stone"),
    ("LOCATION", "Paris"),
    ("ID_NUMBER", "123-45-6789"),
]


def _pseudonyms() -> Pseudonyms:
    p = Pseudonyms()
    for label, value in VALUES:
        p.number(label, value)
    return p


def _vault(kid: str = "k1", **kw) -> Vault:
    return Vault.from_spec(Vault.new_key(kid), **kw)


def test_pseudonyms_number_values_once_and_keep_the_first_spelling() -> None:
    p = Pseudonyms()
    assert [p.number("PERSON", v) for v in ("Ana Silva", "ana  silva", "Bob", "ANA SILVA")] == [1, 1, 2, 1]
    assert p.number("LOCATION", "Paris") == 1
    assert p.surface("PERSON", 1) == "Ana Silva" and p.surface("PERSON", 3) is None
    assert p.entries() == [("LOCATION", 1, "Paris"), ("PERSON", 1, "Ana Silva"), ("PERSON", 2, "Bob")]
    again = Pseudonyms.from_entries(p.entries())
    assert again.entries() == p.entries() and again.number("PERSON", "bob") == 2
    assert again.number("PERSON", "Lena") == 3
    assert "Ana" not in repr(p)
    with pytest.raises(RedactionError, match=r"1\.\.n"):
        Pseudonyms.from_entries([("PERSON", 2, "Bob")])


def test_a_redactor_goes_on_from_given_pseudonyms() -> None:
    p = _pseudonyms()
    done = Redactor("pseudonym", pseudonyms=p).redact(
        "Lena met Bob Stone", [Span(0, 4, "PERSON"), Span(9, 18, "PERSON")]
    )
    assert done.text == "<PERSON_3> met <PERSON_2>"
    with pytest.raises(RedactionError, match="pseudonym numbering"):
        Redactor("mask", pseudonyms=p)


def test_seal_open_round_trip_and_no_value_in_the_token() -> None:
    vault, p = _vault(), _pseudonyms()
    token = vault.seal(p, scope="conversation-7")
    assert token.startswith("grv1.k1.")
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    for _, value in VALUES:
        assert value not in token and value.encode() not in raw
    assert vault.open(token, scope="conversation-7").entries() == p.entries()
    assert vault.seal(p, "conversation-7") != token  # a fresh nonce each time
    assert "k1" in repr(vault) and "grv1" not in repr(vault)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t[:-4],  # truncated
        lambda t: t[:20],
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],  # one character changed
        lambda t: t.replace("grv1.", "grv2."),
        lambda t: "not a mapping",
        lambda t: "",
        lambda t: t + "==!!",
    ],
)
def test_a_changed_or_cut_mapping_is_refused(change) -> None:
    vault = _vault()
    with pytest.raises(VaultError) as e:
        vault.open(change(vault.seal(_pseudonyms())))
    assert not any(v in str(e.value) for _, v in VALUES)


def test_foreign_scope_key_and_key_id_are_refused() -> None:
    vault = _vault()
    token = vault.seal(_pseudonyms(), scope="alice")
    with pytest.raises(VaultError, match="another scope"):
        vault.open(token, scope="bob")
    with pytest.raises(VaultError, match="authentication"):
        _vault("k1").open(token, scope="alice")  # same id, another key
    with pytest.raises(VaultError, match="key id 'k1'"):
        _vault("k9").open(token, scope="alice")


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old = Vault.new_key("k1")
    token = Vault.from_spec(old).seal(_pseudonyms())
    rotated = Vault.from_spec(f"{Vault.new_key('k2')},{old}")
    assert rotated.key_id == "k2"
    assert rotated.open(token).entries() == _pseudonyms().entries()
    assert rotated.seal(_pseudonyms()).startswith("grv1.k2.")


def test_expired_mapping_is_refused() -> None:
    now = [1_000_000.0]
    spec = Vault.new_key()
    vault = Vault.from_spec(spec, ttl_s=60)
    vault._clock = lambda: now[0]
    token = vault.seal(_pseudonyms())
    now[0] += 59
    assert len(vault.open(token)) == len(VALUES)
    now[0] += 2
    with pytest.raises(VaultError, match="expired"):
        vault.open(token)
    forever = Vault.from_spec(spec, ttl_s=None)
    assert len(forever.open(forever.seal(_pseudonyms()))) == len(VALUES)


@pytest.mark.parametrize(
    "spec",
    ["", "k1", "k1:", "k1:!!!", "k1:" + base64.b64encode(b"short").decode(), "bad id:" + "A" * 44],
)
def test_bad_key_specs_say_why_without_the_key(spec: str) -> None:
    with pytest.raises(VaultError) as e:
        Vault.from_spec(spec)
    assert spec.partition(":")[2] not in str(e.value) or not spec.partition(":")[2]


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(VaultMissing, match=KEY_ENV):
        Vault.from_env()
    monkeypatch.setenv(KEY_ENV, Vault.new_key("prod"))
    assert Vault.from_env().key_id == "prod"


@pytest.mark.parametrize(
    ("written", "restored"),
    [
        ("<PERSON_1>", "Ana Silva"),
        ("<person_1>", "Ana Silva"),
        ("< PERSON 1 >", "Ana Silva"),
        ("<PERSON-2>", "Bob Stone"),
        ("[PERSON_2]", "Bob Stone"),
        ("{PERSON_2}", "Bob Stone"),
        ("&lt;LOCATION_1&gt;", "Paris"),
        ("\\<LOCATION_1\\>", "Paris"),
        ("PERSON_1's", "Ana Silva's"),
        ("<ID_NUMBER_1>", "123-45-6789"),
        ("<id number 1>", "123-45-6789"),
        ("**<PERSON_1>**,", "**Ana Silva**,"),
        ("<PERSON_01>", "Ana Silva"),
    ],
)
def test_placeholder_forms_a_model_writes(written: str, restored: str) -> None:
    out = restore(f"Hi {written} ok", _pseudonyms())
    assert out.text == f"Hi {restored} ok" and out.restored == 1


@pytest.mark.parametrize("prose", ["the person 1 said", "PERSON_1x", "XPERSON_1", "<PERSON>", "PERSONAL_1"])
def test_prose_is_left_alone(prose: str) -> None:
    assert (
        restore(prose, _pseudonyms()) == restore(prose, Pseudonyms())
        and restore(prose, _pseudonyms()).restored == 0
    )


def test_unknown_placeholders_error_or_stay() -> None:
    with pytest.raises(VaultError, match=r"<PERSON_7> is not in the mapping"):
        restore("ask <PERSON_7>", _pseudonyms())
    out = restore("ask <person_7> and <PERSON_1>", _pseudonyms(), unknown="keep")
    assert out.text == "ask <person_7> and Ana Silva" and out.unknown == ("<PERSON_7>",) and out.restored == 1
    with pytest.raises(VaultError):
        RestoreStream(_pseudonyms(), unknown="guess")


ANSWER = (
    "Sure! <PERSON_1> and [person 2] meet in &lt;LOCATION_1&gt;. PERSON_1's id is {ID_NUMBER_1}; "
    "<PERSON_1><PERSON_2>PERSON_1 \\<PERSON_2\\> < person-1 > end"
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, len(ANSWER) - 1), max_size=40))
def test_a_stream_split_anywhere_equals_restoring_the_whole(cuts: list[int]) -> None:
    edges = [0, *sorted(set(cuts)), len(ANSWER)]
    stream = RestoreStream(_pseudonyms())
    out = "".join(stream.feed(ANSWER[a:b]) for a, b in itertools.pairwise(edges)) + stream.finish()
    whole = restore(ANSWER, _pseudonyms())
    assert out == whole.text and stream.restored == whole.restored == 10


def test_a_stream_releases_text_before_a_partial_placeholder() -> None:
    stream = RestoreStream(_pseudonyms())
    assert stream.feed("Dear <PERS") == "Dear "
    assert stream.feed("ON_1>, welcome") == "Ana Silva, welcome"
    assert stream.feed(" PERSON_1") == " "  # PERSON_1 may still become PERSON_12
    assert stream.finish() == "Ana Silva"
