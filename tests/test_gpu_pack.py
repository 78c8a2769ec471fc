"""benchmarks/gpu_pack.py: the few-megabyte pack that carries the default model to a lent GPU machine
unpacks to weights bit-equal to the converted model, and the guardrail finds the same spans with it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from gpu_pack import hf_name, is_norm, pack, unpack, verify

from guardrail.pipeline import Guardrail


def test_names_of_gguf_tensors() -> None:
    assert hf_name("blk.2.ffn_up.weight") == "layers.2.mlp.up_proj.weight"
    assert hf_name("token_embd.weight") == "embed_tokens.weight"
    assert is_norm("blk.0.post_ffw_norm.weight") and not is_norm("blk.0.attn_q.weight")


def test_pack_unpacks_bit_equal_and_detects_the_same(tmp_path: Path) -> None:
    manifest = pack(tmp_path / "pack", n_records=6, n_messages=2, seed=3)
    from guardrail.bundle import Bundle

    assert manifest["layer"] == Bundle.load().manifest.backbone.layer and manifest["vocab_rows"] < 2000
    assert verify(tmp_path / "pack") == []
    folder = unpack(tmp_path / "pack", tmp_path / "model")
    texts = json.loads((tmp_path / "pack" / "texts.json").read_text())
    guard = Guardrail.load(patterns=False, model=str(folder))  # provenance: the GGUF's sha256 travels
    found = [[[s.start, s.end, s.label] for s in spans] for spans in guard.detect(texts["records"])]
    assert found == texts["cpu_spans"]
