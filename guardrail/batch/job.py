"""One batch job: list and plan the input, check it (``--on-error fail``), skip what an earlier run of the
same job finished, redact the rest on Ray Data, and write the manifest (and, for a single-file output,
join the shards into it).

The driver handles names and counts only: file listings, shard descriptions (a few hundred bytes each),
done markers. Records travel from read tasks to actors to the sink on the workers, one shard at a time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import posixpath
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs

from guardrail.batch.actor import RedactActor
from guardrail.batch.config import FORMATS, PARQUET_OUT, SAMPLE_ERRORS, BatchConfig, BatchError, BatchResult
from guardrail.batch.inputs import (
    InputFile,
    Shard,
    filesystem,
    fmt_of,
    list_inputs,
    plan_file,
    read_shard,
    uri_of,
)
from guardrail.batch.sink import JOB, MANIFEST, MARKERS, OutputDir, ShardSink

log = logging.getLogger(__name__)

LOCAL_BYTES = 32 << 20
"""Inputs smaller than this are planned and checked in the driver process, where a Ray Data round trip
costs more than the work; larger ones on the workers."""
MAX_SHARD_MB = 64
"""A shard travels as one Ray Data block; Ray slices blocks past 1.5x its target block size (128 MiB by
default), and a sliced shard would be refused by the sink."""
SAME_JOB = ("bundle", "operator", "key_fingerprint", "labels", "model", "runtime", "onnx_dir", "patterns")
"""Options that change the output: a rerun into an existing output must match them (workers, batch size,
device, dtype, address and progress may differ)."""


@dataclass(frozen=True, slots=True)
class Target:
    out: OutputDir
    """Where the shards go: the output directory, or the staging directory of a single-file output."""
    single: str | None
    """The single output file (``.jsonl``/``.parquet``), joined from the shards at the end; None for a
    directory output."""


# ---- the job ----------------------------------------------------------------------------------------
def redact_file(
    input_path: str,
    output_path: str,
    cfg: BatchConfig,
    on_error: str = "report",
    *,
    actor: type = RedactActor,
) -> BatchResult:
    """Redact ``input_path`` (a file, directory, glob or URI of JSONL/Parquet) into ``output_path`` (a
    directory of shards, or one ``.jsonl``/``.parquet`` file). Reruns resume. ``actor`` is for tests."""
    from guardrail.bundle import Bundle
    from guardrail.redact import Redactor

    Redactor(cfg.operator, key=cfg.key)  # usage errors before any work: a missing hash key,
    Bundle.load(cfg.bundle)  # a bundle that is not there
    if not 0 < cfg.shard_mb <= MAX_SHARD_MB:
        raise BatchError(f"shard size must be more than 0 and at most {MAX_SHARD_MB} MiB")
    target = resolve_output(output_path, cfg.format)
    fs, files = _not_output(*list_inputs(input_path), target)
    started = False
    try:
        started = sum(f.size for f in files) >= LOCAL_BYTES and _init_ray(cfg)  # planning on the workers
        shards = plan(fs, files, cfg)
        if on_error == "fail":
            check_input(fs, shards)  # before anything is written
        started = _init_ray(cfg) or started
        job = job_record(files, shards, cfg, target)
        claim(target.out, job)
        done = target.out.done() & {s.name for s in shards}
        if done:
            print(f"guardrail: resuming: {len(done)} of {len(shards)} shards already done", file=sys.stderr)
        pending = [s for s in shards if s.name not in done]
        written = run_shards(fs, pending, target.out, cfg, actor) if pending else []
        stats = gather(target.out, shards, written)
        manifest = write_manifest(target, input_path, files, shards, stats, cfg, on_error, len(done))
        if target.single:
            join_shards(target, shards)
    finally:
        if started:
            import ray

            ray.shutdown()
    return BatchResult(
        records=manifest["records"],
        errors=manifest["errors"],
        bad=[(ln, e) for ln, e in manifest["error_samples"]],
        shards=len(shards),
        resumed=len(done),
        output=manifest["output"],
    )


# ---- output -----------------------------------------------------------------------------------------
def resolve_output(output_path: str, fmt: str | None) -> Target:
    """A ``.jsonl``/``.parquet`` path is one file (shards staged in ``<path>.parts/``, joined at the end);
    anything else a directory of shards in ``fmt`` (default parquet)."""
    if fmt is not None and fmt not in FORMATS:
        raise BatchError(f"unknown output format {fmt!r} (parquet or jsonl)")
    fs, path = filesystem(output_path)
    kind = fs.get_file_info(path).type
    single = fmt_of(path) if kind != pafs.FileType.Directory else None
    if single:
        if fmt and fmt != single:
            raise BatchError(f"{output_path}: a .{single} file cannot hold {fmt} (use a directory)")
        staging = f"{path}.parts"
        return Target(OutputDir(fs, staging, uri_of(fs, staging), single), path)
    if kind == pafs.FileType.File:
        raise BatchError(f"{output_path}: is a file (a directory of shards, or a .jsonl/.parquet file)")
    return Target(OutputDir(fs, path, uri_of(fs, path), fmt or "parquet"), None)


def _not_output(fs: pafs.FileSystem, files: list[InputFile], target: Target) -> tuple[pafs.FileSystem, list]:
    """The input without this job's own output (an output directory inside the input directory would
    otherwise be read back as input on a rerun)."""
    if fs.type_name != target.out.fs.type_name:
        return fs, files
    mine = (f"{target.out.path.rstrip('/')}/", target.single or "\0")
    kept = [f for f in files if not f.path.startswith(mine[0]) and f.path != mine[1]]
    if not kept:
        raise BatchError("the input holds nothing but this job's output")
    return fs, kept


def job_record(files: list[InputFile], shards: list[Shard], cfg: BatchConfig, target: Target) -> dict:
    """What decides the output, to tell a rerun of this job from another job into the same directory."""
    from guardrail import __version__

    opts = cfg.options()
    return {
        "version": __version__,
        "inputs": [[f.uri, f.size, f.mtime_ns] for f in files],
        "format": target.out.fmt,
        "shards": len(shards),
        "shard_mb": cfg.shard_mb,
        "options": {k: opts[k] for k in SAME_JOB},
    }


def claim(out: OutputDir, job: dict) -> None:
    """Mark ``out`` as this job's, or check that it already is: a rerun continues its own job only."""
    import json

    path = out.meta_path(JOB)
    if out.fs.get_file_info(path).type == pafs.FileType.File:
        old = out.read_json(path)
        if old != job:
            diff = sorted(k for k in set(old) | set(job) if old.get(k) != job.get(k))
            raise BatchError(
                f"{out.uri} holds the output of another job (different {', '.join(diff)}): "
                "use a new output, or remove it to start again"
            )
        return
    listing = out.fs.get_file_info(pafs.FileSelector(out.path, allow_not_found=True))
    if any(not posixpath.basename(i.path).startswith((".", "_")) for i in listing):
        raise BatchError(f"{out.uri} is not empty and not a guardrail batch output: use a new output")
    out.fs.create_dir(posixpath.join(out.path, MARKERS), recursive=True)
    out.put(path, json.dumps(job, indent=1).encode())


def gather(out: OutputDir, shards: list[Shard], written: list[dict]) -> dict[str, dict]:
    """Counts of every shard: this run's from the sink, earlier runs' from their done markers. Every
    planned shard must be there exactly once."""
    stats = {s["shard"]: s for s in written}
    for s in shards:
        if s.name not in stats and out.fs.get_file_info(out.marker_path(s.name)).type == pafs.FileType.File:
            stats[s.name] = out.read_json(out.marker_path(s.name))
    if missing := [s.name for s in shards if s.name not in stats]:
        raise BatchError(f"the job finished without {len(missing)} of {len(shards)} shards; run it again")
    return stats


def write_manifest(
    target: Target,
    input_path: str,
    files: list[InputFile],
    shards: list[Shard],
    stats: dict[str, dict],
    cfg: BatchConfig,
    on_error: str,
    resumed: int,
) -> dict:
    """``_manifest.json`` (and ``<file>.manifest.json`` beside a single-file output): written last."""
    import json

    import ray

    from guardrail import __version__

    per_file: dict[str, dict] = {
        f.uri: {"uri": f.uri, "size": f.size, "shards": 0, "rows": 0, "errors": 0} for f in files
    }
    samples: list = []
    for s in shards:
        st, f = stats[s.name], per_file[s.uri]
        f["shards"] += 1
        f["rows"] += st["rows"]
        f["errors"] += st["errors"]
        samples += st["error_samples"][: SAMPLE_ERRORS - len(samples)]
    out_fs, out_path = target.out.fs, target.single or target.out.path
    manifest = {
        "version": __version__,
        "ray": ray.__version__,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": input_path,
        "output": uri_of(out_fs, out_path),
        "format": target.out.fmt,
        "bundle": cfg.bundle,
        "options": cfg.options() | {"on_error": on_error},
        "records": sum(f["rows"] for f in per_file.values()),
        "errors": sum(f["errors"] for f in per_file.values()),
        "error_samples": samples,
        "files": list(per_file.values()),
        "shards": [
            {
                "name": s.name,
                "file": s.uri,
                "index": s.index,
                **{k: stats[s.name][k] for k in ("rows", "errors", "node")},
            }
            for s in shards
        ],
        "resumed_shards": resumed,
    }
    data = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
    target.out.put(target.out.meta_path(MANIFEST), data)
    if target.single:
        target.out.put(f"{target.single}.manifest.json", data)
    return manifest


def join_shards(target: Target, shards: list[Shard]) -> None:
    """The single-file output: the shards in input order, one at a time, written all at once (a
    temporary name, then a rename); the staging directory goes after."""
    import pyarrow.parquet as pq

    out, dest = target.out, target.single
    assert dest is not None
    buf_path = posixpath.join(posixpath.dirname(dest), f".{posixpath.basename(dest)}.joining")
    with out.fs.open_output_stream(buf_path) as sink:
        if out.fmt == "parquet":
            with pq.ParquetWriter(sink, PARQUET_OUT) as w:
                for s in shards:
                    w.write_table(
                        pq.read_table(out.shard_path(s.name), filesystem=out.fs, schema=PARQUET_OUT)
                    )
        else:
            for s in shards:
                with out.fs.open_input_stream(out.shard_path(s.name)) as src:
                    while chunk := src.read(8 << 20):
                        sink.write(chunk)
    out.fs.move(buf_path, dest)
    out.fs.delete_dir(out.path)


# ---- planning and checking --------------------------------------------------------------------------
def plan(fs: pafs.FileSystem, files: list[InputFile], cfg: BatchConfig) -> list[Shard]:
    """Every shard of every file, in input order: in this process for small inputs, else one Ray task
    per file (a JSONL file is scanned once for line ends; a Parquet file's footer is read)."""
    shard_bytes = max(1, int(cfg.shard_mb * (1 << 20)))
    if sum(f.size for f in files) < LOCAL_BYTES:
        return [s for f in files for s in plan_file(fs, f, shard_bytes)]
    import ray.data

    rows = (
        ray.data.from_items([asdict(f) for f in files])
        .flat_map(functools.partial(_plan_row, fs=fs, shard_bytes=shard_bytes))
        .take_all()
    )
    return sorted((Shard.from_dict(r) for r in rows), key=lambda s: (s.path, s.index))


def _plan_row(row: dict, *, fs: pafs.FileSystem, shard_bytes: int) -> list[dict]:
    return [s.to_dict() for s in plan_file(fs, InputFile(**row), shard_bytes)]


def check_input(fs: pafs.FileSystem, shards: list[Shard]) -> None:
    """``--on-error fail``: read and parse the whole input (no model) and refuse it if any record is bad,
    before anything is written."""
    if sum(s.est_bytes for s in shards) < LOCAL_BYTES:
        errors = [e for s in shards for e in read_shard(fs, s)["error"].to_pylist() if e is not None]
        first, count = (errors[0] if errors else None), len(errors)
    else:
        import ray.data

        from guardrail.batch.source import ShardDatasource

        ds = ray.data.read_datasource(
            ShardDatasource(fs, shards), override_num_blocks=len(shards)
        ).map_batches(_errors_only, batch_format="pyarrow", batch_size=None)
        first, count = None, 0
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            first = first or (batch["error"][0].as_py() if batch.num_rows else None)
            count += batch.num_rows
    if count:
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise BatchError(f"{first}{more}; nothing written (use --on-error report to go on)")


def _errors_only(batch: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return batch.filter(pc.is_valid(batch["error"])).select(["error"])


# ---- Ray --------------------------------------------------------------------------------------------
def run_shards(
    fs: pafs.FileSystem, shards: list[Shard], out: OutputDir, cfg: BatchConfig, actor: type
) -> list[dict]:
    """Read, redact and write ``shards`` on Ray Data; returns the counts of each shard written.

    Read and write tasks ask for no CPU: they are I/O and light parsing, and the actors hold the cores
    (a read task that waits for a core the actors keep would stall the job)."""
    import ray.data

    from guardrail.batch.source import ShardDatasource

    workers, gpus, cpus, threads = _plan(cfg)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.progress
    ctx.execution_options.preserve_order = False  # shards carry their own names; order is the sink's
    sink = ShardSink(out)
    ray.data.read_datasource(
        ShardDatasource(fs, shards),
        override_num_blocks=len(shards),  # else Ray splits read outputs to reach its default parallelism
        ray_remote_args={"num_cpus": 0},
        concurrency=min(2 * workers, len(shards)),
    ).map_batches(
        actor,
        fn_constructor_kwargs={"cfg": cfg, "threads": threads},
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=None,  # one call per block, and a block is one shard
        batch_format="pyarrow",
        num_cpus=cpus,
        num_gpus=gpus,
    ).write_datasink(sink, ray_remote_args={"num_cpus": 0}, concurrency=min(max(2, workers), len(shards)))
    return sink.written


def _init_ray(cfg: BatchConfig) -> bool:
    """Start (or join) Ray; returns whether this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report
    with _keep_sigterm_handler():
        _start_ray(cfg)
    return True


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the process's SIGTERM handler with one that exits at once; put back the
    caller's (``guardrail batch`` turns SIGTERM into a clean stop: Ray shut down, whole shards kept)."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    if callable(previous) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _start_ray(cfg: BatchConfig) -> None:
    import ray
    import torch

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


def _plan(cfg: BatchConfig) -> tuple[int, int, float, int | None]:
    """``(workers, gpus per actor, cpus per actor, torch threads per actor)`` from the Ray cluster's
    resources: one actor per GPU, else ``cfg.workers`` (default: one per 4 CPUs) sharing the CPUs, an
    actor never asking for more cores than the largest node has (it would wait forever)."""
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
    per_actor = max(1, min(cpus // workers, _largest_node_cpus() or cpus))
    return workers, 0, float(per_actor), per_actor


def _largest_node_cpus() -> int | None:
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    return max((int(n["Resources"].get("CPU", 0)) for n in alive), default=None)
