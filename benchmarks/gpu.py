"""GPU measurements of the default bundle: detect throughput against batch size, parity with this CPU,
and torch against ONNX Runtime on the same machine; the sidecar's latency comes from ``load.py``.

Runs on a machine that has the pack of ``gpu_pack.py`` (it can download nothing):

    python benchmarks/gpu.py --pack .gpu/pack --out DIR [--device cuda]

1. Unpacks the model (the blocks up to the probe layer, bit-equal to the converted default model, and
   the embedding rows of the pack's texts; every text's tokens are checked against them).
2. Parity: ``detect`` on the pack's records (probe only, no Presidio patterns, which run on the CPU
   anyway) against the spans the CPU found when packing.
3. Throughput: ``detect`` end to end (tokenise, forward, probe, decode) and the forward + probe alone,
   in tokens/s, for several batch sizes (windows of <= 128 tokens per forward pass), each timed for at
   least ``--seconds`` after a warm-up pass.
4. Where ONNX Runtime's CUDA execution provider is installed (``onnxruntime-gpu``; on a lent machine
   carried by ``gpu_ort_carry.py``): the probe exported as one float32 graph (``guardrail export-onnx``)
   on it, with its parity and detect tokens/s next to torch's at the same batch sizes (>= 32).
5. torch on the machine's CPU against the ``onnx-int8`` runtime (ONNX Runtime, CPU execution provider)
   on the same records, unless past ``--deadline-s``; which ONNX Runtime providers exist is recorded.

Writes ``gpu.json``, ``report.md`` and ``gpu.png`` (matplotlib) into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_pack import unpack

from guardrail.bundle import DEFAULT_BUNDLE
from guardrail.pipeline import Guardrail


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, min_seconds: float, device: torch.device) -> tuple[float, int]:
    """Seconds per call of ``fn`` (after one untimed call), over at least ``min_seconds``; and calls."""
    fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / n, n


def parity(found: list, want: list) -> dict[str, float]:
    """How far the spans found here are from the reference: identical records, span-level F1."""
    same = sum(1 for a, b in zip(found, want, strict=True) if a == b)
    a_set = {(i, *s) for i, spans in enumerate(found) for s in spans}
    b_set = {(i, *s) for i, spans in enumerate(want) for s in spans}
    both = len(a_set & b_set)
    f1 = 2 * both / (len(a_set) + len(b_set)) if a_set or b_set else 1.0
    return {
        "records": len(want),
        "identical_records": same / len(want),
        "span_f1": f1,
        "spans_here": len(a_set),
        "spans_reference": len(b_set),
    }


def spans_of(guard: Guardrail, texts: list[str], batch_size: int) -> list[list[list]]:
    return [
        [[s.start, s.end, s.label] for s in spans] for spans in guard.detect(texts, batch_size=batch_size)
    ]


def throughput(guard: Guardrail, texts: list[str], batch_sizes: list[int], seconds: float) -> list[dict]:
    dev = guard.backbone.device
    encoded = guard.backbone.encode(texts)
    rows = []
    for b in batch_sizes:
        # small batches take fewer texts (one pass of all of them would take minutes at batch size 1)
        n = min(len(texts), max(256, 64 * b))
        sub, enc = texts[:n], encoded[:n]
        tokens = sum(len(e.ids) for e in enc)
        chars = sum(len(t) for t in sub)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        def forward(b: int = b, enc: list = enc) -> None:
            resids = guard.backbone.residuals(enc, batch_size=b, on_device=dev.type != "cpu")
            with torch.inference_mode():
                guard.probe.probs_batch(resids)  # the head as detect runs it

        fwd_s, _ = timed(forward, seconds, dev)
        det_s, passes = timed(lambda b=b, sub=sub: guard.detect(sub, batch_size=b), seconds, dev)
        row = {
            "batch_size": b,
            "texts": n,
            "tokens": tokens,
            "detect_tokens_per_s": tokens / det_s,
            "detect_chars_per_s": chars / det_s,
            "forward_probe_tokens_per_s": tokens / fwd_s,
            "timed_passes": passes,
        }
        if dev.type == "cuda":
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    b = [r["batch_size"] for r in rows]
    ax.plot(
        b,
        [r["detect_tokens_per_s"] for r in rows],
        "o-",
        label="detect (tokenise + forward + probe + decode)",
    )
    ax.plot(b, [r["forward_probe_tokens_per_s"] for r in rows], "s--", label="forward + probe")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("windows per forward pass (batch size)")
    ax.set_ylabel("tokens / s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# GPU benchmark — {r['date']}",
        "",
        f"Machine: **{m['gpu']}** (driver {m['driver']}), {m['cpus']} CPUs ({m['cpu']}); torch {m['torch']}, "
        f"CUDA {m['cuda']}; Python {m['python']}.",
        f"Bundle `{r['bundle']}`, probe `{r['probe']}`, layer {r['layer']}, {r['dtype']}; probe only (no "
        f"Presidio patterns: they run on the CPU beside the GPU, whatever the GPU). Model: the default "
        f"backbone's blocks 0..{r['layer'] - 1}, unpacked bit-equal from its GGUF; load {r['load_s']:.1f} s.",
        "",
        f"Parity with the CPU ({r['parity']['reference']}) on {r['parity']['records']} synthetic records: "
        f"{r['parity']['identical_records']:.1%} of records with identical spans, span-level F1 "
        f"{r['parity']['span_f1']:.4f} ({r['parity']['spans_here']} spans here, "
        f"{r['parity']['spans_reference']} there).",
        "",
        f"Throughput on up to {r['workload']['texts']} texts ({r['workload']['tokens']:,} tokens, "
        f"{r['workload']['chars']:,} characters; the records {r['workload']['repeat']}x; small batch sizes "
        f"take the first max(256, 64 x batch size) texts), each figure timed >= {r['seconds']} s after a "
        "warm-up pass:",
        "",
        "| batch size | texts | tokens | detect tokens/s | detect chars/s | forward + probe tokens/s "
        "| peak GPU MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["throughput"]:
        lines.append(
            f"| {x['batch_size']} | {x['texts']} | {x['tokens']:,} | {x['detect_tokens_per_s']:,.0f} | "
            f"{x['detect_chars_per_s']:,.0f} | "
            f"{x['forward_probe_tokens_per_s']:,.0f} | {x.get('peak_gpu_mib', float('nan')):,.0f} |"
        )
    lines += ["", "![throughput](gpu.png)", ""]
    ox = r.get("onnx")
    if ox:
        lines += [f"ONNX Runtime providers here: {', '.join(ox['providers'])}.", ""]
        if "skipped" in ox:
            lines += [f"torch vs ONNX Runtime: skipped ({ox['skipped']}).", ""]
        else:
            lines += [
                f"torch vs ONNX Runtime on this machine's CPU ({m['cpus']} CPUs), {ox['records']} records, "
                "one run, batch size 32:",
                "",
                "| runtime | device | chars/s | identical records vs CPU reference |",
                "|---|---|---:|---:|",
            ]
            for row in ox["rows"]:
                lines.append(
                    f"| {row['runtime']} | {row['device']} | {row['chars_per_s']:,.0f} | "
                    f"{row['identical_records']:.1%} |"
                )
            lines.append("")
    oc = r.get("onnx_cuda")
    if oc and "error" in oc:
        lines += [f"ONNX Runtime, CUDA execution provider: failed ({oc['error']}).", ""]
    elif oc:
        torch_tps = {x["batch_size"]: x["detect_tokens_per_s"] for x in r["throughput"]}
        lines += [
            f"ONNX Runtime on this GPU: the probe graph of `guardrail export-onnx` (float32; export "
            f"{oc['export_s']:.0f} s), session provider {oc['provider']}. Parity: "
            f"{oc['parity_cpu']['identical_records']:.1%} of records identical to the CPU reference "
            f"(span F1 {oc['parity_cpu']['span_f1']:.4f}), {oc['parity_torch_gpu']['identical_records']:.1%}"
            f" to torch on this GPU (span F1 {oc['parity_torch_gpu']['span_f1']:.4f}).",
            "",
            "| batch size | texts | tokens | ONNX Runtime detect tokens/s | torch detect tokens/s "
            "| ONNX / torch |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for x in oc["throughput"]:
            t = torch_tps.get(x["batch_size"], float("nan"))
            lines.append(
                f"| {x['batch_size']} | {x['texts']} | {x['tokens']:,} | {x['detect_tokens_per_s']:,.0f} | "
                f"{t:,.0f} | {x['detect_tokens_per_s'] / t:.2f}x |"
            )
        lines.append("")
    if r.get("notes"):
        lines += ["Notes:", "", *(f"- {n}" for n in r["notes"]), ""]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import subprocess

    gpu = driver = "none"
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            driver = "?"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "gpu": gpu,
        "driver": driver,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/guardrail-gpu-model"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-sizes", default="1,8,32,128,512")
    ap.add_argument("--repeat", type=int, default=8, help="copies of the records in the throughput workload")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--onnx-records", type=int, default=300)
    ap.add_argument("--records", type=int, default=None, help="use the first N records only (dry runs)")
    ap.add_argument(
        "--deadline-s", type=float, default=400.0, help="skip the ONNX part past this many seconds"
    )
    a = ap.parse_args(argv)
    began = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    texts = json.loads((a.pack / "texts.json").read_text())
    records, cpu_spans = texts["records"][: a.records], texts["cpu_spans"][: a.records]
    pack_meta = json.loads((a.pack / "pack.json").read_text())
    folder = unpack(a.pack, a.model_dir)
    vocab = set(json.loads((folder / "vocab.json").read_text()))

    t0 = time.perf_counter()
    guard = Guardrail.load(DEFAULT_BUNDLE, device=a.device, patterns=False, model=str(folder))
    guard.warmup()
    load_s = time.perf_counter() - t0
    for e in guard.backbone.encode(records + texts["messages"]):
        if not set(e.ids.tolist()) <= vocab:
            raise SystemExit("a text uses a token the pack does not carry")
    print(f"loaded on {guard.backbone.device_name} in {load_s:.1f} s", flush=True)

    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "bundle": DEFAULT_BUNDLE,
        "probe": guard.probe_name,
        "layer": guard.backbone.layer,
        "dtype": str(guard.backbone.dtype).removeprefix("torch."),
        "device": guard.backbone.device_name,
        "load_s": load_s,
        "seconds": a.seconds,
    }
    found = spans_of(guard, records, 64)
    result["parity"] = {
        **parity(found, cpu_spans),
        "reference": f"{pack_meta['cpu']['device']}, {pack_meta['cpu']['dtype']}",
    }
    print("parity", json.dumps(result["parity"]), flush=True)

    # explanations read SAE features: the same code path on this device, as a smoke check
    try:
        sae = Guardrail(guard.bundle, guard.backbone, probe="sae-lr", patterns=False)
        explained = sae.detect(records[:64], explain=True, batch_size=64)
        result["explain"] = {
            "records": len(records[:64]),
            "spans": sum(map(len, explained)),
            "spans_with_features": sum(1 for spans in explained for s in spans if s.features),
        }
        del sae
    except Exception as e:  # a smoke check: record what broke, measure the rest
        result["explain"] = {"error": f"{type(e).__name__}: {e}"}
    print("explain", json.dumps(result["explain"]), flush=True)

    work = records * a.repeat
    result["workload"] = {
        "texts": len(work),
        "tokens": sum(len(e.ids) for e in guard.backbone.encode(work)),
        "chars": sum(map(len, work)),
        "repeat": a.repeat,
    }
    sizes = [int(x) for x in a.batch_sizes.split(",")]
    result["throughput"] = throughput(guard, work, sizes, a.seconds)
    plot(
        result["throughput"],
        a.out / "gpu.png",
        f"guardrail detect, {result['device']}, layer {result['layer']}",
    )
    (a.out / "gpu.json").write_text(json.dumps(result, indent=1))
    (a.out / "report.md").write_text(report(result))

    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = ["(onnxruntime not installed)"]
    ox: dict[str, Any] = {"providers": providers}
    result["onnx"] = ox
    if "CUDAExecutionProvider" in providers and guard.backbone.device.type == "cuda":
        try:
            result["onnx_cuda"] = onnx_cuda(guard, records, cpu_spans, found, work, sizes, a, folder)
        except Exception as e:  # recorded, not fatal: the torch figures are already written
            result["onnx_cuda"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print("onnx_cuda", json.dumps(result["onnx_cuda"]), flush=True)
        (a.out / "gpu.json").write_text(json.dumps(result, indent=1))
    if time.perf_counter() - began > a.deadline_s:
        ox["skipped"] = f"not run: past --deadline-s {a.deadline_s:g} s"
    else:
        try:
            ox.update(onnx_vs_torch(records[: a.onnx_records], cpu_spans[: a.onnx_records], folder))
        except Exception as e:  # recorded, not fatal: the GPU figures are already written
            ox["skipped"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
    result["elapsed_s"] = time.perf_counter() - began
    (a.out / "gpu.json").write_text(json.dumps(result, indent=1))
    (a.out / "report.md").write_text(report(result))
    print(report(result))
    return 0


def onnx_cuda(
    guard: Guardrail,
    records: list[str],
    cpu_spans: list,
    torch_spans: list,
    work: list[str],
    sizes: list[int],
    a: argparse.Namespace,
    folder: Path,
) -> dict[str, Any]:
    """The probe exported to ONNX (float32; ``guardrail export-onnx``) on ONNX Runtime's CUDA execution
    provider: export time, parity with the CPU reference and with torch on this GPU, detect tokens/s."""
    from guardrail.export import export

    t0 = time.perf_counter()
    graph_dir = export(guard, a.model_dir.parent / "guardrail-gpu-onnx")
    out: dict[str, Any] = {"export_s": time.perf_counter() - t0}
    g = Guardrail.load(
        DEFAULT_BUNDLE, runtime="onnx", onnx_dir=graph_dir, device="cuda", patterns=False, model=str(folder)
    )
    out["provider"] = g.graph.provider
    print("onnx graph on", g.graph.provider, flush=True)
    found = spans_of(g, records, 64)
    out["parity_cpu"] = parity(found, cpu_spans)
    out["parity_torch_gpu"] = parity(found, torch_spans)
    rows = []
    for b in sizes:
        if b < 32:
            continue
        n = min(len(work), max(256, 64 * b))
        sub = work[:n]
        tokens = sum(len(e.ids) for e in g.backbone.encode(sub))
        secs, passes = timed(lambda b=b, sub=sub: g.detect(sub, batch_size=b), a.seconds, torch.device("cpu"))
        rows.append(
            {
                "batch_size": b,
                "texts": n,
                "tokens": tokens,
                "detect_tokens_per_s": tokens / secs,
                "detect_chars_per_s": sum(map(len, sub)) / secs,
                "timed_passes": passes,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out["throughput"] = rows
    return out


def onnx_vs_torch(sub: list[str], ref: list, folder: Path) -> dict[str, Any]:
    """torch and the onnx-int8 runtime on this machine's CPU, the same records, one timed pass each."""
    chars = sum(map(len, sub))
    rows = []
    for runtime in ("torch", "onnx-int8"):
        g = Guardrail.load(DEFAULT_BUNDLE, device="cpu", runtime=runtime, patterns=False, model=str(folder))
        g.warmup()
        spans_of(g, sub, 32)  # every shape once
        start = time.perf_counter()
        spans = spans_of(g, sub, 32)
        secs = time.perf_counter() - start
        rows.append(
            {
                "runtime": runtime,
                "device": g.backbone.device_name,
                "chars_per_s": chars / secs,
                "identical_records": parity(spans, ref)["identical_records"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"records": len(sub), "rows": rows}


if __name__ == "__main__":
    raise SystemExit(main())
