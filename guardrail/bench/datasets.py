"""Which records a benchmark reads: JSONL files in the project format, the shared dev sets, a fresh
synthetic set. Each set knows the labels it annotates, so that scoring can set the others apart."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from guardrail.bench import BenchError
from guardrail.data import DataError, Record, read_jsonl

DEV_SETS: tuple[str, ...] = (
    "presidio_synth_v2.jsonl",
    "wnut17_test.jsonl",
    "uner_en_ewt_dev.jsonl",
    "uner_zh_gsd_dev.jsonl",
    "ja_gsd_dev.jsonl",
)
"""The shared dev suite (``../shared/data``), read by default: synthetic requests, tweets, English web
text, Chinese and Japanese. Settings are chosen on all of them, never on one."""

SYNTH_SEED_OFFSET = 10_000
"""A synthetic benchmark set is drawn at ``seed + SYNTH_SEED_OFFSET``: training draws at seeds below 200."""
SYNTH_FAMILY = "calib"
"""The generator's held-out frame family: a shifted distribution, not the frames the probe trained on."""


@dataclass(slots=True)
class Dataset:
    """A named list of labelled records and where it came from."""

    name: str
    records: list[Record]
    source: str
    """A file path, or how a synthetic set was generated."""

    @property
    def annotates(self) -> list[str]:
        """Labels with at least one gold span in the set (the others are never annotated in it)."""
        return sorted({s.label for r in self.records for s in r.spans})

    @property
    def chars(self) -> int:
        return sum(len(r.text) for r in self.records)


def dev_data_dir(repo: Path | None = None) -> Path:
    """``$GUARDRAIL_DEV_DATA``, else ``$GUARDRAIL_SHARED/data``, else ``../shared/data`` next to the repo."""
    if env := os.environ.get("GUARDRAIL_DEV_DATA"):
        return Path(env)
    if env := os.environ.get("GUARDRAIL_SHARED"):
        return Path(env) / "data"
    repo = repo or Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


def load_file(path: str | Path, limit: int | None = None) -> Dataset:
    """A JSONL file in the project format (first ``limit`` records); a bad file is a :class:`BenchError`."""
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"no data file at {p}")
    try:
        records = read_jsonl(p)
    except DataError as e:
        raise BenchError(str(e)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"cannot read {p} ({type(e).__name__})") from None
    if len({r.id for r in records}) != len(records):
        raise BenchError(f"{p}: record ids are not unique (predictions are matched by id)")
    name = p.name.removesuffix(".jsonl")
    return Dataset(name, records[:limit], str(p))


def dev_sets(limit: int | None = None, folder: Path | None = None) -> list[Dataset]:
    """Every shared dev set; a clear error when they are not where they should be."""
    folder = folder or dev_data_dir()
    missing = [n for n in DEV_SETS if not (folder / n).is_file()]
    if missing:
        raise BenchError(
            f"dev sets {', '.join(missing)} not found in {folder}; set GUARDRAIL_DEV_DATA or pass --data"
        )
    return [load_file(folder / n, limit) for n in DEV_SETS]


def synthetic(n: int, seed: int = 0) -> Dataset:
    """``n`` fresh records from :mod:`guardrail.synth` at a seed training never uses."""
    from guardrail import synth

    if n <= 0:
        raise BenchError("--synthetic needs a positive number of records")
    at = seed + SYNTH_SEED_OFFSET
    records = synth.generate(n, seed=at, family=SYNTH_FAMILY)
    return Dataset(
        f"synth_{SYNTH_FAMILY}_s{at}", records, f"guardrail.synth n={n} seed={at} family={SYNTH_FAMILY}"
    )


def select(
    paths: Sequence[str], synthetic_n: int, seed: int, limit: int | None, dev_folder: Path | None = None
) -> list[Dataset]:
    """The sets of a run: ``paths`` (else the dev sets), plus a synthetic set when ``synthetic_n``."""
    sets = [load_file(p, limit) for p in paths] if paths else dev_sets(limit, dev_folder)
    if synthetic_n:
        sets.append(synthetic(synthetic_n, seed))
    names = [d.name for d in sets]
    if len(set(names)) != len(names):
        raise BenchError(f"two data sets share a name: {names}")
    return sets
