"""The output side of a batch job: a directory of shards, each committed whole under a name from the input.

Layout of an output directory (names starting with ``_`` or ``.`` are skipped by Ray, Spark and Arrow
when they read the directory back)::

    part-<stem>-<hash>-<index>.parquet   one per input shard (or .jsonl), records in input order
    _shards/<shard>.json                 done marker: written after its shard, holds its counts
    _job.json                            what this directory is the output of (a rerun must match it)
    _manifest.json                       written last: inputs, counts, errors, bundle, version, options

A shard is written to a hidden temporary name and renamed (one atomic step on a local or network file
system; on an object store the upload itself is atomic: an object appears whole or not at all), then its
marker the same way. A crash leaves whole shards and markers, or temporaries that a rerun overwrites: a
rerun skips the shards with a marker and redoes the rest, so every record lands exactly once.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from ray.data.datasource.datasink import Datasink, WriteResult

from guardrail.batch.config import PARQUET_OUT, SAMPLE_ERRORS, BatchError

MARKERS = "_shards"
JOB = "_job.json"
MANIFEST = "_manifest.json"


@dataclass(frozen=True, slots=True)
class OutputDir:
    fs: pafs.FileSystem
    path: str
    uri: str
    fmt: str

    def shard_path(self, name: str) -> str:
        return posixpath.join(self.path, f"{name}.{self.fmt}")

    def marker_path(self, name: str) -> str:
        return posixpath.join(self.path, MARKERS, f"{name}.json")

    def meta_path(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def put(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` all at once: a reader (or a rerun) never sees half of it."""
        if self.fs.type_name != "local":  # an object store: the object appears when its upload completes
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        head, tail = posixpath.split(path)
        tmp = posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def read_json(self, path: str) -> Any:
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read())

    def done(self) -> set[str]:
        """Names of the shards whose done marker is there."""
        sel = pafs.FileSelector(posixpath.join(self.path, MARKERS), allow_not_found=True)
        return {posixpath.basename(i.path)[: -len(".json")] for i in self.fs.get_file_info(sel)}


class ShardSink(Datasink[list[dict]]):
    """Writes each shard that reaches it as one file (see the module docstring); returns their counts."""

    def __init__(self, out: OutputDir):
        self.out = out
        self.written: list[dict] = []

    def get_name(self) -> str:
        return "WriteShards"

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        self.out.fs.create_dir(posixpath.join(self.out.path, MARKERS), recursive=True)

    def write(self, blocks: Iterable[pa.Table], ctx: Any) -> list[dict]:
        shards: dict[str, list[dict]] = {}
        for block in blocks:
            for row in block.to_pylist():
                shards.setdefault(row["shard"], []).append(row)
        return [commit_shard(self.out, name, rows) for name, rows in shards.items()]

    def on_write_complete(self, write_result: WriteResult[list[dict]]) -> None:
        self.written = [s for part in write_result.write_returns for s in part]


def commit_shard(out: OutputDir, name: str, rows: list[dict]) -> dict:
    """Write one whole shard, then its done marker; refuse a shard that did not arrive whole."""
    expected = rows[0]["n"]
    records = [r for r in rows if r["n"]]
    if len(records) != expected:
        raise BatchError(f"shard {name}: {len(records)} of {expected} records arrived; not written")
    data = encode(records, out.fmt)
    out.put(out.shard_path(name), data)
    errors = [[r["line"], r["error"]] for r in records if r["error"] is not None]
    stat = {
        "shard": name,
        "file": rows[0]["file"],
        "rows": expected,
        "errors": len(errors),
        "error_samples": errors[:SAMPLE_ERRORS],
        "node": rows[0]["node"],
        "bytes": len(data),
    }
    out.put(out.marker_path(name), json.dumps(stat).encode())
    return stat


def encode(records: list[dict], fmt: str) -> bytes:
    """Output records: ``{"id", "text", "spans"}``, or ``{"id", "line", "error"}`` for a bad one."""
    if fmt == "jsonl":
        return "".join(json.dumps(_jsonl(r), ensure_ascii=False) + "\n" for r in records).encode()
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(parquet_table(records), buf)
    return buf.getvalue().to_pybytes()


def _jsonl(r: dict) -> dict:
    rid = json.loads(r["id"]) if r["id"] is not None else None
    if r["error"] is not None:
        return {"id": rid, "line": r["line"], "error": r["error"]}
    return {"id": rid, "text": r["text"], "spans": json.loads(r["spans"])}


def parquet_table(records: list[dict]) -> pa.Table:
    ids = [json.loads(r["id"]) if r["id"] is not None else None for r in records]
    return pa.table(
        {
            "id": [i if isinstance(i, str) or i is None else str(i) for i in ids],
            "text": [r["text"] for r in records],
            "spans": [json.loads(r["spans"]) if r["spans"] is not None else None for r in records],
            "line": [r["line"] for r in records],
            "error": [r["error"] for r in records],
        },
        schema=PARQUET_OUT,
    )
