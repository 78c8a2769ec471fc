"""``report.md`` and the README's results block, both rendered from ``results.json`` alone.

Rendering reads only the JSON, so a report can be re-rendered (or the README refreshed) without
rerunning anything: ``python -m guardrail.bench.report [RESULTS_DIR] [--update-readme]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail.bench import BenchError

RESULTS_ROOT = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
"""Markers of the generated block in README.md; the text between them is replaced."""
RERUN = "guardrail bench --update-readme"
"""The one command that reruns the full benchmark and refreshes the README block."""


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _rate(x: float | None) -> str:
    """Throughput with a width that suits its size (0.8 chars/s to 120,000 chars/s)."""
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _method_label(res: Mapping[str, Any], name: str, ds: str) -> str:
    r = res["results"][ds][name]
    n = r["cost"]["records"]
    return f"{name} (n={n})" if r.get("sampled") else name


def set_table(res: Mapping[str, Any], ds: str, gpu: bool) -> list[str]:
    """One row per method: quality over the asked labels, then cost."""
    head = ["method", "leakage", "recall partial", "recall exact", "precision", "F1", "F2", "set apart"]
    head += ["chars/s", "tokens/s", "chars/CPU-s", "p50 ms", "p99 ms", "peak mem MB"]
    if gpu:
        head.append("USD / M tokens")
    rows = []
    for name, r in res["results"][ds].items():
        o, c = r["quality"]["overall"], r["cost"]
        m = res["methods"][name]
        row = [
            _method_label(res, name, ds),
            _pct(o["leakage"]),
            _num(o["recall_partial"]),
            _num(o["recall_exact"]),
            _num(o["precision"]),
            _num(o["f1"]),
            _num(o["f2"]),
            str(o["counts"]["ignored_unlabeled"]),
            _rate(c["chars_per_s"]),
            _rate(c["tokens_per_s"]),
            _rate(c.get("chars_per_cpu_s")),
            _num(c["latency_ms_p50"], ".1f"),
            _num(c["latency_ms_p99"], ".1f"),
            _num(m.get("peak_rss_delta_mb"), ".0f"),
        ]
        if gpu:
            row.append(_num(c.get("usd_per_million_tokens"), ".4f"))
        rows.append(row)
    return _table(head, rows)


def label_table(res: Mapping[str, Any], ds: str) -> list[str]:
    """Per label: gold count, then recall (partial) / precision for each method."""
    methods = list(res["results"][ds])
    labels: list[str] = []
    for name in methods:
        labels += [x for x in res["results"][ds][name]["quality"]["per_label"] if x not in labels]
    head = ["label", "gold", *(f"{m} R / P" for m in methods)]
    rows = []
    for lab in labels:
        gold, cells = 0, []
        for name in methods:
            row = res["results"][ds][name]["quality"]["per_label"].get(lab)
            if row is None:
                cells.append("–")
                continue
            gold = max(gold, row["counts"]["gold"])
            ignored = row["counts"]["ignored_unlabeled"]
            p = (
                f"{ignored} set apart"
                if row["precision"] is None and ignored
                else _num(row["precision"], ".2f")
            )
            cells.append(f"{_num(row['recall_partial'], '.2f')} / {p}")
        in_overall = any(
            res["results"][ds][n]["quality"]["per_label"].get(lab, {}).get("in_overall") for n in methods
        )
        rows.append([lab if in_overall else f"{lab} *", str(gold), *cells])
    return _table(head, rows)


def language_table(res: Mapping[str, Any]) -> list[str]:
    """Per language, each method's leakage / precision / F1 over the sets of that language pooled (the
    sets of ``guardrail.bench.suite.SET_LANG``); empty when no method read every set whole."""
    names = [n for n, m in res["methods"].items() if m.get("languages")]
    if not names:
        return []
    langs = sorted({lang for n in names for lang in res["methods"][n]["languages"]})
    rows = []
    for lang in langs:
        row = [lang]
        for n in names:
            q = res["methods"][n]["languages"].get(lang)
            row.append(
                "n/a"
                if q is None
                else f"{_pct(q['leakage'])} / {_num(q['precision'], '.2f')} / {_num(q['f1'], '.2f')}"
            )
        rows.append(row)
    return [
        "",
        "## Per language (sets pooled): leakage / precision / F1",
        "",
        *_table(["language", *names], rows),
    ]


def render(res: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """The whole ``report.md``."""
    env, cfg = res["environment"], res["config"]
    gpu = any(m.get("device") == "cuda" for m in res["methods"].values())
    load = env.get("loadavg_start"), env.get("loadavg_end")
    lines = [
        f"# Benchmark {res['date']}: guardrail vs regex, NER and judge baselines",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {env['cpu']}, {env['cpus_usable']} usable cores, torch threads {env['torch_threads']}"
        f"{', GPU ' + env['gpu'] if env.get('gpu') else ', no GPU'}; nice {env.get('nice')}; "
        f"load average {_num(load[0][0] if load[0] else None, '.1f')} at start, "
        f"{_num(load[1][0] if load[1] else None, '.1f')} at the end (the machine is shared: other jobs "
        "ran beside this one, so absolute speeds are low; ratios between methods hold better, all were "
        "timed in the same process run).  ",
        f"Commit `{env.get('git_commit')}`, bundle `{cfg['bundle']}`, seed {cfg['seed']}, "
        f"wall time {env['wall_s'] / 60:.1f} min. Versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        + ".",
        "",
        "## Methods",
        "",
    ]
    for name, m in res["methods"].items():
        if m["status"] == "ok":
            lines.append(f"- **{name}**: {m['describe']}; {m['device']}, loaded in {m['load_s']:.1f} s.")
        else:
            lines.append(f"- **{name}**: {m['status']} ({m.get('reason', '')}).")
    judge = res["methods"].get("judge", {})
    if judge.get("status") == "ok":
        ex = judge.get("extra", {})
        lines.append(
            f"- The judge reads a seeded sample of at most {cfg['judge_limit']} records per set (its rows "
            f"say n=…) and {cfg['judge_latency_n']} for latency; of its {ex.get('lines', 0)} answer lines, "
            f"{ex.get('not_in_text', 0)} named a value absent from the text and {ex.get('unknown_label', 0)} "
            "had no valid label (no span from either)."
        )
    lines += language_table(res)
    lines += [
        "",
        "## How to read it",
        "",
        f"Quality is `guardrail.metrics.score` over the asked labels ({', '.join(cfg['labels'])}): gold "
        "spans of other labels are don't-care, and a prediction of a label the set never annotates is "
        "*set apart* (counted in its own column, not a false positive). Leakage: share of gold PII "
        "characters left uncovered. Recall partial: gold spans ≥ 50% covered; exact: same boundaries. "
        "chars/s and tokens/s (Gemma tokenizer tokens, the same count for every method) are wall-clock; "
        "chars/CPU-s divides by the CPU time of this process (all threads), less disturbed by other jobs; "
        "records in "
        f"chunks of 64 per call, probe batch {cfg['batch_size'] or 'default (16 on the CPU, 256 on a GPU)'}, "
        f"judge batch {cfg['judge_batch_size']}. "
        f"p50/p99: one record per call over {cfg['latency_n']} seeded records. Peak mem: largest RSS "
        "sampled every 10 ms while the method was loaded and run, above the RSS before it loaded."
        + (
            f" GPU cost: {cfg['gpu_price_per_hour']} USD per GPU hour at the measured tokens/s."
            if gpu
            else " CPU only: no GPU cost figure."
        ),
        "",
    ]
    for ds, info in res["datasets"].items():
        lines += [
            f"## {ds}",
            "",
            f"{info['records']} records, {info['chars']:,} characters, {info['tokens']:,} tokens; annotates "
            f"{', '.join(info['annotates'])} (`{info['source']}`).",
            "",
            *set_table(res, ds, gpu),
            "",
            "Per label, recall (partial) / precision (* = label outside the asked ones, not in the rows "
            'above; "set apart" = predictions of a label this set never annotates):',
            "",
            *label_table(res, ds),
            "",
        ]
        for name, r in res["results"][ds].items():
            if "sweep" in r:
                lines += [f"Threshold sweep of the `{name}` probe alone (shipped thresholds × factor):", ""]
                lines += _table(
                    ["factor", "leakage", "recall partial", "precision", "F1"],
                    [
                        [
                            f"**{s['factor']:g}** (shipped)" if s["shipped"] else f"{s['factor']:g}",
                            _pct(s["leakage"]),
                            _num(s["recall_partial"]),
                            _num(s["precision"]),
                            _num(s["f1"]),
                        ]
                        for s in r["sweep"]
                    ],
                )
                lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += [f"Rerun: `{RERUN}` (add `--limit N` for a quick look). Every figure is in `results.json`.", ""]
    return "\n".join(lines)


def readme_block(res: Mapping[str, Any], folder: str) -> str:
    """The README's results table: per method, leakage / recall / precision on each set, and chars/s over
    all sets (one column a set: the dev suite has five)."""
    sets = list(res["datasets"])
    head = ["method", *sets, "chars/s"]
    rows = []
    for name, m in res["methods"].items():
        if m["status"] != "ok":
            rows.append([f"{name} ({m['status']})", *(["–"] * (len(sets) + 1))])
            continue
        row = [name]
        chars = seconds = 0.0
        for ds in sets:
            r = res["results"][ds].get(name)
            o, c = r["quality"]["overall"], r["cost"]
            row.append(
                f"{_pct(o['leakage'])} / {_num(o['recall_partial'], '.2f')} / {_num(o['precision'], '.2f')}"
            )
            if c.get("chars_per_s"):
                chars += c.get("chars", 0) or 0
                seconds += (c.get("chars", 0) or 0) / c["chars_per_s"]
        row.append(_rate(chars / seconds if seconds else None))
        rows.append(row)
    env = res["environment"]
    note = (
        f"Generated from [`{folder}/report.md`]({folder}/report.md) ({res['date']}, {env['cpu']}, "
        f"{env['cpus_usable']} cores{', ' + env['gpu'] if env.get('gpu') else ''}, shared machine); "
        "cells: leakage / recall / precision; records per set: "
        + ", ".join(f"{ds} {info['records']}" for ds, info in res["datasets"].items())
        + f" (`--limit {res['config'].get('limit')}`)" * bool(res["config"].get("limit"))
        + f"; the judge reads at most {res['config']['judge_limit']} of them. Regenerate with "
        f"`{RERUN}`; do not edit by hand."
    )
    return "\n".join([BEGIN, *_table(head, rows), "", note, END])


def update_readme(res: Mapping[str, Any], folder: str, readme: Path = README) -> None:
    """Replace the block between the markers (appended under a heading when there is none yet)."""
    text = readme.read_text(encoding="utf-8")
    block = readme_block(res, folder)
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n## Benchmark\n\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")


def latest(root: Path = RESULTS_ROOT) -> Path:
    """The newest report folder (names start with the date; ties: the last written)."""
    found = sorted(root.glob("*/results.json"), key=lambda p: (p.parent.name[:10], p.stat().st_mtime))
    if not found:
        raise BenchError(f"no results.json under {root}; run `guardrail bench` first")
    return found[-1].parent


def load(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"cannot read {folder / 'results.json'} ({type(e).__name__})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Re-render ``report.md`` (and the README block) from a folder's ``results.json``."""
    ap = argparse.ArgumentParser(prog="python -m guardrail.bench.report", description=main.__doc__)
    ap.add_argument("folder", nargs="?", default=None, help="report folder (default: the latest)")
    ap.add_argument("--update-readme", action="store_true", help="also refresh the README block")
    a = ap.parse_args(argv)
    try:
        folder = Path(a.folder) if a.folder else latest()
        res = load(folder)
    except BenchError as e:
        print(f"guardrail bench: error: {e}", file=sys.stderr)
        return 2
    plots = sorted(p.name for p in folder.glob("*.png"))
    (folder / "report.md").write_text(render(res, plots), encoding="utf-8")
    if a.update_readme:
        update_readme(res, relative(folder))
    print(folder / "report.md")
    return 0


def relative(folder: Path) -> str:
    """``folder`` relative to the repository (as README links need), else as given."""
    try:
        return str(folder.resolve().relative_to(README.parent))
    except ValueError:
        return str(folder)


if __name__ == "__main__":
    sys.exit(main())
