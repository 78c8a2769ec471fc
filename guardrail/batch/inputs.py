"""The input side of a batch job: which files (a file, a directory, a glob, an ``s3://``/``gs://`` URI),
how each splits into shards, and how a shard is read into records.

A shard is a piece of one file: a line-aligned byte range of a JSONL file, a row range of a Parquet file.
A compressed JSONL file (``.jsonl.gz``, ``.bz2``, ``.zst``, ``.lz4``) is cut by the bytes of its
decompressed text: a worker decompresses from the file's start and skips to its shard, so memory stays
one shard whatever the file's size (the price: each shard of a compressed file re-reads what precedes it).
Shards are planned from the files alone (a scan for line ends; a Parquet footer), so the same input gives
the same shards and the same shard names on every run: that is what lets a rerun skip finished shards.
Records are parsed where the shard is read, on the workers, one line at a time: a bad line is an error
record naming its file and line, and the rest of the file goes on. Errors never quote the input.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from guardrail.batch.config import COMPRESSED_SUFFIXES, JSONL_SUFFIXES, ROWS, BatchError

SCAN_BYTES = 8 << 20
"""Bytes read at a time while looking for line ends (planning)."""
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class InputFile:
    path: str
    """As the filesystem names it (``bucket/key`` on S3, an absolute path locally)."""
    uri: str
    """As errors and the manifest name it (``s3://bucket/key``, or the local path)."""
    fmt: str
    size: int
    mtime_ns: int | None


@dataclass(frozen=True, slots=True)
class Shard:
    """One unit of work: records ``start``..``end`` (bytes of JSONL, rows of Parquet) of one file."""

    name: str
    """``part-<file stem>-<hash of the file's URI>-<index>``: from the input alone, sorted in input order
    within a file."""
    path: str
    uri: str
    fmt: str
    index: int
    start: int
    end: int
    line: int
    """Number (from 1) of the shard's first line (JSONL; blank lines count) or row (Parquet)."""
    est_bytes: int
    error: str | None = None
    """Why the whole file cannot be read: the shard is that one error record."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shard:
        return cls(**{k: d[k] for k in cls.__slots__})


# ---- which files ------------------------------------------------------------------------------------
def fmt_of(path: str) -> str | None:
    low = path.lower()
    if low.endswith(".parquet"):
        return "parquet"
    if compressed(low):
        low = low.rsplit(".", 1)[0]
    if low.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def compressed(path: str) -> bool:
    """Whether a JSONL path names a compressed file (its stream decompresses by this suffix)."""
    return path.lower().endswith(COMPRESSED_SUFFIXES)


def filesystem(spec: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a local path or a URI (``s3://``, ``gs://``, ``file://`` ...)."""
    if "://" not in spec:
        from pathlib import Path

        return pafs.LocalFileSystem(), str(Path(spec).expanduser().absolute())
    try:
        return pafs.FileSystem.from_uri(spec)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        raise BatchError(f"cannot open {spec}: {e}") from None


def uri_of(fs: pafs.FileSystem, path: str) -> str:
    return path if fs.type_name == "local" else f"{fs.type_name}://{path}"


def list_inputs(spec: str) -> tuple[pafs.FileSystem, list[InputFile]]:
    """The files ``spec`` names, sorted: itself, the ``.jsonl``/``.parquet`` files under a directory
    (names starting with ``_`` or ``.`` skipped, as Ray, Spark and Arrow do), or those a glob matches."""
    glob = _GLOB.search(spec.split("://", 1)[-1]) is not None
    root, tail = _glob_split(spec) if glob else (spec, "")
    fs, path = filesystem(root)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise BatchError(f"cannot read {spec}: {e}") from None
    if info.type == pafs.FileType.NotFound:
        raise BatchError(f"cannot read {spec}: no such file or directory")
    if info.type == pafs.FileType.File and not glob:
        fmt = fmt_of(path)
        if fmt is None:
            raise BatchError(f"{spec}: unknown format (expected .jsonl, .jsonl.gz or .parquet)")
        return fs, [InputFile(path, uri_of(fs, path), fmt, info.size or 0, info.mtime_ns)]
    pattern = f"{path.rstrip('/')}/{tail}" if glob else None
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except OSError as e:
        raise BatchError(f"cannot list {spec}: {e}") from None
    files = [
        InputFile(i.path, uri_of(fs, i.path), fmt, i.size or 0, i.mtime_ns)
        for i in infos
        if i.type == pafs.FileType.File
        and (fmt := fmt_of(i.path))
        and not _hidden(i.path, path)
        and (pattern is None or fnmatch.fnmatchcase(i.path, pattern))
    ]
    if not files:
        raise BatchError(f"no .jsonl or .parquet files in {spec}")
    return fs, sorted(files, key=lambda f: f.path)


def _glob_split(spec: str) -> tuple[str, str]:
    """``(directory above the first wildcard, the pattern below it)``: the directory is listed, the
    pattern matched against what is under it (``*`` also crosses ``/``)."""
    scheme, sep, rest = spec.rpartition("://")
    head = rest[: _GLOB.search(rest).start()]  # type: ignore[union-attr]
    root, tail = (rest[: head.rindex("/")], rest[head.rindex("/") + 1 :]) if "/" in head else (".", rest)
    return f"{scheme}{sep}{root or '/'}", tail


def _hidden(path: str, root: str) -> bool:
    rel = PurePosixPath(path).relative_to(root) if path.startswith(root) else PurePosixPath(path)
    return any(part.startswith(("_", ".")) for part in rel.parts)


# ---- how each file splits ---------------------------------------------------------------------------
def shard_name(f: InputFile, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", PurePosixPath(f.path).name.rsplit(".", 1)[0])[:48]
    return f"part-{stem}-{hashlib.sha1(f.uri.encode()).hexdigest()[:8]}-{index:05d}"


def plan_file(fs: pafs.FileSystem, f: InputFile, shard_bytes: int) -> list[Shard]:
    """The shards of one file; a file that cannot be read is one shard holding that error."""
    try:
        if f.fmt == "jsonl":
            with fs.open_input_stream(f.path, compression="detect") as stream:
                pieces = jsonl_cuts(stream, shard_bytes)
            return [_shard(f, i, s, e, ln, e - s) for i, (s, e, ln) in enumerate(pieces)]
        return _plan_parquet(fs, f, shard_bytes)
    except OSError as e:
        return [_shard(f, 0, 0, 0, 0, 0, f"{f.uri}: cannot read ({e.strerror or type(e).__name__})")]
    except (pa.ArrowInvalid, pa.ArrowException) as e:
        return [_shard(f, 0, 0, 0, 0, 0, f"{f.uri}: cannot read as Parquet ({type(e).__name__})")]


def _shard(
    f: InputFile, i: int, start: int, end: int, line: int, est: int, error: str | None = None
) -> Shard:
    return Shard(shard_name(f, i), f.path, f.uri, f.fmt, i, start, end, line, est, error)


def jsonl_cuts(stream: Any, shard_bytes: int) -> list[tuple[int, int, int]]:
    """``(start, end, first line)`` of line-aligned byte ranges of about ``shard_bytes``: each range ends
    just after the first line end at or past its target size. One pass, counting line ends as it goes."""
    cuts: list[tuple[int, int, int]] = []
    start, first_line = 0, 1  # the open range
    pos = newlines = 0  # bytes and line ends before this chunk
    target = shard_bytes
    while chunk := stream.read(SCAN_BYTES):
        counted = 0  # line ends of this chunk before `counted` are in `newlines`
        while (at := max(target - 1 - pos, counted)) < len(chunk) and (nl := chunk.find(b"\n", at)) >= 0:
            newlines += chunk.count(b"\n", counted, nl + 1)
            counted = nl + 1
            end = pos + nl + 1
            cuts.append((start, end, first_line))
            start, first_line, target = end, newlines + 1, end + shard_bytes
        newlines += chunk.count(b"\n", counted)
        pos += len(chunk)
    if pos > start:
        cuts.append((start, pos, first_line))
    return cuts


def _plan_parquet(fs: pafs.FileSystem, f: InputFile, shard_bytes: int) -> list[Shard]:
    import pyarrow.parquet as pq

    with fs.open_input_file(f.path) as fh:
        pf = pq.ParquetFile(fh)
        md, schema = pf.metadata, pf.schema_arrow
    if "text" not in schema.names:
        return [_shard(f, 0, 0, 0, 0, 0, f"{f.uri}: no 'text' column")]
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return [_shard(f, 0, 0, 0, 0, 0, f"{f.uri}: 'text' column is {kind}, expected strings")]
    rows = md.num_rows
    data = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    per_shard = max(1, int(shard_bytes * rows / max(1, data)))
    return [
        _shard(
            f, i, s, min(s + per_shard, rows), s + 1, data * (min(s + per_shard, rows) - s) // max(1, rows)
        )
        for i, s in enumerate(range(0, rows, per_shard))
    ]


# ---- reading one shard ------------------------------------------------------------------------------
def read_shard(fs: pafs.FileSystem, shard: Shard) -> pa.Table:
    """The records of one shard as :data:`ROWS`; a shard that fails half-way is one error record (its
    records are not guessed at), and a shard without records one row with ``n`` 0."""
    if shard.error:
        cols: tuple[list, ...] = ([None], [None], [None], [shard.error])
    else:
        try:
            cols = _read_jsonl(fs, shard) if shard.fmt == "jsonl" else _read_parquet(fs, shard)
        except (OSError, pa.ArrowException) as e:
            what = "bytes" if shard.fmt == "jsonl" else "rows"
            msg = f"{shard.uri}: {what} {shard.start + 1}-{shard.end}: cannot read ({type(e).__name__})"
            cols = ([None], [None], [None], [msg])
    n = len(cols[0])
    if n == 0:
        return pa.table([[shard.name], [shard.uri], [0], [None], [None], [None], [None]], schema=ROWS)
    return pa.table([[shard.name] * n, [shard.uri] * n, [n] * n, *cols], schema=ROWS)


def _read_jsonl(fs: pafs.FileSystem, shard: Shard) -> tuple[list, ...]:
    if compressed(shard.path):
        with fs.open_input_stream(shard.path, compression="detect") as stream:
            skip = shard.start
            while skip > 0 and (chunk := stream.read(min(skip, SCAN_BYTES))):
                skip -= len(chunk)
            data = stream.read(shard.end - shard.start)
    else:
        with fs.open_input_file(shard.path) as fh:
            fh.seek(shard.start)
            data = fh.read(shard.end - shard.start)
    if len(data) != shard.end - shard.start:  # the file shrank since it was planned: no silent loss
        raise OSError("shorter than when the job was planned")
    lines, ids, texts, errors = [], [], [], []
    for n, raw in enumerate(data.split(b"\n"), shard.line):
        if not raw.strip():
            continue
        rid, text, err = parse_line(raw, n)
        lines.append(n), ids.append(rid), texts.append(text)
        errors.append(f"{shard.uri}: {err}" if err else None)
    return lines, ids, texts, errors


def parse_line(raw: bytes, n: int) -> tuple[str, str | None, str | None]:
    """``(id as JSON, text, error)`` of one JSONL line; the id is the line number when it has none (or is
    unreadable), the error names the line and never quotes it."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return json.dumps(n), None, f"line {n}: not valid UTF-8"
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


def _read_parquet(fs: pafs.FileSystem, shard: Shard) -> tuple[list, ...]:
    import pyarrow.parquet as pq

    with fs.open_input_file(shard.path) as fh:
        pf = pq.ParquetFile(fh)
        cols = [c for c in ("id", "text") if c in pf.schema_arrow.names]
        table = _row_range(pf, shard.start, shard.end, cols)
    rows = list(range(shard.start + 1, shard.end + 1))
    raw_ids = table.column("id").to_pylist() if "id" in cols else [None] * len(rows)
    ids = [json.dumps(i if i is not None else k, default=str) for i, k in zip(raw_ids, rows, strict=True)]
    texts = table.column("text").cast(pa.string()).to_pylist()
    errors = [
        None if t is not None else f"{shard.uri}: row {k}: null 'text'"
        for t, k in zip(texts, rows, strict=True)
    ]
    return rows, ids, texts, errors


def _row_range(pf: Any, start: int, end: int, columns: list[str]) -> pa.Table:
    """Rows ``start``..``end`` of a Parquet file, reading only the row groups that hold them."""
    parts, offset = [], 0
    for g in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        lo, hi = max(start, offset), min(end, offset + rows)
        if lo < hi:
            parts.append(pf.read_row_group(g, columns=columns).slice(lo - offset, hi - lo))
        offset += rows
        if offset >= end:
            break
    return pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table().select(columns)
