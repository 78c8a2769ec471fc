"""benchmarks/isa_matrix.py and devsuite's runtime suffix: environment caps, table, plot, card section."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from devsuite import split_runtime
from isa_matrix import LEVELS, capped, plot, table

from guardrail.bundle import _isa_section

RES = {
    "records": 10,
    "chars": 1234,
    "levels": {
        "native": {
            "env": {},
            "presidio": {"chars_per_s": 1000.0, "processes": 2},
            "bundles": {
                "b": {
                    "runtime": "torch",
                    "dtype": "bfloat16",
                    "chars_per_s": 3000.0,
                    "vs_presidio": 3.0,
                    "cold_detect_seconds": 12.5,
                    "capped": True,
                },
            },
        },
        "avx2": {
            "env": LEVELS["avx2"],
            "presidio": {"chars_per_s": 900.0, "processes": 2},
            "bundles": {
                "b": {
                    "runtime": "onnx-int8",
                    "dtype": "float32",
                    "chars_per_s": 1800.0,
                    "vs_presidio": 2.0,
                    "cold_detect_seconds": 20.0,
                    "capped": False,
                },
            },
        },
    },
}


def test_capped_sets_then_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    with capped(LEVELS["avx2"]):
        assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert "ATEN_CPU_CAPABILITY" not in os.environ and os.environ["ONEDNN_MAX_CPU_ISA"] == "ALL"
    with pytest.raises(RuntimeError), capped({"ATEN_CPU_CAPABILITY": "default"}):
        raise RuntimeError("a failed run")
    assert "ATEN_CPU_CAPABILITY" not in os.environ  # restored on the error path too


def test_table_marks_uncapped_onnx_rows_and_plot_draws(tmp_path: Path) -> None:
    md = table(RES)
    assert "| native | b | torch bfloat16 | 3,000 | 1,000 | 3.00x | 12.5 |" in md
    assert "| avx2 | b | onnx-int8 float32 † | 1,800 | 900 | 2.00x | 20.0 |" in md
    png = plot(RES, tmp_path / "m.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_card_section_has_every_level() -> None:
    rows = {lv: {"presidio": r["presidio"], **r["bundles"]["b"]} for lv, r in RES["levels"].items()}
    text = "\n".join(_isa_section({"command": "c", "date": "d", "records": 10, "rows": rows}))
    assert "| native | torch bfloat16 | 3,000 | 1,000 | 3.00x | 12.5 |" in text
    assert "| avx2 | onnx-int8 float32 † |" in text
    assert _isa_section(None) == [] and _isa_section({"rows": "x"}) == []


def test_devsuite_runtime_suffix() -> None:
    assert split_runtime("gemma-3-270m-fast~onnx-int8") == ("gemma-3-270m-fast", "onnx-int8")
    assert split_runtime("gemma-3-270m:raw@f1.5+unspaced-recall0.95~torch") == (
        "gemma-3-270m:raw@f1.5+unspaced-recall0.95",
        "torch",
    )
    assert split_runtime("gemma-3-270m") == ("gemma-3-270m", None)
    assert split_runtime("~/bundles/x") == ("~/bundles/x", None)  # a home folder, not a runtime
