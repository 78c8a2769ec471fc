"""Run every method over every set in one process: load, warm up, time, score; then the probe sweep.

Methods run one after the other (each loaded, warmed up, timed on every set, then released), so all
timings come from the same process run and their ratios hold on a shared machine. Per set and method:

- throughput: ``detect_batch`` over all records in chunks (a progress bar between chunks, outside the
  timed calls); characters/s and backbone-tokenizer tokens/s over the summed call time, and characters
  per CPU-second of this process (all its threads), which other jobs on a shared machine disturb less;
- latency: one record per call on a seeded sample (ms per record, p50 and p99), as a request would be;
- peak memory: the largest resident set size sampled every 10 ms while the method is loaded, warmed up
  and run, minus the size just before it was loaded (its own footprint on top of what the process
  already held); on CUDA also ``torch.cuda.max_memory_allocated``;
- quality: :func:`guardrail.metrics.score` over the asked labels, with predictions of labels the set
  never annotates set apart (``ignore_unlabeled``), never counted as false positives.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.bench import suite
from guardrail.bench.datasets import Dataset
from guardrail.bench.methods import METHODS, PROBE_METHODS, Method, MethodConfig, MethodSkipped
from guardrail.data import Record
from guardrail.metrics import score
from guardrail.spans import Span

log = logging.getLogger(__name__)

SWEEP_FACTORS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 35.0)
"""Multipliers of the shipped per-label thresholds for the probe's precision-recall curve (1 = shipped)."""
CHUNK = 64
"""Records per timed ``detect_batch`` call (the progress bar moves between calls)."""


@dataclass(slots=True)
class BenchConfig:
    """One run: which methods on which sets, and the sampling that keeps it fast."""

    methods: list[str]
    datasets: list[Dataset]
    method: MethodConfig
    seed: int = 0
    limit: int | None = None
    """First records of each set (None: all), as recorded in the results."""
    judge_limit: int | None = 50
    """Records per set the judge reads (a seeded sample; None: all)."""
    latency_n: int = 100
    """Records per set timed one by one for p50/p99 (the judge: at most ``judge_latency_n``)."""
    judge_latency_n: int = 8
    gpu_price_per_hour: float = 2.5
    sweep_factors: tuple[float, ...] = SWEEP_FACTORS
    progress: bool = True
    command: str = ""
    extra_env: dict[str, Any] = field(default_factory=dict)


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _high_water() -> int:
    """The process's peak RSS so far in bytes (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakRSS:
    """Within a ``with`` block, the largest RSS above the RSS at entry: sampled every ``every``
    seconds, and taken exactly from the kernel's high-water mark whenever the block raised it (a
    short-lived allocation between two samples is then still seen)."""

    def __init__(self, every: float = 0.01):
        self.every = every
        self.base = self.peak = 0
        self._high0 = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = rss_bytes()
        self._high0 = _high_water()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        high = _high_water()
        if high > self._high0:  # the block set a new process maximum: that maximum is its peak
            self.peak = max(self.peak, high)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def sample(records: Sequence[Record], k: int | None, seed: int, what: str) -> list[Record]:
    """``k`` records chosen by ``seed`` (in file order), or all of them when ``k`` is None or large."""
    if k is None or k >= len(records):
        return list(records)
    rng = random.Random(f"bench/{what}/{seed}")
    return [records[i] for i in sorted(rng.sample(range(len(records)), k))]


def quality(ds: Dataset, records: Sequence[Record], preds: dict[str, list[Span]], labels: Sequence[str]):
    """The score report of ``records`` (a subset of ``ds``): over ``labels``, and the labels ``ds``
    never annotates set apart."""
    return score(records, preds, labels=labels, ignore_unlabeled=True, annotated=ds.annotates)


def percentile(xs: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else None


class TokenCounter:
    """Tokens of each text under the backbone's own tokenizer (the unit of tokens/s for every method)."""

    def __init__(self, bundle: str):
        from transformers import AutoTokenizer

        from guardrail.backbone import resolve
        from guardrail.bundle import Bundle

        path, _ = resolve(Bundle.load(bundle).manifest.backbone.id)
        self.tokenizer = AutoTokenizer.from_pretrained(path)

    def __call__(self, texts: Sequence[str]) -> int:
        if not texts:
            return 0
        ids = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return sum(len(x) for x in ids)


def _timed_pass(m: Method, records: Sequence[Record], desc: str, progress: bool) -> tuple[dict, float, float]:
    """Predictions by record id, wall seconds and process CPU seconds (all threads) of the calls."""
    from tqdm.auto import tqdm

    preds: dict[str, list[Span]] = {}
    seconds = cpu = 0.0
    with tqdm(total=len(records), desc=desc, unit="rec", disable=not progress, file=sys.stderr) as bar:
        for i in range(0, len(records), CHUNK):
            part = records[i : i + CHUNK]
            t0, c0 = time.perf_counter(), time.process_time()
            found = m.detect_batch([r.text for r in part])
            seconds += time.perf_counter() - t0
            cpu += time.process_time() - c0
            preds.update({r.id: s for r, s in zip(part, found, strict=True)})
            bar.update(len(part))
    return preds, seconds, cpu


def _latencies(m: Method, records: Sequence[Record]) -> list[float]:
    out = []
    for r in records:
        t0 = time.perf_counter()
        m.detect_batch([r.text])
        out.append(1000 * (time.perf_counter() - t0))
    return out


def sweep(
    g: Any, ds: Dataset, labels: Sequence[str], factors: Sequence[float], batch_size: int | None
) -> list[dict]:
    """Probe-only spans at the shipped per-label thresholds times each factor, scored like the methods.

    Token scores are computed once; only the span decoding is repeated per factor.
    """
    from guardrail.pipeline import collapse
    from guardrail.spans import decode

    shipped, lone = g.thresholds, g.lone_min_score  # the loaded probe's own (bundle format 2)
    records = ds.records
    token_scores = g.scores([r.text for r in records], batch_size=batch_size)
    classes = list(g.probe.classes)
    collapsed = [collapse(ts.probs, classes, list(labels)) for ts in token_scores]
    rows = []
    for f in factors:
        thr = {c: min(0.999, f * shipped.get(c, 0.5)) for c in labels}
        preds = {
            r.id: decode(r.text, ts.offsets, p, c, thr, lone_min_score=lone)
            for r, ts, (p, c) in zip(records, token_scores, collapsed, strict=True)
        }
        o = quality(ds, records, preds, labels)["overall"]
        rows.append(
            {"factor": f, "shipped": f == 1.0}
            | {k: o[k] for k in ("leakage", "recall_partial", "recall_exact", "precision", "f1", "f2")}
        )
    return rows


def _cost(
    m: Method,
    records: Sequence[Record],
    seconds: float,
    cpu: float,
    tokens: int,
    lat: list[float],
    price: float,
) -> dict[str, Any]:
    chars = sum(len(r.text) for r in records)
    tps = tokens / seconds if seconds > 0 else None
    cost: dict[str, Any] = {
        "records": len(records),
        "chars": chars,
        "tokens": tokens,
        "seconds": seconds,
        "chars_per_s": chars / seconds if seconds > 0 else None,
        "cpu_seconds": cpu,
        "chars_per_cpu_s": chars / cpu if cpu > 0 else None,
        "tokens_per_s": tps,
        "ms_per_record_mean": 1000 * seconds / len(records) if records else None,
        "latency_n": len(lat),
        "latency_ms_p50": percentile(lat, 50),
        "latency_ms_p99": percentile(lat, 99),
    }
    if m.device == "cuda":
        cost["gpu_usd_per_hour"] = price
        cost["usd_per_million_tokens"] = price / 3600 / tps * 1e6 if tps else None
    return cost


def run_method(name: str, cfg: BenchConfig, count_tokens: TokenCounter) -> tuple[dict, dict]:
    """Load, warm up, time and score one method on every set; ``(method summary, per-set results)``."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    per_set: dict[str, dict] = {}
    whole: dict[str, dict[str, list[Span]]] = {}  # predictions of the sets read whole, by set
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        try:
            m = METHODS[name](cfg.method)
        except MethodSkipped as e:
            return {"status": "skipped", "reason": str(e)}, {}
        load_s = time.perf_counter() - t0
        m.warmup()
        first = cfg.datasets[0].records[:16] if cfg.datasets else []
        m.detect_batch([r.text for r in first])  # the code paths of real text, before any clock runs
        for ds in cfg.datasets:
            judge = name == "judge"
            records = sample(ds.records, cfg.judge_limit if judge else None, cfg.seed, f"{ds.name}/records")
            preds, seconds, cpu = _timed_pass(m, records, f"{name:8s} {ds.name}", cfg.progress)
            lat_n = min(cfg.latency_n, cfg.judge_latency_n) if judge else cfg.latency_n
            lat = _latencies(m, sample(records, lat_n, cfg.seed, f"{ds.name}/latency"))
            tokens = count_tokens([r.text for r in records])
            per_set[ds.name] = {
                "quality": quality(ds, records, preds, cfg.method.labels),
                "cost": _cost(m, records, seconds, cpu, tokens, lat, cfg.gpu_price_per_hour),
                "sampled": len(records) < len(ds.records),
            }
            if len(records) == len(ds.records):
                whole[ds.name] = preds
    summary: dict[str, Any] = {
        "status": "ok",
        "describe": m.describe,
        "device": m.device,
        "load_s": load_s,
        "peak_rss_delta_mb": mem.delta_mb,
    }
    if cuda and m.device == "cuda":
        summary["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if m.extra:
        summary["extra"] = dict(m.extra)
    if cfg.datasets and len(whole) == len(cfg.datasets):
        # the sets of one language pooled (asked labels, each set's unannotated types ignored)
        summary["languages"] = suite.score_language(cfg.datasets, whole, cfg.method.labels)
    if name in PROBE_METHODS and m.guardrail is not None:
        for ds in cfg.datasets:
            per_set[ds.name]["sweep"] = sweep(
                m.guardrail, ds, cfg.method.labels, cfg.sweep_factors, cfg.method.batch_size
            )
    del m
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return summary, per_set


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Every method of ``cfg`` on every set; the whole result as plain JSON-ready data."""
    started = time.time()
    load_start = os.getloadavg()
    count_tokens = TokenCounter(cfg.method.bundle)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
        "command": cfg.command,
        "config": {
            "methods": cfg.methods,
            "labels": cfg.method.labels,
            "bundle": cfg.method.bundle,
            "device": cfg.method.device,
            "spacy_model": cfg.method.spacy_model,
            "batch_size": cfg.method.batch_size,
            "judge_batch_size": cfg.method.judge_batch_size,
            "seed": cfg.seed,
            "limit": cfg.limit,
            "judge_limit": cfg.judge_limit,
            "latency_n": cfg.latency_n,
            "judge_latency_n": cfg.judge_latency_n,
            "gpu_price_per_hour": cfg.gpu_price_per_hour,
            "sweep_factors": list(cfg.sweep_factors),
        },
        "datasets": {
            d.name: {
                "source": d.source,
                "records": len(d.records),
                "chars": d.chars,
                "tokens": count_tokens([r.text for r in d.records]),
                "annotates": d.annotates,
            }
            for d in cfg.datasets
        },
        "methods": {},
        "results": {d.name: {} for d in cfg.datasets},
    }
    for name in cfg.methods:
        log.info("bench: %s", name)
        summary, per_set = run_method(name, cfg, count_tokens)
        results["methods"][name] = summary
        for set_name, r in per_set.items():
            results["results"][set_name][name] = r
    results["environment"] = (
        environment()
        | cfg.extra_env
        | {
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "wall_s": time.time() - started,
        }
    )
    return results


def cpu_model() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ISA_FLAGS: tuple[str, ...] = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
"""The instruction-set flags that decide CPU speed here (bf16 is emulated without avx512_bf16/amx)."""


def cpu_flags() -> list[str]:
    """Which of :data:`ISA_FLAGS` the CPU has (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on, as model cards show it: CPU model and flags, cores, platform,
    Python."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def environment() -> dict[str, Any]:
    """Versions, CPU, threads, GPU and commit: what a reader needs to compare two reports."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "gpu": gpu,
        "git_commit": _git_commit(),
        "versions": {
            p: _version(p)
            for p in (
                "guardrail",
                "torch",
                "transformers",
                "presidio-analyzer",
                "spacy",
                "numpy",
                "matplotlib",
            )
        },
    }


def machine_slug(env: dict[str, Any]) -> str:
    """Short name of the machine for the report folder: the GPU, else CPU model and usable cores."""
    if env.get("gpu"):
        base = env["gpu"]
    else:
        cpu = re.sub(r"\((R|TM|tm)\)|\bCPU\b|\bProcessor\b|@.*$|\d+-Core", " ", str(env.get("cpu", "cpu")))
        base = f"{cpu} {env.get('cpus_usable')}c"
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    return slug[:40].strip("-") or "machine"


def write_report(
    out: Path, stem: str, res: Mapping[str, Any], plot: Callable[[Mapping[str, Any], Path], Path]
) -> None:
    """A benchmark script's results in ``out`` (created): ``<stem>.json`` (all of ``res``), ``<stem>.md``
    (its ``table``) and ``<stem>.png`` (drawn by ``plot``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{stem}.md").write_text(res["table"] + "\n")
    plot(res, out / f"{stem}.png")
