"""The public API end to end on a tiny random model (fast) and on the shipped default (real)."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import sys

import numpy as np
import pytest
import torch

from guardrail.backbone import Backbone
from guardrail.bundle import BackboneRef, Bundle, Manifest, ProbeEntry
from guardrail.data import Record
from guardrail.pipeline import Guardrail, GuardrailError, collapse
from guardrail.probe import fit
from guardrail.spans import Span
from guardrail.train import collect, design_matrix

NAMES = ["Ana Silva", "Bob Stone", "Lena Vogt", "Jun Sato"]
FILLER = ["please call", "the order for", "I met", "send it to", "thanks", "see you soon"]


def _records(n: int, seed: int) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, name, b = rng.choice(FILLER), rng.choice(NAMES), rng.choice(FILLER)
        text = f"{a} {name} {b}"
        start = len(a) + 1
        out.append(Record(f"r{i}", text, [Span(start, start + len(name), "PERSON")]))
    return out


@pytest.fixture(scope="module")
def tiny_guard(tiny_model_dir, tmp_path_factory) -> Guardrail:
    """Train a real probe on the tiny model's activations and build a bundle from it."""
    bb = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    acts = collect(bb, _records(200, 0), "tiny")
    x, y = design_matrix(acts, (-1, 0, 1))
    probe = fit(x, y, context=(-1, 0, 1), c=10.0)
    folder = tmp_path_factory.mktemp("bundle") / "tiny"
    m = Manifest(
        name="tiny",
        backbone=BackboneRef(id=str(tiny_model_dir), layer=2),
        probes={"raw": ProbeEntry(prefix="raw.", thresholds={"PERSON": 0.5})},
        detect_labels=["PERSON", "EMAIL", "PHONE", "CREDIT_CARD"],
    )
    Bundle(folder, m, {"raw": probe}).save()
    return Guardrail.load(folder, dtype="fp32")


def test_collapse_folds_unreported_classes_into_o() -> None:
    p = np.array([[0.1, 0.6, 0.3], [0.7, 0.1, 0.2]])
    out, classes = collapse(p, ["O", "ORGANIZATION", "PERSON"], ["PERSON"])
    assert classes == ["O", "PERSON"]
    assert np.allclose(out, [[0.7, 0.3], [0.8, 0.2]])


def test_tiny_detects_trained_names_and_patterns(tiny_guard: Guardrail) -> None:
    text = "thanks Lena Vogt please call, card 4111 1111 1111 1111"
    (spans,) = tiny_guard.detect([text])
    got = {(text[s.start : s.end], s.label) for s in spans}
    assert ("Lena Vogt", "PERSON") in got
    assert ("4111 1111 1111 1111", "CREDIT_CARD") in got
    assert spans == sorted(spans) and all(a.end <= b.start for a, b in itertools.pairwise(spans))


def test_tiny_redact_operators(tiny_guard: Guardrail) -> None:
    texts = ["I met Jun Sato thanks", "send it to Jun Sato", "thanks see you soon"]
    out = tiny_guard.redact(texts, operator="pseudonym")
    assert out[0].text == "I met <PERSON_1> thanks" and out[1].text == "send it to <PERSON_1>"
    assert out[2].text == "thanks see you soon" and out[2].spans == []
    assert tiny_guard.redact(["I met Jun Sato"])[0].text == "I met [PERSON]"


@pytest.mark.parametrize(
    "text", ["", "   \n\t ", "\x00\x07 control", "🎉🎉 Ana Silva 🎉", "é" * 5 + "\u0301"]
)
def test_tiny_odd_inputs_keep_offsets_valid(tiny_guard: Guardrail, text: str) -> None:
    (spans,) = tiny_guard.detect([text])
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)
    (red,) = tiny_guard.redact([text])
    if not spans:
        assert red.text == text


def test_bad_arguments(tiny_guard: Guardrail) -> None:
    with pytest.raises(GuardrailError, match="texts\\[1\\]"):
        tiny_guard.detect(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(GuardrailError, match="unknown labels"):
        tiny_guard.detect(["ok"], labels=["NAME"])
    assert tiny_guard.detect("a single string") == tiny_guard.detect(["a single string"])


@pytest.mark.model
def test_real_default_end_to_end(real_guardrail: Guardrail) -> None:
    text = "Hi, I'm Maria Gonzalez, email maria.gonzalez@example.com, phone +1 (415) 555-0172."
    (spans,) = real_guardrail.detect([text])
    found = {text[s.start : s.end] for s in spans}
    assert "Maria Gonzalez" in found
    assert "maria.gonzalez@example.com" in found
    assert any("555-0172" in f for f in found)
    (red,) = real_guardrail.redact([text])
    assert "Maria" not in red.text and "555-0172" not in red.text and "[PERSON]" in red.text


@pytest.mark.model
def test_real_default_leaves_plain_prose_alone(real_guardrail: Guardrail) -> None:
    text = "The weather was nice, so we walked to the market and bought apples for $3.50."
    (spans,) = real_guardrail.detect([text])
    assert spans == []


@pytest.mark.model
def test_real_default_long_text_is_windowed(real_guardrail: Guardrail) -> None:
    body = "The meeting notes are below and nothing in them is personal. " * 60
    text = body + "Contact: Maria Gonzalez."
    (spans,) = real_guardrail.detect([text])
    assert any(text[s.start : s.end] == "Maria Gonzalez" for s in spans)


@pytest.mark.model
def test_real_default_torch_int8_runtime_finds_what_torch_finds() -> None:
    from guardrail import synth

    records = synth.generate(40, seed=11, family="calib")
    texts = [r.text for r in records]
    fast = Guardrail.load(runtime="torch-int8", patterns=False).warmup(batch_size=4)
    assert fast.describe()["runtime"] == "torch-int8"
    ref = Guardrail.load(patterns=False)
    want, got = ref.detect(texts), fast.detect(texts)

    def found(a: list, b: list) -> float:  # share of a's spans that some span of b overlaps
        hits = [
            any(s.start < t.end and t.start < s.end for t in y) for x, y in zip(a, b, strict=True) for s in x
        ]
        return sum(hits) / len(hits)

    assert sum(map(len, want)) > 40
    agree = min(found(want, got), found(got, want))
    # int8 products move scores near a threshold (this hard synthetic family: 0.93 measured), not the
    # detector: on presidio_synth recall 0.980 vs 0.982, precision 0.864 vs 0.867
    assert agree > 0.9


@pytest.mark.model
def test_real_fast_bundle_end_to_end() -> None:
    """The speed-first bundle: pruned backbone, int8 products, compiled; loads its own runtime."""
    g = Guardrail.load("gemma-3-270m-fast").warmup(batch_size=2)
    assert g.describe()["runtime"] == "torch-int8"
    assert g.backbone._eager.layers[0].mlp.down_proj.in_features == 1024
    text = "Hi, I'm Maria Gonzalez, email maria.gonzalez@example.com, phone +1 (415) 555-0172."
    (spans,) = g.detect([text])
    found = {text[s.start : s.end] for s in spans}
    assert "Maria Gonzalez" in found and "maria.gonzalez@example.com" in found
    assert g.detect(["The weather was nice, so we walked to the market."]) == [[]]


def test_tiny_one_megabyte_text(tiny_guard: Guardrail) -> None:
    text = ("send it to Ana Silva thanks. " * 36_000)[:1_000_000]
    (spans,) = tiny_guard.detect([text])
    assert spans and all(0 <= s.start < s.end <= len(text) for s in spans)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    assert sum(text[s.start : s.end] == "Ana Silva" for s in spans) > 30_000  # windows stitched, none lost


def test_tiny_lone_surrogate_keeps_offsets(tiny_guard: Guardrail) -> None:
    # a str can hold a lone surrogate (e.g. from surrogateescape); it is read as U+FFFD, one for one
    text = "I met \ud800 Jun Sato thanks"
    (spans,) = tiny_guard.detect([text])
    assert any(text[s.start : s.end].endswith("Jun Sato") for s in spans)
    (red,) = tiny_guard.redact([text])
    assert red.text.startswith("I met ") and "Jun Sato" not in red.text


def test_tiny_warmup_changes_nothing(tiny_guard: Guardrail) -> None:
    text = "I met Jun Sato thanks"
    before = tiny_guard.detect([text])
    assert tiny_guard.warmup(batch_size=2) is tiny_guard
    assert tiny_guard.detect([text]) == before


@pytest.mark.model
def test_real_default_non_latin_scripts_and_emoji(real_guardrail: Guardrail) -> None:
    texts = [
        "山田太郎さんの電話番号は090-1234-5678です。",
        "اتصل بأحمد على +971 50 123 4567",
        "Привет, меня зовут Иван Петров 👋🏽, почта ivan.petrov@example.ru",
        "e\u0301cole: write to zoë.müller@example.de 🎉🎉",
    ]
    for text, spans in zip(texts, real_guardrail.detect(texts), strict=True):
        assert all(0 <= s.start < s.end <= len(text) for s in spans)
        surfaces = {text[s.start : s.end] for s in spans}
        if "@" in text:
            assert any("@example" in x for x in surfaces)  # code-point offsets after emoji and accents
    red = real_guardrail.redact(texts)
    assert "ivan.petrov@example.ru" not in red[2].text and "👋🏽" in red[2].text
    assert "090-1234-5678" not in red[0].text


def _bundle_with_sha(tiny_guard: Guardrail, folder, sha: str):
    """A copy of the tiny bundle whose manifest names a GGUF file by its sha256."""
    m = tiny_guard.bundle.manifest.model_copy(deep=True)
    m.backbone.file, m.backbone.sha256 = "tiny.gguf", sha
    Bundle(folder, m, dict(tiny_guard.bundle.probes)).save()
    return folder


def test_model_override_checks_provenance(
    tiny_guard: Guardrail, tiny_model_dir, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = _bundle_with_sha(tiny_guard, tmp_path / "bundle", "a" * 64)
    converted = tmp_path / "models" / "converted"  # a converted folder carried to an air-gapped host
    shutil.copytree(tiny_model_dir, converted)
    (converted / "source.json").write_text(json.dumps({"gguf": "other.gguf", "sha256": "b" * 64}))
    with pytest.raises(GuardrailError, match="differs from the one bundle 'tiny' was trained on"):
        Guardrail.load(bundle, model=str(converted), dtype="fp32")

    (converted / "source.json").write_text(json.dumps({"gguf": "tiny.gguf", "sha256": "a" * 64}))
    with caplog.at_level(logging.WARNING, logger="guardrail.pipeline"):
        g = Guardrail.load(bundle, model=str(converted), dtype="fp32", patterns=False)
    assert not caplog.records
    assert g.backbone.info["sha256"] == "a" * 64 and g.describe()["backbone"] == str(converted)
    text = "I met Jun Sato thanks"
    assert [s.label for s in g.detect([text])[0]] == ["PERSON"]

    (converted / "source.json").unlink()  # nothing to compare: loaded, with a warning
    with caplog.at_level(logging.WARNING, logger="guardrail.pipeline"):
        g = Guardrail.load(bundle, model=str(converted), dtype="fp32", patterns=False)
    assert "cannot check" in caplog.text and str(tmp_path) not in caplog.text
    assert g.detect([text]) == tiny_guard.detect([text])


def test_model_override_of_another_width_is_refused(tiny_guard: Guardrail, wide_model_dir) -> None:
    with pytest.raises(GuardrailError, match=r"hidden size 48.* reads 32"):
        Guardrail.load(tiny_guard.bundle.folder, model=str(wide_model_dir), dtype="fp32")


def test_describe_and_no_patterns(tiny_guard: Guardrail, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail import cpu

    d = tiny_guard.describe()
    caps = cpu.probe()
    assert d.pop("why") == tiny_guard.backbone.why and "runtime torch" in tiny_guard.backbone.why
    assert d.pop("cpu").startswith(f"{caps.arch} {caps.model}; capability {caps.capability}; int8 ")
    assert d == {
        "bundle": "tiny",
        "backbone": tiny_guard.bundle.manifest.backbone.id,
        "probe": "raw",
        "device": f"cuda:0 {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu",
        "dtype": "float32",
        "runtime": "torch",
        "patterns": "true",
    }
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # probe only: Presidio never imported
    monkeypatch.setitem(sys.modules, "guardrail.patterns", None)
    g = Guardrail(tiny_guard.bundle, tiny_guard.backbone, patterns=False)
    assert g.patterns is None and g.describe()["patterns"] == "false"
    (spans,) = g.detect(["I met Jun Sato, mail jun@example.com"])
    assert {s.source for s in spans} <= {"probe"}


def test_invisible_characters_do_not_split_a_value(tiny_guard: Guardrail) -> None:
    """A soft hyphen or a zero-width character inside a value: detected as if absent, redacted whole."""
    plain = "thanks Lena Vogt please call, mail ana.silva@example.com"
    text = "thanks Le\u00adna Vo\u200bgt please call, mail ana.sil\u2060va@exam\u200dple.com"
    (spans,) = tiny_guard.detect([text])
    got = {(text[s.start : s.end], s.label) for s in spans}
    assert ("Le\u00adna Vo\u200bgt", "PERSON") in got
    assert ("ana.sil\u2060va@exam\u200dple.com", "EMAIL") in got
    assert [(s.label, s.score) for s in spans] == [(s.label, s.score) for s in tiny_guard.detect([plain])[0]]
    red = tiny_guard.redact([text])[0].text
    assert red == tiny_guard.redact([plain])[0].text and red.endswith(" [EMAIL]")


INVISIBLE = ("\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
"""Soft hyphen, zero-width space, non-joiner and joiner, word joiner, byte-order mark."""


@pytest.mark.model
def test_real_default_soft_hyphen_inside_a_name(real_guardrail: Guardrail) -> None:
    """Before: "Mar<SHY>ia Schmidt called yesterday." came out "Mar<SHY>[PERSON] called yesterday."."""
    plain = ["Maria Schmidt called yesterday.", "Hi, I am Maria Schmidt.", "the patient Maria Gonzalez left"]
    texts = [t.replace("Mar", f"Mar{ch}").replace("Gonz", f"Gonz{ch}") for t in plain for ch in INVISIBLE]
    expected = [r.text for r in real_guardrail.redact(plain) for _ in INVISIBLE]
    red = [r.text for r in real_guardrail.redact(texts)]
    assert red == expected and all("[PERSON]" in r for r in red)


def test_prepare_then_spans_of_is_detect_at_any_thresholds(tiny_guard: Guardrail) -> None:
    texts = ["email Ana Silva at ana@x.org", "王小明 lives in 北京", "nothing here", ""]
    prepared = tiny_guard.prepare(texts)
    assert tiny_guard.spans_of(prepared) == tiny_guard.detect(texts)
    old = (dict(tiny_guard.thresholds), tiny_guard.thresholds_unspaced)
    try:
        # unspaced tokens at a threshold of their own: re-decoding the prepared scores still is detect
        tiny_guard.thresholds_unspaced = dict.fromkeys(tiny_guard.thresholds, 0.02)
        assert tiny_guard.spans_of(prepared) == tiny_guard.detect(texts)
        tiny_guard.thresholds = dict.fromkeys(tiny_guard.thresholds, 0.99)
        assert tiny_guard.spans_of(prepared, labels=["EMAIL"]) == tiny_guard.detect(texts, labels=["EMAIL"])
    finally:
        tiny_guard.thresholds, tiny_guard.thresholds_unspaced = old


def test_a_raw_mlp_head_scores_without_the_feature_table(tiny_guard, monkeypatch) -> None:
    # detect reads a raw-residual MLP head through MlpProbe.probs_flat: the same probabilities as the
    # feature table gives, and no table (features explain SAE probes only)
    from guardrail.probe import fit_mlp

    bb = tiny_guard.backbone
    x, y = design_matrix(collect(bb, _records(80, 3), "tiny"), (-1, 0, 1))
    t = torch.from_numpy(x)
    mlp = fit_mlp(lambda idx: t[idx], y, context=(-1, 0, 1), hidden=8, epochs=2, progress=False)
    monkeypatch.setitem(tiny_guard.bundle.probes, "raw", mlp)
    g = Guardrail(tiny_guard.bundle, bb, probe="raw", patterns=False)
    texts = [r.text for r in _records(6, 4)] + ["x"]
    prepared = g.prepare(texts)
    assert prepared.feats.shape[1] == 0
    enc = bb.encode(texts)
    flat = bb.residuals_flat(enc)
    with torch.inference_mode():
        want = mlp.probs(mlp.features_flat(flat, [len(e.ids) for e in enc])).numpy()
    assert np.allclose(prepared.probs, want, atol=1e-5)
