"""The model side of a batch job: one :class:`~guardrail.pipeline.Guardrail` per Ray actor."""

from __future__ import annotations

import json
import logging

import pyarrow as pa

from guardrail.batch.config import REDACTED, BatchConfig
from guardrail.batch.inputs import fmt_of

log = logging.getLogger(__name__)


class RedactActor:
    """Called by Ray Data with one shard (a ``pyarrow`` table of :data:`~guardrail.batch.config.ROWS`);
    returns it redacted (:data:`~guardrail.batch.config.REDACTED`), row for row, in order."""

    def __init__(self, cfg: BatchConfig, threads: int | None = None):
        import ray
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
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, shard: pa.Table) -> pa.Table:
        rows = shard.to_pylist()
        texts: list[str | None] = [None] * len(rows)
        spans: list[str | None] = [None] * len(rows)
        errors = [r["error"] for r in rows]
        todo = [i for i, r in enumerate(rows) if r["n"] and r["error"] is None]
        for k in range(0, len(todo), self.cfg.batch_size):
            self._redact(rows, todo[k : k + self.cfg.batch_size], texts, spans, errors)
        return pa.table(
            [
                [r["shard"] for r in rows],
                [r["file"] for r in rows],
                [r["n"] for r in rows],
                [r["line"] for r in rows],
                [r["id"] for r in rows],
                texts,
                spans,
                errors,
                [self.node] * len(rows),
            ],
            schema=REDACTED,
        )

    def _redact(self, rows: list[dict], part: list[int], texts: list, spans: list, errors: list) -> None:
        """Redact the records ``part`` in place; if the model fails they get an error, never their text."""
        from guardrail.redact import Redactor

        try:
            found = self.guard.detect([rows[i]["text"] for i in part], labels=self.cfg.labels)
            for i, got in zip(part, found, strict=True):
                done = Redactor(self.cfg.operator, key=self.cfg.key).redact(
                    rows[i]["text"], got
                )  # per record
                texts[i], spans[i] = done.text, json.dumps([s.to_dict() for s in done.spans])
        except Exception as e:  # fail closed: the batch gets errors, no raw text goes out
            log.error("a batch of %d records failed: %s", len(part), type(e).__name__)
            for i in part:
                texts[i], spans[i] = None, None
                where = "row" if fmt_of(rows[i]["file"]) == "parquet" else "line"
                errors[i] = f"{rows[i]['file']}: {where} {rows[i]['line']}: not redacted ({type(e).__name__})"
