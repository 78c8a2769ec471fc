"""Benchmark plots (matplotlib PNG), drawn from ``results.json`` alone: leakage against speed, per-label
recall, and the probe's precision-recall curve from the threshold sweep with the shipped point marked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MARKERS = "osD^vP*X"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def leakage_vs_speed(res: Mapping[str, Any], out: Path) -> Path:
    """One point per method and set: characters/s (log x) against leakage."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, ds in enumerate(res["results"]):
        for name, r in res["results"][ds].items():
            x, y = r["cost"]["chars_per_s"], r["quality"]["overall"]["leakage"]
            if x is None or y is None:
                continue
            ax.scatter(x, 100 * y, marker=MARKERS[i % len(MARKERS)], s=50, label=f"{name} · {ds}")
            ax.annotate(name, (x, 100 * y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("characters / s (log scale)")
    ax.set_ylabel("leakage, % of gold PII characters")
    ax.set_title("Leakage against speed (lower right is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def grouped_bars(
    groups: list[str],
    series: Mapping[str, list[float]],
    out: Path,
    *,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    rotate: bool = False,
) -> Path:
    """One group of bars per entry of ``groups``, one bar per series (``series[name][i]``: its value in
    group ``i``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups) + 2), 4.5))
    width = 0.8 / max(1, len(series))
    for j, (name, ys) in enumerate(series.items()):
        ax.bar([i + j * width for i in range(len(groups))], ys, width, label=name)
    ax.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(groups))],
        groups,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
    )
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def recall_per_label(res: Mapping[str, Any], ds: str, out: Path) -> Path:
    """Grouped bars: recall (partial) per gold label, one bar per method."""
    per_method = {n: r["quality"]["per_label"] for n, r in res["results"][ds].items()}
    labels = sorted({lab for pl in per_method.values() for lab, row in pl.items() if row["counts"]["gold"]})
    series = {
        name: [(pl.get(lab, {}).get("recall_partial") or 0.0) for lab in labels]
        for name, pl in per_method.items()
    }
    return grouped_bars(
        labels,
        series,
        out,
        ylabel="recall (partial)",
        title=f"Recall per label on {ds}",
        ylim=(0, 1.05),
        rotate=True,
    )


def probe_pr(res: Mapping[str, Any], ds: str, out: Path) -> Path | None:
    """Precision against recall of each probe over the threshold sweep; the shipped point is a star."""
    swept = {n: r["sweep"] for n, r in res["results"][ds].items() if r.get("sweep")}
    if not swept:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, rows in swept.items():
        pts = [
            (s["recall_partial"], s["precision"], s)
            for s in rows
            if None not in (s["recall_partial"], s["precision"])
        ]
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"{name} probe")
        for r, p, s in pts:
            if s["shipped"]:
                ax.scatter(r, p, marker="*", s=220, color=line.get_color(), zorder=3, label=f"{name} shipped")
    hybrid = res["results"][ds].get("hybrid")
    if hybrid:
        o = hybrid["quality"]["overall"]
        if None not in (o["recall_partial"], o["precision"]):
            ax.scatter(
                o["recall_partial"], o["precision"], marker="D", color="k", label="hybrid (probe ∪ patterns)"
            )
    ax.set_xlabel("recall (partial)")
    ax.set_ylabel("precision")
    ax.set_title(f"Probe precision-recall, thresholds × factor, {ds}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def draw_all(res: Mapping[str, Any], folder: Path) -> list[str]:
    """Every plot of a report into ``folder``; returns their file names."""
    made = [leakage_vs_speed(res, folder / "leakage_vs_speed.png")]
    for ds in res["results"]:
        if res["results"][ds]:
            made.append(recall_per_label(res, ds, folder / f"recall_per_label_{ds}.png"))
            pr = probe_pr(res, ds, folder / f"probe_pr_{ds}.png")
            if pr is not None:
                made.append(pr)
    return [p.name for p in made]
