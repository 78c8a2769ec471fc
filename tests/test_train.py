"""Training: token labels, calibration, a whole bundle from nothing (tiny model), and the SAE stage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from guardrail import features
from guardrail.bundle import Bundle, BundleError
from guardrail.data import Record
from guardrail.labels import PROBE_CLASSES
from guardrail.pipeline import Guardrail
from guardrail.probe import token_features
from guardrail.sae import Sae
from guardrail.spans import Span
from guardrail.train import (
    CALIBRATIONS,
    GROW_RULE,
    UNSPACED_CALIBRATIONS,
    Activations,
    SaeProbeConfig,
    SaeTrainConfig,
    TrainConfig,
    calibrate,
    calibrations,
    recalibrate,
    token_labels,
    token_rows,
    train,
    train_sae_for_bundle,
    train_sae_probe,
)


def test_token_labels_skip_the_leading_space() -> None:
    text = "Call Ana Silva now"
    offsets = np.array([[0, 4], [4, 8], [8, 14], [14, 18]])  # SentencePiece style: " Ana" = (4, 8)
    y = token_labels(text, offsets, [Span(5, 14, "PERSON")], PROBE_CLASSES)
    person = PROBE_CLASSES.index("PERSON")
    assert y.tolist() == [0, person, person, 0]


def test_calibrate_meets_the_token_recall_target() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.choice([0, 1], size=n, p=[0.7, 0.3])  # O or PERSON
    pii = np.where(labels == 1, rng.beta(5, 1, n), rng.beta(1, 5, n))
    probs = np.zeros((n, len(PROBE_CLASSES)))
    probs[:, 0] = 1 - pii
    probs[:, 1] = pii
    thr = calibrate([probs], [labels], ["PERSON"], 0.95)["PERSON"]
    assert np.mean(pii[labels == 1] >= thr) >= 0.95 - 1e-9
    assert thr > 0.3  # not a degenerate "flag everything" point
    # F-beta: the best trade-off on these tokens, and F2 never stricter than F1
    f1, f2 = (calibrate([probs], [labels], ["PERSON"], 0.95, mode)["PERSON"] for mode in ("f1", "f2"))
    assert 0.2 < f2 <= f1 < 0.9
    # masked tokens (-1) count neither way
    masked = np.where(rng.random(n) < 0.5, -1, labels)
    assert calibrate([probs], [masked], ["PERSON"], 0.95, "f1")["PERSON"] == pytest.approx(f1, abs=0.1)
    # any F-beta, and a recall rule with its own target
    f3 = calibrate([probs], [labels], ["PERSON"], 0.95, "f3")["PERSON"]
    assert f3 <= f2
    r90 = calibrate([probs], [labels], ["PERSON"], 0.99, "recall0.9")["PERSON"]
    assert np.mean(pii[labels == 1] >= r90) == pytest.approx(0.9, abs=0.01)
    for bad in ("g3", "f", "f-1", "recall1.5", "recallx"):
        with pytest.raises(ValueError, match="calibration"):
            calibrate([probs], [labels], ["PERSON"], 0.95, bad)


def _corpora(folder: Path) -> Path:
    """Two tiny real-corpus files in the shared format (a tweet-like one and a booking-like one)."""
    folder.mkdir()
    rows = {
        "tweets": [
            (f"so good to see Lena Vogt at the game {i} lol", "Lena Vogt", "CC-BY-4.0") for i in range(60)
        ],
        "booking": [(f"a table for Jun Sato on {i} May please", "Jun Sato", "CC0-1.0") for i in range(60)],
    }
    for name, items in rows.items():
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for i, (text, who, lic) in enumerate(items):
                a = text.index(who)
                rec = {
                    "id": f"{name}-{i}",
                    "text": text,
                    "lang": "en",
                    "licence": lic,
                    "source": f"github:o/{name}@1:x",
                }
                rec["spans"] = [{"start": a, "end": a + len(who), "label": "PERSON"}]
                f.write(json.dumps(rec) + "\n")
    return folder


def _with_corpora(tiny_model_dir: Path, tmp_path: Path, **kw: object) -> TrainConfig:
    """A training of the tiny model at layer 2 on the two tiny corpora (:func:`_corpora`) in equal parts."""
    return TrainConfig(
        out=tmp_path / "tiny-bundle",
        model=str(tiny_model_dir),
        layer=2,
        n_real=80,
        real_dir=_corpora(tmp_path / "corpora"),
        real_mix={"tweets": 1.0, "booking": 1.0},
        **kw,
    )


def test_train_builds_a_loadable_bundle_then_an_sae(tiny_model_dir, tmp_path) -> None:
    cfg = _with_corpora(
        tiny_model_dir, tmp_path, n_train=300, n_calib=120, max_iter=50, n_real_calib=10, calibration="f2"
    )
    real = cfg.real_dir
    bundle = train(cfg)
    m = Bundle.load(cfg.out).manifest
    assert m.backbone.layer == 2 and set(m.probes["raw"].thresholds) == set(m.detect_labels)
    assert m.training["n_train_records"] == 380 and "calib_probe_only" in m.probes["raw"].metrics
    # every real corpus that gave records is in the manifest with its licence and origin
    sources = {s["source"]: s for s in m.training["sources"]["real"]["sources"]}
    assert set(sources) == {"tweets", "booking"} and sources["booking"]["licence"] == "CC0-1.0"
    assert sources["tweets"]["records_used"] == 40 and m.training["calibration"] == "f2"
    card = (cfg.out / "MODEL_CARD.md").read_text()
    assert "tweets" in card and "CC0-1.0" in card and "github:o/booking@1" in card
    assert "nationality word" in card  # the label convention the corpora were brought to
    assert (cfg.out / "MODEL_CARD.md").read_text().startswith("# Guard bundle")
    g = Guardrail.load(cfg.out, dtype="fp32")
    (spans,) = g.detect(["write to ana.silva@example.com"])
    assert any(s.label == "EMAIL" for s in spans)  # patterns at least; the probe is tiny
    figures = train_sae_for_bundle(
        SaeTrainConfig(
            bundle=str(bundle.folder), tokens=3000, heldout_records=40, d_sae=64, k=4, batch_size=256
        )
    )
    assert figures["train_tokens"] >= 2048 and 0 <= figures["heldout_dead_share"] <= 1
    assert figures["heldout_l0"] <= 4 + 1e-6
    sae = Sae.load(cfg.out / "sae")
    assert sae.cfg.d_in == 32 and sae.cfg.d_sae == 64
    manifest = json.loads((cfg.out / "guard.json").read_text())
    assert manifest["metrics"]["sae"]["k"] == 4

    # SAE-feature probes on top, both heads, then explanations end to end
    figures = train_sae_probe(
        SaeProbeConfig(
            bundle=str(bundle.folder),
            n_train=150,
            n_calib=60,
            n_latents=16,
            sweep=(8,),
            n_trees=5,
            max_depth=4,
            n_real=30,
            n_real_calib=10,
            real_dir=real,
        )
    )
    assert [row["n_latents"] for row in figures["latent_sweep"]] == [8, 16]
    b = Bundle.load(cfg.out)
    assert set(b.probes) == {"raw", "sae-lr", "sae-rf"} and b.sae is not None
    assert b.probes["sae-rf"].head == "forest" and len(b.probes["sae-lr"].latents) == 16
    assert set(b.manifest.probes["sae-rf"].thresholds) == set(b.manifest.detect_labels)
    doc = features.build(cfg.out, n_records=30)
    assert len(doc["latents"]) == 64
    assert all("top_contexts" in doc["latents"][str(int(j))] for j in b.probes["sae-lr"].latents)
    g = Guardrail.load(cfg.out, dtype="fp32", probe="sae-rf", patterns=False)
    text = "thanks Lena Vogt, please call"
    probs = g.scores([text])[0].probs
    assert probs.shape[1] == len(PROBE_CLASSES) and np.allclose(probs.sum(1), 1, atol=1e-4)
    g.thresholds = dict.fromkeys(g.labels, 0.0)  # flag every token: every probe span gets explained
    g.lone_min_score = 0.0
    (spans,) = g.detect([text], explain=True)
    assert spans and all(s.features for s in spans)
    for f in spans[0].features:
        assert f.contribution > 0 and f.latent in set(b.probes["sae-rf"].latents.tolist())
        assert f.description  # from features.json

    # training again into the bundle gives it a new raw probe and keeps its SAE, SAE probes and figures
    latents = b.probes["sae-lr"].latents.tolist()
    train(replace(cfg, seed=1))
    again = Bundle.load(cfg.out)
    assert set(again.probes) == {"raw", "sae-lr", "sae-rf"} and again.sae is not None
    assert again.probes["sae-lr"].latents.tolist() == latents and "sae_probe" in again.manifest.training
    assert "sae" in again.manifest.metrics and again.manifest.training["seed"] == 1
    # ... but not into one whose probes read another layer: refused before anything is computed
    with pytest.raises(BundleError, match="layer 2"):
        train(replace(cfg, layer=1))
    assert set(Bundle.load(cfg.out).probes) == {"raw", "sae-lr", "sae-rf"}


def test_train_on_a_pruned_backbone(tiny_model_dir, tmp_path) -> None:
    cfg = TrainConfig(
        out=tmp_path / "tiny-pruned",
        model=str(tiny_model_dir),
        layer=2,
        n_train=200,
        n_calib=80,
        max_iter=30,
        mlp_keep=24,
        prune_records=60,
        n_real=0,
        n_real_calib=0,
    )
    train(cfg)
    b = Bundle.load(cfg.out)
    assert b.manifest.backbone.mlp_keep == 24 and "mlp_pruning" in b.manifest.training
    assert b.pruning is not None and [len(k) for k in b.pruning.keep] == [24, 24]
    assert b.pruning.down is not None and b.pruning.down[0].shape == (32, 24)
    g = Guardrail.load(cfg.out, dtype="fp32", patterns=False)
    assert g.backbone.model.layers[0].mlp.up_proj.out_features == 24
    assert g.backbone.info["mlp_keep"] == "24,24"
    assert isinstance(g.detect(["write to Ana Silva"])[0], list)


def test_train_an_mlp_head_end_to_end(tiny_model_dir, tmp_path) -> None:
    cfg = TrainConfig(
        out=tmp_path / "tiny-mlp",
        model=str(tiny_model_dir),
        layer=2,
        n_train=200,
        n_calib=80,
        n_real=0,
        n_real_calib=0,
        head="mlp",
        hidden=16,
        epochs=2,
    )
    train(cfg)
    b = Bundle.load(cfg.out)
    assert b.manifest.probes["raw"].head == "mlp" and b.probes["raw"].head == "mlp"
    assert b.manifest.training["head"] == "mlp" and b.manifest.training["hidden"] == 16
    assert "C" not in b.manifest.training
    assert "mlp head" in (cfg.out / "MODEL_CARD.md").read_text()
    g = Guardrail.load(cfg.out, dtype="fp32", patterns=False)
    probs = g.scores(["write to Ana Silva"])[0].probs
    assert probs.shape[1] == len(PROBE_CLASSES) and np.allclose(probs.sum(1), 1, atol=1e-4)
    with pytest.raises(ValueError, match="head must be"):
        train(replace(cfg, head="tree", out=tmp_path / "x"))
    # calibrated again on the records it was trained with: the same thresholds by the same rule, stored
    # beside the shipped ones (which stay), and the CLI's refusals are one line
    shipped = dict(b.manifest.probes["raw"].thresholds)
    b.manifest.probes["raw"].metrics["calibrations"] = {}
    b.save_manifest()
    again = recalibrate(cfg.out).manifest.probes["raw"]
    assert again.thresholds == shipped
    assert set(again.metrics["calibrations"]) >= set(CALIBRATIONS)
    assert again.metrics["calibrations"]["f2"]["thresholds"] == pytest.approx(shipped, abs=1e-6)
    assert (
        Bundle.load(cfg.out).manifest.probes["raw"].metrics["calibrations"] == again.metrics["calibrations"]
    )
    from guardrail.cli import main

    assert main(["calibrate", "--bundle", str(cfg.out), "--probes", "nope"]) == 2
    assert main(["calibrate", "--bundle", str(cfg.out)]) == 0


def test_token_rows_equal_token_features_text_by_text() -> None:
    from guardrail.realdata import MASKED

    rng = torch.Generator().manual_seed(0)
    resid = [torch.randn(n, 8, generator=rng).to(torch.bfloat16) for n in (3, 1, 5)]
    labels = [np.array([0, 1, MASKED]), np.array([2]), np.array([0, 0, 3, 3, 0])]
    acts = Activations(resid, [np.zeros((len(y), 2)) for y in labels], labels, 0.0, 9)
    rows, y = token_rows(acts, (-2, 0, 1))
    want = torch.cat([token_features(r.float(), (-2, 0, 1)) for r in resid])
    assert torch.allclose(rows(torch.arange(9)), want, atol=1e-6)
    assert torch.allclose(rows(torch.tensor([7, 0])), want[[7, 0]], atol=1e-6)
    assert y.tolist() == [0, 1, MASKED, 2, 0, 0, 3, 3, 0]


def test_code_stats_match_dense_codes() -> None:
    from guardrail.sae import SaeConfig
    from guardrail.train import Activations, code_stats

    torch.manual_seed(0)
    sae = Sae(SaeConfig(d_in=8, d_sae=32, k=4), seed=0)
    rng = np.random.default_rng(0)
    resid = [torch.randn(n, 8) * 10 for n in (5, 7, 3)]
    labels = [rng.integers(0, 3, len(r)) for r in resid]
    means, std, counts = code_stats(sae, Activations(resid, [], labels, 0.0, 15), 3)
    with torch.no_grad():
        codes = sae.encode(torch.cat(resid)).double().numpy()
    y = np.concatenate(labels)
    for k in range(3):
        assert counts[k] == (y == k).sum()
        if (y == k).any():
            assert np.allclose(means[k], codes[y == k].mean(0))
    assert np.allclose(std, codes.std(0))


def _scored_corpus(n: int, rng: np.random.Generator) -> tuple[list[Record], Activations, list[np.ndarray]]:
    """``n`` records "<name> met <name>" in Chinese then Latin script, one token a character in Chinese;
    the probe scores Chinese names lower than Latin ones (as a probe that saw less Chinese would)."""
    recs, offs, labs, probs = [], [], [], []
    for i in range(n):
        text = "王小明见了李华 and Ana Lee met Bo Kim"
        spans = [Span(0, 3, "PERSON"), Span(5, 7, "PERSON"), Span(12, 19, "PERSON"), Span(24, 30, "PERSON")]
        o = [(j, j + 1) for j in range(7)] + [(7, 11), (11, 15), (15, 19), (19, 23), (23, 26), (26, 30)]
        y = token_labels(text, np.array(o), spans, PROBE_CLASSES)
        pii = np.where(y > 0, rng.beta(6, 2, len(y)), rng.beta(1, 6, len(y)))
        pii[:7] = np.where(y[:7] > 0, rng.beta(3, 3, 7), rng.beta(1, 8, 7))  # Chinese: weaker evidence
        p = np.zeros((len(y), len(PROBE_CLASSES)))
        p[:, 0], p[:, 1] = 1 - pii, pii
        recs.append(Record(f"r{i}", text, spans))
        offs.append(np.array(o))
        labs.append(y)
        probs.append(p)
    return recs, Activations([], offs, labs, 0.0, sum(len(y) for y in labs)), probs


def test_calibrations_give_unspaced_scripts_thresholds_of_their_own() -> None:
    rng = np.random.default_rng(0)
    recs, acts, probs = _scored_corpus(400, rng)  # 2,800 Chinese tokens
    chosen, rules = calibrations(recs, acts, probs, ["PERSON", "EMAIL"], 0.99, "f2")
    assert "thresholds_unspaced" not in chosen  # the base rules are as they were
    for base in CALIBRATIONS:
        for u in UNSPACED_CALIBRATIONS:
            r = rules[f"{base}+unspaced-{u}"]
            assert r["thresholds"] == rules[base]["thresholds"]
            assert r["lone_min_score"] == rules[base]["lone_min_score"]
            # only labels seen in these scripts (no Chinese email here), and never stricter than elsewhere
            assert set(r["thresholds_unspaced"]) == {"PERSON"}
            assert 0.0 < r["thresholds_unspaced"]["PERSON"] <= r["thresholds"]["PERSON"]
    # calibrated on the Chinese tokens alone: they get a lower threshold than the mixed set's
    assert rules["f2+unspaced-f3"]["thresholds_unspaced"]["PERSON"] < rules["f2"]["thresholds"]["PERSON"]
    # too few such tokens: no per-script rules at all (each rule but the recall one still grows)
    few_recs, few_acts, few_probs = _scored_corpus(100, rng)
    assert set(calibrations(few_recs, few_acts, few_probs, ["PERSON"], 0.99, "f2")[1]) == set(
        CALIBRATIONS
    ) | {f"{c}+grow" for c in CALIBRATIONS if c != GROW_RULE}


def test_every_rule_also_grows_by_the_recall_rules_thresholds() -> None:
    rng = np.random.default_rng(1)
    recs, acts, probs = _scored_corpus(400, rng)
    _, rules = calibrations(recs, acts, probs, ["PERSON", "EMAIL"], 0.99, "f2")
    plain = [name for name in rules if not name.endswith("+grow")]
    assert {f"{n}+grow" for n in plain if not n.startswith(GROW_RULE)} == {
        n for n in rules if n.endswith("+grow")
    }
    for name in plain:
        if name.startswith(GROW_RULE):
            continue
        grown, base = rules[f"{name}+grow"], rules[name]
        assert grown["thresholds_grow"] == rules[GROW_RULE]["thresholds"]
        assert grown["thresholds"] == base["thresholds"] and grown["lone_min_score"] == base["lone_min_score"]
        assert grown.get("thresholds_unspaced") == base.get("thresholds_unspaced")
        # measured with growing on the same records: spans only grow, so recall never drops
        assert (
            grown["calib_probe_only"]["recall_partial"] >= base["calib_probe_only"]["recall_partial"] - 0.01
        )


def test_a_pruning_with_real_corpora_ranks_on_them_not_on_installed_packages(
    tiny_model_dir, tmp_path, monkeypatch
) -> None:
    import guardrail.corpus
    from guardrail.train import prune_for

    def no_general_text(*_a: object, **_k: object) -> None:
        raise AssertionError("the offline corpus (installed packages' READMEs) ranked the neurons")

    monkeypatch.setattr(guardrail.corpus, "iter_records", no_general_text)
    cfg = _with_corpora(tiny_model_dir, tmp_path, mlp_keep=24, prune_records=60)
    a, b = prune_for(cfg), prune_for(cfg)
    assert [k.tolist() for k in a.keep] == [k.tolist() for k in b.keep]  # the same files, the same pruning
