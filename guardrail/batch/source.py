"""A Ray Data datasource of shards: one read task per shard, so each block the actors see is one whole
shard (what the sink needs to commit it as one file).

Ray's own JSON reader fails a whole file on one bad line and numbers no lines; this one parses line by
line on the workers (:func:`guardrail.batch.inputs.read_shard`), so a bad line is one error record naming
its file and line while the rest goes on.
"""

from __future__ import annotations

import functools

import pyarrow.fs as pafs
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from guardrail.batch.inputs import Shard, read_shard


class ShardDatasource(Datasource):
    def __init__(self, fs: pafs.FileSystem, shards: list[Shard]):
        super().__init__()
        self.fs, self.shards = fs, shards

    def get_name(self) -> str:
        return "ReadShards"

    def estimate_inmemory_data_size(self) -> int:
        return sum(s.est_bytes for s in self.shards)

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        """One task per shard whatever ``parallelism`` asks: a shard is the unit of output and resume."""
        return [
            ReadTask(
                functools.partial(_read, self.fs, s),
                BlockMetadata(num_rows=None, size_bytes=s.est_bytes, input_files=[s.uri], exec_stats=None),
            )
            for s in self.shards
        ]


def _read(fs: pafs.FileSystem, shard: Shard) -> list:
    return [read_shard(fs, shard)]
