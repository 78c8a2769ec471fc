"""benchmarks/batch.py's report: each section says the machine it was measured on."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from batch import report


def _machine(cpu: str) -> dict:
    return {"cpu": cpu, "cores": 2, "ram_gib": 24}


def test_a_folder_measured_on_two_machines_names_each_per_section(tmp_path) -> None:
    row = {"tool": "batch", "mib": 1.0, "records": 9, "wall_s": 1.0, "peak_pss_mib": 1.0, "peak_rss_mib": 1.0}
    tool = {"best_wall_s": 10.0, "records_s": 1.0, "chars_s": 10.0, "start_s": 2.0}
    results = {
        # a memory section of before the sections were stamped: the file's date and machine are its own
        "date": "2026-12-06",
        "machine": _machine("Intel Xeon"),
        "memory": {"base_mib": 1.0, "shard_mb": 0.25, "runs": [row | {"max_processes": 3, "records_s": 9.0}]},
        "throughput": {
            "1536KiB": {
                "rounds": 1,
                "bundle": "b",
                "records": 9,
                "chars": 100,
                "summary": {"detect": tool, "batch": tool, "ray_overhead_pct": 0.0},
                "date": "2026-12-07",
                "machine": _machine("AMD EPYC"),
            }
        },
    }
    report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    memory, throughput = text.split("## Throughput")
    assert "Measured 2026-12-06 on Intel Xeon" in memory and "AMD EPYC" not in memory
    assert "Measured 2026-12-07 on AMD EPYC" in throughput and "Intel" not in throughput
