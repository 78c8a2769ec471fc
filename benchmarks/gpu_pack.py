"""Carry the default model to a lent GPU machine that can download nothing, in a few megabytes.

The lent machine takes the working tree plus 64 MiB at most; the default backbone converted to bf16 is
536 MB. What the probe needs is much less: the blocks up to the bundle's layer, and the embedding rows
of the tokens the benchmark texts use. This packs exactly those, in the GGUF file's own quantised
blocks (the converter dequantises the same bytes, so the unpacked weights equal the converted model's
bit for bit: ``verify`` checks that here), with the texts to run and the spans this CPU finds in them.

    python benchmarks/gpu_pack.py pack   [--out .gpu/pack]   # here: needs the default model
    python benchmarks/gpu_pack.py verify [--pack .gpu/pack]  # here: unpack and compare with the cache
    python benchmarks/gpu_pack.py unpack --pack P --out DIR  # there: a folder Guardrail.load(model=DIR) reads

An unpacked folder holds a zero embedding row for every token the texts do not use: it answers only
for those texts (``benchmarks/gpu.py`` checks each text's tokens against ``vocab.json`` before use).
Arrays travel as safetensors and JSON, never pickles.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np

PACK = Path(__file__).resolve().parent.parent / ".gpu" / "pack"

# GGUF tensor name -> Hugging Face (Gemma 3 text model) name, inside block N; the norms are stored as
# (weight + 1) in GGUF and loaded as (value - 1), in float32, as transformers' GGUF loader does.
BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
NORMS = {"attn_q_norm", "attn_k_norm", "attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"}


def hf_name(gguf_name: str) -> str:
    """``blk.3.ffn_up.weight`` -> ``layers.3.mlp.up_proj.weight``; ``output_norm`` -> ``norm``."""
    if gguf_name == "token_embd.weight":
        return "embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "norm.weight"
    _, n, kind, _ = gguf_name.split(".")
    return f"layers.{n}.{BLOCK_NAMES[kind]}.weight"


def is_norm(gguf_name: str) -> bool:
    return gguf_name == "output_norm.weight" or gguf_name.split(".")[2] in NORMS


def texts_for_gpu(n_records: int, n_messages: int, seed: int) -> tuple[list[str], list[str]]:
    """Synthetic agent records (the throughput and parity set) and 300-character messages (sidecar)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load import messages

    from guardrail.synth import generate

    records = [r.text for r in generate(n_records, seed, family="calib")]
    return records, messages(n_messages, 300, seed)


def pack(out: Path, n_records: int = 1000, n_messages: int = 128, seed: int = 11) -> dict:
    """Write the pack into ``out``; returns its manifest."""
    import gguf
    from safetensors.numpy import save_file

    from guardrail.backbone import EMBEDDED, _gguf_path, resolve
    from guardrail.bundle import DEFAULT_BUNDLE, Bundle
    from guardrail.pipeline import Guardrail

    bundle = Bundle.load(DEFAULT_BUNDLE)
    ref = bundle.manifest.backbone
    folder, info = resolve(ref.id)
    gguf_file = _gguf_path(EMBEDDED[ref.id])
    reader = gguf.GGUFReader(gguf_file)
    records, msgs = texts_for_gpu(n_records, n_messages, seed)

    guard = Guardrail.load(DEFAULT_BUNDLE, device="cpu", patterns=False)
    tok = guard.backbone.tokenizer
    used = {guard.backbone.bos_id, guard.backbone.pad_id}
    for ids in tok(records + msgs, add_special_tokens=False)["input_ids"]:
        used.update(ids)
    vocab = np.asarray(sorted(used), dtype=np.int64)

    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tensors: dict[str, dict] = {}
    for t in reader.tensors:
        keep = t.name == "output_norm.weight" or (
            t.name.startswith("blk.") and int(t.name.split(".")[1]) < ref.layer
        )
        raw = np.asarray(t.data)
        if t.name == "token_embd.weight":
            raw = raw.reshape(int(t.shape[1]), -1)[vocab]  # one quantised row per token
            keep = True
        if keep:
            arrays[t.name] = np.ascontiguousarray(raw).view(np.uint8)
            tensors[t.name] = {
                "type": t.tensor_type.name,
                "shape": [int(x) for x in reversed(t.shape)],  # numpy order
                "raw_shape": list(raw.shape),
                "raw_dtype": str(raw.dtype),
            }
    arrays["vocab"] = vocab
    save_file(arrays, str(out / "weights.safetensors"))

    config = json.loads((Path(folder) / "config.json").read_text())
    config["num_hidden_layers"] = ref.layer
    if config.get("layer_types"):
        config["layer_types"] = config["layer_types"][: ref.layer]
    (out / "config.json").write_text(json.dumps(config, indent=1))
    with lzma.open(out / "tokenizer.json.xz", "wb", preset=9) as f:
        f.write((Path(folder) / "tokenizer.json").read_bytes())
    shutil.copy(Path(folder) / "tokenizer_config.json", out / "tokenizer_config.json")

    # what this CPU finds in the records: the GPU run must find the same
    found = guard.detect(records, batch_size=32)
    ref_spans = [[[s.start, s.end, s.label] for s in spans] for spans in found]
    (out / "texts.json").write_text(
        json.dumps({"records": records, "messages": msgs, "cpu_spans": ref_spans})
    )
    (out / "messages.json").write_text(json.dumps(msgs))  # for benchmarks/load.py --messages
    manifest = {
        "source": json.loads((Path(folder) / "source.json").read_text()),
        "model": ref.id,
        "layer": ref.layer,
        "n_vocab": int(config["vocab_size"]),
        "vocab_rows": len(vocab),
        "tensors": tensors,
        "cpu": {"device": guard.backbone.device_name, "dtype": str(guard.backbone.dtype)},
        "info": info,
    }
    (out / "pack.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def unpack(src: Path, out: Path) -> Path:
    """Rebuild a converted model folder from a pack (needs ``gguf``, ``safetensors`` and torch)."""
    import gguf
    import torch
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    manifest = json.loads((src / "pack.json").read_text())
    arrays = load_file(str(src / "weights.safetensors"))
    vocab = torch.from_numpy(arrays["vocab"])
    state: dict[str, torch.Tensor] = {}
    for name, t in manifest["tensors"].items():
        raw = arrays[name].view(np.dtype(t["raw_dtype"])).reshape(t["raw_shape"])
        qtype = gguf.GGMLQuantizationType[t["type"]]
        x = torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(raw, qtype)).astype(np.float32))
        if name == "token_embd.weight":
            full = torch.zeros(manifest["n_vocab"], x.shape[-1], dtype=torch.bfloat16)
            full[vocab] = x.reshape(len(vocab), -1).to(torch.bfloat16)
            state[hf_name(name)] = full
            continue
        x = x.reshape(t["shape"])
        state[hf_name(name)] = (x - 1 if is_norm(name) else x).to(torch.bfloat16).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(src / "config.json", out / "config.json")
    shutil.copy(src / "tokenizer_config.json", out / "tokenizer_config.json")
    with lzma.open(src / "tokenizer.json.xz", "rb") as f:
        (out / "tokenizer.json").write_bytes(f.read())
    source = dict(manifest["source"])
    source["vocab_rows"] = manifest["vocab_rows"]  # the other rows are zeros: see vocab.json
    (out / "source.json").write_text(json.dumps(source))
    (out / "vocab.json").write_text(json.dumps(vocab.tolist()))
    return out


def verify(src: Path) -> list[str]:
    """Unpack into a temporary folder and compare with the converted cache; returns the mismatches."""
    import tempfile

    import torch
    from safetensors import safe_open

    from guardrail.backbone import resolve

    manifest = json.loads((src / "pack.json").read_text())
    folder, _ = resolve(manifest["model"])
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        unpack(src, Path(tmp))
        vocab = torch.tensor(json.loads((Path(tmp) / "vocab.json").read_text()))
        with (
            safe_open(str(Path(tmp) / "model.safetensors"), "pt") as got,
            safe_open(str(Path(folder) / "model.safetensors"), "pt") as want,
        ):
            for key in got.keys():  # noqa: SIM118  (safe_open is not iterable)
                a, b = got.get_tensor(key), want.get_tensor(key)
                if key == "embed_tokens.weight":
                    a, b = a[vocab], b[vocab]
                if a.shape != b.shape or not torch.equal(a, b):
                    bad.append(key)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, default=PACK)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--messages", type=int, default=128)
    v = sub.add_parser("verify")
    v.add_argument("--pack", type=Path, default=PACK)
    u = sub.add_parser("unpack")
    u.add_argument("--pack", type=Path, default=PACK)
    u.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        m = pack(args.out, args.records, args.messages)
        size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
        print(
            f"packed {len(m['tensors'])} tensors, {m['vocab_rows']} vocabulary rows: "
            f"{size:.1f} MiB in {args.out}"
        )
    elif args.cmd == "verify":
        bad = verify(args.pack)
        print("unpacked weights equal the converted model's" if not bad else f"differ: {bad}")
        return 1 if bad else 0
    else:
        print(unpack(args.pack, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
