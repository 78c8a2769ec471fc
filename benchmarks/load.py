"""Load benchmark of the sidecar: throughput and p50/p99 latency against concurrency, micro-batching on/off.

Starts ``guardrail serve`` (the real command, the real default bundle unless ``--bundle``) twice, with
micro-batching (``--max-batch-texts 64``) and with batch size 1, and drives each in turn, level by
level, with 1..64 concurrent clients (``AsyncGuardrailClient``, one channel) sending ``Redact`` calls
of one 300-character message built from the synthetic data generator. Each level runs a warm-up, then
a measured window; throughput is calls finished in the window per second, latencies are those calls'
latencies (a window is long enough for 2 x concurrency calls, so slow levels are measured too).

    python benchmarks/load.py                      # writes benchmarks/results/<date>-load-<machine>/

Writes ``report.md``, ``load.json`` and ``load.png`` (matplotlib). Timed on whatever else the machine is
doing: the report records the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from guardrail.bundle import DEFAULT_BUNDLE
from guardrail.client import AsyncGuardrailClient, SidecarError

ROOT = Path(__file__).resolve().parent


def machine_name() -> str:
    model = "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = re.sub(r"[^a-z0-9]+", "-", line.split(":", 1)[1].strip().lower()).strip("-")
                break
    except OSError:
        pass
    return f"{model}-{os.cpu_count()}c"


def messages(n: int, chars: int, seed: int = 0) -> list[str]:
    """``n`` messages of exactly ``chars`` characters, from the synthetic generator (agent-like, with PII)."""
    from guardrail.synth import generate

    records = generate(n * 8, seed, family="calib")
    out, buf = [], ""
    for r in records:
        buf = f"{buf} {r.text}".strip()
        if len(buf) >= chars:
            out.append(buf[:chars])
            buf = ""
            if len(out) == n:
                return out
    raise RuntimeError("not enough synthetic text")


class Server:
    """``guardrail serve`` in a subprocess on a free port, metrics on another."""

    def __init__(self, bundle: str, max_batch_texts: int, max_wait_ms: float, extra: list[str] | None = None):
        cmd = [
            sys.executable,
            "-m",
            "guardrail.cli",
            "serve",
            "--bundle",
            bundle,
            "--port",
            "0",
            *(extra or []),
        ]
        cmd += [
            "--metrics-port",
            "0",
            "--max-batch-texts",
            str(max_batch_texts),
            "--max-wait-ms",
            str(max_wait_ms),
        ]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        while True:
            line = self.proc.stderr.readline()
            if m := re.search(r"listening on [\d.]+:(\d+).*metrics on :(\d+)", line):
                self.port, self.metrics_port = int(m.group(1)), int(m.group(2))
                break
            if not line and self.proc.poll() is not None:
                raise RuntimeError("guardrail serve did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            m = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def level(
    target: str, texts: list[str], concurrency: int, warmup_s: float, measure_s: float, timeout: float
) -> dict[str, Any]:
    """Run ``concurrency`` closed-loop clients; stats of the calls that finished in the measured window.

    Warm-up lasts ``warmup_s`` and until every client has finished a call (the queue is in its steady
    state); the window lasts ``measure_s`` and until ``2 x concurrency`` calls finished in it (at most
    10 x ``measure_s``), so that slow levels still give a p99 of their own calls.
    """
    lat: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    began = loop.time()
    warm: set[int] = set()
    window: list[float] = []  # [t0, t1] once known
    done = asyncio.Event()
    async with AsyncGuardrailClient(target, timeout=timeout, retries=0) as client:

        async def worker(w: int) -> None:
            i = w
            while not done.is_set():
                start = loop.time()
                code = None
                try:
                    await client.redact([texts[i % len(texts)]])
                except SidecarError as e:
                    code = e.code.name
                end = loop.time()
                i += concurrency
                if not window:
                    warm.add(w)
                    if len(warm) == concurrency and end - began >= warmup_s:
                        window.append(end)
                    continue
                if start < window[0]:
                    continue  # started during warm-up
                if code is None:
                    lat.append(end - start)
                else:
                    errors[code] = errors.get(code, 0) + 1
                span = end - window[0]
                finished = len(lat) + sum(errors.values())
                if (span >= measure_s and finished >= 2 * concurrency) or span >= 10 * measure_s:
                    window.append(end)
                    done.set()

        tasks = [asyncio.create_task(worker(w)) for w in range(concurrency)]
        await done.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = window[1] - window[0]
    arr = np.asarray(lat) * 1000
    return {
        "concurrency": concurrency,
        "calls": len(lat),
        "window_s": round(elapsed, 2),
        "throughput_rps": len(lat) / elapsed,
        "chars_per_s": len(lat) * len(texts[0]) / elapsed,
        "p50_ms": float(np.percentile(arr, 50)) if len(arr) else None,
        "p99_ms": float(np.percentile(arr, 99)) if len(arr) else None,
        "errors": errors,
    }


def plot(results: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, rows in results.items():
        c = [r["concurrency"] for r in rows]
        a.plot(c, [r["throughput_rps"] for r in rows], "o-", label=mode)
        b.plot(c, [r["p50_ms"] for r in rows], "o-", label=f"{mode} p50")
        b.plot(c, [r["p99_ms"] for r in rows], "s--", label=f"{mode} p99")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_ylabel("Redact calls / s (300 chars each)")
    b.set_ylabel("latency (ms)")
    b.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Sidecar load benchmark — {result['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}; load average before {m['load_before']}, "
        f"after {m['load_after']} (the CPU was {'shared with other jobs' if m['shared'] else 'quiet'}).",
        f"Bundle `{result['bundle']}`; `Redact` calls of one {result['chars']}-character message each; "
        f"per level a warm-up of >= {result['warmup_s']} s (every client done once), then >= "
        f"{result['measure_s']} s and >= 2 x clients calls measured; server and clients on the same machine "
        f"(loopback); benchmark and server at niceness {m['niceness']}."
        + (f" Server flags: `{' '.join(result['serve_args'])}`." if result.get("serve_args") else ""),
        "",
        "| mode | clients | calls/s | chars/s | p50 ms | p99 ms | mean batch | calls | errors | load 1m |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for mode, rows in result["levels"].items():
        for r in rows:
            err = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
            lines.append(
                f"| {mode} | {r['concurrency']} | {r['throughput_rps']:.2f} | {r['chars_per_s']:.0f} | "
                f"{r['p50_ms'] or float('nan'):.0f} | {r['p99_ms'] or float('nan'):.0f} | "
                f"{r['mean_batch']:.1f} | {r['calls']} | {err} | {r['load_avg_1m']} |"
            )
    s = result["summary"]
    lines += [
        "",
        f"At {s['concurrency']} clients: batching {s['batched_rps']:.2f} calls/s vs batch size 1 "
        f"{s['single_rps']:.2f} calls/s = **{s['speedup']:.2f}x**; p99 {s['batched_p99_ms']:.0f} ms "
        f"(batch size 1: {s['single_p99_ms']:.0f} ms); errors: {s['errors']}.",
        "",
        "![load](load.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=DEFAULT_BUNDLE)
    p.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    p.add_argument("--chars", type=int, default=300)
    p.add_argument("--warmup-s", type=float, default=5.0)
    p.add_argument("--measure-s", type=float, default=15.0)
    p.add_argument("--timeout-s", type=float, default=120.0, help="client deadline per call")
    p.add_argument("--max-batch-texts", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--out", default=None, help="folder (default benchmarks/results/<date>-load-<machine>)")
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="one more argument for `guardrail serve` (repeat; write `--serve-arg=--device`)",
    )
    p.add_argument(
        "--messages", type=Path, default=None, help="JSON list of messages to send (default: synthetic)"
    )
    p.add_argument(
        "--machine", default=None, help="machine name in the report (default: CPU model and count)"
    )
    a = p.parse_args(argv)
    levels = [int(x) for x in a.concurrency.split(",")]
    texts = json.loads(a.messages.read_text()) if a.messages else messages(64, a.chars)
    if not texts or not all(isinstance(t, str) for t in texts):
        p.error("--messages must hold a JSON list of strings")
    date = dt.date.today().isoformat()
    out = Path(a.out) if a.out else ROOT / "results" / f"{date}-load-{a.machine or machine_name()}"
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    modes = {"batched": a.max_batch_texts, "batch size 1": 1}
    # Both servers are up the whole time and the modes alternate level by level (in alternating order):
    # on a shared machine whose speed drifts by minutes, a run of one mode after the other compares two
    # different machines. An idle server costs no CPU.
    servers = {
        mode: Server(a.bundle, max_batch, a.max_wait_ms, a.serve_arg) for mode, max_batch in modes.items()
    }
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        with tqdm(total=len(levels) * len(modes), desc="load levels") as bar:
            for k, c in enumerate(levels):
                order = list(modes) if k % 2 == 0 else list(reversed(modes))
                for mode in order:
                    server = servers[mode]
                    n0 = server.metric("guardrail_batch_texts_count")
                    s0 = server.metric("guardrail_batch_texts_sum")
                    target = f"127.0.0.1:{server.port}"
                    row = asyncio.run(level(target, texts, c, a.warmup_s, a.measure_s, a.timeout_s))
                    n1 = server.metric("guardrail_batch_texts_count")
                    s1 = server.metric("guardrail_batch_texts_sum")
                    row["mean_batch"] = (s1 - s0) / (n1 - n0) if n1 > n0 else 0.0
                    row["load_avg_1m"] = round(os.getloadavg()[0], 2)
                    results[mode].append(row)
                    bar.set_postfix(mode=mode, clients=c, rps=f"{row['throughput_rps']:.2f}")
                    bar.update()
                    time.sleep(1.0)  # calls cancelled at the end of a level leave the queue
    finally:
        for server in servers.values():
            server.stop()
    load_after = os.getloadavg()
    cpu = a.machine or machine_name()
    at = 32 if 32 in levels else levels[-1]
    b = next(r for r in results["batched"] if r["concurrency"] == at)
    one = next(r for r in results["batch size 1"] if r["concurrency"] == at)
    result = {
        "date": date,
        "bundle": a.bundle,
        "chars": len(texts[0]),
        "serve_args": a.serve_arg,
        "warmup_s": a.warmup_s,
        "measure_s": a.measure_s,
        "machine": {
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "shared": max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1),
            "niceness": os.nice(0),
        },
        "levels": results,
        "summary": {
            "concurrency": at,
            "batched_rps": b["throughput_rps"],
            "single_rps": one["throughput_rps"],
            "speedup": b["throughput_rps"] / one["throughput_rps"] if one["throughput_rps"] else float("inf"),
            "batched_p50_ms": b["p50_ms"],
            "batched_p99_ms": b["p99_ms"],
            "single_p99_ms": one["p99_ms"],
            "errors": sum(sum(r["errors"].values()) for r in (b, one)),
        },
    }
    (out / "load.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(results, out / "load.png", f"guardrail sidecar, {result['bundle']}, {cpu} ({date})")
    (out / "report.md").write_text(report(result))
    print(report(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
