"""Shared fixtures: a tiny randomly initialised causal LM (fast), and the real default backbone."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GUARDRAIL_SHARED", REPO.parent / "shared"))


def make_tiny_model(folder: Path, arch: str = "llama", hidden_size: int = 32) -> Path:
    """A 2-layer random causal LM with a real fast tokenizer (BPE trained here, offline)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    corpus = [
        "Call Ana Silva at +1 415 555 0100 or mail ana@example.com.",
        "The quick brown fox jumps over the lazy dog in Paris on Monday.",
        "Order #4821 shipped to 12 Main Street, Springfield. Total $42.50.",
        "日本語のテキストと emoji 🎉 and café naïve résumé.",
    ] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    cfg = LlamaConfig(
        vocab_size=fast.vocab_size + 8,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's twin with another hidden size (48): a backbone no tiny probe can read."""
    return make_tiny_model(tmp_path_factory.mktemp("wide-lm"), hidden_size=48)


TINY_NAMES = ["Ana Silva", "Bob Stone", "Lena Vogt", "Jun Sato"]


def make_tiny_bundle(model_dir: Path, folder: Path) -> Path:
    """A bundle at ``folder`` over the tiny model at ``model_dir``, its probe fitted on the model's
    activations (PERSON = TINY_NAMES); also used by ``benchmarks/batch.py``."""
    import numpy as np

    from guardrail.backbone import Backbone
    from guardrail.bundle import BackboneRef, Bundle, Manifest, ProbeEntry
    from guardrail.data import Record
    from guardrail.probe import fit
    from guardrail.spans import Span
    from guardrail.train import collect, design_matrix

    rng = np.random.default_rng(0)
    filler = ["please call", "the order for", "I met", "send it to", "thanks", "see you soon"]
    records = []
    for i in range(200):
        a, name, b = rng.choice(filler), rng.choice(TINY_NAMES), rng.choice(filler)
        start = len(a) + 1
        records.append(Record(f"r{i}", f"{a} {name} {b}", [Span(start, start + len(name), "PERSON")]))
    bb = Backbone.load(str(model_dir), layer=2, dtype="fp32")
    x, y = design_matrix(collect(bb, records, "tiny"), (-1, 0, 1))
    manifest = Manifest(
        name="tiny",
        backbone=BackboneRef(id=str(model_dir), layer=2, n_layers=2),
        probes={"raw": ProbeEntry(prefix="raw.", thresholds={"PERSON": 0.5})},
        detect_labels=["PERSON", "EMAIL", "PHONE", "CREDIT_CARD"],
    )
    Bundle(folder, manifest, {"raw": fit(x, y, context=(-1, 0, 1), c=10.0)}).save()
    return folder


@pytest.fixture(scope="session")
def tiny_bundle_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle over the tiny model whose probe was fitted on its activations (PERSON = TINY_NAMES)."""
    return make_tiny_bundle(tiny_model_dir, tmp_path_factory.mktemp("bundle") / "tiny")


def readme_block(heading: str, lang: str = "python") -> str:
    """The first ``lang`` code block of README.md's section ``## heading`` (snippets the tests run)."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {lang} block under '## {heading}'"
    return match.group(1)


@pytest.fixture(scope="session")
def real_guardrail():
    """The shipped default bundle on the real backbone (converted once into the cache)."""
    from guardrail.pipeline import Guardrail

    return Guardrail.load()


def _refuse(attempts: list[str], what: str):
    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
        raise OSError(f"network access attempted in a test: {what}")

    return refuse


@pytest.fixture(scope="module")
def network_attempts() -> Iterator[list[str]]:
    """Every connect or DNS lookup made while the module's tests run (each one also fails).

    Recorded rather than only refused: tldextract swallows a failed download and falls back to its
    snapshot, so a refusal alone would not fail a test.
    """
    attempts: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse(attempts, "socket.connect"))
        mp.setattr(socket.socket, "connect_ex", _refuse(attempts, "socket.connect_ex"))
        mp.setattr(socket, "create_connection", _refuse(attempts, "create_connection"))
        mp.setattr(socket, "getaddrinfo", _refuse(attempts, "getaddrinfo"))
        yield attempts
