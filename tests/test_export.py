"""The probe as one ONNX graph (guardrail/export.py): parity with torch on the real default model (scores
and spans, raw and SAE probes), the CLI round trip on the tiny bundle, and refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from guardrail.backbone import window_plan, windows
from guardrail.cli import main
from guardrail.export import ExportError, OnnxProbe, export
from guardrail.pipeline import Guardrail, GuardrailError

pytest.importorskip("onnxruntime")

SHORT = [
    "Contact Maria Garcia at maria.garcia@example.com or +34 612 345 678 before Friday.",
    "Nothing personal here, only the quarterly numbers.",
    "Ship to Peter Müller, Hauptstraße 5, 10115 Berlin; card 4111 1111 1111 1111.",
    "",
    "user jdoe_88 logged in from 192.168.10.24",
]


def test_window_plan_with_margin_keeps_every_token_once_with_its_neighbours() -> None:
    for n in (0, 1, 126, 127, 128, 300, 1000):
        assert [(s, t, k) for s, t, k, _ in window_plan(n)] == windows(n)
        for margin in (0, 1, 3):
            kept = []
            for s, t, k, kt in window_plan(n, margin=margin):
                kept += range(s + k, kt)
                for tok in range(s + k, kt):  # neighbours within reach are in the same window
                    assert s <= max(0, tok - margin) and min(n, tok + margin + 1) <= t
            assert kept == list(range(n))
    with pytest.raises(ValueError, match="margin"):
        window_plan(300, margin=20)


@pytest.fixture(scope="module")
def fp32_guards() -> dict[str, Guardrail]:
    """The default bundle in torch float32 (the graph's precision), one guardrail per probe."""
    raw = Guardrail.load(dtype="fp32", probe="raw", patterns=False)
    return {"raw": raw, "sae-lr": Guardrail(raw.bundle, raw.backbone, probe="sae-lr", patterns=False)}


@pytest.mark.parametrize("probe", ["raw", "sae-lr"])
def test_real_graph_matches_torch(fp32_guards: dict[str, Guardrail], probe: str, tmp_path: Path) -> None:
    ref = fp32_guards[probe]
    ref.detect(SHORT)  # a guardrail in use (its SAE selection cached) exports as well as a fresh one
    out = export(ref, tmp_path / "graph")
    meta = json.loads((out / "onnx.json").read_text())
    margin = max(abs(c) for c in ref.probe.context)
    assert meta["probe"] == probe and meta["margin"] == margin and meta["precision"] == "fp32"
    g = Guardrail.load(runtime="onnx", onnx_dir=out, patterns=False)
    assert g.probe_name == probe and g.describe()["runtime"] == "onnx" and g.backbone.model is None
    # texts within one window: the same numbers up to float32 rounding, the same spans
    for a, b in zip(ref.scores(SHORT), g.scores(SHORT), strict=True):
        assert a.probs.shape == b.probs.shape
        assert np.abs(a.probs - b.probs).max(initial=0.0) < 1e-3
    assert g.detect(SHORT) == ref.detect(SHORT)
    assert any(g.detect(SHORT))
    # a long text: the graph reads neighbours within its window, so its windows hand over `margin`
    # tokens earlier; only tokens at a hand-over (read with another window's context) may differ
    long = "Ms. Yuki Tanaka (yuki@example.jp) called from +81 3-1234-5678 about order 7741. " * 12
    (a,), (b,) = ref.scores([long]), g.scores([long])
    near = np.zeros(len(a.probs), dtype=bool)
    for _s, t, _k, _kt in window_plan(len(a.probs))[:-1]:
        near[max(0, t - margin - 2) : t + margin + 1] = True
    assert near.sum() < 0.1 * len(near)  # the check still covers most tokens
    assert np.abs(a.probs - b.probs)[~near].max() < 1e-3
    with pytest.raises(GuardrailError, match="torch runtime"):
        g.detect(SHORT, explain=True)


def test_tiny_cli_export_then_redact_on_onnx(tiny_bundle_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tiny-graph"
    assert main(["export-onnx", "--bundle", str(tiny_bundle_dir), "--out", str(out)]) == 0
    assert (out / "model.onnx").is_file()
    text = tmp_path / "in.txt"
    text.write_text("please call Anabel Quist thanks\n")
    capsys.readouterr()
    args = ["redact", str(text), "--bundle", str(tiny_bundle_dir), "--no-patterns"]
    assert main([*args, "--runtime", "onnx", "--onnx-dir", str(out)]) == 0
    onnx_out = capsys.readouterr().out
    assert main(args) == 0
    assert onnx_out == capsys.readouterr().out
    # int8: smaller weights, still a working graph
    assert (
        main(["export-onnx", "--bundle", str(tiny_bundle_dir), "--out", str(tmp_path / "q"), "--int8"]) == 0
    )
    assert OnnxProbe(tmp_path / "q").manifest["precision"] == "int8"


def test_refusals(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GuardrailError, match="onnx_dir"):
        Guardrail.load(tiny_bundle_dir, runtime="onnx", patterns=False)
    with pytest.raises(GuardrailError, match="onnx_dir goes with"):
        Guardrail.load(tiny_bundle_dir, onnx_dir=tmp_path, patterns=False)
    with pytest.raises(GuardrailError, match=r"onnx\.json"):
        Guardrail.load(tiny_bundle_dir, runtime="onnx", onnx_dir=tmp_path, patterns=False)
    guard = Guardrail.load(tiny_bundle_dir, dtype="fp32", patterns=False)
    out = export(guard, tmp_path / "g")
    other = tmp_path / "other-bundle"
    shutil.copytree(tiny_bundle_dir, other)
    manifest = json.loads((other / "guard.json").read_text())
    manifest["name"] = "other"
    (other / "guard.json").write_text(json.dumps(manifest))
    with pytest.raises(GuardrailError, match="export it again"):
        Guardrail.load(other, runtime="onnx", onnx_dir=out, patterns=False)
    retrained = tmp_path / "retrained"  # same name, other weights
    shutil.copytree(tiny_bundle_dir, retrained)
    data = bytearray((retrained / "probe.safetensors").read_bytes())
    data[-1] ^= 1
    (retrained / "probe.safetensors").write_bytes(bytes(data))
    with pytest.raises(GuardrailError, match="other weights"):
        Guardrail.load(retrained, runtime="onnx", onnx_dir=out, patterns=False)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(GuardrailError, match="onnxruntime-gpu"):
            Guardrail.load(tiny_bundle_dir, runtime="onnx", onnx_dir=out, device="cuda", patterns=False)


def test_forest_heads_are_not_exported(real_guardrail: Guardrail, tmp_path: Path) -> None:
    forest = Guardrail(real_guardrail.bundle, real_guardrail.backbone, probe="sae-rf", patterns=False)
    with pytest.raises(ExportError, match="linear and MLP heads"):
        export(forest, tmp_path / "rf")
    assert not (tmp_path / "rf").exists()


def test_tiny_mlp_head_exports_and_matches_torch(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    from guardrail.probe import fit_mlp
    from guardrail.train import collect, token_rows

    folder = tmp_path / "tiny-mlp"
    shutil.copytree(tiny_bundle_dir, folder)
    guard = Guardrail.load(folder, dtype="fp32", patterns=False)
    texts = ["please call Anabel Quist thanks", "I met Bo Lind and see you soon", "thanks"]
    from guardrail.data import Record
    from guardrail.spans import Span

    recs = [Record("a", texts[0], [Span(12, 24, "PERSON")]), Record("b", texts[1], [Span(6, 13, "PERSON")])]
    rows, labels = token_rows(collect(guard.backbone, recs, "tiny"), (-1, 0, 1))
    mlp = fit_mlp(rows, labels, context=(-1, 0, 1), hidden=8, epochs=3, progress=False)
    manifest = json.loads((folder / "guard.json").read_text())
    manifest["probes"]["raw"]["head"] = "mlp"
    (folder / "guard.json").write_text(json.dumps(manifest))
    (folder / "probe.safetensors").unlink()
    mlp.save(folder / "probe.safetensors", "raw.")
    ref = Guardrail.load(folder, dtype="fp32", patterns=False)
    assert ref.probe.head == "mlp"
    out = export(ref, tmp_path / "graph")
    g = Guardrail.load(folder, runtime="onnx", onnx_dir=out, patterns=False)
    for a, b in zip(ref.scores(texts), g.scores(texts), strict=True):
        assert a.probs.shape == b.probs.shape and np.abs(a.probs - b.probs).max(initial=0.0) < 1e-4
