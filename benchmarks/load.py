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

``--overload`` measures the sidecar past its capacity instead, on one batched server: the throughput of
32 clients (deadline ``--timeout-s``), then 200 clients (``--overload-clients``) whose calls have a 5 s
deadline (``--deadline-s``) and who back off after a RESOURCE_EXHAUSTED (exponential from ``--backoff-s``,
at most 8x that, full jitter). It reports goodput (calls
that succeeded within their deadline, per second) against the 32-client throughput (target >= 80%),
calls that succeeded after their deadline (target 0), and where the model's time went (texts read,
read for callers that had gone, dropped unread by reason). Writes ``overload.md`` and ``overload.json``.

    python benchmarks/load.py --overload --warmup-s 5 --measure-s 20
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
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
        return self.metrics().get(name, 0.0)

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics``: ``name{labels}`` -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            body = r.read().decode()
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", body, re.M)}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def level(
    target: str,
    texts: list[str],
    concurrency: int,
    warmup_s: float,
    measure_s: float,
    timeout: float,
    backoff_s: float = 0.0,
) -> dict[str, Any]:
    """Run ``concurrency`` closed-loop clients; stats of the calls that finished in the measured window.

    Warm-up lasts ``warmup_s`` and until every client has finished a call (the queue is in its steady
    state); calls count in the window they finish in, which lasts ``measure_s`` and until ``2 x
    concurrency`` calls finished in it (at most 10 x ``measure_s``), so that slow levels still give a p99
    of their own calls. ``backoff_s`` > 0: a client refused with RESOURCE_EXHAUSTED waits before its next
    call, up to ``backoff_s`` x 2^(refusals in a row) (at most 8 x ``backoff_s``), a random share of it.
    Calls that succeeded after their deadline (``timeout``) are counted apart (``late``), not in the
    throughput.
    """
    late = 0
    lat: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    began = loop.time()
    warm: set[int] = set()
    window: list[float] = []  # [t0, t1] once known
    done = asyncio.Event()
    async with AsyncGuardrailClient(target, timeout=timeout, retries=0) as client:

        async def worker(w: int) -> None:
            nonlocal late
            i = w
            refused = 0  # refusals in a row
            while not done.is_set():
                start = loop.time()
                code = None
                try:
                    await client.redact([texts[i % len(texts)]])
                except SidecarError as e:
                    code = e.code.name
                end = loop.time()
                i += concurrency
                if backoff_s and code == "RESOURCE_EXHAUSTED":
                    # exponential back-off with full jitter, as gRPC's own retries do
                    await asyncio.sleep(random.uniform(0, min(8 * backoff_s, backoff_s * 2**refused)))
                    refused += 1
                else:
                    refused = 0
                if not window:
                    warm.add(w)
                    if len(warm) == concurrency and end - began >= warmup_s:
                        window.append(end)
                    continue
                # a call counts where it finishes: one that started before the window but ends in it is
                # steady-state work (leaving it out undercounts throughput by latency / window: ~25% at
                # the 200-client level, whose calls take seconds)
                if code is None and end - start > timeout:
                    late += 1
                elif code is None:
                    lat.append(end - start)
                else:
                    errors[code] = errors.get(code, 0) + 1
                span = end - window[0]
                finished = len(lat) + late + sum(errors.values())
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
        "late": late,
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


def _model_work(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Where the model's time went between two metric snapshots."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    work = {
        "texts_read": delta("guardrail_texts_total"),
        "late_texts": delta("guardrail_late_texts_total"),
        "ok_calls": delta('guardrail_requests_total{code="OK",method="Redact"}'),
        "batches": delta("guardrail_batch_texts_count"),
        "batch_texts": delta("guardrail_batch_texts_sum"),
        "model_seconds": delta("guardrail_batch_seconds_sum"),
    }
    for reason in ("refused", "abandoned", "expired", "stopped"):
        work[f"dropped_{reason}"] = delta(f'guardrail_dropped_texts_total{{reason="{reason}"}}')
    for code in ("DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED"):
        work[f"calls_{code}"] = delta(f'guardrail_requests_total{{code="{code}",method="Redact"}}')
    return work


def _pool(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Levels run several times as one: calls and windows summed, latency percentiles averaged."""
    calls = sum(r["calls"] for r in rows)
    window = sum(r["window_s"] for r in rows)
    errors: dict[str, int] = {}
    for r in rows:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    p50 = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
    p99 = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
    return {
        "concurrency": rows[0]["concurrency"],
        "calls": calls,
        "window_s": round(window, 2),
        "throughput_rps": calls / window if window else 0.0,
        "p50_ms": float(np.mean(p50)) if p50 else None,
        "p99_ms": float(np.mean(p99)) if p99 else None,
        "errors": errors,
        "late": sum(r["late"] for r in rows),
        "rounds": rows,
    }


def overload(a: argparse.Namespace, texts: list[str], out: Path) -> int:
    """``--overload``: 32-client throughput, then goodput at ``a.overload_clients`` with short deadlines."""
    load_before = os.getloadavg()
    server = Server(a.bundle, a.max_batch_texts, a.max_wait_ms, a.serve_arg)
    target = f"127.0.0.1:{server.port}"
    bases: list[dict[str, Any]] = []
    overs: list[dict[str, Any]] = []
    works: list[dict[str, float]] = []
    try:
        # the two levels alternate (--rounds): a shared machine's speed drifts over minutes
        for _ in range(a.rounds):
            bases.append(asyncio.run(level(target, texts, 32, a.warmup_s, a.measure_s, a.timeout_s)))
            time.sleep(1.0)
            before = server.metrics()
            began = time.monotonic()
            n, deadline = a.overload_clients, a.deadline_s
            overs.append(
                asyncio.run(level(target, texts, n, a.warmup_s, a.measure_s, deadline, backoff_s=a.backoff_s))
            )
            elapsed = time.monotonic() - began
            time.sleep(1.0)
            works.append(_model_work(before, server.metrics()))
            works[-1]["busy_share"] = works[-1]["model_seconds"] / elapsed
    finally:
        server.stop()
    base, over, work = _pool(bases), _pool(overs), {k: sum(w[k] for w in works) for k in works[0]}
    work["busy_share"] /= len(works)
    load_after = os.getloadavg()
    ratio = over["throughput_rps"] / base["throughput_rps"] if base["throughput_rps"] else 0.0
    read = work["texts_read"]
    wasted = (work["late_texts"] / read) if read else 0.0
    result = {
        "date": dt.date.today().isoformat(),
        "bundle": a.bundle,
        "chars": len(texts[0]),
        "serve_args": a.serve_arg,
        "machine": {
            "cpu": a.machine or machine_name(),
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
        },
        "baseline": base,
        "overload": over,
        "deadline_s": a.deadline_s,
        "backoff_s": a.backoff_s,
        "goodput_ratio": ratio,
        "model_work": work,
        "wasted_share": wasted,
    }
    e = over["errors"]
    lines = [
        f"# Sidecar under overload — {result['date']}",
        "",
        f"Machine: {result['machine']['cpu']}, {os.cpu_count()} CPUs; load average before "
        f"{result['machine']['load_before']}, after {result['machine']['load_after']}. Bundle `{a.bundle}`; "
        f"`Redact` of one {len(texts[0])}-character message per call; warm-up >= {a.warmup_s} s, measured "
        f">= {a.measure_s} s per level, the two levels alternating {a.rounds} times (pooled below); server "
        "and clients on the same machine (loopback).",
        "",
        f"- 32 clients (deadline {a.timeout_s:.0f} s): **{base['throughput_rps']:.2f} calls/s**, p50 "
        f"{base['p50_ms'] or float('nan'):.0f} ms, p99 {base['p99_ms'] or float('nan'):.0f} ms, errors "
        f"{base['errors'] or 0}.",
        f"- {a.overload_clients} clients, deadline {a.deadline_s:.0f} s, exponential back-off "
        f"({a.backoff_s:g}-{8 * a.backoff_s:g} s, jitter) after RESOURCE_EXHAUSTED: goodput "
        f"**{over['throughput_rps']:.2f} calls/s = "
        f"{ratio:.0%}** of the 32-client throughput (target >= 80%); p50 "
        f"{over['p50_ms'] or float('nan'):.0f} ms, p99 {over['p99_ms'] or float('nan'):.0f} ms of the "
        f"calls that succeeded; succeeded after their "
        f"deadline: **{over['late']}** (target 0); refused RESOURCE_EXHAUSTED "
        f"{e.get('RESOURCE_EXHAUSTED', 0)}, DEADLINE_EXCEEDED {e.get('DEADLINE_EXCEEDED', 0)}, other "
        f"{sum(v for k, v in e.items() if k not in ('RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED'))}.",
        f"- The model during the {a.overload_clients}-client levels (warm-ups included): read "
        f"{read:.0f} texts in {work['batches']:.0f} batches (mean "
        f"{work['batch_texts'] / max(1.0, work['batches']):.1f} texts), busy {work['busy_share']:.0%} of "
        f"the time; {work['late_texts']:.0f} texts ({wasted:.1%}) read for callers that had gone; "
        f"dropped unread: refused {work['dropped_refused']:.0f}, abandoned {work['dropped_abandoned']:.0f}, "
        f"expired {work['dropped_expired']:.0f}, stopped mid-batch {work['dropped_stopped']:.0f}; server "
        f"counted DEADLINE_EXCEEDED {work['calls_DEADLINE_EXCEEDED']:.0f}, CANCELLED "
        f"{work['calls_CANCELLED']:.0f}.",
        "",
    ]
    (out / "overload.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "overload.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


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
    p.add_argument("--overload", action="store_true", help="goodput past capacity (see the docstring)")
    p.add_argument("--overload-clients", type=int, default=200)
    p.add_argument("--deadline-s", type=float, default=5.0, help="client deadline under --overload")
    p.add_argument("--rounds", type=int, default=2, help="--overload: times the two levels alternate")
    p.add_argument("--backoff-s", type=float, default=0.5, help="--overload: first back-off after a refusal")
    a = p.parse_args(argv)
    levels = [int(x) for x in a.concurrency.split(",")]
    texts = json.loads(a.messages.read_text()) if a.messages else messages(64, a.chars)
    if not texts or not all(isinstance(t, str) for t in texts):
        p.error("--messages must hold a JSON list of strings")
    date = dt.date.today().isoformat()
    out = Path(a.out) if a.out else ROOT / "results" / f"{date}-load-{a.machine or machine_name()}"
    out.mkdir(parents=True, exist_ok=True)
    if a.overload:
        return overload(a, texts, out)
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
