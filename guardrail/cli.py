"""``guardrail`` command line: a thin adapter over :class:`guardrail.pipeline.Guardrail`.

Exit codes: 0 done; 1 the guardrail could not run (bundle, model); 2 bad input or usage (nothing
written); 3 ``detect --on-error report`` finished but some records were bad (each has an error line).
Errors are one line on stderr and never quote the input text.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

EXIT_OK, EXIT_RUNTIME, EXIT_INPUT, EXIT_PARTIAL = 0, 1, 2, 3
CHUNK_CHARS = 100_000
"""``redact`` works through long inputs in line-aligned chunks of about this size."""


class InputError(Exception):
    """Bad input: reported as one line, exit code 2."""


def _fail(code: int, msg: str) -> int:
    print(f"guardrail: error: {msg}", file=sys.stderr)
    return code


def _read_text(path: str) -> str:
    """Whole file (or stdin for ``-``) as text; invalid UTF-8 is an input error, never replaced silently."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "standard input" if path == "-" else path
        raise InputError(f"{where} is not valid UTF-8 (bad byte at offset {e.start})") from None


def _chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Line-aligned pieces of at most ~``size`` characters that concatenate back to ``text``."""
    if len(text) <= size:
        return [text]
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            nl = text.rfind("\n", start, end)
            end = nl + 1 if nl > start else end
        out.append(text[start:end])
        start = end
    return out


def _load(args: argparse.Namespace):
    from guardrail.pipeline import Guardrail

    return Guardrail.load(
        args.bundle,
        device=args.device,
        dtype=args.dtype,
        runtime=args.runtime,
        compile=args.compile,
        probe=args.probe,
        patterns=not args.no_patterns,
        model=args.model,
        onnx_dir=args.onnx_dir,
    )


def _vault_mapping(args: argparse.Namespace):
    """The vault and the pseudonyms ``--mapping`` carries on (empty without one)."""
    from guardrail.redact import Pseudonyms
    from guardrail.vault import Vault

    vault = Vault.from_env()
    pseudonyms = vault.open(_read_text(args.mapping).strip(), args.scope) if args.mapping else Pseudonyms()
    return vault, pseudonyms


def cmd_redact(args: argparse.Namespace) -> int:
    from guardrail.redact import Pseudonyms, Redactor

    sealing = args.seal_to is not None
    if (sealing or args.mapping) and args.operator != "pseudonym":
        raise InputError("--seal-to and --mapping go with --operator pseudonym")
    if args.mapping and not sealing:
        raise InputError("--mapping is read to seal a new mapping: give --seal-to FILE too")
    # refuse a missing hash or vault key, or a bad mapping, before loading the model
    vault, pseudonyms = _vault_mapping(args) if sealing else (None, None)
    Redactor(args.operator, key=args.key)
    with contextlib.ExitStack() as stack:
        sources = [(p, stack.enter_context(_rereadable(p))) for p in (args.files or ["-"])]
        for name, source in sources:  # check all first: bad input writes nothing
            _check_utf8(source, name)
        guard = _load(args)
        labels = args.labels.split(",") if args.labels else None
        for _, source in sources:
            # one pseudonym scope per file, or one for the whole run when its mapping is sealed
            scope = pseudonyms
            if scope is None and args.operator == "pseudonym":
                scope = Pseudonyms()  # shared by the file's pieces
            for piece in _text_chunks(source):  # each piece written as soon as it is redacted
                done = guard.redact(
                    piece, operator=args.operator, key=args.key, labels=labels, pseudonyms=scope
                )
                sys.stdout.write(done[0].text)
                sys.stdout.flush()
    if vault is not None:
        _write_atomic(args.seal_to, vault.seal(pseudonyms, args.scope) + "\n")
    return EXIT_OK


Opener = Callable[[], BinaryIO]
"""Opens an input again from its start (binary)."""


@contextlib.contextmanager
def _rereadable(path: str) -> Iterator[Opener]:
    """An input that can be read twice (checked, then streamed): the file, opened again each time, or
    standard input held in memory. Never spooled to disk: raw input is not written anywhere."""
    if path != "-":
        yield lambda: open(path, "rb")  # noqa: SIM115 (the reader closes it)
        return
    data = sys.stdin.buffer.read()
    yield lambda: io.BytesIO(data)


def _check_utf8(source: Opener, name: str) -> None:
    """Refuse input that is not UTF-8 before anything is written; reads in pieces and keeps nothing."""
    where = "standard input" if name == "-" else name
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes before this piece
    try:
        with source() as f:
            while True:
                block = f.read(1 << 20)
                held = len(decoder.getstate()[0])  # the start of a character split across pieces
                try:
                    decoder.decode(block, final=not block)
                except UnicodeDecodeError as e:
                    raise InputError(
                        f"{where} is not valid UTF-8 (bad byte at offset {offset - held + e.start})"
                    ) from None
                offset += len(block)
                if not block:
                    return
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror}") from None


def _text_chunks(source: Opener, size: int | None = None) -> Iterator[str]:
    """The pieces :func:`_chunks` would cut, read from the file as they are needed (line ends kept)."""
    size = size or CHUNK_CHARS
    buf = ""
    with io.TextIOWrapper(source(), encoding="utf-8", newline="") as f:
        while True:
            more = f.read(size)
            buf += more
            while len(buf) > size:
                nl = buf.rfind("\n", 0, size)
                end = nl + 1 if nl > 0 else size
                yield buf[:end]
                buf = buf[end:]
            if not more:
                if buf:
                    yield buf
                return


def cmd_restore(args: argparse.Namespace) -> int:
    from guardrail.vault import restore

    _, pseudonyms = _vault_mapping(args)
    texts = [_read_text(p) for p in (args.files or ["-"])]  # an unknown placeholder anywhere writes nothing
    done = [restore(t, pseudonyms, unknown="keep" if args.keep_unknown else "error") for t in texts]
    for r in done:
        sys.stdout.write(r.text)
    if unknown := sum(len(r.unknown) for r in done):
        print(
            f"guardrail: {unknown} placeholders are not in the mapping and were left as they are",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_vault_key(args: argparse.Namespace) -> int:
    from guardrail.vault import Vault

    print(Vault.new_key(args.id))
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    src = args.input
    with _rereadable(src) as source:
        records = bad = 0
        first = ""
        for _, _, _, error in _jsonl_records(source, src):  # a first pass that keeps nothing: bad input
            records += 1  # is refused (or counted) before anything is written
            if error:
                bad += 1
                first = first or error
        if bad and args.on_error == "fail":
            more = f" (and {bad - 1} more bad lines)" if bad > 1 else ""
            raise InputError(f"{src}: {first}{more}; nothing written (use --on-error report to go on)")
        guard = _load(args)
        labels = args.labels.split(",") if args.labels else None
        with (
            _streamed_output(args.output) as out,
            tqdm(total=records, desc="detect", unit="rec", disable=records < 512) as bar,
        ):
            for part in _batched(_jsonl_records(source, src), 64):  # each part written when it is done
                found = iter(guard.detect([r.text for _, _, r, _ in part if r], labels=labels))
                for n, rid, rec, error in part:
                    obj = {"id": rid, "spans": [s.to_dict() for s in next(found)]} if rec else None
                    obj = obj or {"id": rid, "line": n, "error": error}
                    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
                out.flush()
                bar.update(len(part))
    if bad:
        print(f"guardrail: {bad} of {records} records were bad; see 'error' lines", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _jsonl_records(source: Opener, src: str) -> Iterator[tuple[int, object, Any, str | None]]:
    """``(line, id, record, None)`` per good JSONL line, ``(line, id or None, None, error)`` per bad one;
    blank lines skipped. Invalid UTF-8 refuses the whole input (exit 2)."""
    from guardrail.data import DataError, parse_record

    try:
        fh = source()
    except OSError as e:
        raise InputError(f"cannot read {src}: {e.strerror}") from None
    with fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{src}: line {n} is not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                yield n, obj["id"], parse_record(obj, f"line {n}", require_spans=False), None
            except json.JSONDecodeError as e:
                yield n, _line_id(line), None, f"line {n}: not valid JSON ({e.msg})"
            except DataError as e:
                yield n, _line_id(line), None, str(e)


def _batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    part: list[Any] = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


@contextlib.contextmanager
def _streamed_output(path: str) -> Iterator[Any]:
    """Standard output for ``-`` (written as it comes); else a temporary file beside ``path``, renamed to
    it at the end: a file output is whole or absent, never truncated by a crash."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=".guardrail-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _line_id(line: str) -> object:
    """The id of a bad line when it can still be read, so the error line can be matched up."""
    try:
        obj = json.loads(line)
        return obj.get("id") if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        return None


def _write_atomic(path: str, content: str) -> None:
    """Write all or nothing: a crash half-way never leaves a truncated output file."""
    if path == "-":
        sys.stdout.write(content)
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=".guardrail-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from guardrail.export import ExportError, export
    from guardrail.pipeline import Guardrail

    guard = Guardrail.load(
        args.bundle, device="cpu", runtime="torch", probe=args.probe, patterns=False, model=args.model
    )
    try:
        out = export(guard, args.out, int8=args.int8)
    except ExportError as e:
        return _fail(EXIT_INPUT, str(e))
    print(f"wrote {out}")
    return EXIT_OK


def _data_options(args: argparse.Namespace) -> dict[str, object]:
    """The training-data options shared by ``train`` and ``train-sae-probe``."""
    from guardrail.data import DataError
    from guardrail.realdata import load_sources, mix_from_json

    if args.n_real < 0 or args.n_real_calib < 0:
        raise InputError("--n-real and --n-real-calib must be >= 0")
    real_dir = Path(args.real_dir) if args.real_dir else None
    try:
        mix = mix_from_json(args.real_mix) if args.real_mix else None
        if args.n_real or args.n_real_calib:
            names = {s.name for s in load_sources(real_dir)}  # fail before minutes of work, not after
            if mix and (unknown := sorted(set(mix) - names)):
                raise InputError(f"--real-mix names unknown corpora: {', '.join(unknown)}")
    except DataError as e:
        raise InputError(str(e)) from None
    out: dict[str, object] = {}
    if args.context:
        try:
            context = tuple(sorted({int(x) for x in args.context.split(",") if x.strip()}))
        except ValueError:
            raise InputError(f"--context must be comma-separated integers, got {args.context!r}") from None
        if 0 not in context or max(abs(c) for c in context) > 8:
            raise InputError("--context must hold 0 and offsets within -8..8")
        out["context"] = context
    return out | {
        "n_real": args.n_real,
        "n_real_calib": args.n_real_calib,
        "real_mix": mix,
        "real_dir": real_dir,
        "calibration": args.calibration,
    }


def _positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (a bad value exits 2 with argparse's one-line reason)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--n-real",
        type=int,
        default=16000,
        help="records drawn from the real annotated corpora (../shared/data/train or $GUARDRAIL_TRAIN_DATA) "
        "beside the synthetic ones; 0: synthetic only (default 16000)",
    )
    p.add_argument("--n-real-calib", type=int, default=2000, help="held-out real records for calibration")
    p.add_argument(
        "--real-mix",
        default=None,
        metavar="JSON",
        help='weight per corpus, e.g. \'{"broad_twitter_corpus": 2, "ja_gsd_train": 1}\' (default: '
        "guardrail.realdata.DEFAULT_MIX)",
    )
    p.add_argument("--real-dir", default=None, help="folder of the real corpora")
    p.add_argument(
        "--context",
        default=None,
        metavar="OFFSETS",
        help="token offsets the probe reads around each token (default -2,-1,0,1,2)",
    )
    p.add_argument(
        "--calibration",
        default="f2",
        choices=("recall", "f2", "f1.5", "f1"),
        help="threshold per label: recall (keep 99%% of its calibration tokens) or the best token F-beta "
        "(f2, default; f1.5, f1); every rule is stored in the bundle beside the chosen one",
    )


def _class_repeat(text: str) -> dict[str, int]:
    """``LABEL=N[,LABEL=N]`` (or ``none``) as a class-repeat table, checked against the labels."""
    from guardrail.labels import CANONICAL

    if text.strip().lower() == "none":
        return {}
    out: dict[str, int] = {}
    for part in text.split(","):
        label, sep, n = part.strip().partition("=")
        if not sep or label not in CANONICAL or not n.isdigit() or int(n) < 1:
            raise InputError(f"--repeat: expected LABEL=N with a canonical label and N >= 1, got {part!r}")
        out[label] = int(n)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from guardrail.train import TrainConfig, train

    cfg = TrainConfig(
        out=Path(args.out),
        model=args.model,
        layer=args.layer,
        n_train=args.n_train,
        n_calib=args.n_calib,
        seed=args.seed,
        runtime=args.runtime,
        mlp_keep=args.mlp_keep,
        head=args.head,
        hidden=args.hidden,
        epochs=args.epochs,
        **({"repeat": _class_repeat(args.repeat)} if args.repeat is not None else {}),
        **_data_options(args),  # type: ignore[arg-type]
    )
    bundle = train(cfg)
    print(f"wrote bundle {bundle.folder}")
    print(json.dumps(bundle.manifest.metrics, indent=1))
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from guardrail.train import recalibrate

    probes = [x.strip() for x in args.probes.split(",") if x.strip()] if args.probes else None
    try:
        bundle = recalibrate(args.bundle, probes, Path(args.real_dir) if args.real_dir else None)
    except ValueError as e:  # an unknown probe, a bundle that does not record its calibration set
        return _fail(EXIT_INPUT, str(e))
    for name in probes or [bundle.manifest.default_probe]:
        rules = bundle.manifest.probes[name].metrics.get("calibrations", {})
        print(f"{name}: {len(rules)} rules stored ({', '.join(rules)})")  # type: ignore[arg-type]
    print("pick one with: python benchmarks/probe_choice.py --bundle NAME --write")
    return EXIT_OK


def cmd_train_sae(args: argparse.Namespace) -> int:
    from guardrail.train import SaeTrainConfig, train_sae_for_bundle

    cfg = SaeTrainConfig(bundle=args.bundle, tokens=args.tokens, d_sae=args.d_sae, k=args.k, seed=args.seed)
    print(json.dumps(train_sae_for_bundle(cfg), indent=1))
    return EXIT_OK


def cmd_train_sae_probe(args: argparse.Namespace) -> int:
    from guardrail.train import SaeProbeConfig, train_sae_probe

    cfg = SaeProbeConfig(
        bundle=args.bundle,
        n_train=args.n_train,
        n_calib=args.n_calib,
        n_latents=args.n_latents,
        heads=tuple(args.heads.split(",")),
        seed=args.seed,
        sae=args.sae,
        encode=args.encode,
        **_data_options(args),  # type: ignore[arg-type]
    )
    try:
        figures = train_sae_probe(cfg)
    except ValueError as e:  # no SAE, an SAE for another layer, an unknown head
        raise InputError(str(e)) from None
    print(json.dumps(figures, indent=1))
    return EXIT_OK


def cmd_features(args: argparse.Namespace) -> int:
    from guardrail.features import build

    doc = build(args.bundle, n_records=args.records)
    print(f"wrote features.json: {len(doc['latents'])} latents described from {doc['corpus']}")  # type: ignore[arg-type]
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from guardrail.pipeline import Guardrail

    texts = args.texts or [_read_text("-")]
    bundle = _bundle_for(args.bundle)
    probe = args.probe or _sae_probe_of(bundle)
    guard = Guardrail.load(
        args.bundle, device=args.device, probe=probe, patterns=not args.no_patterns, model=args.model
    )
    labels = args.labels.split(",") if args.labels else None
    found = guard.detect(texts, labels=labels, explain=True)
    if args.json:
        for spans in found:
            print(json.dumps([s.to_dict() for s in spans], ensure_ascii=False))
        return EXIT_OK
    for n, (text, spans) in enumerate(zip(texts, found, strict=True)):
        if len(texts) > 1:
            print(f"# text {n + 1}")
        if not spans:
            print("no PII found")
        for s in spans:
            where = f"{s.start}:{s.end} {text[s.start : s.end]!r}"
            print(f"{s.label:<12} {where}  score {s.score:.2f}  ({s.source})")
            for f in s.features:
                print(
                    f"    latent {f.latent:>5}  act {f.activation:6.2f}  contrib {f.contribution:+.3f}  "
                    f"{f.description}"
                )
    return EXIT_OK


def _bundle_for(name: str):
    from guardrail.bundle import Bundle

    return Bundle.load(name)


def _sae_probe_of(bundle) -> str:
    """The bundle's default probe if it reads SAE features, else its first SAE probe."""
    m = bundle.manifest
    if m.probes[m.default_probe].features == "sae":
        return m.default_probe
    names = sorted(n for n, e in m.probes.items() if e.features == "sae")
    if not names:
        raise InputError(
            f"bundle {m.name} has no SAE-feature probe to explain with (guardrail train-sae-probe)"
        )
    return names[0]


def cmd_batch(args: argparse.Namespace) -> int:
    import signal

    from guardrail.batch import BatchConfig, BatchError, redact_file

    cfg = BatchConfig(
        bundle=args.bundle,
        operator=args.operator,
        key=args.key,
        labels=args.labels.split(",") if args.labels else None,
        device=args.device,
        dtype=args.dtype,
        runtime=args.runtime,
        model=args.model,
        onnx_dir=args.onnx_dir,
        patterns=not args.no_patterns,
        workers=args.workers,
        batch_size=args.batch_size,
        shard_mb=args.shard_mb,
        format=args.format,
        address=args.address,
        progress=not args.no_progress,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stopped: Ray shut down, finished shards kept
    try:
        result = redact_file(args.input, args.output, cfg, on_error=args.on_error)
    except BatchError as e:
        raise InputError(str(e)) from None
    except KeyboardInterrupt:
        print("guardrail: batch stopped; run it again with the same --output to resume", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.errors:
        n = result.errors
        print(f"guardrail: {n} of {result.records} records were bad; see 'error' records", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from guardrail.serving.settings import load_settings

    flags = ("host", "port", "metrics_port", "bundle", "device", "runtime", "max_batch_texts", "max_wait_ms")
    flags += ("tls_cert", "tls_key", "tls_client_ca", "model", "patterns", "onnx_dir")
    flags += ("metrics_host", "allow_insecure", "otlp_endpoint")
    try:
        settings = load_settings(args.config, **{k: getattr(args, k) for k in flags})
    except ValidationError as e:
        first = e.errors()[0]
        where = " " + ".".join(str(x) for x in first["loc"]) if first["loc"] else "s"
        raise InputError(f"bad serve setting{where}: {first['msg'].removeprefix('Value error, ')}") from None
    except (FileNotFoundError, ValueError) as e:  # ValueError: a TOML file that does not parse
        raise InputError(str(e)) from None
    from guardrail.serving.server import serve

    try:
        return serve(settings)
    except OSError as e:
        return _fail(EXIT_RUNTIME, f"cannot serve: {e}")


def cmd_bench(args: argparse.Namespace) -> int:
    from guardrail.bench import BenchError
    from guardrail.bench.command import run

    try:
        return run(args)
    except BenchError as e:
        raise InputError(str(e)) from None


_MODEL_HELP = (
    "backbone instead of the bundle's (same layer): a converted model folder, .gguf, alias or hub id; "
    "refused when its sha256 or hidden size is not the bundle's"
)


def doctor_report(device: str = "auto", bundles: Sequence[str] | None = None) -> dict[str, Any]:
    """What ``guardrail doctor`` prints: versions, the CPU as torch and oneDNN will use it, and per bundle
    the runtime and dtype ``auto`` picks (:func:`guardrail.backbone.choose`) and why. Reads manifests
    only: no model is loaded."""
    import importlib.metadata

    import torch

    import guardrail
    from guardrail import cpu
    from guardrail.backbone import choose, pick_device
    from guardrail.bundle import find, probes_root, read_manifest

    def version(*dists: str) -> str | None:
        for d in dists:
            try:
                return importlib.metadata.version(d)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    caps = cpu.probe()
    dev = pick_device(device)
    if bundles is None:
        root = probes_root()
        folders = sorted(f for f in root.iterdir() if (f / "guard.json").is_file()) if root.is_dir() else []
    else:
        folders = [find(b) for b in bundles]
    rows = []
    for folder in folders:
        ref = read_manifest(folder).backbone
        c = choose(dev, ref.runtime, "auto", "auto")
        rows.append(
            {
                "bundle": folder.name,
                "fitted": ref.runtime,
                "runtime": c.runtime,
                "dtype": str(c.dtype).removeprefix("torch."),
                "why": c.why,
            }
        )
    return {
        "guardrail": guardrail.__version__,
        "torch": torch.__version__,
        "onnxruntime": version("onnxruntime", "onnxruntime-gpu"),
        "device": str(dev),
        "cpu": caps.model,
        "arch": caps.arch,
        "threads": torch.get_num_threads(),
        "capability": caps.capability,
        "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"),
        "onednn_max_cpu_isa": caps.onednn_max_isa,
        "flags": None if caps.flags is None else list(caps.flags),
        "int8": caps.int8,
        "int8_why": caps.int8_why,
        "bf16": caps.bf16,
        "bf16_why": caps.bf16_why,
        "bundles": rows,
    }


def cmd_prepare(args: argparse.Namespace) -> int:
    """Load each bundle as ``detect`` would here, so that what a first run builds is built now."""
    import time

    from guardrail.bundle import DEFAULT_BUNDLE
    from guardrail.pipeline import Guardrail

    for name in args.bundle or [DEFAULT_BUNDLE]:
        t0 = time.perf_counter()
        g = Guardrail.load(name, device=args.device, runtime=args.runtime, compile=args.compile)
        if args.warmup:
            g.warmup()
        print(f"{g.bundle.manifest.name}: ready in {time.perf_counter() - t0:.1f} s; {g.backbone.why}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    r = doctor_report(args.device, args.bundle)
    if args.json:
        print(json.dumps(r, indent=1))
        return EXIT_OK
    flags = r["flags"]
    shown = "unknown" if flags is None else (" ".join(flags) or "none that matter here")
    ort = r["onnxruntime"] or "not installed"
    print(f"guardrail {r['guardrail']}, torch {r['torch']}, onnxruntime {ort}")
    print(f"cpu: {r['cpu'] or '?'} ({r['arch']}), {r['threads']} torch threads; device {r['device']}")
    print(
        f"torch capability: {r['capability']} (ATEN_CPU_CAPABILITY={r['aten_cpu_capability'] or 'unset'}); "
        f"ONEDNN_MAX_CPU_ISA={r['onednn_max_cpu_isa'] or 'unset'}"
    )
    print(f"cpu flags: {shown}")
    for kind in ("int8", "bf16"):
        speed = "fast" if r[kind] else "slow"
        print(f"{kind} products: {speed} ({r[kind + '_why']})")
    for b in r["bundles"]:
        print(f"{b['bundle']} (fitted on {b['fitted']}): {b['why']}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    import guardrail
    from guardrail.backbone import RUNTIMES
    from guardrail.bundle import DEFAULT_BUNDLE, probes_root
    from guardrail.pipeline import RUNTIMES as GUARDRAIL_RUNTIMES
    from guardrail.redact import OPERATORS

    p = argparse.ArgumentParser(
        prog="guardrail",
        description="Find and redact personal data (PII) by reading a language model's residual stream.",
        epilog="Exit codes: 0 ok, 1 cannot run (bundle/model), 2 bad input or usage, 3 some records bad.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.add_argument(
        "--version",
        action="version",
        version=f"guardrail {guardrail.__version__} (`guardrail doctor`: what runs each bundle here, why)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--bundle", default=DEFAULT_BUNDLE, help=f"bundle name under {probes_root()} or a folder path"
        )
        sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
        sp.add_argument(
            "--runtime",
            default=None,
            choices=("auto", *GUARDRAIL_RUNTIMES),
            help="auto (default): the one the bundle was fitted on where this machine runs it fast, else "
            "the fastest it has (guardrail doctor shows the pick); torch, torch-int8 (int8 products; fast "
            "with VNNI/AMX only), onnx-int8 (the backbone in ONNX Runtime, CPU) or onnx (the graph of "
            "guardrail export-onnx in --onnx-dir). A runtime slow on this CPU warns",
        )
        sp.add_argument(
            "--dtype",
            default="auto",
            choices=("auto", "bf16", "fp32"),
            help="auto (default): bf16 where the CPU has AVX512-BF16/AMX (or the GPU bf16), else fp32; "
            "bf16 elsewhere is emulated and warns",
        )
        sp.add_argument("--onnx-dir", default=None, help="folder written by guardrail export-onnx")
        sp.add_argument("--probe", default=None, help="probe in the bundle (default: the manifest's)")
        sp.add_argument("--labels", default=None, help="comma list of labels to report (default: bundle's)")
        sp.add_argument("--no-patterns", action="store_true", help="probe only, without Presidio patterns")
        sp.add_argument("--model", default=None, help=_MODEL_HELP)

    def bundles(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument(
            "--bundle",
            action="append",
            default=None,
            help=f"a bundle name or folder (repeatable; default: {default})",
        )

    def mapping_arguments(sp: argparse.ArgumentParser, what: str, required: bool = False) -> None:
        sp.add_argument("--mapping", default=None, required=required, metavar="FILE", help=what)
        sp.add_argument("--scope", default="", help="what the mapping is bound to, e.g. a conversation id")

    def compiled(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--compile",
            action="store_true",
            help="torch.compile the backbone (about a minute at start; pays off on large inputs only)",
        )

    r = sub.add_parser(
        "redact",
        help="redact text files (or stdin) to stdout",
        description="Read text from FILEs (or stdin when none) and write it to stdout with PII replaced, "
        "piece by piece as it is redacted (all input is checked first: bad input writes nothing).",
    )
    r.add_argument("files", nargs="*", metavar="FILE", help="UTF-8 text files; '-' or none for stdin")
    r.add_argument("--operator", default="placeholder", choices=OPERATORS, help="how spans are replaced")
    r.add_argument("--key", default=None, help="HMAC key for --operator hash (or GUARDRAIL_HASH_KEY)")
    r.add_argument(
        "--seal-to",
        default=None,
        metavar="FILE",
        help="with --operator pseudonym: write the mapping back to the values here, sealed under "
        "GUARDRAIL_VAULT_KEY (all FILEs are then one pseudonym scope)",
    )
    mapping_arguments(r, "the previous sealed mapping of the conversation: its values keep their pseudonyms")
    common(r)
    compiled(r)
    r.set_defaults(func=cmd_redact)

    rs = sub.add_parser(
        "restore",
        help="put the values of a sealed mapping back into text",
        description="Read text (an agent's answer) from FILEs (or stdin when none) and write it to stdout "
        "with the placeholders of a sealed mapping (redact --seal-to) replaced by their values. "
        "Needs GUARDRAIL_VAULT_KEY; loads no model.",
    )
    rs.add_argument("files", nargs="*", metavar="FILE", help="UTF-8 text files; '-' or none for stdin")
    mapping_arguments(rs, "the sealed mapping (written by redact --seal-to)", required=True)
    rs.add_argument(
        "--keep-unknown",
        action="store_true",
        help="leave placeholders the mapping does not hold (default: refuse the input, exit 2)",
    )
    rs.set_defaults(func=cmd_restore)

    vk = sub.add_parser(
        "vault-key",
        help="print a new key for GUARDRAIL_VAULT_KEY",
        description="Print a fresh 256-bit AES-GCM key as ID:BASE64. Rotate by putting the new key first: "
        'GUARDRAIL_VAULT_KEY="$(guardrail vault-key --id k2),$GUARDRAIL_VAULT_KEY" (old mappings still '
        "open).",
    )
    vk.add_argument("--id", default="k1", help="key id, written into every mapping it seals (default k1)")
    vk.set_defaults(func=cmd_vault_key)

    d = sub.add_parser(
        "detect",
        help="detect PII spans in a JSONL file",
        description="Read JSONL records with 'id' and 'text'; write one {'id', 'spans'} line per record "
        "(offsets in Python code points, end exclusive).",
    )
    d.add_argument("--input", required=True, help="JSONL input ('-' for stdin)")
    d.add_argument(
        "--output",
        required=True,
        help="JSONL output: '-' streams to stdout as records are done (in input order); a file is written "
        "as it goes under a temporary name and appears whole at the end",
    )
    d.add_argument(
        "--on-error",
        choices=("fail", "report"),
        default="fail",
        help="bad lines: fail (exit 2, write nothing) or report (an 'error' line each, exit 3)",
    )
    common(d)
    compiled(d)
    d.set_defaults(func=cmd_detect)

    t = sub.add_parser(
        "train",
        help="rebuild a bundle from nothing",
        description="Generate synthetic data, mix in real annotated corpora, read activations, fit the "
        "probe, calibrate thresholds, write the bundle.",
    )
    t.add_argument(
        "--out",
        default=str(probes_root() / DEFAULT_BUNDLE),
        help="bundle folder to write; a bundle there on the same model and layer keeps its SAE, SAE probes "
        "and their figures (its raw probe is replaced)",
    )
    t.add_argument(
        "--model", default="gemma-3-270m", help="backbone: embedded alias, .gguf, folder or hub id"
    )
    t.add_argument(
        "--layer",
        type=int,
        default=3,
        help="residual stream after this many blocks (default 3, the default bundle's: faster than 6, "
        "which is better on the real dev suite)",
    )
    t.add_argument("--n-train", type=int, default=8000)
    t.add_argument("--n-calib", type=int, default=2000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--runtime", default="torch", choices=RUNTIMES, help="backbone runtime for activations")
    t.add_argument(
        "--mlp-keep",
        type=int,
        default=None,
        metavar="N",
        help="prune each block's MLP to its N most important neurons (a faster backbone of its own: the "
        "bundle can no longer piggyback the agent's model); default: the whole model",
    )
    t.add_argument(
        "--head",
        default="mlp",
        choices=("mlp", "linear"),
        help="probe head on the residual: mlp (one hidden layer, default) or linear (logistic regression)",
    )
    t.add_argument("--hidden", type=_positive_int, default=512, help="hidden units of the mlp head")
    t.add_argument("--epochs", type=_positive_int, default=4, help="passes of the mlp head over the data")
    t.add_argument(
        "--repeat",
        default=None,
        metavar="LABEL=N[,LABEL=N]",
        help="times per epoch the mlp head sees a class's tokens (default LOCATION=2; 'none': each once)",
    )
    _add_data_arguments(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser(
        "calibrate",
        help="calibrate a bundle's probe again by every threshold rule",
        description="Score the calibration records a bundle was trained with (drawn again from its manifest) "
        "with its probe, compute thresholds by every rule guardrail.train knows (per-script ones included) "
        "and store them beside the shipped ones; benchmarks/probe_choice.py --write picks the rule.",
    )
    c.add_argument("--bundle", default=DEFAULT_BUNDLE, help="bundle name or folder")
    c.add_argument(
        "--probes", default=None, help="comma list of probes (default: the bundle's default probe)"
    )
    c.add_argument(
        "--real-dir", default=None, help="folder of the real corpora (default: ../shared/data/train)"
    )
    c.set_defaults(func=cmd_calibrate)

    s = sub.add_parser(
        "train-sae",
        help="train the bundle's sparse autoencoder",
        description="Stream the bundle's backbone activations over synthetic data, train a TopK SAE "
        "(AuxK, unit-norm decoder), report held-out FVU / L0 / dead latents, write <bundle>/sae/.",
    )
    s.add_argument("--bundle", default=DEFAULT_BUNDLE, help="bundle name or folder")
    s.add_argument("--tokens", type=int, default=2_000_000, help="training tokens")
    s.add_argument("--d-sae", type=int, default=5120, help="latents (default 8x of 640)")
    s.add_argument("--k", type=int, default=32, help="active latents per token")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_train_sae)

    sp = sub.add_parser(
        "train-sae-probe",
        help="fit SAE-feature probes into a bundle",
        description="Select PII-related SAE latents on synthetic data, fit a probe per head on their codes "
        "(with neighbouring tokens), calibrate thresholds, add them to the bundle as sae-lr / sae-rf.",
    )
    sp.add_argument("--bundle", default=DEFAULT_BUNDLE, help="bundle name or folder (needs sae/)")
    sp.add_argument("--n-train", type=int, default=8000)
    sp.add_argument("--n-calib", type=int, default=2000)
    sp.add_argument("--n-latents", type=int, default=512, help="latents the probe reads")
    sp.add_argument("--heads", default="linear,forest", help="comma list of heads: linear, forest")
    sp.add_argument(
        "--sae",
        default=None,
        help="use this SAE folder instead of the bundle's sae/ (SAELens, sparsify or Gemma Scope 2 layout, "
        "e.g. a downloaded Gemma Scope 2 layer); copied into the bundle",
    )
    sp.add_argument(
        "--encode",
        default="threshold",
        choices=("threshold", "topk"),
        help="threshold (default): one global threshold, only the selected latents are encoded; topk: "
        "the SAE's own rule (every latent's pre-activation, each token's k-th largest)",
    )
    sp.add_argument("--seed", type=int, default=0)
    _add_data_arguments(sp)
    sp.set_defaults(func=cmd_train_sae_probe)

    f = sub.add_parser(
        "features",
        help="describe the bundle's SAE latents (features.json)",
        description="Run the backbone and SAE over synthetic records; write <bundle>/features.json with each "
        "latent's firing rate, gold-label mix, top tokens and a short description.",
    )
    f.add_argument("--bundle", default=DEFAULT_BUNDLE, help="bundle name or folder (needs sae/)")
    f.add_argument("--records", type=int, default=3000, help="synthetic records to read")
    f.set_defaults(func=cmd_features)

    e = sub.add_parser(
        "explain",
        help="detect PII and show the SAE features behind each span",
        description="Print each detected span with its top SAE latents: activation, contribution to the "
        "decision, and the latent's description from features.json.",
    )
    e.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain (stdin when none)")
    e.add_argument("--json", action="store_true", help="one JSON list of spans (with features) per text")
    common(e)
    compiled(e)
    e.set_defaults(func=cmd_explain)

    b = sub.add_parser(
        "batch",
        help="redact JSONL/Parquet files at scale on Ray Data",
        description="Redact every record of JSONL ({'id', 'text'} per line) or Parquet ('text', 'id' "
        "columns) input on Ray Data, one model per actor (one per GPU, else per CPU worker). The input is "
        "cut into shards; each is read, redacted and written on the workers, one file per shard with a "
        "done marker, so memory stays flat and a rerun into the same --output skips finished shards. "
        "Records: {'id', 'text', 'spans'}, or {'id', 'line', 'error'} for a bad one (its file and line "
        "named, never its text); a record without id gets its line number. _manifest.json lists inputs, "
        "counts, errors and options.",
    )
    b.add_argument(
        "--input",
        required=True,
        help="a .jsonl (or .jsonl.gz/.bz2/.zst/.lz4) or .parquet file, a directory of them, a glob "
        "('data/*.jsonl') or a URI (s3://, gs://)",
    )
    b.add_argument(
        "--output",
        required=True,
        help="a directory (or URI) of shards; or one .jsonl/.parquet file, joined from shards staged in "
        "OUTPUT.parts/ when all are done",
    )
    b.add_argument(
        "--format", default=None, choices=("parquet", "jsonl"), help="shard format of a directory output"
    )
    b.add_argument(
        "--shard-mb",
        type=float,
        default=4.0,
        help="input per shard in MiB: the unit of output files and of resume (default 4)",
    )
    b.add_argument("--operator", default="placeholder", choices=OPERATORS, help="how spans are replaced")
    b.add_argument("--key", default=None, help="HMAC key for --operator hash (or GUARDRAIL_HASH_KEY)")
    b.add_argument("--workers", type=int, default=None, help="actors (default: one per GPU, else cores/4)")
    b.add_argument("--batch-size", type=int, default=64, help="records per model call in an actor")
    b.add_argument("--address", default=None, help="join a Ray cluster ('auto' or host:port); default local")
    b.add_argument(
        "--on-error",
        choices=("fail", "report"),
        default="report",
        help="bad records: report (an 'error' record each, exit 3; default) or fail (the input is checked "
        "first: exit 2, nothing written)",
    )
    b.add_argument("--no-progress", action="store_true", help="no Ray Data progress bars")
    common(b)
    b.set_defaults(func=cmd_batch)

    v = sub.add_parser(
        "serve",
        help="run the gRPC sidecar",
        description="Serve guardrail.v1.Guardrail (Detect, Redact, RedactStream, GetInfo) with health and "
        "reflection, micro-batching one model. Every setting is also GUARDRAIL_<NAME> in the environment or "
        "a key of the --config TOML file (flags win); the bearer token only as GUARDRAIL_AUTH_TOKEN. A token "
        "over plaintext on an address other than loopback is refused unless --allow-insecure. "
        "SIGTERM: NOT_SERVING, in-flight calls finish, exit 0.",
    )
    v.add_argument("--config", default=None, help="TOML settings file (or GUARDRAIL_CONFIG)")
    v.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=None, help="gRPC port (default 50051; 0: any free port)")
    v.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port (default: off)")
    v.add_argument(
        "--otlp-endpoint",
        default=None,
        help="OTLP/gRPC collector for OpenTelemetry traces, e.g. http://127.0.0.1:4317 (default: "
        "OTEL_EXPORTER_OTLP_ENDPOINT, else off)",
    )
    v.add_argument(
        "--metrics-host",
        default=None,
        help="address of /metrics, which has no authentication (default 127.0.0.1, whatever --host is)",
    )
    v.add_argument("--bundle", default=None, help=f"bundle name under {probes_root()} or a folder path")
    v.add_argument("--device", default=None, help="auto (CUDA if present), cpu or cuda")
    v.add_argument(
        "--runtime",
        default=None,
        choices=GUARDRAIL_RUNTIMES,
        help="default: the one the bundle was fitted on; torch, torch-int8, onnx-int8 or onnx",
    )
    v.add_argument("--onnx-dir", default=None, help="folder written by guardrail export-onnx (runtime onnx)")
    v.add_argument("--model", default=None, help=_MODEL_HELP)
    v.add_argument(
        "--no-patterns",
        dest="patterns",
        action="store_false",
        default=None,
        help="probe only, without Presidio patterns (GUARDRAIL_PATTERNS=false)",
    )
    v.add_argument("--max-batch-texts", type=int, default=None, help="texts per forward (1: no batching)")
    v.add_argument("--max-wait-ms", type=float, default=None, help="how long a batch waits for company")
    v.add_argument("--tls-cert", default=None, help="PEM server certificate chain (TLS)")
    v.add_argument("--tls-key", default=None, help="PEM server private key (TLS)")
    v.add_argument("--tls-client-ca", default=None, help="PEM CA that signs client certificates (mutual TLS)")
    v.add_argument(
        "--allow-insecure",
        action="store_true",
        default=None,
        help="serve GUARDRAIL_AUTH_TOKEN over plaintext on an address other than loopback (TLS ends before "
        "the sidecar); refused without it (GUARDRAIL_ALLOW_INSECURE=true)",
    )
    v.set_defaults(func=cmd_serve)

    x = sub.add_parser(
        "export-onnx",
        help="export the probe (backbone + features + head) as one ONNX graph",
        description="Write the bundle's probe as one ONNX graph (token ids -> class probabilities; dynamic "
        "batch and length) for --runtime onnx. Linear heads only (raw or SAE features).",
    )
    x.add_argument(
        "--bundle", default=DEFAULT_BUNDLE, help=f"bundle name under {probes_root()} or a folder path"
    )
    x.add_argument("--probe", default=None, help="probe in the bundle (default: the manifest's)")
    x.add_argument("--model", default=None, help=_MODEL_HELP)
    x.add_argument("--out", required=True, help="folder to write (replaced when it exists)")
    x.add_argument(
        "--int8",
        action="store_true",
        help="the blocks' linear layers as int8 products with per-token activations (as runtime onnx-int8)",
    )
    x.set_defaults(func=cmd_export_onnx)

    dr = sub.add_parser(
        "doctor",
        help="show what this machine runs fast and what each bundle would run on",
        description="Print the torch version, the CPU's instruction sets that matter (as torch and oneDNN "
        "will use them: ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA cap them) and, for each shipped bundle, "
        "the runtime and dtype that runtime auto picks and why. Loads no model.",
    )
    dr.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    bundles(dr, f"every bundle under {probes_root()}")
    dr.add_argument("--json", action="store_true", help="one JSON object instead of text")
    dr.set_defaults(func=cmd_doctor)

    pr = sub.add_parser(
        "prepare",
        help="build what a first run would (converted model, ONNX graph, compiled kernels) ahead of time",
        description="Load each bundle in the runtime auto picks on this machine, so that the converted model "
        "and, where picked, the onnx-int8 graph are cached before the first detect or serve (an image build "
        "step); --warmup also runs serve's warm-up, which compiles a torch-int8 model (or any, with "
        "--compile) and fills the kernel cache.",
    )
    bundles(pr, DEFAULT_BUNDLE)
    pr.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    pr.add_argument(
        "--runtime",
        default=None,
        choices=("auto", *(r for r in GUARDRAIL_RUNTIMES if r != "onnx")),
        help="default: auto, as detect picks it",
    )
    pr.add_argument("--warmup", action="store_true", help="also run the warm-up serve runs")
    compiled(pr)
    pr.set_defaults(func=cmd_prepare)

    from guardrail.bench.command import add_arguments as bench_arguments

    bn = sub.add_parser(
        "bench",
        help="benchmark quality and cost against regex, NER and judge baselines",
        description="Run regex, Presidio + spaCy, the probes, the hybrid and the backbone as a judge over "
        "labelled JSONL sets in one process; write report.md, results.json and PNG plots to "
        "benchmarks/results/<date>-<machine>/.",
    )
    bench_arguments(bn)
    bn.set_defaults(func=cmd_bench)
    return p


def _quiet_libraries() -> None:
    """A one-shot command prints its result, not the libraries' load chatter (``-v`` brings it back)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        _quiet_libraries()
    from guardrail.backbone import BackboneError
    from guardrail.bundle import BundleError
    from guardrail.pipeline import GuardrailError
    from guardrail.redact import RedactionError
    from guardrail.vault import VaultError

    try:
        return int(args.func(args))
    except InputError as e:
        return _fail(EXIT_INPUT, str(e))
    except (RedactionError, GuardrailError, VaultError) as e:
        return _fail(EXIT_INPUT, str(e))
    except (BundleError, BackboneError) as e:
        return _fail(EXIT_RUNTIME, str(e))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # never a traceback with user text in it; --verbose shows where
        if args.verbose:
            logging.exception("internal error")
        return _fail(EXIT_RUNTIME, f"internal error ({type(e).__name__}); rerun with -v for details")


if __name__ == "__main__":
    sys.exit(main())
