"""Batch redaction at scale: JSONL or Parquet in, redacted records out, the model work on Ray Data.

The driver reads and checks the input (one pass: every record gets its line number, bad ones an error),
Ray Data runs ``map_batches`` over an actor pool — one :class:`~guardrail.pipeline.Guardrail` per actor,
one actor per GPU when CUDA is present, else one per group of CPU cores — and the driver writes the
results in input order, after checking that every record came back exactly once. Locally ``ray.init``
starts a private instance; ``address`` joins an existing cluster (``ray start``), where the same job
scales out.

Output records: ``{"id", "text" (redacted), "spans" (offsets into the original text)}``, or
``{"id", "line", "error"}`` for a bad record; a record without ``id`` gets its line (row) number.
Redaction fails closed: a record whose batch failed gets an error, never its raw text.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from guardrail.bundle import DEFAULT_BUNDLE

log = logging.getLogger(__name__)

SCHEMA = pa.schema([("line", pa.int64()), ("id", pa.string()), ("text", pa.string()), ("error", pa.string())])
"""The rows the actors receive: ``id`` JSON-encoded (keeps its type), ``text`` null on a bad record."""
OUT_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("spans", pa.string()),
        ("error", pa.string()),
    ]
)
"""The rows the actors return: ``text`` redacted, ``spans`` JSON; ``text`` null where ``error`` is set."""
PARQUET_OUT = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        (
            "spans",
            pa.list_(
                pa.struct(
                    [
                        ("start", pa.int64()),
                        ("end", pa.int64()),
                        ("label", pa.string()),
                        ("score", pa.float64()),
                    ]
                )
            ),
        ),
        ("line", pa.int64()),
        ("error", pa.string()),
    ]
)


class BatchError(ValueError):
    """Input that cannot be read, or a job that did not return every record exactly once."""


@dataclass(slots=True)
class BatchConfig:
    """Everything ``guardrail batch`` can set."""

    bundle: str = DEFAULT_BUNDLE
    operator: str = "placeholder"
    key: str | None = None
    labels: list[str] | None = None
    device: str = "auto"
    dtype: str = "auto"
    runtime: str | None = None
    """None: the bundle's (see ``Guardrail.load``)."""
    model: str | None = None
    """Backbone instead of the bundle's (see :meth:`Guardrail.load`); must be reachable from every actor."""
    onnx_dir: str | None = None
    """The exported graph for runtime ``onnx`` (``guardrail export-onnx``); reachable from every actor."""
    patterns: bool = True
    """Presidio's pattern recognisers beside the probe."""
    workers: int | None = None
    """Actors; default: one per GPU, else one per 4 CPU cores (at least 1)."""
    batch_size: int = 64
    """Records per ``map_batches`` call."""
    address: str | None = None
    """An existing Ray cluster (``auto`` or ``host:port``); default: a local instance for this job."""
    progress: bool = True


@dataclass(slots=True)
class BatchResult:
    records: int
    """Records read (good and bad)."""
    bad: list[tuple[int, str]] = field(default_factory=list)
    """``(line, error)`` of each record that was not redacted."""


# ---- input ------------------------------------------------------------------------------------------
def _fmt(path: str) -> str:
    if path.endswith(".parquet"):
        return "parquet"
    if path.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise BatchError(f"{path}: unknown format (expected .jsonl or .parquet)")


def read_jsonl_rows(path: str) -> pa.Table:
    """One row per non-empty line: good records with their text, bad ones with an error (never text)."""
    lines, ids, texts, errors = [], [], [], []
    try:
        with open(path, "rb") as fh:  # bytes, decoded line by line: a bad byte is reported at its line
            for n, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise BatchError(f"{path}: line {n} is not valid UTF-8") from None
                if not line.strip():
                    continue
                rid, text, err = _parse_line(line, n)
                lines.append(n), ids.append(rid), texts.append(text), errors.append(err)
    except OSError as e:
        raise BatchError(f"cannot read {path}: {e.strerror}") from None
    return pa.table([lines, ids, texts, errors], schema=SCHEMA)


def _parse_line(raw: str, n: int) -> tuple[str, str | None, str | None]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        return json.dumps(n), None, f"line {n}: not valid JSON ({e.msg})"
    if not isinstance(obj, dict):
        return json.dumps(n), None, f"line {n}: expected a JSON object"
    rid = obj.get("id", n)
    if not isinstance(rid, str | int) or isinstance(rid, bool):
        return json.dumps(n), None, f"line {n}: 'id' must be a string or an integer"
    text = obj.get("text")
    if not isinstance(text, str):
        return json.dumps(rid), None, f"line {n}: missing or non-string 'text'"
    return json.dumps(rid), text, None


def read_parquet_rows(path: str) -> pa.Table:
    """Rows of a Parquet file with a ``text`` column (and optionally ``id``); row numbers from 1."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        if "text" not in names:
            raise BatchError(f"{path}: no 'text' column")
        table = pq.read_table(path, columns=[c for c in ("id", "text") if c in names])
    except (OSError, pa.ArrowInvalid) as e:
        raise BatchError(f"cannot read {path} as Parquet ({type(e).__name__})") from None
    n = table.num_rows
    lines = list(range(1, n + 1))
    raw_ids = table.column("id").to_pylist() if "id" in names else [None] * n
    ids = [json.dumps(i if i is not None else k) for i, k in zip(raw_ids, lines, strict=True)]
    text_col = table.column("text")
    if not pa.types.is_string(text_col.type) and not pa.types.is_large_string(text_col.type):
        raise BatchError(f"{path}: 'text' column is {text_col.type}, expected strings")
    texts = text_col.cast(pa.string()).to_pylist()
    errors = [None if t is not None else f"row {k}: null 'text'" for t, k in zip(texts, lines, strict=True)]
    return pa.table([lines, ids, texts, errors], schema=SCHEMA)


def read_rows(path: str) -> pa.Table:
    return read_parquet_rows(path) if _fmt(path) == "parquet" else read_jsonl_rows(path)


# ---- the actor --------------------------------------------------------------------------------------
class RedactActor:
    """One Guardrail per actor; called by Ray Data with a ``pyarrow`` batch of :data:`SCHEMA` rows."""

    def __init__(self, cfg: BatchConfig, threads: int | None = None):
        import torch

        from guardrail.pipeline import Guardrail
        from guardrail.redact import Redactor

        if threads:
            torch.set_num_threads(threads)
        self.cfg = cfg
        Redactor(cfg.operator, key=cfg.key)  # a missing hash key fails the job before any record
        self.guard = Guardrail.load(
            cfg.bundle,
            device=cfg.device,
            dtype=cfg.dtype,
            runtime=cfg.runtime,
            model=cfg.model,
            patterns=cfg.patterns,
            onnx_dir=cfg.onnx_dir,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        from guardrail.redact import Redactor

        rows = batch.to_pylist()
        todo = [i for i, r in enumerate(rows) if r["error"] is None]
        out_text: list[str | None] = [None] * len(rows)
        out_spans: list[str | None] = [None] * len(rows)
        errors = [r["error"] for r in rows]
        try:
            found = self.guard.detect([rows[i]["text"] for i in todo], labels=self.cfg.labels)
            for i, spans in zip(todo, found, strict=True):
                done = Redactor(self.cfg.operator, key=self.cfg.key).redact(
                    rows[i]["text"], spans
                )  # per record scope
                out_text[i] = done.text
                out_spans[i] = json.dumps([s.to_dict() for s in done.spans])
        except Exception as e:  # fail closed: the whole batch gets an error, no raw text goes out
            log.error("batch of %d records failed: %s", len(todo), type(e).__name__)
            for i in todo:
                out_text[i], out_spans[i] = None, None
                errors[i] = f"line {rows[i]['line']}: not redacted ({type(e).__name__})"
        return pa.table(
            [[r["line"] for r in rows], [r["id"] for r in rows], out_text, out_spans, errors],
            schema=OUT_SCHEMA,
        )


# ---- the job ----------------------------------------------------------------------------------------
def _init_ray(cfg: BatchConfig) -> bool:
    """Start (or join) Ray; returns whether this call started it (and should shut it down)."""
    import ray
    import torch

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report
    if cfg.address:
        ray.init(address=cfg.address, log_to_driver=False, configure_logging=False)
    else:
        cuda = cfg.device in ("auto", "cuda") and torch.cuda.is_available()
        ray.init(
            num_cpus=os.cpu_count() or 1,
            num_gpus=torch.cuda.device_count() if cuda else 0,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return True


def _plan(cfg: BatchConfig) -> tuple[int, int, float, int | None]:
    """``(workers, gpus per actor, cpus per actor, torch threads per actor)`` from the Ray cluster's
    resources: one actor per GPU, else ``cfg.workers`` (default: one per 4 CPUs) sharing the CPUs."""
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0)) if cfg.device in ("auto", "cuda") else 0
    cpus = max(1, int(res.get("CPU", 1)))
    workers = cfg.workers or (gpus or max(1, cpus // 4))
    if workers < 1:
        raise BatchError("workers must be at least 1")
    if workers > (gpus or cpus):  # a pool larger than the cluster would wait forever for its last actors
        log.warning("%d workers asked, the cluster holds %d; using %d", workers, gpus or cpus, gpus or cpus)
        workers = gpus or cpus
    if gpus:
        return workers, 1, 1.0, None
    per_actor = cpus // workers
    return workers, 0, float(per_actor), per_actor


def run(cfg: BatchConfig, table: pa.Table) -> Iterator[pa.Table]:
    """Redact the rows of ``table`` (:data:`SCHEMA`) on Ray Data; yields :data:`OUT_SCHEMA` batches in
    input order."""
    import ray
    import ray.data

    started = _init_ray(cfg)
    try:
        workers, gpus, cpus, threads = _plan(cfg)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = cfg.progress
        ds = ray.data.from_arrow(table).map_batches(
            RedactActor,
            fn_constructor_kwargs={"cfg": cfg, "threads": threads},
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=cfg.batch_size,
            batch_format="pyarrow",
            num_cpus=cpus,
            num_gpus=gpus,
        )
        yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)
    finally:
        if started:
            ray.shutdown()


def redact_file(input_path: str, output_path: str, cfg: BatchConfig, on_error: str = "report") -> BatchResult:
    """Read, redact on Ray, check exactly-once, write all at once (a failed job leaves no output)."""
    from guardrail.bundle import Bundle
    from guardrail.redact import Redactor

    out_fmt = _fmt(output_path)
    Redactor(cfg.operator, key=cfg.key)  # usage errors before any work: a missing hash key,
    Bundle.load(cfg.bundle)  # a bundle that is not there
    table = read_rows(input_path)
    bad_in = [
        (ln, e) for ln, e in zip(table["line"].to_pylist(), table["error"].to_pylist(), strict=True) if e
    ]
    if bad_in and on_error == "fail":
        more = f" (and {len(bad_in) - 1} more)" if len(bad_in) > 1 else ""
        raise BatchError(
            f"{input_path}: {bad_in[0][1]}{more}; nothing written (use --on-error report to go on)"
        )
    expected = table["line"].to_pylist()
    target = Path(output_path)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=".guardrail-")
    os.close(fd)
    seen: list[int] = []
    bad: list[tuple[int, str]] = []
    try:
        with _Writer(tmp, out_fmt) as w:
            for part in run(cfg, table) if table.num_rows else iter(()):
                seen += part["line"].to_pylist()
                bad += [
                    (ln, e)
                    for ln, e in zip(part["line"].to_pylist(), part["error"].to_pylist(), strict=True)
                    if e
                ]
                w.write(part)
        if seen != expected:
            missing, extra = len(set(expected) - set(seen)), len(seen) - len(set(seen))
            raise BatchError(
                f"job returned {len(seen)} of {len(expected)} records ({missing} missing, {extra} twice)"
            )
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return BatchResult(len(expected), bad)


class _Writer:
    """JSONL lines or one Parquet file, written to a temporary path."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        self._fh: Any = None

    def __enter__(self) -> _Writer:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._fh = pq.ParquetWriter(self.path, PARQUET_OUT)
        else:
            self._fh = open(self.path, "w", encoding="utf-8")
        return self

    def write(self, part: pa.Table) -> None:
        rows = part.to_pylist()
        if self.fmt == "parquet":
            cols: dict[str, list[Any]] = {"id": [], "text": [], "spans": [], "line": [], "error": []}
            for r in rows:
                rid = json.loads(r["id"])
                cols["id"].append(rid if isinstance(rid, str) else str(rid))
                cols["text"].append(r["text"])
                cols["spans"].append(json.loads(r["spans"]) if r["spans"] is not None else None)
                cols["line"].append(r["line"])
                cols["error"].append(r["error"])
            self._fh.write_table(pa.table(cols, schema=PARQUET_OUT))
            return
        for r in rows:
            rid = json.loads(r["id"])
            if r["error"] is not None:
                obj: dict[str, Any] = {"id": rid, "line": r["line"], "error": r["error"]}
            else:
                obj = {"id": rid, "text": r["text"], "spans": json.loads(r["spans"])}
            self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def __exit__(self, *exc: object) -> None:
        self._fh.close()
