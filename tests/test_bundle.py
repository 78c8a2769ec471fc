"""Bundles: manifest validation, round trip, errors."""

from __future__ import annotations

import json

import pytest
import torch

from guardrail.bundle import BackboneRef, Bundle, BundleError, Manifest, ProbeEntry, find
from guardrail.labels import PROBE_CLASSES
from guardrail.probe import Probe


def _bundle(folder) -> Bundle:
    n = len(PROBE_CLASSES)
    probe = Probe(torch.zeros(n, 4), torch.zeros(n), torch.zeros(4), torch.ones(4))
    m = Manifest(
        name="t",
        backbone=BackboneRef(id="x", layer=1),
        probes={"raw": ProbeEntry(prefix="raw.", thresholds={"PERSON": 0.3})},
    )
    return Bundle(folder, m, {"raw": probe})


def test_round_trip(tmp_path) -> None:
    _bundle(tmp_path / "b").save()
    b = Bundle.load(tmp_path / "b")
    assert b.manifest.probes["raw"].thresholds == {"PERSON": 0.3} and set(b.probes) == {"raw"}
    assert b.sae is None
    assert not list((tmp_path / "b").glob("*.pkl"))


def test_unknown_path_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(BundleError, match="no guard bundle"):
        find(tmp_path / "nothing-here")


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"probes": {"raw": {"prefix": "raw.", "thresholds": {"NAME": 0.5}}}}, "thresholds"),
        ({"probes": {"raw": {"prefix": "raw.", "head": "forest"}}}, "not what the manifest says"),
        ({"probes": {"raw": {"prefix": "raw.", "features": "sae"}}}, "not what the manifest says"),
        ({"format_version": 1}, "format_version"),
        ({"detect_labels": ["SECRET"]}, "detect_labels"),
        ({"backbone": {"id": "x", "layer": 0}}, "backbone.layer"),
        ({"surprise": 1}, "surprise"),
        ({"default_probe": "sae"}, None),
    ],
)
def test_invalid_manifests_are_refused(tmp_path, patch, where) -> None:
    _bundle(tmp_path / "b").save()
    path = tmp_path / "b" / "guard.json"
    d = json.loads(path.read_text())
    d.update(patch)
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError) as e:
        Bundle.load(tmp_path / "b")
    if where:
        assert where in str(e.value)


def test_corrupt_probe_file(tmp_path) -> None:
    _bundle(tmp_path / "b").save()
    (tmp_path / "b" / "probe.safetensors").write_bytes(b"junk")
    with pytest.raises(BundleError, match="probe"):
        Bundle.load(tmp_path / "b")


def test_pruned_backbone_indices_round_trip_and_are_checked(tmp_path) -> None:
    import numpy as np

    from guardrail.prune import Pruning

    b = _bundle(tmp_path / "b")
    m = b.manifest
    m.backbone.layer, m.backbone.mlp_keep = 2, 4
    keep = [np.array([0, 5, 9, 11], dtype=np.int64), np.array([1, 2, 3, 4], dtype=np.int64)]
    down = [np.full((8, 4), i, dtype=np.float32) for i in range(2)]
    Bundle(b.folder, m, b.probes, pruning=Pruning(keep, down)).save()
    got = Bundle.load(tmp_path / "b").pruning
    assert got is not None and all((x == k).all() for x, k in zip(got.keep, keep, strict=True))
    assert got.down is not None and float(got.down[1][0, 0]) == 1.0
    assert Bundle.load(tmp_path / "b").manifest.backbone.mlp_keep == 4
    m.backbone.mlp_keep = 5  # the manifest says 5 per block, the file holds 4
    (tmp_path / "b" / "guard.json").write_text(m.model_dump_json())
    with pytest.raises(BundleError, match="int64 indices"):
        Bundle.load(tmp_path / "b")
    (tmp_path / "b" / "backbone.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BundleError, match="unreadable"):
        Bundle.load(tmp_path / "b")


def test_shipped_default_bundle_validates() -> None:
    b = Bundle.load("gemma-3-270m")
    m = b.manifest
    assert m.backbone.id == "gemma-3-270m" and m.backbone.license == "Gemma Terms of Use"
    for entry in m.probes.values():
        assert set(entry.thresholds) >= set(m.detect_labels)
    assert (b.folder / "MODEL_CARD.md").is_file()


def test_grow_thresholds_round_trip_checked_and_carded(tmp_path) -> None:
    b = _bundle(tmp_path / "b")
    assert b.manifest.probes["raw"].thresholds_grow is None  # older bundles: spans do not grow
    b.manifest.probes["raw"].thresholds_grow = {"PERSON": 0.02, "LOCATION": 0.05}
    b.save()
    assert Bundle.load(tmp_path / "b").manifest.probes["raw"].thresholds_grow == {
        "PERSON": 0.02,
        "LOCATION": 0.05,
    }
    assert (
        "a span grows over neighbouring tokens that reach LOCATION 0.050, PERSON 0.020"
        in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    )
    for bad in ({"NOPE": 0.1}, {"PERSON": -0.5}):
        with pytest.raises(ValueError, match="canonical label"):
            ProbeEntry(prefix="raw.", thresholds_grow=bad)


def test_shipped_fast_bundle_prunes_and_runs_int8() -> None:
    b = Bundle.load("gemma-3-270m-fast")
    ref = b.manifest.backbone
    assert (ref.runtime, ref.mlp_keep, ref.layer) == ("torch-int8", 1024, 3)
    assert b.pruning is not None and b.pruning.down is not None
    assert [len(k) for k in b.pruning.keep] == [1024] * 3 and b.pruning.down[0].shape == (640, 1024)
    assert "pruned backbone" in (b.folder / "MODEL_CARD.md").read_text()


def test_thresholds_of_unspaced_scripts_round_trip_checked_and_carded(tmp_path) -> None:
    b = _bundle(tmp_path / "b")
    assert b.manifest.probes["raw"].thresholds_unspaced is None  # older bundles: one set of thresholds
    b.manifest.probes["raw"].thresholds_unspaced = {"PERSON": 0.12}
    b.manifest.probes["raw"].metrics["calibration"] = "f2+unspaced-f3"
    b.save()
    again = Bundle.load(tmp_path / "b").manifest.probes["raw"]
    assert again.thresholds_unspaced == {"PERSON": 0.12}
    assert "in Chinese/Japanese/Thai script PERSON 0.120" in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    for bad in ({"NOPE": 0.1}, {"PERSON": 1.5}):
        with pytest.raises(ValueError, match="canonical label"):
            ProbeEntry(prefix="raw.", thresholds_unspaced=bad)
