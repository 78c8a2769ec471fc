"""The benchmark harness (guardrail/bench/): judge answer parsing, scoring policy, sampling, data errors,
memory sampling, and a whole `guardrail bench` run on the tiny model with every method."""

from __future__ import annotations

import json
import mmap
import time
from pathlib import Path

import numpy as np
import pytest

from guardrail.bench import BenchError, datasets, report
from guardrail.bench.datasets import Dataset
from guardrail.bench.judge import build_prompt, parse_answer, pieces
from guardrail.bench.runner import PeakRSS, machine_slug, quality, sample
from guardrail.cli import main
from guardrail.data import Record, write_jsonl
from guardrail.spans import Span

# --- judge answers -----------------------------------------------------------------------------------


def test_parse_answer_finds_every_occurrence_and_counts_what_it_cannot_use() -> None:
    text = "Ana met Bob; Ana wrote to ana@x.io"
    answer = "PERSON: Ana\nEMAIL: ana@x.io\nPERSON: Carla\nNAME: Bob\nSSN: 12\nNONE\n\nEND\nPERSON: wrote"
    p = parse_answer(answer, text, ["PERSON", "EMAIL"], offset=100)
    got = sorted((s.start - 100, s.end - 100, s.label) for s in p.spans)
    assert got == [(0, 3, "PERSON"), (8, 11, "PERSON"), (13, 16, "PERSON"), (26, 34, "EMAIL")]  # NAME: alias
    assert (p.lines, p.unknown_label, p.not_in_text) == (5, 1, 1)  # "wrote" after END is never read
    assert all(text[s.start - 100 : s.end - 100] in ("Ana", "Bob", "ana@x.io") for s in p.spans)


def test_parse_answer_of_nothing() -> None:
    p = parse_answer("NONE\nEND", "plain text", ["PERSON"])
    assert p.spans == [] and p.lines == 0
    # a value with regex metacharacters is matched literally
    q = parse_answer("PHONE: +1 (415) 555", "call +1 (415) 555 now", ["PHONE"])
    assert [(s.start, s.end) for s in q.spans] == [(5, 17)]


def test_prompt_asks_only_for_the_given_labels() -> None:
    prompt = build_prompt("Hi Ana", ["PERSON", "PHONE"])
    assert prompt.endswith("Text: Hi Ana\nPII:\n")
    assert "EMAIL:" not in prompt and "PERSON: Maria Lopez" in prompt and "NONE" in prompt


@pytest.mark.parametrize("text", ["", "short", "word " * 400, "x" * 1500])
def test_pieces_cover_the_text_in_order(text: str) -> None:
    parts = pieces(text, size=600)
    assert "".join(p for _, p in parts) == text
    assert all(len(p) <= 600 for _, p in parts)
    assert all(text[o : o + len(p)] == p for o, p in parts)


# --- scoring policy, sampling, data ------------------------------------------------------------------


def test_predictions_of_labels_a_set_never_annotates_are_set_apart() -> None:
    #       0123456789012345678901234
    text = "Ana Silva at ana@x.io now"
    ds = Dataset("s", [Record("a", text, [Span(0, 9, "PERSON")])], "hand-made")
    preds = {"a": [Span(0, 3, "PERSON"), Span(13, 21, "EMAIL"), Span(22, 25, "PERSON")]}
    r = quality(ds, ds.records, preds, ["PERSON", "EMAIL"])
    c = r["overall"]["counts"]
    # "Ana" covers 3 of 8 gold chars: not found (partial needs 4), leakage 5/8; "now" is a false positive
    assert (c["found_partial"], c["leaked_chars"], c["tp"], c["fp"], c["ignored_unlabeled"]) == (
        0,
        5,
        1,
        1,
        1,
    )
    assert r["overall"]["precision"] == 0.5 and r["overall"]["leakage"] == 5 / 8
    email = r["per_label"]["EMAIL"]
    assert email["precision"] is None and email["counts"]["ignored_unlabeled"] == 1
    assert r["gold_annotates"] == ["PERSON"]


def test_sample_is_seeded_and_in_order() -> None:
    recs = [Record(str(i), "t", []) for i in range(50)]
    a, b, c = sample(recs, 10, 0, "x"), sample(recs, 10, 0, "x"), sample(recs, 10, 1, "x")
    assert [r.id for r in a] == [r.id for r in b] != [r.id for r in c]
    assert [int(r.id) for r in a] == sorted(int(r.id) for r in a)
    assert sample(recs, None, 0, "x") == recs and sample(recs, 99, 0, "x") == recs


def test_bad_data_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no data file"):
        datasets.load_file(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "a", "spans": []}\nnot json\n')
    with pytest.raises(BenchError, match=r"bad\.jsonl:2"):
        datasets.load_file(bad)
    dup = tmp_path / "dup.jsonl"
    write_jsonl(dup, [Record("a", "x"), Record("a", "y")])
    with pytest.raises(BenchError, match="not unique"):
        datasets.load_file(dup)
    with pytest.raises(BenchError, match="GUARDRAIL_DEV_DATA"):
        datasets.dev_sets(folder=tmp_path)


def test_synthetic_set_is_fresh_and_deterministic() -> None:
    from guardrail import synth

    a, b = datasets.synthetic(5, seed=0), datasets.synthetic(5, seed=0)
    assert [r.text for r in a.records] == [r.text for r in b.records]
    trained_on = {r.text for r in synth.generate(5, seed=0, family="train")}
    assert not trained_on & {r.text for r in a.records}
    assert a.annotates and a.name.startswith("synth_")


def test_machine_slug() -> None:
    env = {"cpu": "AMD EPYC 7B13 64-Core Processor", "cpus_usable": 2, "gpu": None}
    assert machine_slug(env) == "amd-epyc-7b13-2c"
    assert machine_slug({"gpu": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3"


def test_peak_rss_sees_an_allocation() -> None:
    # a fresh anonymous mapping, every page touched: new resident memory whatever the allocator kept
    # from earlier tests (a plain numpy array may reuse freed, still-resident heap pages)
    size = 64 * 2**20
    with PeakRSS(every=0.001) as mem:
        mm = mmap.mmap(-1, size)
        pages = np.frombuffer(mm, dtype=np.uint8)
        pages[:] = 1
        time.sleep(0.05)  # lives for many sampling periods (the high-water mark may predate the test)
        del pages
        mm.close()
    assert mem.delta_mb >= 48


# --- a whole run on the tiny model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [
        ("please call Ana Silva thanks", [(12, 21, "PERSON")]),
        ("mail bob@example.com about Bob Stone", [(5, 20, "EMAIL"), (27, 36, "PERSON")]),
        ("nothing to see here", []),
        ("card 4111 1111 1111 1111 for Lena Vogt", [(5, 24, "CREDIT_CARD"), (29, 38, "PERSON")]),
        ("I met Jun Sato in Paris", [(6, 14, "PERSON"), (18, 23, "LOCATION")]),
    ]
    recs = [Record(f"r{i}", t, [Span(a, b, lab) for a, b, lab in s]) for i, (t, s) in enumerate(texts)]
    path = tmp_path_factory.mktemp("data") / "small.jsonl"
    write_jsonl(path, recs)
    return path


def test_bench_runs_every_method_and_writes_the_report(
    tiny_bundle_dir: Path, small_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    args = ["bench", "--bundle", str(tiny_bundle_dir), "--data", str(small_set), "--out", str(out)]
    args += ["--methods", "regex,presidio,raw,sae,hybrid,judge", "--spacy-model", "no_such_model"]
    args += ["--latency-n", "2", "--judge-limit", "3", "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["methods"]
    assert m["presidio"]["status"] == "skipped" and "no_such_model" in m["presidio"]["reason"]
    assert m["sae"]["status"] == "skipped" and "no 'sae' probe" in m["sae"]["reason"]
    assert all(m[x]["status"] == "ok" for x in ("regex", "raw", "hybrid", "judge"))
    r = res["results"]["small"]
    assert set(r) == {"regex", "raw", "hybrid", "judge"}
    assert r["judge"]["cost"]["records"] == 3 and r["judge"]["sampled"]
    assert r["raw"]["cost"]["records"] == 5 and r["raw"]["cost"]["latency_n"] == 2
    # regex finds the email and the card exactly, and nothing else
    reg = r["regex"]["quality"]["per_label"]
    assert reg["EMAIL"]["recall_exact"] == 1 and reg["CREDIT_CARD"]["recall_exact"] == 1
    assert reg["PERSON"]["recall_partial"] == 0
    assert r["raw"]["cost"]["tokens"] == res["datasets"]["small"]["tokens"] > 0
    sweep = r["raw"]["sweep"]
    assert [s["factor"] for s in sweep if s["shipped"]] == [1.0]
    recalls = [s["recall_partial"] for s in sweep]
    assert recalls == sorted(recalls, reverse=True)  # higher thresholds never find more
    assert "cuda" not in json.dumps(res["methods"]) or res["environment"]["gpu"]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["leakage_vs_speed.png", "probe_pr_small.png", "recall_per_label_small.png"]
    md = (out / "report.md").read_text()
    assert "## small" in md and "judge (n=3)" in md and "**1** (shipped)" in md and "skipped" in md
    # per language: the sets of one language pooled; the judge read a sample, so it has no such row
    assert set(m["regex"]["languages"]) == {"en"} and "languages" not in m["judge"]
    assert m["regex"]["languages"]["en"]["leakage"] == pytest.approx(
        r["regex"]["quality"]["overall"]["leakage"]
    )
    assert "## Per language" in md

    # the README block is generated from results.json and replaced in place
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n")
    report.update_readme(res, "benchmarks/results/x", readme)
    report.update_readme(res, "benchmarks/results/x", readme)
    text = readme.read_text()
    assert text.count(report.BEGIN) == 1 and text.startswith("# x\n\nbefore\n")
    assert "| hybrid |" in text and "| sae (skipped) |" in text


def test_bench_bad_options_exit_2(
    small_set: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["bench", "--methods", "regex,nope", "--data", str(small_set)]) == 2
    assert "unknown methods ['nope']" in capsys.readouterr().err
    assert main(["bench", "--data", str(tmp_path / "none.jsonl"), "--methods", "regex"]) == 2
    assert "no data file" in capsys.readouterr().err
    assert main(["bench", "--data", str(small_set), "--limit", "0"]) == 2
    assert main(["bench", "--data", str(small_set), "--labels", "NAME"]) == 2


def test_report_rerenders_from_the_latest_results(tmp_path: Path) -> None:
    for name, date in (("2026-01-02-a", "2026-01-02"), ("2026-03-04-b", "2026-03-04")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"date": date}))
    assert report.latest(tmp_path).name == "2026-03-04-b"
    with pytest.raises(BenchError):
        report.latest(tmp_path / "nothing")
