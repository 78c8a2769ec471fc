"""General text available offline, for unsupervised SAE training (never for probe labels).

The SAE should learn the model's features on more than the synthetic agent data, so its training
stream mixes in ordinary prose and code documentation found on this machine without a network: the
long descriptions of installed Python distributions (their READMEs) and the docstrings of the
standard library, read with :mod:`ast` (no module is imported, nothing is executed).

These texts hold real names and addresses (package authors) and are unlabelled: fine for an SAE, which
learns no labels, and the reason they never feed the probe (unlabelled names as ``O`` hurt it).
"""

from __future__ import annotations

import ast
import random
import sys
import sysconfig
import zlib
from collections.abc import Iterator
from importlib import metadata
from itertools import cycle
from pathlib import Path

from guardrail.data import Record

MIN_CHARS, MAX_CHARS = 80, 1200
HELDOUT_EVERY = 20
"""One paragraph in this many (by a hash of its text) is held out for evaluation."""


def _paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated paragraphs of ``text``, whitespace-normalised, long ones cut at a space."""
    for block in text.replace("\r\n", "\n").split("\n\n"):
        para = " ".join(block.split())
        while len(para) > MAX_CHARS:
            cut = para.rfind(" ", MIN_CHARS, MAX_CHARS)
            cut = cut if cut > 0 else MAX_CHARS
            yield para[:cut]
            para = para[cut:].lstrip()
        if len(para) >= MIN_CHARS:
            yield para


def _distribution_texts() -> Iterator[str]:
    """Long descriptions (READMEs) of the installed distributions, in a stable order."""
    dists = sorted(metadata.distributions(), key=lambda d: (d.metadata.get("Name") or "").lower())
    for d in dists:
        body = d.metadata.get_payload() if hasattr(d.metadata, "get_payload") else None
        body = body or d.metadata.get("Description") or ""
        if isinstance(body, str) and body.strip():
            yield body


def _docstrings(path: Path) -> Iterator[str]:
    """Module, class and function docstrings of one Python source file (parsed, never imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in ast.walk(tree):
        documented = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        if documented and (doc := ast.get_docstring(node)):
            yield doc


def _stdlib_texts() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if "test" in path.parts[-2:] or path.name.startswith("test_"):
            continue
        if path.stem in sys.stdlib_module_names or path.parent.name in sys.stdlib_module_names:
            yield from _docstrings(path)


def paragraphs(split: str = "train") -> list[str]:
    """All distinct paragraphs of the offline corpus for ``split`` (``train`` or ``heldout``)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    seen: set[str] = set()
    out = []
    for source in (_distribution_texts(), _stdlib_texts()):
        for text in source:
            for para in _paragraphs(text):
                if para in seen:
                    continue
                seen.add(para)
                held = zlib.crc32(para.encode("utf-8")) % HELDOUT_EVERY == 0
                if held == (split == "heldout"):
                    out.append(para)
    return out


def iter_records(seed: int = 0, split: str = "train") -> Iterator[Record]:
    """An endless, seeded shuffle of the corpus as unlabelled records (reshuffled on each pass)."""
    paras = paragraphs(split)
    if not paras:
        raise ValueError("no offline text found (no installed distributions or standard library sources)")
    rng = random.Random(seed)
    for epoch in cycle(range(1 << 30)):
        order = list(range(len(paras)))
        rng.shuffle(order)
        for i in order:
            yield Record(id=f"general-{epoch}-{i}", text=paras[i])


def mix(*streams: Iterator[Record], weights: tuple[float, ...], seed: int = 0) -> Iterator[Record]:
    """Interleave record streams at random in proportion to ``weights``; stops when any stream ends."""
    if len(weights) != len(streams) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("mix needs one non-negative weight per stream, not all zero")
    rng = random.Random(seed)
    while True:
        (src,) = rng.choices(streams, weights=weights)
        try:
            yield next(src)
        except StopIteration:
            return
