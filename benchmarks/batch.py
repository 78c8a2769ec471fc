"""``guardrail batch`` at growing input sizes: peak memory stays flat, and what Ray costs against
``guardrail detect`` on the same data.

    python benchmarks/batch.py memory     [--base-mb 1] [--scales 1,4,16] [--out DIR]
    python benchmarks/batch.py throughput [--bundle gemma-3-270m-fast] [--kb 256] [--rounds 2] [--out DIR]

``memory``: redacts 1x, 4x and 16x a base JSONL input with the tiny test model (a 2-layer random LM and a
probe fitted on it, built here: the real model needs hours per 100 MB on 2 cores) and no pattern
recognisers, as ``guardrail batch`` (a local Ray instance of its own, two actors of one core, shards of
``--shard-mb``) and as ``guardrail detect`` (one torch thread: on a shared 2-core machine two threads run
the tiny model 3x slower). Each command runs as a subprocess; its whole process tree (driver, Ray's GCS,
raylet and workers) is sampled every 0.25 s, and the peak of the summed RSS and PSS (shared pages counted
once) is kept.

``throughput``: ``guardrail batch`` (one actor holding both cores, as ``detect`` does) against ``guardrail
detect`` on the same records with a real bundle, alternating for ``--rounds`` (the best of each counts);
records/s and chars/s end to end, and the fixed start cost of each (the same command on one record).

Results go to ``results.json``, ``README.md`` and ``batch_memory.png`` in ``--out`` (default
``benchmarks/results/<date>-batch``), merged with what is there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GUARDRAIL = [sys.executable, "-m", "guardrail.cli"]
NAMES = ["Ana Silva", "Bob Stone", "Lena Vogt", "Jun Sato", "Maria Garcia", "Wei Zhang"]
TEMPLATES = [
    "Please call {n} at +1 415 555 01{d:02d} about the invoice.",
    "I met {n} yesterday in Lisbon, thanks for the intro.",
    "Send the contract to {e} before Friday, the team is waiting.",
    "Card 4111 1111 1111 1111 belongs to {n}, see you soon.",
    "The order for {n} shipped this morning; tracking follows by mail.",
]


def write_input(path: Path, size_bytes: int, seed: int = 0) -> tuple[int, int]:
    """JSONL of about ``size_bytes``: records of 2-4 sentences with names, phones, emails and cards.
    Returns (records, characters of text)."""
    rng = random.Random(seed)
    records = chars = written = 0
    with path.open("w", encoding="utf-8") as f:
        while written < size_bytes:
            name = rng.choice(NAMES)
            email = name.split()[0].lower() + "@example.com"
            text = " ".join(
                rng.choice(TEMPLATES).format(n=name, d=records % 100, e=email)
                for _ in range(rng.randint(2, 4))
            )
            line = json.dumps({"id": f"r{records}", "text": text}) + "\n"
            f.write(line)
            written += len(line.encode())
            records += 1
            chars += len(text)
    return records, chars


def tiny_bundle(folder: Path) -> Path:
    """The test suite's tiny bundle (tests/conftest.py): a random 2-layer LM and a probe fitted on it."""
    from tests.conftest import make_tiny_bundle, make_tiny_model

    if (folder / "tiny" / "guard.json").exists():
        return folder / "tiny"
    return make_tiny_bundle(make_tiny_model(folder / "tiny-lm"), folder / "tiny")


def run_sampled(cmd: list[str], env: dict[str, str] | None = None, period: float = 0.25) -> dict:
    """Run ``cmd``; wall time and the peak summed RSS and PSS of its process tree (MiB)."""
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"} | (env or {})
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"rss": 0, "pss": 0, "procs": 0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            rss = pss = n = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in tree:
                try:
                    m = p.memory_full_info()
                    rss, pss, n = rss + m.rss, pss + m.pss, n + 1
                except psutil.Error:
                    continue
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            peak["procs"] = max(peak["procs"], n)
            done.wait(period)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    done.set()
    t.join()
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak["rss"] / 2**20, 1),
        "peak_pss_mib": round(peak["pss"] / 2**20, 1),
        "max_processes": peak["procs"],
    }


def batch_cmd(src: Path, out: Path, bundle: str, shard_mb: float, extra: list[str]) -> list[str]:
    return [*GUARDRAIL, "batch", "--input", str(src), "--output", str(out), "--bundle", bundle,
            "--shard-mb", str(shard_mb), "--no-progress", *extra]  # fmt: skip


def detect_cmd(src: Path, out: Path, bundle: str, extra: list[str]) -> list[str]:
    return [*GUARDRAIL, "detect", "--input", str(src), "--output", str(out), "--bundle", bundle, *extra]


def machine() -> dict:
    from guardrail.bench.runner import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30),
    }


def memory(args: argparse.Namespace, work: Path) -> dict:
    bundle = str(tiny_bundle(Path(tempfile.gettempdir()) / "guardrail-bench-batch"))
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        src = work / f"in-{scale}x.jsonl"
        records, chars = write_input(src, int(args.base_mb * scale * 2**20))
        for tool in ("batch", "detect"):
            out = work / f"out-{tool}-{scale}x"
            opts = ["--dtype", "fp32", "--no-patterns"]
            cmd = (  # one torch thread per model process: on a shared 2-core box two are 3x slower
                batch_cmd(src, out, bundle, args.shard_mb, [*opts, "--workers", "2"])
                if tool == "batch"
                else detect_cmd(src, out.with_suffix(".jsonl"), bundle, opts)
            )
            load = os.getloadavg()[0]
            got = run_sampled(cmd, {"OMP_NUM_THREADS": "1"})
            rows.append(
                {"tool": tool, "scale": scale, "mib": round(src.stat().st_size / 2**20, 2),
                 "records": records, "chars": chars, "load_before": round(load, 2), **got,
                 "records_s": round(records / got["wall_s"], 1), "chars_s": round(chars / got["wall_s"])}
            )  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(out, ignore_errors=True)
            out.with_suffix(".jsonl").unlink(missing_ok=True)
        src.unlink()
    return {
        "bundle": "tiny (tests/conftest.py)",
        "base_mib": args.base_mb,
        "shard_mb": args.shard_mb,
        "runs": rows,
    }


def throughput(args: argparse.Namespace, work: Path) -> dict:
    """``detect`` and ``batch`` alternating for ``--rounds`` on the same records (a noisy shared machine
    hurts both alike; the best round of each counts), plus each one's start cost on one record."""
    src, one = work / "in.jsonl", work / "one.jsonl"
    records, chars = write_input(src, int(args.kb * 1024), seed=1)
    write_input(one, 1, seed=2)
    rows = []
    plan = [(t, "start", one, 1, 0) for t in ("detect", "batch")]
    plan += [(t, "run", src, records, chars) for _ in range(args.rounds) for t in ("detect", "batch")]
    for tool, name, path, n, c in plan:
        out = work / f"out-{tool}-{name}"
        cmd = (
            batch_cmd(path, out, args.bundle, 4.0, ["--workers", "1"])
            if tool == "batch"
            else detect_cmd(path, out.with_suffix(".jsonl"), args.bundle, [])
        )
        load = os.getloadavg()[0]
        got = run_sampled(cmd)
        rows.append(
            {"tool": tool, "input": name, "records": n, "chars": c, "load_before": round(load, 2), **got}
        )
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(out, ignore_errors=True)
        out.with_suffix(".jsonl").unlink(missing_ok=True)
    summary: dict = {}
    for tool in ("detect", "batch"):
        wall = min(r["wall_s"] for r in rows if r["tool"] == tool and r["input"] == "run")
        start = next(r["wall_s"] for r in rows if r["tool"] == tool and r["input"] == "start")
        summary[tool] = {
            "best_wall_s": wall,
            "records_s": round(records / wall, 2),
            "chars_s": round(chars / wall),
            "start_s": start,
        }
    summary["ray_overhead_pct"] = round(
        100 * (summary["batch"]["best_wall_s"] / summary["detect"]["best_wall_s"] - 1), 1
    )
    return {"bundle": args.bundle, "records": records, "chars": chars, "rounds": args.rounds, "runs": rows,
            "summary": summary}  # fmt: skip


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["memory"]["runs"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for tool, style in (("batch", "o-"), ("detect", "s--")):
        pts = [r for r in runs if r["tool"] == tool]
        ax.plot(
            [r["mib"] for r in pts], [r["peak_pss_mib"] for r in pts], style, label=f"guardrail {tool} (PSS)"
        )
        ax.plot([r["mib"] for r in pts], [r["peak_rss_mib"] for r in pts], style, alpha=0.35,
                label=f"guardrail {tool} (RSS, shared pages counted per process)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("input (MiB of JSONL)")
    ax.set_ylabel("peak memory of the process tree (MiB)")
    ax.set_ylim(bottom=0)
    cores = _stamp(results["memory"], results)["machine"]["cores"]
    ax.set_title(f"Peak memory vs input size (tiny model, {cores} cores)")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 0.13))  # the empty band between the two
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "batch_memory.png", dpi=120)


def _stamp(section: dict, results: dict) -> dict:
    """The date and machine a section was measured on (results of before sections kept their own: the
    file's)."""
    return {k: section.get(k, results.get(k)) for k in ("date", "machine")}


def _measured_on(section: dict, results: dict) -> str:
    st = _stamp(section, results)
    m = st["machine"]
    return (
        f"Measured {st['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB; shared with other "
        "jobs (load average before each run in `load_before`)."
    )


def report(results: dict, out: Path) -> None:
    lines = ["# guardrail batch: memory and throughput", ""]
    if mem := results.get("memory"):
        lines += [
            f"## Peak memory (`python benchmarks/batch.py memory`; tiny model, base {mem['base_mib']} MiB, "
            f"shards of {mem['shard_mb']} MiB)",
            "",
            _measured_on(mem, results),
            "",
            "| tool | input MiB | records | wall s | peak PSS MiB | peak RSS MiB | processes | records/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in mem["runs"]:
            cells = [r[k] for k in ("tool", "mib", "records", "wall_s", "peak_pss_mib", "peak_rss_mib")]
            cells += [r["max_processes"], r["records_s"]]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines += ["", "![peak memory](batch_memory.png)", ""]
    for size, tp in results.get("throughput", {}).items():
        s = tp["summary"]
        lines += [
            f"## Throughput, {size} (`python benchmarks/batch.py throughput --kb {size[:-3]} --rounds "
            f"{tp['rounds']}`; {tp['bundle']} with its pattern recognisers, {tp['records']} records, "
            f"{tp['chars']} characters, best of {tp['rounds']} alternating round(s))",
            "",
            _measured_on(tp, results),
            "",
            "| tool | best wall s | records/s | chars/s | start s (1 record) |",
            "|---|---:|---:|---:|---:|",
        ]
        for tool in ("detect", "batch"):
            t = s[tool]
            keys = ("best_wall_s", "records_s", "chars_s", "start_s")
            lines.append(f"| {tool} | " + " | ".join(str(t[k]) for k in keys) + " |")
        steady = {
            t: tp["chars"] / max(1e-9, s[t]["best_wall_s"] - s[t]["start_s"]) for t in ("detect", "batch")
        }
        lines += [
            "",
            f"`guardrail batch` (its own local Ray, one actor on both cores) against `guardrail detect`: "
            f"{s['ray_overhead_pct']:+}% wall time end to end. Less each one's start cost (Ray, its workers "
            f"and the actor's model load against one process loading the model): {steady['detect']:.0f} "
            f"against {steady['batch']:.0f} chars/s ({100 * (steady['detect'] / steady['batch'] - 1):+.0f}% "
            "time). Every run is in `results.json`.",
            "",
        ]
    (out / "README.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("memory", "throughput"))
    p.add_argument("--base-mb", type=float, default=1.0, help="memory: the 1x input in MiB")
    p.add_argument("--scales", default="1,4,16", help="memory: multiples of the base")
    p.add_argument("--shard-mb", type=float, default=0.25, help="memory: batch shard size")
    p.add_argument("--bundle", default="gemma-3-270m-fast", help="throughput: a real bundle")
    p.add_argument("--kb", type=float, default=256, help="throughput: input size in KiB")
    p.add_argument("--rounds", type=int, default=2, help="throughput: alternating rounds")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / f"{date.today()}-batch"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    stamp = {"date": str(date.today()), "machine": machine()}  # per section: a folder may mix machines
    with tempfile.TemporaryDirectory(prefix="guardrail-bench-batch-") as tmp:
        if args.what == "memory":
            results["memory"] = memory(args, Path(tmp)) | stamp
        else:  # one entry per input size: the start cost weighs less the longer the job
            results.setdefault("throughput", {})[f"{args.kb:g}KiB"] = throughput(args, Path(tmp)) | stamp
    path.write_text(json.dumps(results, indent=1))
    if "memory" in results:
        plot(results, out)
    report(results, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
