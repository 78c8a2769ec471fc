"""benchmarks/cost_rule.py: the summary against the reference, the table, the plot, bad arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import cost_rule
from cost_rule import FLOOR, main, plot, summarise, table

REF = "gemma-3-270m @ abc1234"


def _res() -> dict:
    samples = {
        REF: [20_000.0, 18_000.0, 22_000.0],
        "cand-a": [17_000.0, 15_000.0, 16_500.0],
        "cand-b": [9_000.0],
    }
    runs = {
        name: [{"chars_per_s": v, "runtime": "torch", "dtype": "bfloat16"} for v in values]
        for name, values in samples.items()
    }
    return {
        "reference": REF,
        "records": 600,
        "rounds": 3,
        "levels": {"native": {"summary": summarise(samples, REF), "runs": runs}},
    }


def test_summary_is_medians_and_their_ratio_to_the_reference() -> None:
    s = _res()["levels"]["native"]["summary"]
    assert s[REF]["median"] == 20_000.0 and s[REF]["ratio"] == 1.0 and s[REF]["keeps"]
    assert s["cand-a"]["median"] == 16_500.0
    assert s["cand-a"]["ratio"] == pytest.approx(0.825) and s["cand-a"]["keeps"]
    assert s["cand-b"]["ratio"] == pytest.approx(0.45) and not s["cand-b"]["keeps"]
    assert s["cand-a"]["best"] == 17_000.0 and s["cand-a"]["best_ratio"] == pytest.approx(17 / 22)


def test_floor_is_inclusive() -> None:
    s = summarise({"r": [10.0], "c": [10.0 * FLOOR]}, "r")
    assert s["c"]["keeps"]


def test_table_marks_the_reference_and_each_verdict() -> None:
    md = table(_res())
    rows = [line for line in md.splitlines() if line.startswith("| native")]
    assert len(rows) == 3
    assert rows[0].endswith("| 1.00x | 1.00x | reference |")
    assert "| 0.82x | 0.77x | yes |" in rows[1] or "| 0.83x | 0.77x | yes |" in rows[1]
    assert rows[2].endswith("| 0.45x | 0.41x | no |")
    assert "20,000 | 20,000, 18,000, 22,000 |" in rows[0]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = plot(_res(), tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args", [["--rounds", "0"], ["--records", "0"]])
def test_bad_counts_exit_with_a_reason(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_a_ref_git_cannot_check_out_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cost_rule, "ROOT", tmp_path)  # not a git repository: the checkout fails
    assert main(["--ref", "no-such-ref", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cost_rule: ")
    assert not (tmp_path / "out").exists()


def test_the_report_is_json_markdown_and_png(tmp_path: Path) -> None:
    import json

    from guardrail.bench.runner import write_report

    res = _res()
    res["table"] = table(res)
    write_report(tmp_path / "out", "cost_rule", res, plot)
    assert json.loads((tmp_path / "out" / "cost_rule.json").read_text())["reference"] == REF
    assert (tmp_path / "out" / "cost_rule.md").read_text() == res["table"] + "\n"
    assert (tmp_path / "out" / "cost_rule.png").read_bytes()[:4] == b"\x89PNG"
