"""CLI: exit codes, one-line errors, stdin/stdout, JSONL in and out."""

from __future__ import annotations

import io
import json
import sys

import pytest

from guardrail import cli
from tests.test_pipeline import tiny_guard  # noqa: F401  (fixture)


@pytest.fixture()
def bundle_dir(tiny_guard):  # noqa: F811
    return str(tiny_guard.bundle.folder)


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("redact", "detect", "train"):
        assert cmd in out


def test_redact_stdin_to_stdout(monkeypatch, capsys, bundle_dir) -> None:
    _stdin(monkeypatch, b"I met Jun Sato thanks")
    assert cli.main(["redact", "--bundle", bundle_dir]) == 0
    out = capsys.readouterr().out
    assert out == "I met [PERSON] thanks"


def test_redact_invalid_utf8_is_exit_2_one_line(monkeypatch, capsys, bundle_dir) -> None:
    _stdin(monkeypatch, b"Jun Sato \xff\xfe")
    assert cli.main(["redact", "--bundle", bundle_dir]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # fail closed: nothing written
    assert "not valid UTF-8" in cap.err and cap.err.count("\n") == 1 and "Sato" not in cap.err


def test_redact_hash_without_key_refused(monkeypatch, capsys, bundle_dir) -> None:
    monkeypatch.delenv("GUARDRAIL_HASH_KEY", raising=False)
    _stdin(monkeypatch, b"Jun Sato")
    assert cli.main(["redact", "--operator", "hash", "--bundle", bundle_dir]) == 2
    assert "needs a key" in capsys.readouterr().err


def test_unknown_bundle_is_exit_1(capsys, tmp_path) -> None:
    assert cli.main(["redact", "--bundle", str(tmp_path / "nope"), str(tmp_path / "x")]) in (1, 2)
    assert capsys.readouterr().err.startswith("guardrail: error:")


def test_unknown_bundle_exit_code(monkeypatch, capsys, tmp_path) -> None:
    _stdin(monkeypatch, b"hello")
    assert cli.main(["redact", "--bundle", str(tmp_path / "nope")]) == 1
    assert "no guard bundle" in capsys.readouterr().err


def test_missing_file_is_exit_2(capsys, bundle_dir, tmp_path) -> None:
    assert cli.main(["redact", "--bundle", bundle_dir, str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_detect_jsonl_round_trip(tmp_path, bundle_dir) -> None:
    src = tmp_path / "in.jsonl"
    texts = ["I met Jun Sato thanks", "", "😀 send it to Ana Silva"]
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    assert cli.main(["detect", "--input", str(src), "--output", str(out), "--bundle", bundle_dir]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert rows[1]["spans"] == []
    # code-point offsets survive the emoji (a byte or UTF-16 offset would be off by 1-3)
    assert "Ana Silva" in {texts[2][s["start"] : s["end"]] for s in rows[2]["spans"]}
    assert all(set(s) == {"start", "end", "label", "score"} for s in rows[2]["spans"])


def test_detect_malformed_line_fails_closed_or_reports(tmp_path, capsys, bundle_dir) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "I met Jun Sato"}\n{"id": "b", "text": \n{"id": "c"}\n')
    out = tmp_path / "out.jsonl"
    args = ["detect", "--input", str(src), "--output", str(out), "--bundle", bundle_dir]
    assert cli.main(args) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "line 2" in err and "1 more" in err
    assert cli.main([*args, "--on-error", "report"]) == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["a", None, "c"]
    assert "error" in rows[1] and "error" in rows[2] and rows[0]["spans"]


class _Writes(io.StringIO):
    """A stdout that records each write, to see output arrive piece by piece."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def test_redact_streams_each_piece_and_keeps_one_pseudonym_scope_per_file(
    monkeypatch, bundle_dir, tmp_path
) -> None:
    text = "".join(f"line {i}: I met Jun Sato thanks\r\n" for i in range(40)) + "end Ana Silva"
    (tmp_path / "a.txt").write_text(text, newline="")
    (tmp_path / "b.txt").write_text("send it to Ana Silva", newline="")
    monkeypatch.setattr(cli, "CHUNK_CHARS", 200)
    monkeypatch.setattr(sys, "stdout", out := _Writes())
    args = [
        "redact",
        "--bundle",
        bundle_dir,
        "--operator",
        "pseudonym",
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
    ]
    assert cli.main(args) == 0
    assert len(out.writes) > 5  # written as it is redacted, not at the end
    got = out.getvalue()
    assert got.count("\r\n") == 40 and "Sato" not in got and "Silva" not in got  # line ends kept
    assert got.count("<PERSON_1>") == 41 and got.endswith("<PERSON_2>send it to <PERSON_1>")  # scope: a file


def test_text_chunks_are_the_pieces_chunks_cuts(tmp_path) -> None:
    text = "".join(f"{'x' * (i % 37)}\n" for i in range(300)) + "y" * 250
    (tmp_path / "t.txt").write_text(text, newline="")

    def opener():
        return (tmp_path / "t.txt").open("rb")

    for size in (1, 10, 100, 10_000):
        assert list(cli._text_chunks(opener, size)) == cli._chunks(text, size)


def test_redact_bad_second_file_writes_nothing(monkeypatch, capsys, bundle_dir, tmp_path) -> None:
    (tmp_path / "a.txt").write_text("I met Jun Sato")
    (tmp_path / "b.txt").write_bytes("é".encode() * 3000 + b"\xff")
    assert cli.main(["redact", "--bundle", bundle_dir, str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "not valid UTF-8 (bad byte at offset 6000)" in cap.err


def test_detect_streams_in_input_order(monkeypatch, bundle_dir, tmp_path) -> None:
    lines = [json.dumps({"id": i, "text": f"I met Jun Sato ({i})"}) for i in range(150)]
    lines[70] = '{"id": "x", "text": 5}'
    _stdin(monkeypatch, ("\n".join(lines) + "\n").encode())
    from guardrail.pipeline import Guardrail

    calls: list[int] = []
    detect = Guardrail.detect
    monkeypatch.setattr(Guardrail, "detect", lambda self, *a, **k: calls.append(1) or detect(self, *a, **k))
    monkeypatch.setattr(sys, "stdout", out := _Writes())
    out.write = lambda s: out.writes.append(len(calls)) or io.StringIO.write(out, s)  # calls made so far
    args = ["detect", "--input", "-", "--output", "-", "--bundle", bundle_dir, "--on-error", "report"]
    assert cli.main(args) == 3
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["id"] for r in rows] == [*range(70), "x", *range(71, 150)]
    assert rows[70]["line"] == 71 and "error" in rows[70] and all(r["spans"] for r in rows[71:])
    assert len(calls) == 3 and out.writes[0] == 1  # the first part is out before the second is read


def test_detect_invalid_utf8_writes_nothing(capsys, bundle_dir, tmp_path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b'{"id": 1, "text": "I met Jun Sato"}\n{"id": 2, "text": "\xff"}\n')
    args = [
        "detect",
        "--input",
        str(src),
        "--output",
        str(out),
        "--bundle",
        bundle_dir,
        "--on-error",
        "report",
    ]
    assert cli.main(args) == 2 and not out.exists()
    assert "line 2 is not valid UTF-8" in capsys.readouterr().err
    assert not list(tmp_path.glob(".guardrail-*"))  # no temporary left behind


def test_chunks_concatenate_back() -> None:
    text = ("line of text\n" * 50) + "x" * 300
    parts = cli._chunks(text, size=100)
    assert "".join(parts) == text and all(len(p) <= 100 for p in parts)


def test_explain_without_an_sae_probe_is_exit_2(capsys, bundle_dir) -> None:
    assert cli.main(["explain", "--bundle", bundle_dir, "I met Jun Sato"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SAE-feature probe" in err[0] and "Jun" not in err[0]


def test_train_sae_probe_without_an_sae_is_exit_2(capsys, bundle_dir) -> None:
    assert cli.main(["train-sae-probe", "--bundle", bundle_dir, "--n-train", "5", "--n-calib", "5"]) == 2
    assert "no SAE" in capsys.readouterr().err


def test_redact_with_a_model_override(
    monkeypatch, capsys, bundle_dir, tiny_model_dir, wide_model_dir
) -> None:
    _stdin(monkeypatch, b"I met Jun Sato thanks")
    args = ["redact", "--bundle", bundle_dir, "--no-patterns", "--model", str(tiny_model_dir)]
    assert cli.main(args) == 0
    assert capsys.readouterr().out == "I met [PERSON] thanks"
    _stdin(monkeypatch, b"I met Jun Sato thanks")
    assert cli.main(["redact", "--bundle", bundle_dir, "--model", str(wide_model_dir)]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.count("\n") == 1 and "hidden size 48" in cap.err


def test_batch_passes_model_and_patterns(monkeypatch, tmp_path) -> None:
    pytest.importorskip("pyarrow")
    import guardrail.batch as batch

    seen = []

    def fake(input_path, output_path, cfg, on_error="report"):
        seen.append(cfg)
        return batch.BatchResult(records=0)

    monkeypatch.setattr(batch, "redact_file", fake)
    args = ["batch", "--input", "a.jsonl", "--output", str(tmp_path / "b.jsonl"), "--no-progress"]
    assert cli.main([*args, "--model", "/models/m", "--no-patterns"]) == 0
    assert cli.main(args) == 0
    assert [(c.model, c.patterns) for c in seen] == [("/models/m", False), (None, True)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--context", "1,2"], "--context must hold 0"),
        (["--context", "a,b"], "comma-separated integers"),
        (["--real-mix", "{oops"], "--real-mix is not JSON"),
        (["--real-mix", '{"no_such_corpus": 1}'], "unknown corpora: no_such_corpus"),
        (["--n-real", "-1"], "must be >= 0"),
        (["--repeat", "LOC=2"], "expected LABEL=N with a canonical label"),
        (["--repeat", "LOCATION=0"], "expected LABEL=N with a canonical label"),
    ],
)
def test_train_data_options_fail_before_any_work(tmp_path, capsys, args: list[str], message: str) -> None:
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "tweets.jsonl").write_text(
        json.dumps({"id": "a", "text": "hi Ana", "spans": [{"start": 3, "end": 6, "label": "PERSON"}]}) + "\n"
    )
    out = tmp_path / "never-written"
    argv = ["train", "--out", str(out), "--real-dir", str(corpora), *args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_train_without_corpora_is_a_clear_error(tmp_path, capsys) -> None:
    assert cli.main(["train", "--out", str(tmp_path / "b"), "--real-dir", str(tmp_path / "none")]) == 2
    assert "no training corpora" in capsys.readouterr().err


def _cpu_as(monkeypatch, flags: set[str], capability: str) -> None:
    from guardrail import cpu

    caps = cpu.caps_from(flags, capability)
    monkeypatch.setattr(cpu, "probe", lambda: caps)


def test_version_prints_and_exits_zero(capsys) -> None:
    import guardrail

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"guardrail {guardrail.__version__} (")


def test_doctor_prints_the_pick_per_shipped_bundle(monkeypatch, capsys) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _cpu_as(monkeypatch, {"avx2", "fma"}, "AVX2")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch capability: AVX2" in out and "cpu flags: avx2 fma" in out
    assert "int8 products: slow" in out and "bf16 products: slow" in out
    fast = next(x for x in out.splitlines() if x.startswith("gemma-3-270m-fast "))
    from guardrail.backbone import onnx_int8_support

    runs = "runtime onnx-int8:" if onnx_int8_support() is None else "runtime torch:"
    assert "fitted on torch-int8" in fast and runs in fast and "dtype fp32" in fast
    _cpu_as(monkeypatch, {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "AVX512")
    assert cli.main(["doctor", "--json", "--bundle", "gemma-3-270m-fast", "--bundle", "gemma-3-270m"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["int8"] == "avx512_vnni" and report["torch"] == torch.__version__
    picks = {b["bundle"]: (b["runtime"], b["dtype"]) for b in report["bundles"]}
    assert picks == {"gemma-3-270m-fast": ("torch-int8", "bfloat16"), "gemma-3-270m": ("torch", "bfloat16")}


def test_cli_explicit_slow_runtime_warns_once_and_never_compiles(tmp_path, monkeypatch, bundle_dir) -> None:
    import warnings

    import torch

    from guardrail import backbone
    from guardrail.pipeline import Guardrail

    _cpu_as(monkeypatch, {"avx2", "fma"}, "AVX2")
    monkeypatch.setattr(backbone, "_warned", set())
    compiled: list[object] = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(kw) or model)
    loaded: list[Guardrail] = []
    real_load = Guardrail.load.__func__  # type: ignore[attr-defined]

    def load(cls, *a, **k):
        loaded.append(real_load(cls, *a, **k))
        return loaded[-1]

    monkeypatch.setattr(Guardrail, "load", classmethod(load))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 0, "text": "I met Jun Sato thanks"}) + "\n")
    args = ["detect", "--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--bundle", bundle_dir]
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        for _ in range(2):
            assert cli.main([*args, "--runtime", "torch-int8", "--dtype", "bf16"]) == 0
    slow = [str(w.message) for w in got if issubclass(w.category, backbone.SlowPathWarning)]
    assert len(slow) == 2 and any("torch-int8" in m for m in slow) and any("bf16" in m for m in slow)
    assert not compiled and loaded[-1].backbone.runtime == "torch-int8"
    assert loaded[-1].backbone.dtype == torch.bfloat16
    assert cli.main([*args, "--runtime", "torch-int8", "--compile"]) == 0
    assert compiled == [{"dynamic": True}]  # asked for: compiled


def test_train_repeat_reaches_the_config(monkeypatch) -> None:
    import guardrail.train as train

    seen = []

    def fake(cfg):
        seen.append(cfg.repeat)
        raise SystemExit(0)

    monkeypatch.setattr(train, "train", fake)
    for args, want in (
        (["--repeat", "LOCATION=3,PERSON=2"], {"LOCATION": 3, "PERSON": 2}),
        (["--repeat", "none"], {}),
    ):
        with pytest.raises(SystemExit):
            cli.main(["train", "--out", "/nowhere", *args])
        assert seen[-1] == want
    with pytest.raises(SystemExit):
        cli.main(["train", "--out", "/nowhere"])
    assert seen[-1] == {"LOCATION": 2}  # the recipe's default


def test_prepare_builds_the_onnx_graph_a_first_run_would(
    tiny_bundle_dir, tmp_path, monkeypatch, capsys
) -> None:
    from guardrail.backbone import onnx_int8_support

    if onnx_int8_support() is not None:
        pytest.skip("ONNX Runtime or its exporter is not installed")
    monkeypatch.setenv("GUARDRAIL_CACHE", str(tmp_path / "cache"))
    args = ["prepare", "--bundle", str(tiny_bundle_dir), "--device", "cpu", "--runtime", "onnx-int8"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "ready in" in out and "runtime onnx-int8" in out
    assert len(list((tmp_path / "cache" / "onnx").glob("*/model.int8.onnx"))) == 1
    assert cli.main([*args, "--warmup"]) == 0  # the second run reads the cached graph and warms up
    assert len(list((tmp_path / "cache" / "onnx").glob("*/model.int8.onnx"))) == 1
    assert cli.main(["prepare", "--bundle", str(tmp_path / "no-such-bundle")]) == 1
    assert "no-such-bundle" in capsys.readouterr().err


def test_stdin_is_never_spooled_to_disk(monkeypatch, capsys, bundle_dir, tmp_path) -> None:
    """Raw input read twice (checked, then redacted) stays in memory: no temporary file holds it."""
    import tempfile

    def refuse(*a, **kw):
        raise AssertionError("raw input written to a temporary file")

    for name in ("mkstemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)
    _stdin(monkeypatch, b"I met Jun Sato thanks")
    assert cli.main(["redact", "--bundle", str(bundle_dir), "--dtype", "fp32"]) == 0
    assert "Jun Sato" not in capsys.readouterr().out
    _stdin(monkeypatch, b'{"id": 1, "text": "I met Jun Sato thanks"}\n')
    assert (
        cli.main(["detect", "--bundle", str(bundle_dir), "--dtype", "fp32", "--input", "-", "--output", "-"])
        == 0
    )
    assert '"id": 1' in capsys.readouterr().out
