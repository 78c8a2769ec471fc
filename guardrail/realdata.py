"""Real, human-annotated training corpora (``../shared/data/train/``) beside the synthetic generator.

Each JSONL file there is one *source*: real text with gold spans, its licence and provenance on every
record. This module reads them, draws a deterministic mix by per-source weights, holds a slice of
every source out for threshold calibration (never the evaluation sets in ``../shared/data``), and says
which tokens of a record can be trusted as ``O``.

A source labels only some entity types: an unlabelled stretch of a tweet corpus may still hold an
e-mail address or a phone number, and a booking corpus that labels names but not places leaves
"Nando's" unlabelled. Training those stretches as ``O`` would teach the probe to pass PII, so
:func:`trust_mask` masks the words that could be PII of a type the source never annotates: words with
a digit (numbers, IDs, phones, cards, addresses), with ``@``, ``://`` or ``www.`` (e-mail, handles,
URLs), and, where the source annotates no person, place or organisation, capitalised words. Masked
tokens are left out of fitting and calibration (label ``-1``). In Chinese, Japanese or Thai text a
"word" is a run of that script's letters or a run of other characters between them (:data:`WORD`):
"全長17公里" doubts "17", not the clause around it.

Sources also disagree on what a label means. The Broad Twitter Corpus tags nationality words
("Russian embassy", "Israeli") as places; CrossNER tags them ``misc``, the synthetic generator
``OTHER`` (Presidio's NRP), and the web-text treebanks not at all. :func:`load_source` gives every
source one convention: a gold ``LOCATION`` that is a nationality word (:func:`nationality_words`) is
``OTHER`` (:data:`CONVENTIONS`).
"""

from __future__ import annotations

import functools
import json
import os
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import regex

from guardrail.data import DataError, Record, read_jsonl
from guardrail.spans import UNSPACED_LETTERS

MASKED = -1
"""Token label of a token that is neither trusted as ``O`` nor inside a gold span."""

DEFAULT_MIX: dict[str, float] = {
    # assistant and customer requests (en)
    "snips_nlu_benchmark": 0.06,
    "hwu64_nlu_evaluation_data": 0.06,
    "slurp_devel_test": 0.03,
    "polyai_restaurant8k": 0.05,
    "polyai_nlupp": 0.03,
    # social media (en)
    "broad_twitter_corpus": 0.11,
    "wnut17_emerging_entities_train_dev": 0.09,
    # encyclopaedic prose (en)
    "crossner_wikipedia_5domains": 0.07,
    # unspaced scripts: a third of the mix (the probe's hardest text: one token is often one character)
    "ja_gsd_train": 0.18,
    "uner_zh_gsd_train": 0.08,
    "uner_zh_gsdsimp_train": 0.08,
    # other languages
    "xsid_multilingual_valid_test": 0.07,
    "uner_pt_bosque_train": 0.03,
    "uner_da_ddt_train": 0.03,
    "uner_sv_talbanken_train": 0.03,
}
"""Share of the real records drawn from each source (renormalised over the sources present)."""

CALIB_EVERY = 10
"""One record in this many of each source (by a hash of its id) is held out for calibration."""

NAME_TYPES = frozenset({"PERSON", "LOCATION", "ORGANIZATION"})

WORD = regex.compile(rf"[{UNSPACED_LETTERS}]+|[^\s{UNSPACED_LETTERS}]+")
"""A word to :func:`trust_mask`: a run of letters of a script written without spaces (a Chinese or
Japanese clause holds no digit, ``@`` or capital), or a run of other non-space characters. Split at
white space alone, a Chinese sentence with one number in it was a single doubtful word: a third of the
Chinese and Japanese corpora's sentences had every ``O`` token left out."""

MASKING = (
    "O tokens of words that may be PII of a type the corpus never annotates (digits, @, URLs; "
    "capitalised words where it labels no person/place/organisation; in Chinese and Japanese text a word "
    "is a run of the script's letters or of other characters) are left out of fitting and calibration"
)
"""What :func:`trust_mask` leaves out, as the model card says it."""

CONVENTIONS = (
    "a gold LOCATION that is a nationality word (demonyms of the countryinfo package, MIT, and their "
    "plurals) is trained as OTHER, as the synthetic generator labels it: the Broad Twitter Corpus tags "
    "'Russian' or 'Israeli' as places, the other sources do not"
)
"""How :func:`load_source` makes the sources' labels agree, as the model card says it."""


@functools.cache
def nationality_words() -> frozenset[str]:
    """Demonyms of every country in the ``countryinfo`` package ("Israeli", "South Korean") and their
    plurals; entries that are the country's own name ("Gibraltar") are left out."""
    from countryinfo import CountryInfo

    out: set[str] = set()
    for country in CountryInfo.all().values():
        names = {str(country.get("name", "")), *map(str, country.get("altSpellings") or [])}
        for word in regex.split(r"[,/]", str(country.get("demonym") or "")):
            word = word.strip()
            if word and word not in names:
                out.add(word)
                if not word.endswith(("s", "sh", "ch", "ese")):
                    out.add(word + "s")
    return frozenset(out)


def agree(record: Record) -> Record:
    """``record`` with its gold labels in the project's convention (:data:`CONVENTIONS`)."""
    words = nationality_words()
    spans = [
        replace(s, label="OTHER") if s.label == "LOCATION" and record.text[s.start : s.end] in words else s
        for s in record.spans
    ]
    return record if spans == record.spans else replace(record, spans=spans)


def train_data_dir() -> Path:
    """``$GUARDRAIL_TRAIN_DATA``, else ``<dev data>/train`` (``../shared/data/train``)."""
    if env := os.environ.get("GUARDRAIL_TRAIN_DATA"):
        return Path(env)
    from guardrail.bench.datasets import dev_data_dir

    return dev_data_dir() / "train"


@dataclass(slots=True)
class Source:
    """One corpus file: its records and what it annotates."""

    name: str
    records: list[Record]
    licences: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    """Where its records come from (``github:<owner>/<repo>@<commit>``, the file path cut off)."""
    langs: list[str] = field(default_factory=list)

    @property
    def annotates(self) -> frozenset[str]:
        """Labels with at least one gold span in the source."""
        return frozenset(s.label for r in self.records for s in r.spans)

    def card_row(self) -> dict[str, object]:
        """What the bundle's card lists for it."""
        return {
            "source": self.name,
            "licence": ", ".join(self.licences),
            "origin": self.origins,
            "langs": self.langs,
            "annotates": sorted(self.annotates),
            "records": len(self.records),
        }


def load_source(path: Path) -> Source:
    """Read one corpus file, its labels in the project's convention (:func:`agree`); a file that is not
    the project's format is a :class:`DataError`."""
    records = [agree(r) for r in read_jsonl(path)]
    licences = sorted({str(r.extra.get("licence", "unknown")) for r in records})
    origins = sorted({str(r.extra.get("source", "unknown")).rsplit(":", 1)[0] for r in records})
    langs = sorted({r.lang or "unknown" for r in records})
    return Source(path.name.removesuffix(".jsonl"), records, licences, origins, langs)


def load_sources(folder: Path | None = None, names: Sequence[str] | None = None) -> list[Source]:
    """The sources in ``folder`` (default :func:`train_data_dir`), all or the ``names`` given."""
    folder = folder or train_data_dir()
    if not folder.is_dir():
        raise DataError(f"no training corpora at {folder}; set GUARDRAIL_TRAIN_DATA")
    files = sorted(folder.glob("*.jsonl"))
    if names is not None:
        found = {p.name.removesuffix(".jsonl"): p for p in files}
        if missing := [n for n in names if n not in found]:
            raise DataError(f"training corpora not found in {folder}: {', '.join(missing)}")
        files = [found[n] for n in names]
    if not files:
        raise DataError(f"no *.jsonl corpora in {folder}")
    return [load_source(p) for p in files]


def is_calib(record: Record) -> bool:
    """Whether ``record`` is in the held-out calibration slice of its source (stable across runs)."""
    return zlib.crc32(record.id.encode()) % CALIB_EVERY == 0


def draw(
    sources: Sequence[Source],
    n: int,
    mix: Mapping[str, float] | None = None,
    *,
    seed: int = 0,
    calib: bool = False,
) -> list[Record]:
    """``n`` records drawn from the sources by their mix weight (``calib``: from the held-out slices
    instead); a source with fewer records than its share gives all it has. Deterministic."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    present = [s for s in sources if mix.get(s.name, 0.0) > 0]
    total = sum(mix[s.name] for s in present)
    out: list[Record] = []
    for s in present:
        pool = [r for r in s.records if is_calib(r) == calib]
        k = min(len(pool), round(n * mix[s.name] / total))
        rng = random.Random(f"realdata/{s.name}/{seed}/{calib}")
        for r in rng.sample(pool, k):
            out.append(Record(r.id, r.text, r.spans, r.lang, {**r.extra, "corpus": s.name}))
    random.Random(f"realdata/order/{seed}/{calib}").shuffle(out)
    return out


def _maybe_pii_word(word: str, names_unannotated: bool) -> bool:
    if any(ch.isdigit() for ch in word):
        return True  # numbers, IDs, phones, cards, IBANs, IPs, street numbers: never labelled here
    if "@" in word or "://" in word or word.lower().startswith("www."):
        return True  # e-mail, handles (labelled in some tweet sections only), URLs
    return names_unannotated and word[:1].isupper()  # a name of a type the source never labels


def trust_mask(text: str, spans: Sequence, offsets: np.ndarray, annotates: frozenset[str]) -> np.ndarray:
    """Per token, whether its label can be trusted: inside a gold span, or ``O`` in a word that cannot
    be PII of a type the source never annotates (see the module docstring)."""
    cover = np.zeros(len(text) + 1, dtype=bool)
    for s in spans:
        cover[s.start : s.end] = True
    names_unannotated = not annotates >= NAME_TYPES
    doubt = np.zeros(len(text) + 1, dtype=bool)
    for m in WORD.finditer(text):
        start, end = m.span()
        if not cover[start:end].all() and _maybe_pii_word(m.group(), names_unannotated):
            doubt[start:end] = True
    doubt &= ~cover
    out = np.ones(len(offsets), dtype=bool)
    for t, (a, b) in enumerate(offsets):
        if a < b and doubt[a:b].any() and not cover[a:b].any():
            out[t] = False
    return out


def card_sources(sources: Sequence[Source], used: Mapping[str, int]) -> list[dict[str, object]]:
    """Card rows (source, licence, origin, languages, annotated types, records used) of the sources
    that gave records."""
    return [{**s.card_row(), "records_used": used[s.name]} for s in sources if used.get(s.name)]


def counts_by_source(records: Sequence[Record]) -> dict[str, int]:
    """Records per source name (``extra["corpus"]``)."""
    out: dict[str, int] = {}
    for r in records:
        name = str(r.extra.get("corpus", "synthetic"))
        out[name] = out.get(name, 0) + 1
    return out


def mix_from_json(text: str) -> dict[str, float]:
    """A mix given on the command line: ``'{"broad_twitter_corpus": 0.2, ...}'``."""
    try:
        mix = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"--real-mix is not JSON ({e.msg})") from None
    if not isinstance(mix, dict) or not all(isinstance(v, int | float) and v >= 0 for v in mix.values()):
        raise DataError("--real-mix must map source names to non-negative weights")
    return {str(k): float(v) for k, v in mix.items()}
