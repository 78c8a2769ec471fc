"""guardrail.synth: determinism, family split, span validity, label coverage, formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import synth
from guardrail.data import Record, parse_record
from guardrail.labels import CANONICAL
from guardrail.synth.engine import Builder, Ctx, compile_template, family_of, render
from guardrail.synth.ids import luhn_ok


@pytest.fixture(scope="module")
def sample() -> list[Record]:
    return synth.generate(2000, seed=0)


@pytest.fixture(scope="module")
def calib() -> list[Record]:
    return synth.generate(1000, seed=0, family="calib")


def check_spans(r: Record) -> None:
    last_end = 0
    for s in r.spans:
        assert 0 <= s.start < s.end <= len(r.text), (r.id, s)
        assert s.start >= last_end, f"{r.id}: overlapping or unsorted spans"
        assert s.label in CANONICAL
        surface = r.text[s.start : s.end]
        assert surface == surface.strip(), f"{r.id}: edge whitespace in {surface!r}"
        last_end = s.end


def test_api() -> None:
    assert synth.FAMILIES == ("train", "calib")
    assert synth.DEFAULT_LOCALES[0] == "en_US" and "ja_JP" in synth.DEFAULT_LOCALES
    assert callable(synth.generate) and callable(synth.main)


def test_deterministic() -> None:
    a = [r.to_dict() for r in synth.generate(300, seed=7)]
    b = [r.to_dict() for r in synth.generate(300, seed=7)]
    c = [r.to_dict() for r in synth.generate(300, seed=8)]
    assert a == b
    assert a != c


def test_prefix_stable() -> None:
    # Record i depends only on (seed, family, i): a longer run extends a shorter one.
    short = [r.to_dict() for r in synth.generate(50, seed=3)]
    long = [r.to_dict() for r in synth.generate(120, seed=3)]
    assert long[:50] == short


def test_record_fields(sample: list[Record]) -> None:
    assert sample[123].id == "synth-train-000123"
    assert {r.lang for r in sample} == set(synth.DEFAULT_LOCALES)
    for r in sample:
        assert r.extra["shape"] and r.extra["frame"]
        assert r.text == r.text.strip()
    en_us = sum(r.lang == "en_US" for r in sample) / len(sample)
    assert 0.33 < en_us < 0.47


def test_spans_valid(sample: list[Record], calib: list[Record]) -> None:
    for r in sample + calib:
        check_spans(r)
        parse_record(json.loads(json.dumps(r.to_dict())))  # the project's own validator agrees


def test_every_label_appears(sample: list[Record]) -> None:
    seen = {s.label for r in sample for s in r.spans}
    assert seen == set(CANONICAL)


def test_pii_free_share(sample: list[Record]) -> None:
    free = sum(not r.spans for r in sample) / len(sample)
    assert 0.12 <= free <= 0.25, free


def test_families_disjoint(sample: list[Record], calib: list[Record]) -> None:
    train_frames = {r.extra["frame"] for r in sample}
    calib_frames = {r.extra["frame"] for r in calib}
    assert not train_frames & calib_frames
    assert len(calib_frames) > 20
    assert {r.id.split("-")[1] for r in calib} == {"calib"}


def test_family_partition_is_a_quarter() -> None:
    names = [f"frame-{i}" for i in range(4000)]
    share = sum(family_of(n) == "calib" for n in names) / len(names)
    assert 0.2 < share < 0.3


def test_bad_family() -> None:
    with pytest.raises(ValueError):
        synth.generate(1, family="test")


def test_cards_luhn_valid(sample: list[Record]) -> None:
    cards = [r.text[s.start : s.end] for r in sample for s in r.spans if s.label == "CREDIT_CARD"]
    assert len(cards) > 20
    for c in cards:
        assert re.fullmatch(r"[0-9 -]+", c), c
        assert luhn_ok(c), c


def test_iban_mod97(sample: list[Record]) -> None:
    ibans = [r.text[s.start : s.end] for r in sample for s in r.spans if s.label == "IBAN"]
    assert ibans
    for x in ibans:
        v = x.replace(" ", "").upper()
        assert int("".join(str(int(ch, 36)) for ch in v[4:] + v[:4])) % 97 == 1, x


def test_titles_outside_person(sample: list[Record]) -> None:
    for r in sample:
        for s in r.spans:
            if s.label == "PERSON":
                surface = r.text[s.start : s.end]
                assert not re.match(r"(Mr|Mrs|Ms|Dr|Prof|Frau|Herr|Mme)\.? ", surface), surface


def test_multiline_address_one_span() -> None:
    recs = synth.generate(3000, seed=1)
    multi = [
        r.text[s.start : s.end]
        for r in recs
        for s in r.spans
        if s.label == "ADDRESS" and "\n" in r.text[s.start : s.end]
    ]
    assert multi


def test_template_grammar() -> None:
    import random

    from faker import Faker

    ctx = Ctx(rng=random.Random(0), fake=Faker("en_US"), locale="en_US", family="train")
    outs = set()
    for _ in range(50):
        b = Builder()
        render("(a|b) [x ]{EMAIL} (literal)", ctx, b)
        t = b.text()
        outs.add(t.split(" ")[0])
        assert t.endswith(" (literal)")
        (s,) = b.spans
        assert s.label == "EMAIL" and "@" in t[s.start : s.end]
    assert outs == {"a", "b"}
    with pytest.raises(ValueError):
        compile_template("unclosed [group")


def test_builder_case_keeps_offsets() -> None:
    b = Builder(case="upper")
    b.add("Straße ").add("Weiß", "PERSON")
    (s,) = b.spans
    assert b.text()[s.start : s.end] == "Weiß"  # "ß".upper() changes length: piece kept as written


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), family=st.sampled_from(synth.FAMILIES))
def test_any_seed_valid(seed: int, family: str) -> None:
    for r in synth.generate(20, seed=seed, family=family):
        check_spans(r)


def test_main_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    assert synth.main(["--n", "40", "--seed", "2", "--family", "calib", "--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40
    assert json.loads(lines[0])["id"] == "synth-calib-000000"


def test_speed() -> None:
    import time

    t = time.perf_counter()
    synth.generate(2000, seed=5)
    assert time.perf_counter() - t < 5.0


def _strings(obj: object) -> list[str]:
    """Every string value in a parsed JSON document, parsing nested JSON strings too."""
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    if isinstance(obj, str):
        if obj.startswith("{"):
            try:
                return [obj, *_strings(json.loads(obj))]
            except json.JSONDecodeError:
                pass
        return [obj]
    return []


def test_toolcall_json_parses_and_spans_on_values() -> None:
    recs = [r for r in synth.generate(3000, seed=4) if r.extra["shape"] == "toolcall"]
    n_json = 0
    for r in recs:
        start = r.text.find("{")
        if start < 0 or not r.text.startswith(("{", "Calling", "Action", "<tool", "tool_calls")):
            continue  # the python-call style
        doc = json.loads(r.text[start:])
        n_json += 1
        values = _strings(doc)
        for s in r.spans:
            surface = r.text[s.start : s.end]
            assert s.start > start
            # Undo the JSON escaping (once or twice) to get the raw value back.
            raw = surface
            for _ in range(2):
                if "\\" in raw:
                    raw = json.loads(f'"{raw}"')
            assert any(raw in v for v in values), (r.id, surface)
    assert n_json > 50


def test_calib_covers_every_label(calib: list[Record]) -> None:
    seen = {s.label for r in calib for s in r.spans}
    assert seen == set(CANONICAL)


def test_same_records_under_any_hash_seed() -> None:
    # Faker builds some lists from sets; str hashing must not leak into the records.
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, json; from guardrail import synth; "
        "recs = [r.to_dict() for r in synth.generate(800, seed=3)]; "
        "print(hashlib.sha256(json.dumps(recs).encode()).hexdigest())"
    )
    digests = set()
    for hs in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hs}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    here = [r.to_dict() for r in synth.generate(800, seed=3)]
    digests.add(hashlib.sha256(json.dumps(here).encode()).hexdigest())
    assert len(digests) == 1


def test_person_parts_merge_into_one_span() -> None:
    b = Builder()
    b.add("Hi ").add("Ana", "PERSON").add(" ").add("Silva", "PERSON").add(", ").add("Bo", "PERSON")
    assert [(s.start, s.end) for s in b.spans] == [(3, 12), (14, 16)]


# ------------------------------------------------------------------------------- the people shape


def _ctx(seed: int, locale: str = "en_US") -> Ctx:
    import random

    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    return Ctx(rng=random.Random(seed), fake=fake, locale=locale, family="train")


def _persons(text: str, spans: list) -> list[str]:
    return [text[s.start : s.end] for s in spans if s.label == "PERSON"]


def test_people_shape_appears(sample: list[Record], calib: list[Record]) -> None:
    share = sum(r.extra["shape"] == "people" for r in sample) / len(sample)
    assert 0.09 < share < 0.15, share
    kinds = {r.extra["frame"].split(":")[0] for r in sample + calib if r.extra["shape"] == "people"}
    assert {"people-list", "people-single", "people-review", "people-dlg", "people-hard"} <= kinds


@pytest.mark.parametrize("kind", ["LFIRST", "LLAST", "LFULL", "LMIX", "BFIRST", "BFULL", "BMIX"])
def test_list_one_span_per_name(kind: str) -> None:
    for seed in range(150):
        ctx = _ctx(seed, ("en_US", "de_DE", "ja_JP")[seed % 3])
        b = Builder()
        render(f"Attendees: {{{kind}}}.", ctx, b)
        text = b.text()
        names = _persons(text, b.spans)
        assert names == ctx.memo["list"], (text, names)
        assert len(names) >= 2
        for n in names:
            assert "," not in n and " and " not in n and " & " not in n and "\n" not in n, text


def test_list_count_matches_number() -> None:
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
    for seed in range(60):
        ctx = _ctx(seed)
        b = Builder()
        render("They had {LN} kids: {LFIRST}.", ctx, b)
        text = b.text()
        n = text.split()[2]
        assert len(b.spans) == (int(n) if n.isdigit() else words.index(n)), text


def test_possessive_outside_span() -> None:
    for seed in range(100):
        ctx = _ctx(seed)
        b = Builder()
        render("({POSS}|{PLPOSS}|{PFPOSS}|{PAPOSS}) laptop", ctx, b)
        text = b.text()
        (s,) = b.spans
        assert s.label == "PERSON" and s.start == 0
        assert text[s.end] in "'’", text
        assert not text[s.start : s.end].endswith(("'s", "’s")), text


def test_people_spans_clean() -> None:
    recs = [r for r in synth.generate(4000, seed=11) if r.extra["shape"] == "people"]
    assert len(recs) > 300
    for r in recs:
        check_spans(r)
        for name in _persons(r.text, r.spans):
            assert not re.search(r"['’]s$", name), (r.id, name)
            assert not re.search(r"[,;:!?\"]$|^[,;:.\"'(]", name), (r.id, name)
            assert " and " not in name and "\n" not in name, (r.id, name)
        if r.extra["frame"].startswith("people-hard"):
            assert not _persons(r.text, r.spans), r.text
        if r.extra["frame"].startswith("people-dlg"):
            assert len(_persons(r.text, r.spans)) >= 2, r.text
            for role in ("Interviewer", "Me", "You", "THE COURT", "Host"):
                assert role not in _persons(r.text, r.spans)


def test_people_names_international() -> None:
    recs = synth.generate(4000, seed=12)
    names = [n for r in recs if r.extra["shape"] == "people" for n in _persons(r.text, r.spans)]
    assert any("'" in n for n in names)  # O'Neil, N'Diaye, D'Arcy
    assert any("-" in n for n in names)  # Jean-Luc, Min-jun, al-Farsi
    assert any(any(ch in n for ch in "őűřěčšžłđươ") for n in names)  # Hungarian, Czech, Slavic, Vietnamese
    assert any(n.islower() for n in names) and any(n.isupper() for n in names)


# ------------------------------------------------------------------- Chinese and the CJK locales

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"
_CJK_GAP = re.compile(f"[{_CJK}] +[{_CJK}]")
_HAN = re.compile(r"[\u4e00-\u9fff]+")


def test_span_surfaces_non_empty_and_in_bounds(sample: list[Record], calib: list[Record]) -> None:
    for r in sample + calib:
        for s in r.spans:
            assert 0 <= s.start < s.end <= len(r.text), (r.id, s)
            assert r.text[s.start : s.end].strip(), (r.id, s)


def test_locales_cover_six_languages() -> None:
    langs = {loc[:2] for loc in synth.DEFAULT_LOCALES}
    assert {"en", "ja", "zh", "de", "fr", "es"} <= langs
    w = synth.LOCALE_WEIGHTS
    assert abs(w["zh_CN"] - w["ja_JP"]) < 0.02
    assert max(w, key=w.__getitem__) == "en_US"


@pytest.fixture(scope="module")
def cjk() -> list[Record]:
    return synth.generate(1500, seed=21, locales=("ja_JP", "zh_CN"))


def test_cjk_text_has_no_ascii_space_between_cjk(sample: list[Record], cjk: list[Record]) -> None:
    recs = [r for r in sample + cjk if r.lang[:2] in ("ja", "zh")]
    assert len(recs) > 1000
    for r in recs:
        m = _CJK_GAP.search(r.text)
        assert m is None, (r.id, r.extra["frame"], m and r.text[max(0, m.start() - 20) : m.end() + 20])
        check_spans(r)


def test_zh_person_in_han_script(sample: list[Record], cjk: list[Record]) -> None:
    def han_people(recs: list[Record]) -> list[str]:
        return [
            r.text[s.start : s.end]
            for r in recs
            if r.lang == "zh_CN"
            for s in r.spans
            if s.label == "PERSON" and _HAN.fullmatch(r.text[s.start : s.end])
        ]

    assert han_people(sample)  # in the default draw
    names = han_people(cjk)
    assert len(names) > 100
    assert all(2 <= len(n) <= 4 for n in names if len(n) > 1)  # surname + given name, no spaces


def test_zh_frames_written_in_chinese(cjk: list[Record]) -> None:
    zh = [r for r in cjk if r.extra["frame"].startswith(("chat-zh", "people-zh", "hardneg-legal-zh"))]
    assert len(zh) > 30
    for r in zh:
        outside = "".join(ch for i, ch in enumerate(r.text) if not any(s.start <= i < s.end for s in r.spans))
        assert _HAN.search(outside), r.text


def test_zh_resident_ids_checksummed(cjk: list[Record]) -> None:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    ids = [
        r.text[s.start : s.end].replace(" ", "")
        for r in cjk
        for s in r.spans
        if s.label == "ID_NUMBER" and re.fullmatch(r"\d{6} ?\d{8} ?\d{3}[\dX]", r.text[s.start : s.end])
    ]
    assert len(ids) > 5
    for x in ids:
        assert "10X98765432"[sum(int(d) * w for d, w in zip(x[:17], weights, strict=True)) % 11] == x[17], x


_PHONE_RE = {
    "de_DE": r"(\+49|0049|0|\(0)[\d ()/-]+",
    "fr_FR": r"(\+33 ?(\(0\))?[1-9]|0[1-9])[\d .]+",
    "es_ES": r"(\+34 |0034 )?[6-9][\d ]+",
    "ja_JP": r"(\+81 [1-9]0 \d{4} \d{4}|0\d{1,2}[-(]\d{4}[-)]\d{4}|0\d0-\d{4}-\d{4}|0\d{9})",
    "zh_CN": r"((\+86[ -]?)?1[3-9]\d([ -]?\d{4}){2}|0\d{2,3}-\d{8}|\(0\d{2,3}\) \d{8})",
}


@pytest.mark.parametrize("locale", sorted(_PHONE_RE))
def test_phone_formats_per_locale(locale: str) -> None:
    from guardrail.synth.values import _FAKER_PHONES, _PHONE_FORMATS, fill_digits

    ctx = _ctx(0, locale)
    for pat in _PHONE_FORMATS[locale]:
        for _ in range(5):
            s = fill_digits(ctx, pat)
            assert re.fullmatch(_PHONE_RE[locale], s), (locale, pat, s)
    if locale in _FAKER_PHONES:  # Faker's own numbers are used for this locale: they must fit too
        for _ in range(50):
            s = ctx.fake.phone_number()
            assert re.fullmatch(_PHONE_RE[locale], s), (locale, s)


def test_squeeze_cjk_keeps_spans() -> None:
    from guardrail.synth.engine import squeeze_cjk

    b = Builder()
    b.add("私は ").add("山田", "PERSON").add(" ").add("太郎", "PERSON").add(" です。Call ").add(
        "090", "PHONE"
    )
    squeeze_cjk(b)
    assert b.text() == "私は山田太郎です。Call 090"
    assert [b.text()[s.start : s.end] for s in b.spans] == ["山田太郎", "090"]


# ---------------------------------------------------------------------------------- hard negatives


def _no_letters(s: str) -> bool:
    return not any(ch.isalpha() for ch in s)


def test_hard_negative_records(sample: list[Record], calib: list[Record]) -> None:
    hn = [r for r in sample if r.extra["shape"] == "hardneg"]
    assert 0.07 < len(hn) / len(sample) < 0.14, len(hn)
    kinds = {
        r.extra["frame"].split(":")[0].split("-")[1] for r in hn + calib if r.extra["shape"] == "hardneg"
    }
    assert {"table", "sports", "amounts", "times", "ack", "treebank", "social", "legal", "headline"} <= kinds
    numeric = 0
    for r in hn:
        check_spans(r)
        for s in r.spans:
            surface = r.text[s.start : s.end]
            # Scores, counts, amounts, table cells and clock times carry no span; a date keeps DATE.
            assert not _no_letters(surface) or s.label == "DATE", (r.id, surface, s.label)
            assert s.label not in ("PHONE", "ID_NUMBER", "CREDIT_CARD", "IBAN", "PASSWORD"), (r.id, surface)
        covered = {i for s in r.spans for i in range(s.start, s.end)}
        if any(m.start() not in covered for m in re.finditer(r"\d+", r.text)):
            numeric += 1
    assert numeric > len(hn) / 2


def test_hard_negatives_keep_people_labelled() -> None:
    recs = [r for r in synth.generate(3000, seed=9) if r.extra["shape"] == "hardneg"]
    frames = {r.extra["frame"].split(":")[0] for r in recs for s in r.spans if s.label == "PERSON"}
    assert {"hardneg-sports", "hardneg-table"} & frames, frames  # a scorer, a player in a box score
    texts = "\n".join(r.text for r in recs)
    for needle in ("n't", "-LRB-", "RT ", "#", "| ", "Hatchback|Sedan|Saloon|Estate|SUV"):
        assert re.search(needle, texts), needle

    legal = [
        r
        for r in synth.generate(3000, seed=9, locales=("fr_FR", "es_ES", "de_DE", "zh_CN"))
        if r.extra["frame"].startswith("hardneg-legal")
    ]
    words = {
        "fr": "requérant|greffier|Cour",
        "es": "demandante|Sala",
        "de": "Kläger|Gericht|Klage",
        "zh": "原告|本院",
    }
    for lang, pat in words.items():
        assert any(re.search(pat, r.text) for r in legal if r.lang[:2] == lang), lang


def test_hardneg_slot_keeps_numbers_unlabelled() -> None:
    for seed in range(300):
        ctx = _ctx(seed, ("en_US", "de_DE", "fr_FR", "es_ES", "ja_JP", "zh_CN")[seed % 6])
        b = Builder()
        render("My email is {EMAIL}. {HARDNEG}", ctx, b)
        text = b.text()
        assert b.spans[0].label == "EMAIL"
        for s in b.spans[1:]:
            assert not _no_letters(text[s.start : s.end]) or s.label == "DATE", text


_MIXED = re.compile(
    r"\| \d{4} \| \d\d \||Kick-off|Subtotal|Result: |HTTPURL|-LRB-| n't |FT: |Final score|ok cool|"
    r"\d+-for-\d+|Serves \d|Opening hours|For sale:|record (at|on|this|against)"
)


def test_hard_negatives_mixed_into_pii_records(sample: list[Record]) -> None:
    # Real text mixes both: personal data next to a table row, a score, chat filler, treebank tokens.
    privacy = {"PERSON", "EMAIL", "PHONE", "ADDRESS", "ID_NUMBER", "USERNAME", "IP_ADDRESS"}
    mixed = [
        r
        for r in sample
        if r.extra["shape"] != "hardneg" and {s.label for s in r.spans} & privacy and _MIXED.search(r.text)
    ]
    assert len(mixed) > 5, len(mixed)


def test_treebank_tokens_keep_spans() -> None:
    from guardrail.synth.hardneg import ptb, treebank

    assert (
        ptb("I'm sure they can't (really) do it.").strip()
        == "I 'm sure they ca n't -LRB- really -RRB- do it ."
    )
    assert ptb('He said "no," didn\'t he?').strip() == "He said `` no , '' did n't he ?"
    b = Builder()
    b.add("Ana", "PERSON").add("'s (new) car, said ").add("Bo", "PERSON").add(".")
    treebank(b)
    assert b.text() == "Ana 's -LRB- new -RRB- car , said Bo ."
    assert [b.text()[s.start : s.end] for s in b.spans] == ["Ana", "Bo"]


def test_hardneg_pools_split_between_families() -> None:
    # A pool with no calib frame falls back to all frames, which would leak train frames into calib.
    from guardrail.synth import hardneg

    pools = {"ACK": hardneg.ACK_FRAMES, "tables": hardneg._TABLE_KEYS, **hardneg._EN}
    pools |= {f"{lang}-{k}": v for lang, d in hardneg.LOCAL.items() for k, v in d.items()}
    for name, frames in pools.items():
        fams = {family_of(t) for t in frames}
        assert fams == {"train", "calib"} or len(frames) <= 4, name
