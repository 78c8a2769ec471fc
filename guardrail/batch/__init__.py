"""Batch redaction at scale: JSONL or Parquet in (a file, a directory, a glob, an ``s3://``/``gs://``
URI), a directory of redacted shards out (or one file), the model work on Ray Data.

The input is cut into shards (line-aligned byte ranges of JSONL, row ranges of Parquet) named after their
file and position; Ray Data reads each shard on a worker (one task per shard, parsing line by line, so a
bad line is an error record naming its file and line), runs ``map_batches`` over an actor pool — one
:class:`~guardrail.pipeline.Guardrail` per actor, one actor per GPU when CUDA is present, else one per
group of CPU cores — and a datasink commits each shard whole (temporary name, then rename) with a done
marker. The driver only ever holds names and counts, so memory stays flat as the input grows; a rerun
into the same output skips finished shards. Locally ``ray.init`` starts a private instance; ``address``
joins an existing cluster (``ray start``), where the same job scales out.

Output records: ``{"id", "text" (redacted), "spans" (offsets into the original text)}``, or
``{"id", "line", "error"}`` for a bad record; a record without ``id`` gets its line (row) number.
Redaction fails closed: a record whose batch failed gets an error, never its raw text.
"""

from guardrail.batch.config import BatchConfig, BatchError, BatchResult
from guardrail.batch.job import _plan, redact_file

__all__ = ["BatchConfig", "BatchError", "BatchResult", "_plan", "redact_file"]
