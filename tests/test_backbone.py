"""Backbone stage: loading, truncation, windows, offsets, dtype."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from guardrail.backbone import (
    EMBEDDED,
    Backbone,
    BackboneError,
    Encoded,
    lay_out,
    pack_pieces,
    pick_dtype,
    resolve,
    stitch,
    windows,
)


@given(st.integers(0, 2000), st.integers(8, 300), st.integers(0, 64))
def test_windows_take_every_token_exactly_once(n: int, window: int, overlap: int) -> None:
    if overlap >= window - 1:
        with pytest.raises(ValueError):
            windows(n, window, overlap)
        return
    taken: list[int] = []
    for start, end, keep in windows(n, window, overlap):
        assert 0 < end - start <= window - 1
        assert keep == 0 or keep == overlap
        taken.extend(range(start + keep, end))
    assert taken == list(range(n))


@given(st.lists(st.integers(0, 127), max_size=60), st.sampled_from([128, 200]))
def test_packing_places_every_piece_once_within_capacity(lengths: list[int], capacity: int) -> None:
    rows = pack_pieces(lengths, capacity)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] + 1 for i in r) <= capacity for r in rows)
    # first fit, longest first: no two rows could have been one
    fills = sorted(sum(lengths[i] + 1 for i in r) for r in rows)
    assert len(fills) < 2 or fills[0] + fills[1] > capacity


def test_lay_out_restarts_positions_at_each_segment() -> None:
    ids, pos, starts = lay_out(
        [[np.array([7, 8]), np.array([9])], [np.array([5])]], bos_id=1, pad_id=0, buckets=(8,)
    )
    assert ids.tolist() == [[1, 7, 8, 1, 9, 0, 0, 0], [1, 5, 0, 0, 0, 0, 0, 0]]
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6, 7]]
    assert starts == [[1, 4], [1]]


def test_fp16_is_refused() -> None:
    with pytest.raises(BackboneError, match="fp16"):
        pick_dtype(torch.device("cpu"), "fp16")


def test_tiny_model_truncated_and_windowed(tiny_model_dir) -> None:
    bb = Backbone.load(str(tiny_model_dir), layer=1, dtype="fp32")
    assert len(bb.model.layers) == 1  # upper block never built
    assert not hasattr(bb.model, "lm_head")
    text = "Call Ana Silva at +1 415 555 0100. " * 40
    (enc,) = bb.encode([text])
    assert len(enc.ids) > 127  # forces several windows
    for a, b in enc.offsets:
        assert 0 <= a <= b <= len(text)
    (res,) = bb.residuals([enc])
    assert res.shape == (len(enc.ids), bb.d_model) and res.dtype == torch.float32
    # the first window's tokens equal a direct run on those tokens alone
    (head,) = bb.residuals([Encoded(enc.ids[:127], enc.offsets[:127])])
    assert torch.allclose(res[:127], head, atol=1e-5)
    # a token in a later window sees <= 127 tokens of context, so its value differs from a full-length run
    assert torch.isfinite(res).all()


def test_batching_does_not_change_values(tiny_model_dir) -> None:
    bb = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    texts = ["Ana", "Order #4821 shipped to 12 Main Street", "", "café 🎉 naïve"]
    enc = bb.encode(texts)
    together = bb.residuals(enc, batch_size=4)
    alone = [bb.residuals([e], batch_size=1)[0] for e in enc]
    for a, b in zip(together, alone, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4)
    assert together[2].shape == (0, bb.d_model)


def test_packed_rows_match_single_rows(tiny_model_dir) -> None:
    """Windows sharing a row (packing) read the residuals each has alone: attention stays inside a window."""
    bb = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    texts = [
        "Ana",
        "Order #4821 shipped to 12 Main Street",
        "café 🎉 naïve",
        "Call Ana Silva at +1 415 555 0100. " * 9,
    ]
    enc = bb.encode(texts)
    cpu = torch.device("cpu")
    single = stitch(enc, bb._forward, (bb.d_model,), 16, cpu, pack=0)
    packed = stitch(enc, bb._forward, (bb.d_model,), 16, cpu, pack=128)
    _, starts = bb._forward([[e.ids for e in enc[:3]]])
    assert len(starts[0]) == 3  # three texts did share one row
    assert torch.allclose(single, packed, atol=1e-4)
    assert not torch.allclose(
        single[: len(enc[0].ids)],
        stitch(
            [Encoded(np.concatenate([enc[1].ids, enc[0].ids]), np.zeros((0, 2)))],
            bb._forward,
            (bb.d_model,),
            1,
            cpu,
        )[len(enc[1].ids) :],
        atol=1e-4,
    )  # the same tokens after another text's, unmasked, do differ


def test_bad_layer_and_unknown_model(tiny_model_dir, tmp_path) -> None:
    with pytest.raises(BackboneError, match="layer"):
        Backbone.load(str(tiny_model_dir), layer=5)
    with pytest.raises(BackboneError):
        Backbone.load(str(tmp_path / "nope.gguf"), layer=1)


def test_resolve_reads_the_provenance_of_a_converted_folder(tiny_model_dir, tmp_path) -> None:
    assert resolve(str(tiny_model_dir)) == (str(tiny_model_dir), {"id": str(tiny_model_dir)})
    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "source.json").write_text(json.dumps({"gguf": "m.Q4_K_M.gguf", "sha256": "ab" * 32}))
    path, info = resolve(str(folder))
    assert path == str(folder)
    assert info == {"id": str(folder), "file": "m.Q4_K_M.gguf", "sha256": "ab" * 32}
    (folder / "source.json").write_text('{"gguf": "m.gguf"}')
    with pytest.raises(BackboneError, match="provenance"):
        resolve(str(folder))
    (folder / "source.json").write_text("not json")
    with pytest.raises(BackboneError, match="provenance"):
        resolve(str(folder))


def test_device_and_dtype_names(tiny_model_dir, monkeypatch) -> None:
    bb = Backbone.load(str(tiny_model_dir), layer=1, device="cpu", dtype="fp32")
    assert (bb.device_name, bb.dtype_name, bb.runtime) == ("cpu", "float32", "torch")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    bb.device, bb.dtype = torch.device("cuda", 1), torch.bfloat16  # only described, never run
    assert (bb.device_name, bb.dtype_name) == ("cuda:1 NVIDIA H200 #1", "bfloat16")


@pytest.mark.model
def test_default_gemma_backbone_offsets_and_scale() -> None:
    bb = Backbone.load("gemma-3-270m", layer=6)
    assert bb.info["license"] == "Gemma Terms of Use" and bb.info["n_layers"] == "18"
    assert len(bb.model.layers) == 6
    text = "Call Ana Silva at +1 415 555 0100 🎉 naïve"
    (enc,) = bb.encode([text])
    pieces = [text[a:b] for a, b in enc.offsets]
    assert "".join(pieces) == text  # offsets tile the text
    (res,) = bb.residuals([enc])
    assert res.shape == (len(enc.ids), 640)
    assert float(res.abs().max()) > 100  # raw residual scale: why the probe normalises
    # packed with other texts (rows shared, positions restarted), its residuals stay those it has alone
    others = bb.encode(["Order #4821 shipped.", "Mail ana@example.com or bob@example.org", "Hi"])
    flat = bb.residuals_flat([*others, enc])
    alone = stitch([enc], bb._forward, (640,), 1, torch.device("cpu"))
    cos = torch.nn.functional.cosine_similarity(flat[-len(enc.ids) :], alone, dim=-1)
    assert float(cos.min()) > 0.999


TRICKY = [
    "",
    " ",
    "Call Ana Silva at +1 415 555 0100 🎉 naïve",
    "tab\tand\nnewline  double  spaces ",
    "日本語のテキスト, Zoë Ødegård",
    "lone \ud800 surrogate",
    "word " * 700,
]


def _wrapper_encode(bb: Backbone, texts: list[str]) -> list[tuple[list[int], list[list[int]]]]:
    """transformers' own call, the reference the direct Rust path must equal."""
    clean = [t.replace("\ud800", "\ufffd") for t in texts]
    enc = bb.tokenizer(
        clean, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
    )
    return [
        (list(i), [list(o) for o in offs])
        for i, offs in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]


def _encode(bb: Backbone, texts: list[str]) -> list[tuple[list[int], list[list[int]]]]:
    return [(e.ids.tolist(), e.offsets.reshape(-1, 2).tolist()) for e in bb.encode(texts)]


def test_encode_equals_the_transformers_call(tiny_model_dir) -> None:
    bb = Backbone.load(str(tiny_model_dir), layer=1, dtype="fp32")
    assert bb.tokenizer.backend_tokenizer is not None  # the direct path is the one under test
    assert _encode(bb, TRICKY) == _wrapper_encode(bb, TRICKY)
    assert _encode(bb, []) == []


def test_the_tokenizer_file_is_read_without_transformers_wrapper(tiny_model_dir, tmp_path) -> None:
    import shutil

    from transformers import AutoTokenizer

    from guardrail.backbone import FileTokenizer, _tokenizer

    bb = Backbone.load(str(tiny_model_dir), layer=1, dtype="fp32")
    ref = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert isinstance(bb.tokenizer, FileTokenizer)
    assert (bb.bos_id, bb.pad_id) == (ref.bos_token_id, ref.pad_token_id)
    bb.residuals(bb.encode(TRICKY[:3]))
    assert bb.tokenizer._hf is None  # encoding and running the model never build the wrapper
    assert bb.tokenizer.decode(ref("Ana Silva")["input_ids"]) == "Ana Silva"  # the rest of the API, on demand
    assert bb.tokenizer.backend_tokenizer.to_str() == ref.backend_tokenizer.to_str()

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "bos_token": {"content": "<bos>"}}))
    assert isinstance(_tokenizer(str(folder), "m"), FileTokenizer)  # a special token written as a dict
    # no BOS named (the wrapper's class may have a default), or a file tokenizers cannot read: transformers
    no_bos = {k: v for k, v in config.items() if k != "bos_token"}
    (folder / "tokenizer_config.json").write_text(json.dumps(no_bos))
    assert FileTokenizer.read(folder) is None
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{not json")
    assert FileTokenizer.read(folder) is None


def test_default_gemma_encode_equals_the_transformers_call() -> None:
    bb = Backbone.load("gemma-3-270m", layer=1)
    got = bb.encode(TRICKY)
    assert [(e.ids.tolist(), e.offsets.tolist()) for e in got] == _wrapper_encode(bb, TRICKY)
    assert all(e.ids.dtype == np.int64 and e.offsets.shape == (len(e.ids), 2) for e in got)
    # a truncation or padding left on the shared tokenizer by another caller does not leak in
    bb.tokenizer.backend_tokenizer.enable_truncation(4)
    bb.tokenizer.backend_tokenizer.enable_padding(length=60)
    assert [(e.ids.tolist(), e.offsets.tolist()) for e in bb.encode(TRICKY)] == _wrapper_encode(bb, TRICKY)


@pytest.mark.model
def test_second_backbone_smollm2_same_code_path() -> None:
    assert "smollm2-135m" in EMBEDDED
    bb = Backbone.load("smollm2-135m", layer=4)
    assert bb.model.config.model_type == "llama"
    (enc,) = bb.encode(["Write to ana@example.com today"])
    (res,) = bb.residuals([enc])
    assert res.shape == (len(enc.ids), bb.d_model) and bool(torch.isfinite(res).all())
    assert np.all(enc.offsets[:, 1] >= enc.offsets[:, 0])


def test_several_layers_from_one_pass(tiny_model_dir) -> None:
    bb = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    enc = bb.encode(["Call Ana Silva at +1 415 555 0100", "x"])
    multi = bb.residuals(enc, layers=[1, 2])
    top = bb.residuals(enc)
    low = Backbone.load(str(tiny_model_dir), layer=1, dtype="fp32").residuals(enc)
    for m, t, lo in zip(multi, top, low, strict=True):
        assert m.shape == (t.shape[0], 2, bb.d_model)
        assert torch.allclose(m[:, 1], t, atol=1e-5) and torch.allclose(m[:, 0], lo, atol=1e-5)
    with pytest.raises(ValueError):
        bb.residuals(enc, layers=[3])


def test_onnx_int8_runtime_matches_torch(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GUARDRAIL_CACHE", str(tmp_path / "cache"))
    ref = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    onnx = Backbone.load(str(tiny_model_dir), layer=2, runtime="onnx-int8")
    assert onnx.runtime == "onnx-int8" and onnx.model is None
    assert list((tmp_path / "cache" / "onnx").glob("*/model.int8.onnx"))
    enc = ref.encode(["Call Ana Silva at +1 415 555 0100", "x", "Order #4821 shipped. " * 20])
    for a, b in zip(ref.residuals(enc), onnx.residuals(enc), strict=True):
        assert a.shape == b.shape
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        assert float(cos.min()) > 0.95, float(cos.min())
    with pytest.raises(ValueError, match="torch runtime"):
        onnx.residuals(enc, layers=[1])
    with pytest.raises(BackboneError, match="runtime"):
        Backbone.load(str(tiny_model_dir), layer=2, runtime="tensorrt")


def test_compiled_backbone_matches_eager(tiny_model_dir) -> None:
    eager = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32")
    compiled = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32", compile=True)
    enc = eager.encode(["Call Ana Silva at +1 415 555 0100", "Order #4821 shipped"])
    for a, b in zip(eager.residuals(enc), compiled.residuals(enc), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    multi = compiled.residuals(enc, layers=[1, 2])  # hooks reach the blocks through the wrapper
    assert multi[0].shape == (len(enc[0].ids), 2, eager.d_model)


def test_compiled_backbone_does_not_recompile_after_warmup(tiny_model_dir) -> None:
    """Every kind of call a detect makes was traced by warmup: a recompile mid-request costs seconds."""
    bb = Backbone.load(str(tiny_model_dir), layer=2, dtype="fp32", compile=True)
    bb.warmup(batch_size=4)
    short = bb.encode(["Ana", "Bob", "Call 555 0100"])
    long = bb.encode(["word " * 90, "more words " * 40])
    with torch._dynamo.config.patch(error_on_recompile=True):
        bb.residuals_flat(short[:1], batch_size=4)  # one window alone
        bb.residuals_flat(short, batch_size=4)  # one packed row alone
        bb.residuals_flat(short + long, batch_size=4)  # packed rows in a batch
        bb.residuals_flat(long * 3, batch_size=1)  # unpacked rows, one at a time


def test_compiled_kernels_are_cached_beside_the_converted_models(tmp_path, monkeypatch) -> None:
    from guardrail import backbone

    seen = []
    monkeypatch.setattr(torch, "compile", lambda m, dynamic: seen.append(dynamic) or m)
    monkeypatch.setenv("GUARDRAIL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    model = torch.nn.Linear(2, 2)
    assert backbone.compiled(model) is model and seen == [True]
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    backbone.compiled(model)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")  # the user's choice stands
