"""What a batch job is told (:class:`BatchConfig`), what it reports (:class:`BatchResult`), and the Arrow
schemas its stages hand each other."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from guardrail.bundle import DEFAULT_BUNDLE

ROWS = pa.schema(
    [
        ("shard", pa.string()),
        ("file", pa.string()),
        ("n", pa.int64()),
        ("line", pa.int64()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("error", pa.string()),
    ]
)
"""What a read task hands the actors: one row per record of one shard (``file`` its URI). ``n`` is the
shard's record count (the sink checks that the whole shard arrived; a shard without records is one row
with ``n`` 0), ``line`` the record's line (JSONL) or row (Parquet) number from 1, null for an error about
the whole file; ``id`` JSON-encoded (keeps its type); ``text`` null on a bad record."""

REDACTED = pa.schema(
    [
        ("shard", pa.string()),
        ("file", pa.string()),
        ("n", pa.int64()),
        ("line", pa.int64()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("spans", pa.string()),
        ("error", pa.string()),
        ("node", pa.string()),
    ]
)
"""What the actors hand the sink: ``text`` redacted, ``spans`` JSON, both null where ``error`` is set;
``node`` the Ray node that ran the model (the manifest says which node did which shard)."""

SPAN = pa.struct(
    [("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("score", pa.float64())]
)
PARQUET_OUT = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("spans", pa.list_(SPAN)),
        ("line", pa.int64()),
        ("error", pa.string()),
    ]
)
"""Output rows in Parquet (``id`` as a string: a column has one type)."""

FORMATS = ("parquet", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
"""A JSONL file may be compressed (``records.jsonl.gz``): pyarrow's streams decompress it by suffix."""


class BatchError(ValueError):
    """Input or output that cannot be used as given (exit 2), or a job that did not return every record
    exactly once."""


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
    """Records per model call inside an actor."""
    shard_mb: float = 4.0
    """Input per shard (MiB of JSONL, or of Parquet data by its footer): the unit of work, of output
    files and of resume. Small enough that a crash loses little, large enough to keep an actor busy."""
    format: str | None = None
    """Shard format of a directory output (``parquet`` or ``jsonl``); default: parquet. A ``.jsonl`` or
    ``.parquet`` output path is one file in that format instead."""
    address: str | None = None
    """An existing Ray cluster (``auto`` or ``host:port``); default: a local instance for this job."""
    progress: bool = True

    def options(self) -> dict[str, object]:
        """The job's options as the manifest records them: never the hash key, only whether one was set
        and a fingerprint of it (an HMAC of a fixed message), so a resume under another key is refused."""
        out = asdict(self)
        key = out.pop("key") or os.environ.get("GUARDRAIL_HASH_KEY")
        out["key_fingerprint"] = key_fingerprint(key) if key and self.operator == "hash" else None
        return out


def key_fingerprint(key: str) -> str:
    """Tells two keys apart without revealing either (an HMAC under the key, not the key)."""
    return hmac.new(key.encode(), b"guardrail batch job", hashlib.sha256).hexdigest()[:16]


@dataclass(slots=True)
class BatchResult:
    records: int
    """Records read (good and bad)."""
    errors: int = 0
    """Records that were not redacted (bad input, a file that cannot be read, a failed model batch)."""
    bad: list[tuple[int | None, str]] = field(default_factory=list)
    """``(line, error)`` of the first bad records (at most :data:`SAMPLE_ERRORS`); never text."""
    shards: int = 0
    resumed: int = 0
    """Shards an earlier run of the same job had already written (skipped this time)."""
    output: str = ""


SAMPLE_ERRORS = 100
"""Error messages the result and the manifest keep; the count covers them all."""
