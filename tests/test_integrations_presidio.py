"""The Presidio drop-in: in-process and sidecar recognizers, entity names, explanations, the anonymizer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from presidio_analyzer import (
    AnalyzerEngine,
    BatchAnalyzerEngine,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_anonymizer import AnonymizerEngine

from guardrail.client import GuardrailClient, SidecarError
from guardrail.integrations.presidio import (
    GuardrailExplanation,
    GuardrailRecognizer,
    PresidioConfigError,
    add_to,
)
from guardrail.labels import UnknownLabelError, to_presidio
from guardrail.patterns import LANGUAGE, no_op_nlp_engine
from guardrail.pipeline import Guardrail
from guardrail.serving.server import SidecarThread
from guardrail.serving.settings import ServeSettings
from guardrail.spans import Span
from tests.conftest import TINY_NAMES, readme_block

TEXTS = [
    "please call Ana Silva thanks",
    "I met Bob Stone, mail bob.stone@example.com or +1 415 555 0100",
    "card 4111 1111 1111 1111 and NHS number 943 476 5919 for Lena Vogt",
    "",
]
"""The tiny probe knows the names of TINY_NAMES; the guardrail's patterns find the rest."""

SERVED = ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"]
"""The tiny bundle's detect_labels in Presidio's names."""


@pytest.fixture(scope="module")
def guard(tiny_bundle_dir: Path) -> Guardrail:
    torch.set_num_threads(1)
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


@pytest.fixture(scope="module")
def sidecar(guard: Guardrail) -> Iterator[SidecarThread]:
    with SidecarThread(guard, ServeSettings(port=0)) as sc:
        yield sc


@pytest.fixture(scope="module")
def local(guard: Guardrail) -> GuardrailRecognizer:
    return GuardrailRecognizer.from_guardrail(guard)


@pytest.fixture(scope="module")
def remote(sidecar: SidecarThread) -> Iterator[GuardrailRecognizer]:
    rec = GuardrailRecognizer.from_sidecar(f"127.0.0.1:{sidecar.port}", timeout=30)
    yield rec
    rec.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _analyzer(*recognizers: GuardrailRecognizer) -> AnalyzerEngine:
    """An analyzer whose registry holds only ``recognizers`` (Presidio loads its defaults into an empty
    one), on Presidio's NLP engine that loads no model."""
    registry = RecognizerRegistry(recognizers=list(recognizers), supported_languages=[LANGUAGE])
    return AnalyzerEngine(registry=registry, nlp_engine=no_op_nlp_engine(), supported_languages=[LANGUAGE])


def _plain(results: list[RecognizerResult]) -> list[tuple[str, int, int, float]]:
    return sorted((r.entity_type, r.start, r.end, r.score) for r in results)


def _expected(
    guard: Guardrail, text: str, labels: list[str] | None = None
) -> list[tuple[str, int, int, float]]:
    (spans,) = guard.detect([text], labels=labels)
    return sorted((to_presidio(s.label), s.start, s.end, s.score) for s in spans)


def test_results_are_the_guardrails_spans_in_presidio_names(
    guard: Guardrail, local: GuardrailRecognizer
) -> None:
    assert local.supported_entities[:4] == SERVED  # then the aliases of those labels (ZA_MOBILE_NUMBER, ...)
    assert local.supported_language == "en" and local.is_loaded
    for text in TEXTS:
        assert _plain(local.analyze(text, SERVED, None)) == _expected(guard, text)
    found = {r.entity_type for t in TEXTS for r in local.analyze(t, SERVED, None)}
    assert found == set(SERVED)  # every label has a case above
    (person,) = local.analyze(TEXTS[0], ["PERSON"], None)
    assert TEXTS[0][person.start : person.end] == "Ana Silva" and 0.5 <= person.score <= 1.0


def test_in_process_and_sidecar_give_the_same_results(
    local: GuardrailRecognizer, remote: GuardrailRecognizer
) -> None:
    assert remote.supported_entities == local.supported_entities  # the sidecar's GetInfo labels
    for text in TEXTS:
        for entities in (SERVED, ["PERSON"], ["PHONE_NUMBER", "CREDIT_CARD"]):
            a, b = local.analyze(text, entities, None), remote.analyze(text, entities, None)
            assert _plain(a) == _plain(b)
            assert [x.analysis_explanation.to_dict() for x in a] == [
                y.analysis_explanation.to_dict() for y in b
            ]
    in_process, via_sidecar = _analyzer(local), _analyzer(remote)
    for text in TEXTS:
        assert _plain(in_process.analyze(text, LANGUAGE)) == _plain(via_sidecar.analyze(text, LANGUAGE))


def test_entities_filter(guard: Guardrail, local: GuardrailRecognizer) -> None:
    text = TEXTS[1]
    assert _plain(local.analyze(text, ["PHONE_NUMBER"], None)) == _expected(guard, text, ["PHONE"])
    assert {r.entity_type for r in local.analyze(text, ["PERSON", "EMAIL_ADDRESS"], None)} == {
        "PERSON",
        "EMAIL_ADDRESS",
    }
    assert _plain(local.analyze(text, [], None)) == _expected(guard, text)  # none asked: all served
    # entities of other recognizers, and names nobody knows, are ignored as by Presidio's own recognizers
    assert local.analyze(text, ["CRYPTO", "US_SSN", "NOT_AN_ENTITY"], None) == []
    analyzer = _analyzer(local)
    results = analyzer.analyze(text, LANGUAGE, entities=["EMAIL_ADDRESS", "NOT_AN_ENTITY"])
    assert {r.entity_type for r in results} == {"EMAIL_ADDRESS"}


def test_chosen_entities_and_aliases(guard: Guardrail) -> None:
    rec = GuardrailRecognizer.from_guardrail(guard, entities=["PERSON", "US_SSN", "CREDIT_CARD"])
    assert rec.labels == ("PERSON", "ID_NUMBER", "CREDIT_CARD")
    assert {"ID_NUMBER", "US_SSN", "UK_NHS", "ES_NIF", "IT_FISCAL_CODE"} <= set(rec.supported_entities)
    text = TEXTS[2]
    (nhs,) = rec.analyze(text, ["UK_NHS"], None)  # an alias is served by its label, under the label's name
    assert nhs.entity_type == "ID_NUMBER" and text[nhs.start : nhs.end] == "943 476 5919"
    assert _plain(rec.analyze(text, ["US_SSN"], None)) == [("ID_NUMBER", nhs.start, nhs.end, nhs.score)]
    # through the analyzer: the registry finds the recognizer by the alias
    results = _analyzer(rec).analyze(text, LANGUAGE, entities=["US_SSN"])
    assert _plain(results) == [("ID_NUMBER", nhs.start, nhs.end, nhs.score)]
    strict = GuardrailRecognizer.from_guardrail(guard, entities=["ID_NUMBER"], aliases=False)
    assert strict.supported_entities == ["ID_NUMBER"] and strict.analyze(text, ["US_SSN"], None) == []
    with pytest.raises(UnknownLabelError, match="unknown Presidio entity 'SSN'"):
        GuardrailRecognizer.from_guardrail(guard, entities=["PERSON", "SSN"])
    with pytest.raises(PresidioConfigError, match="at least one"):
        GuardrailRecognizer.from_guardrail(guard, entities=[])


def test_explanations_and_metadata(guard: Guardrail, local: GuardrailRecognizer) -> None:
    text = TEXTS[1]
    results = _analyzer(local).analyze(text, LANGUAGE, return_decision_process=True)
    assert {r.entity_type for r in results} == {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"}
    detectors = set()
    for r in results:
        assert r.recognition_metadata[RecognizerResult.RECOGNIZER_NAME_KEY] == "GuardrailRecognizer"
        assert r.recognition_metadata[RecognizerResult.RECOGNIZER_IDENTIFIER_KEY] == local.id
        e = r.analysis_explanation
        assert isinstance(e, GuardrailExplanation)
        assert (e.recognizer, e.original_score, e.bundle, e.probe) == (
            "GuardrailRecognizer",
            r.score,
            "tiny",
            "raw",
        )
        assert e.features == [] and e.detector in ("probe", "pattern")
        detectors.add(e.detector)
        assert "'tiny'" in e.textual_explanation and "'raw'" in e.textual_explanation
        # never the text or the value
        assert text[r.start : r.end] not in repr(e.to_dict()) and text[r.start : r.end] not in str(r)
    assert detectors == {"probe", "pattern"}  # the name from the probe; email and phone from patterns
    # without return_decision_process Presidio drops explanations, as for its own recognizers
    assert all(r.analysis_explanation is None for r in _analyzer(local).analyze(text, LANGUAGE))


@pytest.fixture(scope="module")
def sae_guard(guard: Guardrail, tmp_path_factory: pytest.TempPathFactory) -> Guardrail:
    """The tiny bundle plus a random SAE and a probe fitted on 32 of its latents (the tiny names)."""
    from guardrail.bundle import Bundle, ProbeEntry
    from guardrail.data import Record
    from guardrail.probe import fit, sae_features
    from guardrail.sae import Sae, SaeConfig
    from guardrail.train import collect

    rng = np.random.default_rng(0)
    filler = ["please call", "the order for", "I met", "send it to", "thanks", "see you soon"]
    records = []
    for i in range(120):
        a, name, b = rng.choice(filler), rng.choice(TINY_NAMES), rng.choice(filler)
        records.append(
            Record(f"r{i}", f"{a} {name} {b}", [Span(len(a) + 1, len(a) + 1 + len(name), "PERSON")])
        )
    acts = collect(guard.backbone, records, "tiny-sae")
    sae = Sae(SaeConfig(d_in=guard.backbone.d_model, d_sae=64, k=16), seed=0)
    latents, context = torch.arange(0, 64, 2), (-1, 0, 1)
    with torch.no_grad():
        x = torch.cat(sae_features([r.float() for r in acts.resid], sae, latents, context)).numpy()
    y = np.concatenate(acts.labels)
    probe = fit(x[y >= 0], y[y >= 0], context=context, latents=latents, c=10.0)
    m = guard.bundle.manifest
    entry = ProbeEntry(prefix="sae-lr.", features="sae", thresholds={"PERSON": 0.5})
    manifest = m.model_copy(update={"probes": {**m.probes, "sae-lr": entry}})
    bundle = Bundle(
        tmp_path_factory.mktemp("sae-bundle"), manifest, {**guard.bundle.probes, "sae-lr": probe}, sae
    )
    return Guardrail(bundle, guard.backbone, probe="sae-lr")


@pytest.fixture(scope="module")
def sae_sidecar(sae_guard: Guardrail) -> Iterator[SidecarThread]:
    with SidecarThread(sae_guard, ServeSettings(port=0)) as sc:
        yield sc


@pytest.mark.parametrize("where", ["in-process", "sidecar"])
def test_explain_lists_the_sae_latents_behind_a_probe_span(
    where: str, sae_guard: Guardrail, sae_sidecar: SidecarThread
) -> None:
    if where == "in-process":
        rec = GuardrailRecognizer.from_guardrail(sae_guard, explain=True)
    else:
        rec = GuardrailRecognizer.from_sidecar(f"127.0.0.1:{sae_sidecar.port}", explain=True, timeout=30)
    text = TEXTS[1]
    (spans,) = sae_guard.detect([text], explain=True)
    probe_spans = [s for s in spans if s.source == "probe"]
    assert probe_spans and all(s.features for s in probe_spans)
    results = sorted(rec.analyze(text, [], None), key=lambda r: r.start)
    rec.close()
    assert [(r.start, r.end) for r in results] == [(s.start, s.end) for s in spans]
    for r, s in zip(results, spans, strict=True):
        e = r.analysis_explanation
        assert (e.probe, e.detector) == ("sae-lr", s.source)
        assert [f["latent"] for f in e.features] == [f.latent for f in s.features]
        assert e.features == [
            {
                "latent": f.latent,
                "activation": f.activation,
                "contribution": f.contribution,
                "description": "",
            }
            for f in s.features
        ]
        if s.features:
            assert f"SAE latents {s.features[0].latent} (" in e.textual_explanation
        assert text[r.start : r.end] not in e.textual_explanation


def test_explain_is_refused_where_there_are_no_sae_features(guard: Guardrail, sidecar: SidecarThread) -> None:
    with pytest.raises(PresidioConfigError, match="probe 'raw' cannot"):
        GuardrailRecognizer.from_guardrail(guard, explain=True)
    address = f"127.0.0.1:{sidecar.port}"
    with pytest.raises(PresidioConfigError, match="runs probe 'raw'"):
        GuardrailRecognizer.from_sidecar(address, explain=True)
    with pytest.raises(PresidioConfigError, match=r"GetInfo\.explanations"):
        add_to(_analyzer(GuardrailRecognizer.from_guardrail(guard)), address, explain=True)


def test_anonymizer_replaces_the_guardrails_spans(guard: Guardrail, local: GuardrailRecognizer) -> None:
    analyzer, anonymizer = _analyzer(local), AnonymizerEngine()
    outs = []
    for text in TEXTS:
        (spans,) = guard.detect([text])
        want = text
        for s in sorted(spans, reverse=True):
            want = want[: s.start] + f"<{to_presidio(s.label)}>" + want[s.end :]
        outs.append(anonymizer.anonymize(text=text, analyzer_results=analyzer.analyze(text, LANGUAGE)).text)
        assert outs[-1] == want
    assert outs[:2] == [
        "please call <PERSON> thanks",
        "I met <PERSON>, mail <EMAIL_ADDRESS> or <PHONE_NUMBER>",
    ]
    assert "<CREDIT_CARD>" in outs[2] and "943 476 5919" in outs[2]  # ID_NUMBER is not a tiny bundle label


def test_batch_analyzer_and_add_to(guard: Guardrail, sidecar: SidecarThread) -> None:
    analyzer = _analyzer(GuardrailRecognizer.from_guardrail(guard, entities=["CREDIT_CARD"]))
    (added,) = add_to(analyzer, guard)
    assert analyzer.registry.recognizers[-1] is added and added.labels == tuple(guard.labels)
    batch = BatchAnalyzerEngine(analyzer).analyze_iterator(TEXTS, LANGUAGE)
    assert [_plain(r) for r in batch] == [_plain(analyzer.analyze(t, LANGUAGE)) for t in TEXTS]
    with GuardrailClient(f"127.0.0.1:{sidecar.port}") as client:
        (via_client,) = add_to(analyzer, client, entities=["PERSON"], name="GuardrailSidecar")
        (r,) = via_client.analyze(TEXTS[0], ["PERSON"], None)
        assert r.recognition_metadata[RecognizerResult.RECOGNIZER_NAME_KEY] == "GuardrailSidecar"
        via_client.close()  # not its client: left open
        assert client.health() == "SERVING"
    with pytest.raises(PresidioConfigError, match="does not support"):
        add_to(analyzer, guard, languages=["de"])
    with pytest.raises(PresidioConfigError, match="go with a sidecar address"):
        add_to(analyzer, guard, timeout=3)
    with pytest.raises(PresidioConfigError, match="expected a GuardrailClient or a sidecar address"):
        add_to(analyzer, 50051)  # type: ignore[arg-type]


def test_sidecar_down_raises_a_clear_error_without_the_text() -> None:
    target = f"127.0.0.1:{_free_port()}"  # nobody listens
    rec = GuardrailRecognizer.from_sidecar(target, entities=["PERSON"], retries=0, timeout=5)  # no call yet
    analyzer = _analyzer(rec)
    text = "please call Ana Silva thanks"
    with pytest.raises(SidecarError) as e:
        analyzer.analyze(text, LANGUAGE)
    rec.close()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert str(e.value).startswith(f"UNAVAILABLE: guardrail sidecar at {target}: ")
    assert "Ana" not in str(e.value) and "Silva" not in repr(e.value) and e.value.__cause__ is None
    with pytest.raises(SidecarError, match="UNAVAILABLE"):  # entities=None asks the sidecar at once
        GuardrailRecognizer.from_sidecar(target, retries=0, timeout=5)


@pytest.fixture
def offline_email_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presidio's default EmailRecognizer downloads the public suffix list: use the bundled one."""
    import tldextract

    from guardrail.patterns import offline_tld_extractor

    monkeypatch.setattr(tldextract, "extract", offline_tld_extractor())


def _run_readme(capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    namespace: dict = {}
    exec(compile(readme_block("Presidio drop-in"), "README.md", "exec"), namespace)
    return namespace, capsys.readouterr().out.strip()


def test_readme_snippet_runs(
    guard: Guardrail,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    offline_email_check: None,
    network_attempts: list[str],
) -> None:
    """The README's snippet as written, with the tiny bundle for ``Guardrail.load()``, beside Presidio's
    default recognizers and spaCy's small English model."""
    monkeypatch.setattr(Guardrail, "load", classmethod(lambda cls, *a, **kw: guard))
    ns, printed = _run_readme(capsys)
    recognizers = ns["analyzer"].registry.recognizers
    assert isinstance(recognizers[-1], GuardrailRecognizer) and len(recognizers) > 10  # beside Presidio's own
    ours = [r for r in ns["results"] if r.recognition_metadata["recognizer_name"] == "GuardrailRecognizer"]
    assert any(r.entity_type == "PERSON" and r.start <= 12 and r.end >= 21 for r in ours)  # "Ana Silva"
    # the tiny probe's name span is not the real one's ("Ana Silva at"): the real output is checked below
    assert (
        "<PERSON>" in printed
        and "<PHONE_NUMBER>" in printed
        and "Silva" not in printed
        and "555" not in printed
    )
    assert network_attempts == []


@pytest.mark.model
def test_readme_snippet_runs_on_the_default_bundle(
    capsys: pytest.CaptureFixture[str], offline_email_check: None
) -> None:
    _, printed = _run_readme(capsys)
    assert printed == "Please call <PERSON> at <PHONE_NUMBER>"
