"""The cost rule of the real-text work (issue 12): a candidate default's chars/s against the default of a
reference commit, with the code and bundle as they were then, on the same machine in the same run.

    python benchmarks/cost_rule.py [--ref 6852083] [--ref-bundle gemma-3-270m] [--bundle gemma-3-270m
                                   --bundle gemma-3-270m-l6] [--rounds 5] [--records 600]
                                   [--level native --level avx2] [--out DIR]

The reference commit is checked out with ``git worktree`` into a temporary folder (bundles are in git)
and run from there by this checkout's interpreter. Every measurement is a fresh process given the whole
machine. The rounds alternate the reference and the candidates, so a noisy neighbour on a shared VM
hits them alike. A process loads the bundle and warms up (``Guardrail.warmup`` where the code has one).
It then times ``detect`` three times over the first ``--records`` presidio_synth texts and reports the
median. Per level and candidate the table gives:
- the median over rounds;
- its ratio to the reference's;
- whether it keeps at least :data:`FLOOR` of it.

Each process's runtime and dtype are recorded. Code of the reference's time may pick differently at a
capped level: it read the CPU's flags, not the caps.

Writes ``cost_rule.json``, ``cost_rule.md`` and ``cost_rule.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import DATA
from isa_matrix import LEVELS

from guardrail.bench import runner

REF = "6852083"
"""``main`` when the rule was set (issue 12 filed): the default read layer 3 through its ``sae-lr`` probe."""

FLOOR = 0.8
"""The rule: the default keeps at least this share of the reference default's chars/s."""

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, statistics, sys, time
from guardrail.pipeline import Guardrail
bundle, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8")][:n]
chars = sum(map(len, texts))
g = Guardrail.load(bundle)
if hasattr(g, "warmup"):
    g.warmup()
g.detect(texts[:32])
runs = []
for _ in range(3):
    t0 = time.perf_counter()
    g.detect(texts)
    runs.append(chars / (time.perf_counter() - t0))
bb = g.backbone
print(json.dumps({"chars_per_s": statistics.median(runs), "runs": runs,
                  "runtime": getattr(bb, "runtime", "torch"),
                  "dtype": str(getattr(bb, "dtype", "")).replace("torch.", "")}))
"""
"""What one measured process runs: only ``Guardrail.load`` and ``detect``, which every version has."""


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached checkout of ``ref`` in a temporary folder, removed afterwards (on errors too); needs the
    repository's history (RuntimeError with git's reason otherwise)."""
    with tempfile.TemporaryDirectory(prefix="cost-rule-") as tmp:
        path = Path(tmp) / "ref"
        done = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:  # e.g. a shallow clone without the commit
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"cannot check out {ref} with git worktree: {reason}")
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True
            )


def run_worker(root: Path, bundle: str, records: int, env: Mapping[str, str]) -> dict[str, Any]:
    """One fresh process of :data:`WORKER` with the code under ``root``; raises when it fails."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER, bundle, str(DATA / "presidio_synth_v2.jsonl"), str(records)],
        cwd=root,
        env={**os.environ, **env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"{bundle} under {root.name}: exited {done.returncode}: {tail[0]}")
    return json.loads(lines[-1])


def summarise(samples: Mapping[str, Sequence[float]], reference: str, floor: float = FLOOR) -> dict[str, Any]:
    """Per name: the median of its samples, the ratio to ``reference``'s median and whether it keeps
    ``floor``; also the best sample and its ratio to the reference's best (on a shared VM a neighbour
    only ever slows a process down, so the best is the steadier estimate; the rule reads the medians)."""
    ref = statistics.median(samples[reference])
    best_ref = max(samples[reference])
    out = {}
    for name, values in samples.items():
        med = statistics.median(values)
        out[name] = {
            "median": med,
            "best": max(values),
            "samples": list(values),
            "ratio": med / ref,
            "best_ratio": max(values) / best_ref,
            "keeps": med / ref >= floor,
        }
    return out


def measure(
    ref: str, ref_bundle: str, bundles: Sequence[str], levels: Sequence[str], rounds: int, records: int
) -> dict[str, Any]:
    """``{"levels": {level: {"summary": ..., "runs": {name: [worker results]}}}, "reference": name}``."""
    reference = f"{ref_bundle} @ {ref}"
    out: dict[str, Any] = {"reference": reference, "records": records, "rounds": rounds, "levels": {}}
    with worktree(ref) as old:
        for level in levels:
            runs: dict[str, list[dict[str, Any]]] = {}
            for r in range(rounds):
                for name, root, bundle in [(reference, old, ref_bundle), *((b, ROOT, b) for b in bundles)]:
                    res = run_worker(root, bundle, records, LEVELS[level])
                    runs.setdefault(name, []).append(res)
                    print(
                        f"{level:7s} round {r + 1}/{rounds} {name:28s} {res['runtime']:10s} "
                        f"{res['dtype']:9s} {res['chars_per_s']:8.0f} chars/s",
                        flush=True,
                    )
            samples = {name: [x["chars_per_s"] for x in rs] for name, rs in runs.items()}
            out["levels"][level] = {"summary": summarise(samples, reference), "runs": runs}
    return out


def table(res: Mapping[str, Any]) -> str:
    """Markdown: one row per level and name."""
    lines = [
        "| level | bundle | runtime, dtype | chars/s (median of rounds) | rounds | vs reference | best vs "
        f"best | keeps {FLOOR:g}x |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for level, row in res["levels"].items():
        for name, s in row["summary"].items():
            first = row["runs"][name][0]
            rounds = ", ".join(f"{v:,.0f}" for v in s["samples"])
            keeps = "reference" if name == res["reference"] else ("yes" if s["keeps"] else "no")
            lines.append(
                f"| {level} | {name} | {first['runtime']}, {first['dtype']} | {s['median']:,.0f} | {rounds} "
                f"| {s['ratio']:.2f}x | {s['best_ratio']:.2f}x | {keeps} |"
            )
    lines += [
        "",
        f"First {res['records']} presidio_synth_v2 texts, `detect` (probe + patterns) after a warm-up, the "
        f"median of 3 passes per process; {res['rounds']} rounds of fresh processes, alternating.",
    ]
    return "\n".join(lines)


def plot(res: Mapping[str, Any], target: Path) -> Path:
    """Bars of the median chars/s per level, the reference first."""
    from guardrail.bench.plots import grouped_bars

    groups = list(res["levels"])
    series: dict[str, list[float]] = {}
    for level in groups:
        for name, s in res["levels"][level]["summary"].items():
            series.setdefault(name, []).append(s["median"])
    return grouped_bars(
        groups, series, target, ylabel="characters / s", title="Candidate defaults against the reference"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=REF, help=f"git ref of the reference code (default {REF})")
    ap.add_argument("--ref-bundle", default="gemma-3-270m", help="the reference's bundle")
    ap.add_argument(
        "--bundle", action="append", default=[], help="a candidate (repeatable; default: the default)"
    )
    ap.add_argument(
        "--level", action="append", default=[], choices=list(LEVELS), help="repeatable (default native)"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--records", type=int, default=600, help="first N presidio_synth texts")
    ap.add_argument("--out", default="benchmarks/results/cost-rule", help="folder for json, md and png")
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.records < 1:
        ap.error("--rounds and --records must be at least 1")
    bundles = a.bundle or ["gemma-3-270m"]
    try:
        res = measure(a.ref, a.ref_bundle, bundles, a.level or ["native"], a.rounds, a.records)
    except RuntimeError as e:
        print(f"cost_rule: {e}", file=sys.stderr)
        return 2
    res |= {"date": time.strftime("%Y-%m-%d"), "machine": runner.machine(), "floor": FLOOR}
    res["table"] = table(res)
    print(res["table"])
    runner.write_report(Path(a.out), "cost_rule", res, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
