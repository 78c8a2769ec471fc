"""Deterministic synthetic training data: varied texts with gold PII spans (``guardrail.synth``).

The probe is trained only on this data, so variety is what matters: many shapes (chat turns,
transcripts, emails, tickets, tool calls, logs, forms, prose), a compositional frame grammar, values
in eight locales (English, German, French, Spanish, Italian, Japanese, Chinese), labelled non-PII
entities and unlabelled hard negatives in the shapes of real text (tables, scores, amounts, chat
filler, treebank and social-media tokens, legal prose). ``family="calib"`` draws from a disjoint
quarter of the frames: a shifted distribution for calibrating thresholds.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from guardrail.data import Record, write_jsonl

# Importing the filler modules registers their slots.
from guardrail.synth import attrs, hardneg, ids, negatives, prose, values  # noqa: F401
from guardrail.synth.engine import Builder, Ctx, squeeze_cjk
from guardrail.synth.shapes import SHAPES

__all__ = ["DEFAULT_LOCALES", "FAMILIES", "generate", "iter_records", "main"]

DEFAULT_LOCALES: tuple[str, ...] = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "ja_JP", "zh_CN",
)  # fmt: skip
"""Locales drawn by default, weighted by :data:`LOCALE_WEIGHTS`."""

LOCALE_WEIGHTS: dict[str, float] = {
    "en_US": 0.36,
    "en_GB": 0.13,
    "de_DE": 0.085,
    "fr_FR": 0.085,
    "es_ES": 0.085,
    "it_IT": 0.085,
    "ja_JP": 0.085,
    "zh_CN": 0.085,
}
"""Share of records per locale (locales outside this table get the mean of the others)."""

FAMILIES: tuple[str, ...] = ("train", "calib")
"""``train``: three quarters of the frames; ``calib``: the other quarter (shifted distribution)."""


@functools.cache
def _faker(locale: str) -> Any:
    # Building a Faker costs ~50 ms; one per locale per process, reseeded for every record.
    from faker import Faker

    fake = Faker(locale)
    # Some providers build lists from sets (it_IT cities): their order follows str hashing, which
    # differs per process. Sorting them makes a seed give the same records under any PYTHONHASHSEED.
    for provider in fake.get_providers():
        for attr in ("cities",):
            val = getattr(provider, attr, None)
            if isinstance(val, list):
                setattr(provider, attr, sorted(val))
    return fake


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, acc = sum(weights), []
    run = 0.0
    for w in weights:
        run += w / total
        acc.append(run)
    return acc


def _choose(rng: random.Random, items: Sequence[str], cum: Sequence[float]) -> str:
    x = rng.random()
    for item, c in zip(items, cum, strict=True):
        if x < c:
            return item
    return items[-1]


def generate(
    n: int, seed: int = 0, *, family: str = "train", locales: Sequence[str] = DEFAULT_LOCALES
) -> list[Record]:
    """``n`` synthetic records, the same for the same arguments in every process.

    Record ``i`` depends only on ``(seed, family, i)``: a longer run extends a shorter one.
    """
    return list(iter_records(n, seed, family=family, locales=locales))


def iter_records(
    n: int, seed: int = 0, *, family: str = "train", locales: Sequence[str] = DEFAULT_LOCALES
) -> Iterator[Record]:
    """Yield the records of :func:`generate` one at a time."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    locales = tuple(locales)
    if not locales:
        raise ValueError("locales must not be empty")
    known = [LOCALE_WEIGHTS[x] for x in locales if x in LOCALE_WEIGHTS]
    fallback = sum(known) / len(known) if known else 1.0
    loc_cum = _cumulative([LOCALE_WEIGHTS.get(x, fallback) for x in locales])
    shape_names = tuple(SHAPES)
    shape_cum = _cumulative([SHAPES[s][0] for s in shape_names])
    for i in range(n):
        # A string seed is hashed with SHA-512 by random.Random: stable across processes and runs.
        rng = random.Random(f"synth/{family}/{seed}/{i}")
        locale = _choose(rng, locales, loc_cum)
        fake = _faker(locale)
        fake.seed_instance(rng.getrandbits(64))
        shape = _choose(rng, shape_names, shape_cum)
        ctx = Ctx(rng=rng, fake=fake, locale=locale, family=family)
        b = Builder()
        frame = SHAPES[shape][1](ctx, b)
        if locale[:2] in ("ja", "zh"):
            squeeze_cjk(b)  # no ASCII space between two CJK characters, whatever the frame wrote
        b.rstrip()
        yield Record(
            id=f"synth-{family}-{i:06d}",
            text=b.text(),
            spans=list(b.spans),
            lang=locale,
            extra={"shape": shape, "frame": frame},
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m guardrail.synth --n 1000 --seed 0 --family train --out FILE.jsonl``."""
    from tqdm import tqdm

    p = argparse.ArgumentParser(prog="python -m guardrail.synth", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="number of records")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", choices=FAMILIES, default="train")
    p.add_argument("--locales", default=",".join(DEFAULT_LOCALES), help="comma-separated Faker locales")
    p.add_argument("--out", required=True, help="output JSONL file")
    args = p.parse_args(argv)
    locales = [x.strip() for x in args.locales.split(",") if x.strip()]
    recs = iter_records(args.n, args.seed, family=args.family, locales=locales)
    written = write_jsonl(args.out, tqdm(recs, total=args.n, desc="synth", unit="rec", file=sys.stderr))
    print(f"wrote {written} records to {args.out}", file=sys.stderr)
    return 0
