"""Speed of every bundle at every CPU instruction-set level this machine can be capped to, against
Presidio + spaCy in the same run, and the cold start of ``guardrail detect``.

    python benchmarks/isa_matrix.py [--bundle gemma-3-270m --bundle gemma-3-270m-fast] [--level native
                                    --level avx2] [--limit N] [--out DIR] [--update-card]

A level is a set of environment variables every measured process starts with (:data:`LEVELS`): torch's
``ATEN_CPU_CAPABILITY``, oneDNN's ``ONEDNN_MAX_CPU_ISA`` and the BLAS libraries' caps (MKL's
``MKL_ENABLE_INSTRUCTIONS``, OpenBLAS's ``OPENBLAS_CORETYPE``, which numpy and spaCy use), so an
AVX512 machine shows what an AVX2-only server does. ONNX Runtime has no such cap (MLAS picks its kernels
by CPUID), so a row that runs ``onnx-int8`` at a capped level is marked: its kernels are this chip's,
not the level's.

Per level and bundle, in fresh processes given the whole machine: ``detect`` over presidio_synth after
a warm-up (the runtime ``auto`` picks there, and why), Presidio + spaCy sm with one process per core on
the same texts, and the wall time of ``guardrail detect --input presidio_synth_v2.jsonl`` from the
command to its exit (model load included; the issue's cold-start target is 30 s). Writes
``isa_matrix.json``, ``isa_matrix.md`` and ``isa_matrix.png`` to ``--out``; ``--update-card`` stores
each bundle's rows in its card.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import DATA, _guardrail_worker, _presidio_worker, _run

from guardrail.bench import runner
from guardrail.data import read_jsonl

LEVELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    },
}
"""Instruction-set levels: the environment each measured process starts with."""

CAPPED_BY_ENV = ("torch", "torch-int8")
"""Runtimes whose kernels the level's variables cap (ONNX Runtime's are not)."""


def capped(env: Mapping[str, str]):
    """``os.environ`` with ``env`` set for processes started inside, restored afterwards (on errors too)."""
    return mock.patch.dict(os.environ, env)


def cold_detect(bundle: str, source: Path, env: Mapping[str, str]) -> float:
    """Wall seconds of ``guardrail detect --bundle BUNDLE --input SOURCE`` in a fresh process, from the
    command to its exit (output thrown away); raises when the command fails."""
    exe = Path(sys.executable).with_name("guardrail")
    cmd = [str(exe) if exe.exists() else "guardrail", "detect", "--bundle", bundle]
    t0 = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--input", str(source), "--output", os.devnull],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"guardrail detect --bundle {bundle} exited {done.returncode}: {tail[0]}")
    return seconds


def measure(
    bundles: list[str], levels: list[str], limit: int | None, presidio_processes: int
) -> dict[str, Any]:
    """``{"levels": {level: {"env", "presidio", "bundles": {bundle: row}}}, ...}``."""
    source = DATA / "presidio_synth_v2.jsonl"
    texts = [r.text for r in read_jsonl(source)][:limit]
    chars = sum(map(len, texts))
    if limit is not None:  # the cold start reads the same records the speed runs read
        cut = Path(os.environ.get("TMPDIR", "/tmp")) / f"isa_matrix_synth_{limit}.jsonl"
        cut.write_text("".join(line + "\n" for line in source.read_text().splitlines()[:limit]))
        source = cut
    out: dict[str, Any] = {"records": len(texts), "chars": chars, "levels": {}}
    for level in levels:
        env = LEVELS[level]
        with capped(env):
            p = _run(_presidio_worker, texts, presidio_processes)
            row: dict[str, Any] = {
                "env": env,
                "presidio": {"chars_per_s": chars / p["seconds"], "processes": presidio_processes},
                "bundles": {},
            }
            for bundle in bundles:
                g = _run(_guardrail_worker, bundle, False, None, texts)
                cps = chars / g["seconds"]
                row["bundles"][bundle] = r = {
                    "runtime": g["runtime"],
                    "dtype": g["dtype"],
                    "why": g["why"],
                    "chars_per_s": cps,
                    "vs_presidio": cps / row["presidio"]["chars_per_s"],
                    "load_seconds": g["load_seconds"],
                    "warmup_seconds": g["warmup_seconds"],
                    "cold_detect_seconds": cold_detect(bundle, source, env),
                    "capped": not env or g["runtime"] in CAPPED_BY_ENV,
                }
                print(
                    f"{level:7s} {bundle:22s} {g['runtime']:10s} {cps:8.0f} chars/s "
                    f"{r['vs_presidio']:.2f}x presidio, cold detect {r['cold_detect_seconds']:.1f} s",
                    flush=True,
                )
        out["levels"][level] = row
    return out


def table(res: Mapping[str, Any]) -> str:
    """Markdown: one row per level and bundle."""
    lines = [
        "| level | bundle | runtime (auto) | chars/s | Presidio + spaCy chars/s | vs Presidio "
        "| `guardrail detect` cold, s |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for level, row in res["levels"].items():
        for bundle, b in row["bundles"].items():
            mark = "" if b["capped"] else " †"
            lines.append(
                f"| {level} | {bundle} | {b['runtime']} {b['dtype']}{mark} | {b['chars_per_s']:,.0f} "
                f"| {row['presidio']['chars_per_s']:,.0f} | {b['vs_presidio']:.2f}x "
                f"| {b['cold_detect_seconds']:.1f} |"
            )
    lines += [
        "",
        f"{res['records']} presidio_synth_v2 records ({res['chars']:,} characters); Presidio + spaCy sm with "
        "one process per core. † ONNX Runtime picks its kernels by CPUID and has no cap: at a capped level "
        "it still uses this chip's instructions.",
    ]
    return "\n".join(lines)


def plot(res: Mapping[str, Any], target: Path) -> Path:
    """Bars of chars/s per level: each bundle and Presidio + spaCy."""
    from guardrail.bench.plots import grouped_bars

    groups = list(res["levels"])
    series: dict[str, list[float]] = {}
    for level in groups:
        row = res["levels"][level]
        for bundle, b in row["bundles"].items():
            series.setdefault(bundle, []).append(b["chars_per_s"])
        series.setdefault("Presidio + spaCy sm", []).append(row["presidio"]["chars_per_s"])
    return grouped_bars(
        groups, series, target, ylabel="characters / s", title="Speed by CPU instruction-set level"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", default=[], help="repeatable; default: the two CPU bundles")
    ap.add_argument(
        "--level", action="append", default=[], choices=list(LEVELS), help="repeatable; default all"
    )
    ap.add_argument("--limit", type=int, default=None, help="first N presidio_synth records")
    ap.add_argument("--presidio-processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="benchmarks/results/isa-matrix", help="folder for json, md and png")
    ap.add_argument("--update-card", action="store_true", help="store each bundle's rows in its card")
    a = ap.parse_args(argv)
    bundles = a.bundle or ["gemma-3-270m", "gemma-3-270m-fast"]
    res = measure(bundles, a.level or list(LEVELS), a.limit, a.presidio_processes)
    res |= {"date": time.strftime("%Y-%m-%d"), "machine": runner.machine()}
    res["table"] = table(res)
    print(res["table"])
    runner.write_report(Path(a.out), "isa_matrix", res, plot)
    if a.update_card:
        from guardrail.bundle import Bundle

        command = "python benchmarks/isa_matrix.py --update-card " + " ".join(
            [*(f"--bundle {b}" for b in bundles), *(f"--level {x}" for x in a.level)]
        )
        for bundle in bundles:
            b = Bundle.load(bundle)
            b.manifest.metrics["isa_matrix"] = {
                "date": res["date"],
                "command": command.strip(),
                "machine": res["machine"],
                "records": res["records"],
                "rows": {
                    level: {"presidio": row["presidio"], **row["bundles"][bundle]}
                    for level, row in res["levels"].items()
                },
            }
            b.save_manifest()
    return 0


if __name__ == "__main__":
    sys.exit(main())
