"""The backbone as a black-box judge: the whole language model, prompted to list the PII in a text.

The bundle's backbone (Gemma 3 270M is a *base* model) gets a few-shot prompt with a strict answer format,
one ``LABEL: value`` line per item and ``END`` after the last, decoded greedily. Each value is mapped back
to character spans by finding every occurrence in the text; a value that is not in the text (the model
made it up or changed it) gives no span and is counted. This is the comparison the Rakuten study made:
the same model read from the inside (probe) or asked from the outside (judge).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from guardrail.spans import Span, merge

EXAMPLES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Hi, this is Maria Lopez, call me back on +34 612 345 678 please.",
        (("PERSON", "Maria Lopez"), ("PHONE", "+34 612 345 678")),
    ),
    ("The build failed again on Thursday, see the log above.", ()),
    (
        "Ship it to 14 Rue Lafayette, Lyon. Login k.tanaka88, mail kenji.t@fastmail.jp, "
        "card 4539 1488 0343 6467.",
        (
            ("ADDRESS", "14 Rue Lafayette"),
            ("LOCATION", "Lyon"),
            ("USERNAME", "k.tanaka88"),
            ("EMAIL", "kenji.t@fastmail.jp"),
            ("CREDIT_CARD", "4539 1488 0343 6467"),
        ),
    ),
)
"""Few-shot examples (made up): several labels, and a text with nothing to report."""

MAX_NEW_TOKENS = 48
"""Answer budget: enough for the ~5 items a dev-set record holds."""
PIECE_CHARS = 600
"""Longer texts are asked about in pieces of at most this many characters (cut at whitespace)."""
LINE = re.compile(r"^\s*([A-Z_]+)\s*:\s*(.+?)\s*$")
ALIASES = {"NAME": "PERSON"}
"""Label words the model writes for a canonical label (the base model often says NAME)."""


def build_prompt(text: str, labels: Sequence[str]) -> str:
    """The few-shot prompt for one text; the answer starts right after the final ``PII:``."""
    return prompt_prefix(labels) + prompt_suffix(text)


def prompt_suffix(text: str) -> str:
    """The part of the prompt that is the text's own."""
    return f"Text: {text}\nPII:\n"


def prompt_prefix(labels: Sequence[str]) -> str:
    """Instruction and examples: the same for every text, so its attention cache is computed once."""
    head = (
        "List the personal data in each text, one line per item as LABEL: value, copying the value "
        f"exactly from the text. Labels: {', '.join(labels)}. Write NONE if there is none, then END.\n\n"
    )
    shots = []
    for ex, items in EXAMPLES:
        shown = [f"{lab}: {val}" for lab, val in items if lab in labels] or ["NONE"]
        shots.append(f"Text: {ex}\nPII:\n" + "\n".join(shown) + "\nEND\n\n")
    return head + "".join(shots)


def pieces(text: str, size: int = PIECE_CHARS) -> list[tuple[int, str]]:
    """``(offset, piece)`` covering ``text`` in order, each at most ``size`` chars, cut at whitespace."""
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        out.append((start, text[start:end]))
        start = end
    return out


@dataclass(slots=True)
class Parsed:
    """Spans read from one answer, and what could not be used."""

    spans: list[Span] = field(default_factory=list)
    lines: int = 0
    """Answer lines before ``END`` (blank ones and ``NONE`` not counted)."""
    unknown_label: int = 0
    not_in_text: int = 0


def parse_answer(answer: str, text: str, labels: Sequence[str], offset: int = 0) -> Parsed:
    """Spans of every occurrence in ``text`` of each ``LABEL: value`` line of ``answer`` (until ``END``),
    shifted by ``offset``; lines of other labels, other shapes or values absent from ``text`` give none."""
    out = Parsed()
    for line in answer.splitlines():
        if line.strip() == "END":
            break
        if not line.strip() or line.strip() == "NONE":
            continue
        out.lines += 1
        m = LINE.match(line)
        label = ALIASES.get(m.group(1), m.group(1)) if m else ""
        if label not in labels:
            out.unknown_label += 1
            continue
        value = m.group(2)
        hits = [h.start() for h in re.finditer(re.escape(value), text)]
        if not hits:
            out.not_in_text += 1
        out.spans += [Span(offset + h, offset + h + len(value), label, 1.0, "judge") for h in hits]
    return out


class Judge:
    """Greedy few-shot generation in left-padded batches; ``detect_batch`` returns canonical spans."""

    def __init__(self, model: torch.nn.Module, tokenizer, labels: Sequence[str], batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self._prefix_state: tuple[torch.Tensor, object] | None = None
        # a row stops at END when END is one token (generate's stop_strings costs seconds per call)
        end = tokenizer("END", add_special_tokens=False)["input_ids"]
        self._stop_ids = [tokenizer.eos_token_id, *(end if len(end) == 1 else [])]
        self.stats: Counter[str] = Counter(prompts=0, lines=0, unknown_label=0, not_in_text=0)
        """Prompts asked, answer lines read, and lines that gave no span (label, or value not in text)."""

    @classmethod
    def load(cls, bundle: str, labels: Sequence[str], device: str = "auto", batch_size: int = 8) -> Judge:
        """The whole model (all layers and the LM head) from the local folder the backbone loads from."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from guardrail.backbone import pick_device, pick_dtype, resolve
        from guardrail.bundle import Bundle

        path, _ = resolve(Bundle.load(bundle).manifest.backbone.id)
        dev = pick_device(device)
        config = AutoConfig.from_pretrained(path)
        if isinstance(getattr(config, "quantization_config", None), dict):
            del config.quantization_config  # the converted weights are plain bf16, not GGUF blocks
        # fp32 on the CPU: bf16 CPU kernels are set up once per input shape, and generation brings a new
        # shape (one more cached position) at every step
        dtype = pick_dtype(dev) if dev.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"  # generation continues every row from its last real token
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model.to(dev).eval(), tokenizer, labels, batch_size)

    @torch.inference_mode()
    def _prefix(self) -> tuple[torch.Tensor, object]:
        """``[1, P]`` ids of the shared prompt prefix (BOS included) and its KV cache, computed once."""
        if self._prefix_state is None:
            ids = self.tokenizer(prompt_prefix(self.labels), return_tensors="pt")["input_ids"].to(self.device)
            cache = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).cache
            self._prefix_state = (ids, cache)
        return self._prefix_state

    @torch.inference_mode()
    def answer(self, texts: Sequence[str]) -> list[str]:
        """The model's raw answer to the prompt of each text (one batch).

        Every prompt is the shared prefix (read from its cache) followed by the text's own part, padded
        on the left of that part: the mask hides the padding and positions skip it.
        """
        tok = self.tokenizer
        prefix_ids, prefix_cache = self._prefix()
        enc = tok(
            [prompt_suffix(t) for t in texts], return_tensors="pt", padding=True, add_special_tokens=False
        )
        n = len(texts)
        ids = torch.cat([prefix_ids.expand(n, -1), enc["input_ids"].to(self.device)], dim=1)
        mask = torch.cat(
            [torch.ones_like(prefix_ids).expand(n, -1), enc["attention_mask"].to(self.device)], dim=1
        )
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(n)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            cache=cache,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            top_p=None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            eos_token_id=self._stop_ids,
        )
        return tok.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)

    def detect_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """Spans per text; prompts of similar length are batched together to keep padding small."""
        jobs = [(i, off, piece) for i, t in enumerate(texts) for off, piece in pieces(t)]
        jobs.sort(key=lambda j: len(j[2]))
        found: list[list[Span]] = [[] for _ in texts]
        for b in range(0, len(jobs), self.batch_size):
            batch = jobs[b : b + self.batch_size]
            for (i, off, piece), ans in zip(batch, self.answer([p for _, _, p in batch]), strict=True):
                parsed = parse_answer(ans, piece, self.labels, off)
                found[i] += parsed.spans
                self.stats.update(
                    lines=parsed.lines, unknown_label=parsed.unknown_label, not_in_text=parsed.not_in_text
                )
            self.stats["prompts"] += len(batch)
        return [merge(s) for s in found]

    def warmup(self) -> None:
        self.answer(["Warm-up text from Ana Silva."] * min(2, self.batch_size))
