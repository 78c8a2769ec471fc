"""Batch redaction on Ray Data: shards planned from the input, read, redacted and committed on the workers,
every record out exactly once, reruns resuming. Jobs share one local Ray instance (slow to start)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from guardrail import cli
from guardrail.batch import BatchConfig, BatchError, redact_file
from guardrail.batch.inputs import InputFile, jsonl_cuts, list_inputs, plan_file, read_shard

NAMES = ["Ana Silva", "Bob Stone", "Lena Vogt", "Jun Sato"]
KIB = 1 / 1024


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (the job reuses an instance it did not start)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _cfg(bundle: Path, **kw) -> BatchConfig:
    kw = {"workers": 2, "shard_mb": KIB} | kw  # shards of 1 KiB: a few per test file
    return BatchConfig(bundle=str(bundle), dtype="fp32", batch_size=7, progress=False, **kw)


def _write_input(path: Path, n: int) -> list[tuple[int, object]]:
    """``n`` records, some without id, one with an int id, plus bad lines; returns (line, expected id)."""
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
    return [(k, x.get("id", k) if isinstance(x, dict) else k) for k, x in enumerate(lines, 1)]


def _read_dir(out: Path) -> list[dict]:
    """Every record of a directory output, shards in name order (input order within a file)."""
    rows: list[dict] = []
    for p in sorted(out.glob("part-*")):
        if p.suffix == ".parquet":
            rows += pq.read_table(p).to_pylist()
        else:
            rows += [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]
    return rows


# ---- planning and reading (no Ray) ------------------------------------------------------------------
@pytest.mark.parametrize("shard_bytes", [1, 7, 64, 1000, 10**6])
def test_jsonl_cuts_are_line_aligned_and_numbered(tmp_path, shard_bytes) -> None:
    import random

    rng = random.Random(shard_bytes)
    data = b"".join(b"x" * rng.randrange(0, 90) + b"\n" for _ in range(120)) + b"tail without newline"
    cuts = jsonl_cuts(pa.BufferReader(data), shard_bytes)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(data)
    for (s, e, line), nxt in zip(cuts, [*cuts[1:], (len(data), None, None)], strict=True):
        assert e == nxt[0] and (s == 0 or data[s - 1 : s] == b"\n")  # contiguous, each starts a line
        assert line == data[:s].count(b"\n") + 1
        assert e - s >= min(shard_bytes, len(data) - s) or e == len(data)


def test_shards_are_named_from_the_input_and_read_line_by_line(tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    expected = _write_input(src, 40)
    fs, files = list_inputs(str(src))
    shards = plan_file(fs, files[0], 1024)
    assert len(shards) >= 3 and shards == plan_file(fs, files[0], 1024)  # same input, same names
    assert [s.name for s in shards] == sorted(s.name for s in shards)
    assert all(s.name.startswith("part-in-") for s in shards)
    tables = [t.filter(pa.compute.greater(t["n"], 0)) for t in (read_shard(fs, s) for s in shards)]
    got = [(ln, json.loads(i)) for t in tables for ln, i in zip(t["line"], t["id"].to_pylist(), strict=True)]
    assert [(ln.as_py(), i) for ln, i in got] == expected
    errors = [e for t in tables for e in t["error"].to_pylist() if e]
    assert errors == [f"{src}: line 11: not valid JSON (Expecting property name enclosed in double quotes)",
                      f"{src}: line 21: missing or non-string 'text'"]  # fmt: skip
    assert all(t["n"].to_pylist() == [t.num_rows] * t.num_rows for t in tables)


@pytest.mark.parametrize("suffix, opener", [(".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd")])
def test_compressed_jsonl_is_cut_and_read_like_the_plain_file(tmp_path, suffix, opener) -> None:
    plain = tmp_path / "in.jsonl"
    _write_input(plain, 40)
    packed = tmp_path / f"in.jsonl{suffix}"
    with pa.CompressedOutputStream(str(packed), opener) as out:
        out.write(plain.read_bytes())
    fs, (f,) = list_inputs(str(packed))
    assert f.fmt == "jsonl"
    _, (g,) = list_inputs(str(plain))

    def rows(file: InputFile) -> list[tuple]:
        shards = plan_file(fs, file, 1024)
        assert len(shards) >= 3
        tables = [read_shard(fs, s) for s in shards]
        return [(r["line"], r["id"], r["text"], r["error"] and r["error"].split(": ", 1)[1])
                for t in tables for r in t.to_pylist() if r["n"]]  # fmt: skip

    assert rows(f) == rows(g)  # the same records, lines and errors, shard by shard
    assert [s.name for s in plan_file(fs, f, 1024)] == [s.name for s in plan_file(fs, f, 1024)]


def test_a_corrupt_compressed_file_is_an_error_naming_it(tmp_path) -> None:
    bad = tmp_path / "broken.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 this is no gzip stream")
    fs, (f,) = list_inputs(str(bad))
    (shard,) = plan_file(fs, f, 1024)
    (row,) = read_shard(fs, shard).to_pylist()
    assert row["error"].startswith(f"{bad}: cannot read") and row["text"] is None


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.gz"])
def test_a_file_cut_short_after_planning_is_an_error_not_fewer_records(tmp_path, name) -> None:
    src = tmp_path / "in.jsonl"
    _write_input(src, 40)
    whole = src.read_bytes()
    path = tmp_path / name
    fs = pafs.LocalFileSystem()

    def write(data: bytes) -> None:
        with fs.open_output_stream(str(path), compression="detect") as out:
            out.write(data)

    write(whole)
    _, (f,) = list_inputs(str(path))
    second = plan_file(fs, f, 1024)[1]
    write(whole[: second.start + 10])  # the file loses its tail before the shard is read
    (row,) = read_shard(fs, second).to_pylist()
    assert row["error"] == f"{path}: bytes {second.start + 1}-{second.end}: cannot read (OSError)"


def test_parquet_shards_are_row_ranges(tmp_path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(50)]}), src, row_group_size=8)
    fs = pafs.LocalFileSystem()
    f = InputFile(str(src), str(src), "parquet", src.stat().st_size, None)
    shards = plan_file(fs, f, 64)
    rows = [r for s in shards for r in read_shard(fs, s).to_pylist()]
    assert [r["line"] for r in rows] == list(range(1, 51)) and [r["text"] for r in rows][-1] == "t49"
    assert [json.loads(r["id"]) for r in rows] == list(range(1, 51))  # no id column: the row number


def test_inputs_dirs_globs_and_bad_files(tmp_path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.jsonl", "d/sub/b.jsonl", "d/_SUCCESS", "d/.hidden.jsonl", "d/notes.txt"):
        (tmp_path / name).write_text('{"text": "x"}\n')
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "d" / "nocol.parquet")
    (tmp_path / "d" / "corrupt.parquet").write_bytes(b"PAR1 not really")
    _, files = list_inputs(str(tmp_path / "d"))
    assert [Path(f.path).name for f in files] == ["a.jsonl", "corrupt.parquet", "nocol.parquet", "b.jsonl"]
    _, files = list_inputs(str(tmp_path / "d" / "*.parquet"))
    assert [Path(f.path).name for f in files] == ["corrupt.parquet", "nocol.parquet"]
    fs = pafs.LocalFileSystem()
    assert [s.error for f in files for s in plan_file(fs, f, 1024)] == [
        f"{tmp_path}/d/corrupt.parquet: cannot read as Parquet (ArrowInvalid)",
        f"{tmp_path}/d/nocol.parquet: no 'text' column",
    ]
    for spec, message in [
        ("x.csv", "unknown format"),
        ("x.csv.gz", "unknown format"),
        ("missing.jsonl", "cannot read"),
        ("d/*.csv", "no .jsonl or .parquet files"),
    ]:
        if spec.startswith("x.csv"):
            (tmp_path / spec).write_text("a,b\n")
        with pytest.raises(BatchError, match=message):
            list_inputs(str(tmp_path / spec))


def test_usage_errors_write_nothing(tiny_bundle_dir, tmp_path) -> None:
    """Refused before Ray starts: unknown input format, missing input, a hash without key, a bad input
    under --on-error fail (the whole input is checked first)."""
    out = tmp_path / "y.jsonl"
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(BatchError, match="unknown format"):
        redact_file(str(tmp_path / "x.csv"), str(out), _cfg(tiny_bundle_dir))
    with pytest.raises(BatchError, match="cannot read"):
        redact_file(str(tmp_path / "missing.jsonl"), str(out), _cfg(tiny_bundle_dir))
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"text": "ok"}\n\xff\xfe\n')
    with pytest.raises(BatchError, match="line 2: not valid UTF-8; nothing written"):
        redact_file(str(src), str(out), _cfg(tiny_bundle_dir), on_error="fail")
    assert not out.exists() and not Path(f"{out}.parts").exists()


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

    from guardrail.batch import _plan, job

    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    monkeypatch.setattr(job, "_largest_node_cpus", lambda: int(resources["CPU"]))
    assert _plan(BatchConfig(device=device, workers=workers)) == plan


def test_actor_never_asks_for_more_cores_than_a_node_has(monkeypatch) -> None:
    import ray

    from guardrail.batch import _plan, job

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})  # two nodes of 4
    monkeypatch.setattr(job, "_largest_node_cpus", lambda: 4)
    assert _plan(BatchConfig(workers=1)) == (1, 0, 4.0, 4)


# ---- jobs on Ray (slow: a Ray start per module, ~10 s, and actors loading the tiny model per job) -------
@pytest.mark.slow
def test_jsonl_job_returns_every_record_once_in_order(local_ray, tiny_bundle_dir, tmp_path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    expected = _write_input(src, 40)
    result = redact_file(str(src), str(out), _cfg(tiny_bundle_dir))
    got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(got) == result.records == len(expected) == 42 and result.shards >= 3
    assert [g["id"] for g in got] == [i for _, i in expected]  # input order across shards
    assert got[0]["id"] == 1 and got[3]["id"] == 3000 and got[1]["id"] == "rec-1"  # line number / int kept
    bad = [g for g in got if "error" in g]
    assert [(g["line"], g["id"]) for g in bad] == [(11, 11), (21, "no-text")]
    assert all("text" not in g for g in bad) and result.errors == 2
    assert [ln for ln, _ in result.bad] == [11, 21] and all(str(src) in e for _, e in result.bad)
    for g in (g for g in got if "error" not in g):
        assert not any(name in g["text"] for name in NAMES) and "4111" not in g["text"]
        assert "[PERSON]" in g["text"] and "[CREDIT_CARD]" in g["text"]
        assert {s["label"] for s in g["spans"]} >= {"PERSON", "CREDIT_CARD"}
    assert not Path(f"{out}.parts").exists()  # the staging directory goes once the file is whole
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert (manifest["records"], manifest["errors"], manifest["files"][0]["uri"]) == (42, 2, str(src))
    assert len(manifest["shards"]) == result.shards and manifest["options"]["key_fingerprint"] is None


def test_a_gzipped_jsonl_job_gives_what_the_plain_file_gives(local_ray, tiny_bundle_dir, tmp_path) -> None:
    plain, packed = tmp_path / "in.jsonl", tmp_path / "in.jsonl.gz"
    expected = _write_input(plain, 40)
    with pa.CompressedOutputStream(str(packed), "gzip") as out:
        out.write(plain.read_bytes())
    result = redact_file(str(packed), str(tmp_path / "out"), _cfg(tiny_bundle_dir, format="jsonl"))
    got = _read_dir(tmp_path / "out")
    assert result.shards >= 3 and [g["id"] for g in got] == [i for _, i in expected]
    assert [(g["line"], g["id"]) for g in got if "error" in g] == [(11, 11), (21, "no-text")]
    assert not any(name in g.get("text", "") for g in got for name in NAMES)


@pytest.mark.slow
def test_parquet_in_and_out_pseudonyms_scoped_per_record(local_ray, tiny_bundle_dir, tmp_path) -> None:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    texts = [f"send it to {NAMES[i % 4]} see you soon, thanks {NAMES[(i + 1) % 4]}" for i in range(25)]
    texts[7] = None
    pq.write_table(pa.table({"id": list(range(100, 125)), "text": texts}), src, row_group_size=10)
    redact_file(str(src), str(out), _cfg(tiny_bundle_dir, operator="pseudonym", workers=1))
    got = pq.read_table(out).to_pylist()
    assert [g["id"] for g in got] == [str(i) for i in range(100, 125)]
    assert got[7]["text"] is None and "row 8: null 'text'" in got[7]["error"]
    for g in got[:7] + got[8:]:  # each record is its own pseudonym scope: numbering restarts
        assert g["text"].startswith("send it to <PERSON_1>") and "<PERSON_2>" in g["text"], g["text"]


@pytest.mark.slow
def test_directory_in_directory_out_bad_files_reported(
    local_ray, tiny_bundle_dir, tmp_path, monkeypatch
) -> None:
    """Many files (JSONL and Parquet) in, a directory of shards out; a corrupt Parquet file, one without a
    'text' column and an invalid UTF-8 line are error records naming file and row; the rest is done.
    Planned on the workers (as a large input is), the output inside the input directory (not read back)."""
    from guardrail.batch import job

    monkeypatch.setattr(job, "LOCAL_BYTES", 0)
    d = tmp_path / "lake"
    out = d / "redacted"
    (d / "2024").mkdir(parents=True)
    _write_input(d / "a.jsonl", 12)
    (d / "2024" / "b.jsonl").write_bytes(b'{"id": "b1", "text": "I met Ana Silva"}\n\xff\xfe\n')
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["thanks Jun Sato", "hello"]}), d / "c.parquet")
    pq.write_table(pa.table({"body": ["Ana Silva"]}), d / "nocol.parquet")
    (d / "corrupt.parquet").write_bytes(b"PAR1 not a parquet file")
    (d / "_SUCCESS").write_text("")
    result = redact_file(str(d), str(out), _cfg(tiny_bundle_dir, format="jsonl"))
    rows = _read_dir(out)
    assert len(rows) == result.records == 14 + 2 + 2 + 1 + 1
    errors = sorted(r["error"] for r in rows if "error" in r)
    assert errors == sorted(
        [
            f"{d}/a.jsonl: line 11: not valid JSON (Expecting property name enclosed in double quotes)",
            f"{d}/a.jsonl: line 14: missing or non-string 'text'",  # appended: 12 records
            f"{d}/2024/b.jsonl: line 2: not valid UTF-8",
            f"{d}/corrupt.parquet: cannot read as Parquet (ArrowInvalid)",
            f"{d}/nocol.parquet: no 'text' column",
        ]
    )
    assert result.errors == 5 and "Ana Silva" not in json.dumps(rows)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert [f["uri"].removeprefix(f"{d}/") for f in manifest["files"]] == [
        "2024/b.jsonl", "a.jsonl", "c.parquet", "corrupt.parquet", "nocol.parquet"
    ]  # fmt: skip
    assert sum(f["rows"] for f in manifest["files"]) == 20 and manifest["format"] == "jsonl"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == [
        "_job.json", "_manifest.json", "_shards"
    ]  # fmt: skip
    assert len(list((out / "_shards").iterdir())) == len(manifest["shards"]) == result.shards
    again = redact_file(str(d), str(out), _cfg(tiny_bundle_dir, format="jsonl"))
    assert (again.resumed, again.records) == (result.shards, result.records)  # its own shards: not input


@pytest.mark.slow
def test_rerun_skips_finished_shards_and_gives_the_same_output(local_ray, tiny_bundle_dir, tmp_path) -> None:
    """A crash leaves whole shards with markers (and maybe temporaries): a rerun redoes only the rest."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    _write_input(src, 40)
    cfg = _cfg(tiny_bundle_dir)
    first = redact_file(str(src), str(out), cfg)
    before = {p.name: p.read_bytes() for p in out.glob("part-*")}
    assert first.resumed == 0 and len(before) == first.shards >= 3
    lost = sorted(before)[1:3]  # as if the job died before these two were committed
    for name in lost:
        (out / name).unlink()
        (out / "_shards" / name.replace(".parquet", ".json")).unlink()
    (out / f".{lost[0]}.0123456789ab.tmp").write_bytes(b"half a shard")
    second = redact_file(str(src), str(out), cfg)
    assert second.resumed == first.shards - 2 and second.records == first.records
    assert {p.name: p.read_bytes() for p in out.glob("part-*")} == before
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["resumed_shards"] == first.shards - 2
    with pytest.raises(
        BatchError, match=r"another job \(different options\)"
    ):  # not this job's output: refused
        redact_file(str(src), str(out), _cfg(tiny_bundle_dir, operator="mask"))


@pytest.mark.slow
def test_killed_worker_is_retried_and_every_record_lands_once(local_ray, tiny_bundle_dir, tmp_path) -> None:
    from guardrail.batch import job
    from guardrail.batch.actor import RedactActor

    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    expected = _write_input(src, 30)
    marker = tmp_path / "crashed"

    class Crashing(RedactActor):  # a local class: Ray pickles it by value (workers cannot import tests/)
        def __call__(self, shard):
            if not marker.exists():
                marker.write_text("crashed")
                os._exit(1)  # the worker dies mid-job: no cleanup, no exception
            return super().__call__(shard)

    result = job.redact_file(str(src), str(out), _cfg(tiny_bundle_dir, workers=1), actor=Crashing)
    assert marker.exists()  # it did die
    rows = _read_dir(out)
    assert [r["id"] for r in rows] == [str(i) for _, i in expected]  # each once, in order
    assert len(rows) == result.records == len(expected)


@pytest.mark.slow
def test_cli_batch_exit_codes(local_ray, tiny_bundle_dir, tmp_path, capsys, monkeypatch) -> None:
    from guardrail.batch import job

    monkeypatch.setattr(job, "LOCAL_BYTES", 0)  # the --on-error fail check on the workers
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, 12)
    args = ["batch", "--input", str(src), "--output", str(out), "--bundle", str(tiny_bundle_dir)]
    args += ["--workers", "1", "--no-progress", "--shard-mb", "0.001"]
    assert cli.main([*args, "--on-error", "fail"]) == cli.EXIT_INPUT and not out.exists()
    assert "line 11: not valid JSON" in capsys.readouterr().err
    assert cli.main([*args, "--operator", "hash"]) == cli.EXIT_INPUT and not out.exists()  # no key
    assert "key" in capsys.readouterr().err
    assert cli.main(args) == cli.EXIT_PARTIAL
    assert len(out.read_text(encoding="utf-8").splitlines()) == 14
    assert "2 of 14 records were bad" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "guardrail.cli", *args]


@pytest.mark.slow
def test_sigterm_stops_the_job_and_a_rerun_resumes_it(local_ray, tiny_bundle_dir, tmp_path) -> None:
    """SIGTERM to `guardrail batch` mid-job: exit 130, whole shards kept; the same command again finishes
    the rest, and the output is byte for byte that of an uninterrupted run."""
    import signal
    import subprocess
    import time

    import ray

    src, out, ref = tmp_path / "in.jsonl", tmp_path / "out", tmp_path / "ref"
    _write_input(src, 600)  # ~100 shards of 1 KiB: long enough to stop half-way
    cfg = _cfg(tiny_bundle_dir, workers=1)
    args = ["batch", "--input", str(src), "--output", str(out), "--bundle", str(tiny_bundle_dir), "--dtype"]
    args += ["fp32", "--workers", "1", "--shard-mb", str(KIB), "--no-progress", "--batch-size", "7"]
    args += ["--address", ray.get_runtime_context().gcs_address]  # the test's Ray: no second start
    proc = subprocess.Popen(_cli(*args), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and len(list(out.glob("_shards/*.json"))) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run it again with the same --output to resume" in err, err[-2000:]
    done = len(list(out.glob("_shards/*.json")))
    assert not (out / "_manifest.json").exists() and done >= 3
    second = redact_file(str(src), str(out), cfg)
    assert second.resumed >= done and second.resumed < second.shards and second.errors == 2
    redact_file(str(src), str(ref), cfg)
    shards = sorted(p.name for p in ref.glob("part-*"))
    assert sorted(p.name for p in out.glob("part-*")) == shards
    assert all((out / n).read_bytes() == (ref / n).read_bytes() for n in shards)
    assert not list(out.glob(".*.tmp"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_node_cluster(tiny_bundle_dir, tmp_path) -> None:
    """A Ray head and a second node on this machine (one CPU each, `ray start`), `guardrail batch
    --address` against them: two actors, one per node, and the manifest shows both nodes ran shards."""
    import secrets
    import shutil
    import subprocess
    import sys
    import tempfile

    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="gr-ray-", dir="/tmp")  # its own session dir (and a short socket path)
    common = ["--num-cpus=1", "--object-store-memory=200000000", "--node-ip-address=127.0.0.1", "--block"]
    common += ["--disable-usage-stats", f"--temp-dir={temp}"]
    # Ray 2.60 clusters check a token: every node and the driver share this one
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    nodes = []
    try:
        head = [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false"]
        head += [f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}"]
        nodes.append(
            subprocess.Popen([*head, *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
        _wait_for_nodes(address, 1, env)
        worker = [ray_bin, "start", f"--address={address}", f"--dashboard-agent-listen-port={_free_port()}"]
        nodes.append(
            subprocess.Popen([*worker, *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
        _wait_for_nodes(address, 2, env)
        src, out = tmp_path / "in.jsonl", tmp_path / "out"
        _write_input(src, 300)  # ~40 shards
        args = [
            "batch",
            "--input",
            str(src),
            "--output",
            str(out),
            "--bundle",
            str(tiny_bundle_dir),
            "--dtype",
        ]
        args += ["fp32", "--workers", "2", "--shard-mb", str(KIB), "--no-progress", "--address", address]
        run = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 3, run.stderr[-2000:]  # two bad lines
        manifest = json.loads((out / "_manifest.json").read_text())
        ran = {s["node"] for s in manifest["shards"]}
        assert len(ran) == 2, ran  # both nodes redacted shards
        assert manifest["records"] == 302 and len(_read_dir(out)) == 302
    finally:
        for p in reversed(nodes):
            _stop_tree(p)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_tree(proc) -> None:
    """Stop a `ray start --block` and every process it started (theirs die with it; any left over are
    killed by pid: only this test's own processes)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except Exception:
        proc.kill()
    _, alive = psutil.wait_procs(tree, timeout=30)
    for p in alive:
        p.kill()


def _wait_for_nodes(address: str, n: int, env: dict, timeout: float = 120) -> None:
    import subprocess
    import sys
    import time

    probe = f"import ray; ray.init(address='{address}', log_to_driver=False); "
    probe += "print(sum(1 for x in ray.nodes() if x['Alive']))"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
        )
        if got.returncode == 0 and got.stdout.strip().endswith(str(n)):
            return
        time.sleep(2)
    raise AssertionError(f"the cluster at {address} did not reach {n} nodes")
