"""Batch redaction on Ray Data: a small job on a local Ray instance, every record out exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardrail import cli
from guardrail.batch import BatchConfig, BatchError, read_jsonl_rows, redact_file

pytestmark = pytest.mark.slow  # one Ray start per module (~10 s) and two actors loading the tiny model

NAMES = ["Ana Silva", "Bob Stone", "Lena Vogt", "Jun Sato"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (the job reuses an instance it did not start)."""
    import os

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _cfg(bundle: Path, **kw) -> BatchConfig:
    return BatchConfig(bundle=str(bundle), dtype="fp32", workers=2, batch_size=7, progress=False, **kw)


def _write_input(path: Path, n: int) -> list[dict]:
    """``n`` records, some without id, one with an int id, plus bad lines; returns what was written."""
    lines: list[dict | str] = []
    for i in range(n):
        rec: dict = {"text": f"I met {NAMES[i % 4]} thanks, card 4111 1111 1111 1111 ({i})"}
        if i % 5 != 0:
            rec["id"] = f"rec-{i}" if i != 3 else 3000
        lines.append(rec)
    lines.insert(10, "{not json")
    lines.insert(20, {"id": "no-text"})
    with path.open("w", encoding="utf-8") as f:
        for x in lines:
            f.write((x if isinstance(x, str) else json.dumps(x)) + "\n")
        f.write("\n")  # an empty line is no record
    return [x for x in lines if isinstance(x, dict)]


def test_jsonl_job_returns_every_record_once_in_order(local_ray, tiny_bundle_dir, tmp_path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 40)
    result = redact_file(str(src), str(out), _cfg(tiny_bundle_dir))
    got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    expected = read_jsonl_rows(str(src))
    assert len(got) == result.records == expected.num_rows == 42
    assert [g["id"] for g in got] == [json.loads(i) for i in expected["id"].to_pylist()]
    assert len({json.dumps(g["id"]) for g in got}) == 42  # exactly once: no id twice
    assert got[0]["id"] == 1 and got[3]["id"] == 3000 and got[1]["id"] == "rec-1"  # line number / int kept
    bad = [g for g in got if "error" in g]
    assert [(g["line"], g["id"]) for g in bad] == [(11, 11), (21, "no-text")]
    assert all("text" not in g for g in bad) and len(result.bad) == 2
    for g in (g for g in got if "error" not in g):
        assert not any(name in g["text"] for name in NAMES) and "4111" not in g["text"]
        assert "[PERSON]" in g["text"] and "[CREDIT_CARD]" in g["text"]
        assert {s["label"] for s in g["spans"]} >= {"PERSON", "CREDIT_CARD"}


def test_parquet_in_and_out_pseudonyms_scoped_per_record(local_ray, tiny_bundle_dir, tmp_path) -> None:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    texts = [f"send it to {NAMES[i % 4]} see you soon, thanks {NAMES[(i + 1) % 4]}" for i in range(25)]
    texts[7] = None
    pq.write_table(pa.table({"id": list(range(100, 125)), "text": texts}), src)
    cfg = _cfg(tiny_bundle_dir, operator="pseudonym")
    cfg.workers = 1
    redact_file(str(src), str(out), cfg)
    got = pq.read_table(out).to_pylist()
    assert [g["id"] for g in got] == [str(i) for i in range(100, 125)]
    assert got[7]["text"] is None and "null 'text'" in got[7]["error"]
    for g in got[:7] + got[8:]:  # each record is its own pseudonym scope: numbering restarts
        assert g["text"].startswith("send it to <PERSON_1>") and "<PERSON_2>" in g["text"], g["text"]


def test_cli_batch_exit_codes(local_ray, tiny_bundle_dir, tmp_path, capsys) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 12)
    args = ["batch", "--input", str(src), "--output", str(out), "--bundle", str(tiny_bundle_dir)]
    args += ["--workers", "1", "--no-progress"]
    assert cli.main([*args, "--on-error", "fail"]) == cli.EXIT_INPUT and not out.exists()
    assert "line 11: not valid JSON" in capsys.readouterr().err
    assert cli.main([*args, "--operator", "hash"]) == cli.EXIT_INPUT and not out.exists()  # no key
    assert "key" in capsys.readouterr().err
    assert cli.main(args) == cli.EXIT_PARTIAL
    assert len(out.read_text(encoding="utf-8").splitlines()) == 14


def test_input_errors_are_clear(tiny_bundle_dir, tmp_path) -> None:
    with pytest.raises(BatchError, match="unknown format"):
        redact_file(str(tmp_path / "x.csv"), str(tmp_path / "y.jsonl"), _cfg(tiny_bundle_dir))
    with pytest.raises(BatchError, match="cannot read"):
        redact_file(str(tmp_path / "missing.jsonl"), str(tmp_path / "y.jsonl"), _cfg(tiny_bundle_dir))
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n\xff\xfe\n')
    with pytest.raises(BatchError, match="line 2 is not valid UTF-8"):
        redact_file(str(tmp_path / "bad.jsonl"), str(tmp_path / "y.jsonl"), _cfg(tiny_bundle_dir))
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nocol.parquet")
    with pytest.raises(BatchError, match="no 'text' column"):
        redact_file(str(tmp_path / "nocol.parquet"), str(tmp_path / "y.jsonl"), _cfg(tiny_bundle_dir))
    assert not (tmp_path / "y.jsonl").exists()


@pytest.mark.parametrize(
    ("resources", "device", "workers", "plan"),
    [
        ({"CPU": 16.0, "GPU": 2.0}, "auto", None, (2, 1, 1.0, None)),  # one actor per GPU
        ({"CPU": 16.0, "GPU": 2.0}, "cpu", None, (4, 0, 4.0, 4)),  # GPUs ignored when forced to the CPU
        ({"CPU": 2.0}, "auto", None, (1, 0, 2.0, 2)),
        ({"CPU": 2.0}, "auto", 4, (2, 0, 1.0, 1)),  # never more actors than the cluster can hold
    ],
)
def test_actor_plan_follows_the_cluster(monkeypatch, resources, device, workers, plan) -> None:
    import ray

    from guardrail.batch import _plan

    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    assert _plan(BatchConfig(device=device, workers=workers)) == plan
