"""Dtype and runtime by what the CPU has (issue 14): the probe, the choice, the slow-path warning."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import warnings

import pytest
import torch

from guardrail import backbone, cpu
from guardrail.backbone import Backbone, SlowPathWarning, choose, onnx_int8_support
from tests.test_pipeline import tiny_guard  # noqa: F401  (fixture)

CPU = torch.device("cpu")
AVX2 = {"avx2", "fma", "sse4_2"}
"""An AMD EPYC of issue 14: AVX2 only, no AVX512, no VNNI, no AMX."""
VNNI = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}
"""A Cascade Lake Xeon: AVX512 with VNNI, no bf16."""
SAPPHIRE = VNNI | {"avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}


def _as(monkeypatch: pytest.MonkeyPatch, flags: set[str], capability: str, onednn: str | None = None) -> None:
    """Make :func:`guardrail.cpu.probe` answer for this CPU."""
    caps = cpu.caps_from(flags, capability, onednn)
    monkeypatch.setattr(cpu, "probe", lambda: caps)


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled to :func:`importlib.util.find_spec`."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in modules else real(n, *a))


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backbone, "_warned", set())


def test_caps_need_the_flag_and_both_caps() -> None:
    avx2 = cpu.caps_from(AVX2, "AVX2")
    assert (avx2.int8, avx2.bf16) == (None, None)
    assert "no " in avx2.int8_why and "avx512_vnni" in avx2.int8_why
    assert cpu.caps_from(VNNI, "AVX512").int8 == "avx512_vnni"
    assert cpu.caps_from(VNNI, "AVX512").bf16 is None
    full = cpu.caps_from(SAPPHIRE, "AVX512")
    assert (full.int8, full.bf16) == ("amx_int8", "amx_bf16")
    # capped below: ATen to AVX2 leaves the AVX2 VNNI; oneDNN to AVX2 leaves nothing
    assert cpu.caps_from(SAPPHIRE, "AVX2").int8 == "avx_vnni"
    assert cpu.caps_from(SAPPHIRE, "AVX2").bf16 is None
    capped = cpu.caps_from(SAPPHIRE, "AVX2", "avx2")
    assert capped.int8 is None and "ONEDNN_MAX_CPU_ISA=AVX2" in capped.int8_why
    assert cpu.caps_from(SAPPHIRE, "AVX512", "AVX512_CORE_VNNI").int8 == "avx512_vnni"
    assert cpu.caps_from(SAPPHIRE, "AVX512", "AVX512_CORE_VNNI").bf16 is None
    assert cpu.caps_from(SAPPHIRE, "AVX512", "ALL").int8 == "amx_int8"  # no cap
    unknown = cpu.caps_from(None, "AVX512")
    assert unknown.int8 is None and unknown.bf16 is None and "unknown" in unknown.int8_why


def test_probe_reads_cpuinfo_and_caps_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: (set(SAPPHIRE), "Test CPU"))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu.probe.cache_clear()
    try:
        caps = cpu.probe()
        assert caps.model == "Test CPU" and caps.onednn_max_isa == "AVX2"
        assert caps.int8 is None and caps.bf16 is None
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
        assert cpu.probe() is caps  # cached: read once per process
        cpu.probe.cache_clear()
        assert cpu.probe().int8 == "amx_int8"
    finally:
        cpu.probe.cache_clear()


def test_cpuinfo_parses_flags() -> None:
    flags, _ = cpu._cpuinfo()
    if flags is None:
        pytest.skip("no /proc/cpuinfo here")
    assert flags and all(" " not in f for f in flags)


def test_avx2_only_keeps_torch_int8_bundle_off_torch_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, AVX2, "AVX2")
    if onnx_int8_support() is None:  # ONNX Runtime and its exporter installed
        c = choose(CPU, "torch-int8")
        assert c.runtime == "onnx-int8" and c.dtype == torch.float32
        assert "torch._int_mm is slow" in c.why
    else:
        c = choose(CPU, "torch-int8")
        assert (c.runtime, c.dtype) == ("torch", torch.float32) and "fp32" in c.why


def test_no_onnxruntime_means_fp32_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, AVX2, "AVX2")
    _hide(monkeypatch, "onnxruntime")
    assert "onnxruntime" in str(onnx_int8_support())
    c = choose(CPU, "torch-int8")
    assert (c.runtime, c.dtype) == ("torch", torch.float32)
    assert "onnxruntime" in c.why
    ort_bundle = choose(CPU, "onnx-int8")  # fitted on ONNX Runtime, which is not there
    assert ort_bundle.runtime == "torch"


def test_onnx_export_needs_exporter_unless_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "onnxscript")
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed")
    assert "onnxscript" in str(onnx_int8_support())
    assert onnx_int8_support(exported=True) is None


def test_vnni_runs_torch_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, VNNI, "AVX512")
    c = choose(CPU, "torch-int8")
    assert (c.runtime, c.dtype) == ("torch-int8", torch.float32)  # VNNI but no bf16
    assert "avx512_vnni" in c.why
    _as(monkeypatch, SAPPHIRE, "AVX512")
    c = choose(CPU, "torch-int8")
    assert (c.runtime, c.dtype) == ("torch-int8", torch.bfloat16)
    assert choose(CPU, "torch").runtime == "torch"


def test_gpu_runs_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    c = choose(torch.device("cuda"), "torch-int8")
    assert (c.runtime, c.dtype) == ("torch", torch.bfloat16) and "CPU only" in c.why


def test_explicit_slow_choice_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, AVX2, "AVX2")
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        choose(CPU, "torch")  # auto: never slow, never a warning
        choose(CPU, "torch-int8")
        assert not got
        for _ in range(3):
            c = choose(CPU, "torch-int8", "torch-int8")
            b = choose(CPU, "torch", "torch", "bf16")
    assert c.runtime == "torch-int8" and "slow here" in c.why  # kept: a warning, never a failure
    assert b.dtype == torch.bfloat16 and "slow here" in b.why
    slow = [w for w in got if issubclass(w.category, SlowPathWarning)]
    assert len(slow) == 2, [str(w.message) for w in got]
    assert "torch-int8" in str(slow[0].message) and "bf16" in str(slow[1].message)


def test_explicit_fast_choice_does_not_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, SAPPHIRE, "AVX512")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose(CPU, "torch", "torch-int8", "bf16").dtype == torch.bfloat16


def test_backbone_auto_on_vnni_is_torch_int8_compiled_only_at_warmup(
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _as(monkeypatch, VNNI, "AVX512")
    calls: list[dict] = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    with caplog.at_level(logging.INFO, logger="guardrail.backbone"):
        bb = Backbone.load(str(tiny_model_dir), layer=2, runtime="auto", fitted="torch-int8")
    assert bb.runtime == "torch-int8" and "avx512_vnni" in bb.why
    assert [r for r in caplog.records if bb.why in r.getMessage()], "the choice is logged at INFO"
    assert not calls and bb.compile_on_warmup  # a CLI call (no warmup) never compiles
    enc = bb.encode(["Call Ana Silva at +1 415 555 0100"])
    assert bb.residuals(enc)[0].shape == (len(enc[0].ids), bb.d_model)
    assert not calls
    bb.warmup(batch_size=2)  # a server warms up: compiled then, once
    bb.warmup(batch_size=2)
    assert calls == [{"dynamic": True}] and not bb.compile_on_warmup


def test_backbone_auto_on_avx2_without_onnxruntime_is_fp32_torch(
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, AVX2, "AVX2")
    _hide(monkeypatch, "onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto: no slow-path warning
        bb = Backbone.load(str(tiny_model_dir), layer=2, runtime="auto", fitted="torch-int8")
    assert (bb.runtime, bb.dtype) == ("torch", torch.float32)
    assert "slow" in bb.why and "onnxruntime" in bb.why


def test_guardrail_load_picks_by_cpu_for_a_torch_int8_bundle(
    tiny_guard,  # noqa: F811
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guardrail.pipeline import Guardrail

    folder = tmp_path / "tiny-int8"
    shutil.copytree(tiny_guard.bundle.folder, folder)
    manifest = json.loads((folder / "guard.json").read_text())
    manifest["backbone"]["runtime"] = "torch-int8"
    (folder / "guard.json").write_text(json.dumps(manifest))
    _as(monkeypatch, AVX2, "AVX2")
    _hide(monkeypatch, "onnxruntime")
    g = Guardrail.load(folder, patterns=False)
    assert g.backbone.runtime == "torch" and "fitted on torch-int8" in g.backbone.why
    _as(monkeypatch, VNNI, "AVX512")
    g = Guardrail.load(folder, runtime="auto", patterns=False)
    assert g.backbone.runtime == "torch-int8" and g.backbone.compile_on_warmup
