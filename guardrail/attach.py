"""Piggyback mode: read PII from the activations of the agent's own forward passes (no second model run).

When an agent runs its model in-process with ``transformers``, the residual stream the guardrail needs is
computed anyway. :func:`attach` hooks the decoder block at the bundle's probe layer, keeps its output
for every token the model reads (the prompt, then each generated token of a KV-cached ``generate``), and
:meth:`Piggyback.readings` turns those residuals into spans through the same
:class:`~guardrail.pipeline.Guardrail` composition as a sidecar run (probe -> span decoder -> patterns
-> merge), only with a backbone whose residuals are the captured ones.

>>> h = attach(model, "smollm2-135m", tokenizer=tok)
>>> out = model.generate(**tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True,
...                                                 return_tensors="pt"), max_new_tokens=40)
>>> r = h.readings()[0]
>>> r.input_spans, r.output_spans      # offsets into r.input_text / r.output_text
>>> h.remove()

Where the spans equal those of ``Guardrail.detect(r.text)`` on the bundle's own backbone, and where they
can differ (see also README, "Piggyback mode"):

- The sidecar reads ``BOS + tokens(text)``. The agent's sequence is read as ``BOS + content`` when its
  first token is the tokenizer's BOS (chat templates of Llama, SmolLM2 and Gemma start with it): that
  first token is then context only, as in the sidecar. A sequence without BOS is read as it is, and its
  scores can differ.
- The sidecar cuts texts into windows of ``WINDOW - 1`` content tokens (32 overlap), each with its own
  BOS; the agent attends to its whole context. Up to ``WINDOW - 1`` content tokens both read the same
  activations; past that, the piggyback reads the agent's full-context activations.
- ``r.text`` is the decoded token stream (special tokens kept). When the tokenizer encodes it back to
  other tokens than the model read (a generated non-canonical split), the sidecar would read those other
  tokens; the piggyback keeps the model's own and aligns them to characters by decoding prefixes.
- The agent's dtype should be the one the sidecar picks on that device (``backbone.pick_dtype``: bf16 on
  CUDA and on CPUs with bf16, else fp32); a KV-cached step computes the same values by another kernel
  order, so scores agree to rounding, and only a score within rounding of a threshold can flip a span.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from guardrail.backbone import Backbone, Encoded
from guardrail.bundle import DEFAULT_BUNDLE, Bundle
from guardrail.spans import Span

if TYPE_CHECKING:
    from guardrail.pipeline import Guardrail

log = logging.getLogger(__name__)


class AttachError(ValueError):
    """The model cannot be piggybacked with this bundle, or the captured passes cannot be read."""


def decoder_layers(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.ModuleList]:
    """The decoder (base model) and its list of blocks, for llama/gemma-like ``transformers`` models."""
    candidates = []
    if callable(getattr(model, "get_decoder", None)):
        candidates.append(model.get_decoder())
    candidates += [getattr(model, "model", None), model]
    for dec in candidates:
        layers = getattr(dec, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return dec, layers
    raise AttachError(
        f"cannot find the decoder blocks of {type(model).__name__}: expected model.model.layers "
        "(llama, gemma, mistral, qwen-like transformers models)"
    )


def _text_config(model: torch.nn.Module) -> Any:
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise AttachError(f"{type(model).__name__} has no transformers config")
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def char_offsets(tokenizer: Any, ids: Sequence[int], text: str) -> np.ndarray:
    """Character offsets ``[T, 2]`` of token ``ids`` in ``text == tokenizer.decode(ids)``.

    The tokenizer's own offsets when it encodes ``text`` back to the same ids; otherwise (a non-canonical
    split the model generated) each token ends where the decoded prefix stops agreeing with ``text`` —
    a token that ends inside a multi-byte character gets an empty range, the next one the character.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) == list(ids):
        return np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(ids), 2), dtype=np.int64)
    pos = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        n = min(len(prefix), len(text))
        agree = next((j for j in range(n) if prefix[j] != text[j]), n)
        end = max(pos, agree)
        out[i] = (pos, end)
        pos = end
    return out


class CapturedBackbone(Backbone):
    """A :class:`Backbone` whose residuals were computed by the agent's model: it runs nothing.

    :meth:`Guardrail.detect` asks it to ``encode`` a text and for its ``residuals``; it answers with the
    tokens the agent read and the residuals captured from them, so the rest of the composition is the
    sidecar's own code.
    """

    def __init__(self, tokenizer: Any, layer: int, d_model: int, device: torch.device, dtype: torch.dtype):
        super().__init__(None, tokenizer, layer, {"id": "piggyback"}, device, dtype, d_model)
        self.runtime = "piggyback"
        self._encoded: dict[str, Encoded] = {}
        self._resid: dict[int, torch.Tensor] = {}

    def hold(self, text: str, encoded: Encoded, resid: torch.Tensor) -> None:
        """Make ``text`` answerable: its tokens and their residuals ``[T, d_model]``."""
        self._encoded[text] = encoded
        self._resid[id(encoded)] = resid

    def release(self) -> None:
        self._encoded.clear()
        self._resid.clear()

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        try:
            return [self._encoded[t] for t in texts]
        except KeyError:
            raise AttachError("the piggyback backbone reads only texts the agent's model has read") from None

    def residuals_flat(
        self,
        encoded: Sequence[Encoded],
        batch_size: int = 16,
        layers: Sequence[int] | None = None,
        on_device: bool = False,
    ) -> torch.Tensor:
        if layers:
            raise AttachError("the piggyback captures one layer, the bundle's")
        held = [self._resid[id(e)] for e in encoded]
        flat = torch.cat(held) if held else torch.zeros((0, self.d_model), dtype=torch.float32)
        return flat.to(self.residual_device) if on_device else flat

    def forward_windows(
        self, rows: Sequence[np.ndarray], layers: Sequence[int] | None = None, on_device: bool = False
    ) -> list:
        raise AttachError("the piggyback backbone does not run a model; the agent's forward pass does")

    def warmup(self, batch_size: int = 16) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Reading:
    """What the guardrail read from one sequence (one batch row) of the agent's forward passes."""

    text: str
    """The decoded tokens the model read after its BOS: the prompt (chat markup included), then the output."""
    prompt_chars: int
    """``text[:prompt_chars]`` is the input (the first forward pass), ``text[prompt_chars:]`` the output."""
    spans: list[Span]
    """Spans over the whole ``text`` (sorted, non-overlapping)."""
    tokens: int
    """Content tokens read (BOS excluded); past ``WINDOW - 1`` the sidecar would read windows instead."""
    unread: str = ""
    """Decoded tokens of the returned sequence that the model never read (``readings(sequences=...)``):
    ``generate`` returns its last token without a forward pass over it, so it has no activation. Empty
    or an end-of-turn token when generation ended by itself; real text when it stopped at
    ``max_new_tokens`` — unchecked, to be dropped or checked by other means."""

    @property
    def input_text(self) -> str:
        return self.text[: self.prompt_chars]

    @property
    def output_text(self) -> str:
        return self.text[self.prompt_chars :]

    @property
    def input_spans(self) -> list[Span]:
        """Spans in :attr:`input_text` (a span running over the boundary is cut there)."""
        cut = self.prompt_chars
        return [replace(s, end=min(s.end, cut)) for s in self.spans if s.start < cut]

    @property
    def output_spans(self) -> list[Span]:
        """Spans in :attr:`output_text`, offsets relative to it."""
        cut = self.prompt_chars
        return [replace(s, start=max(s.start, cut) - cut, end=s.end - cut) for s in self.spans if s.end > cut]


@dataclass(slots=True)
class _Row:
    ids: list[int] = field(default_factory=list)
    resid: list[torch.Tensor] = field(default_factory=list)
    """One ``[n, d_model]`` piece per forward pass (valid tokens only)."""
    prompt_tokens: int = 0
    positions: int = 0
    """Positions of the row the model has run over, padding included."""


class Piggyback:
    """The handle :func:`attach` returns: hooks on the agent's model, and the readings of what it read."""

    def __init__(self, model: torch.nn.Module, guard: Guardrail, tokenizer: Any, layer: int):
        self.guard = guard
        self.tokenizer = tokenizer
        self.layer = layer
        self._rows: list[_Row] = []
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._broken: str | None = None
        self._passes = 0
        decoder, layers = decoder_layers(model)
        self._backbone = guard.backbone
        self._hooks = [
            decoder.register_forward_pre_hook(self._before, with_kwargs=True),
            layers[layer - 1].register_forward_hook(self._after),
        ]

    # ---- hooks: run inside the agent's forward pass; they record and never raise into it --------------
    def _before(self, _module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        try:
            self._start_pass(args[0] if args else kwargs.get("input_ids"), kwargs)
        except Exception as e:  # the agent's forward pass goes on; the reading reports the failure
            self._rows, self._pending = [], None
            self._broken = f"capturing a forward pass failed ({type(e).__name__})"

    def _start_pass(self, ids: torch.Tensor | None, kwargs: dict) -> None:
        if ids is None:
            self._rows, self._pending = [], None
            self._broken = "a forward pass without input_ids (inputs_embeds only) cannot be read"
            return
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        n = ids.shape[-1]
        mask = kwargs.get("attention_mask")
        valid = (
            mask[:, -n:].bool()
            if isinstance(mask, torch.Tensor) and mask.ndim == 2
            else torch.ones_like(ids, dtype=torch.bool)
        )
        if past == 0 or len(self._rows) != ids.shape[0]:  # a new sequence: what was read before is done
            self._rows = [_Row() for _ in range(ids.shape[0])]
            self._broken, self._passes = None, 0
        self._pending = (ids.detach(), valid.detach())

    def _after(self, _module: torch.nn.Module, _args: tuple, out: Any) -> None:
        if self._pending is None:
            return
        ids, valid = self._pending
        self._pending = None
        try:
            hidden = out[0] if isinstance(out, tuple) else out
            for b, row in enumerate(self._rows):
                row.ids += ids[b][valid[b]].tolist()
                row.resid.append(hidden[b][valid[b].to(hidden.device)].detach())
                row.positions += int(valid.shape[1])
                if self._passes == 0:
                    row.prompt_tokens = len(row.ids)
            self._passes += 1
        except Exception as e:
            self._rows = []
            self._broken = f"capturing a forward pass failed ({type(e).__name__})"

    # ---- reading -------------------------------------------------------------------------------------
    def readings(
        self, labels: Iterable[str] | None = None, sequences: torch.Tensor | None = None
    ) -> list[Reading]:
        """Spans of the latest sequence the model read, one :class:`Reading` per batch row.

        ``sequences``: what ``generate`` returned (``[batch, positions]``); tokens of it that the model
        never read come back as :attr:`Reading.unread`.
        """
        if self._broken:
            raise AttachError(self._broken)
        if sequences is not None and (sequences.ndim != 2 or sequences.shape[0] != len(self._rows)):
            raise AttachError(f"sequences must be [{len(self._rows)}, positions], one row per batch row read")
        out = []
        bos = self.tokenizer.bos_token_id
        for b, row in enumerate(self._rows):
            if not row.resid:
                continue
            unread = ""
            if sequences is not None:
                tail = sequences[b, row.positions :].tolist()
                unread = self.tokenizer.decode(
                    tail, skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
            resid = torch.cat(row.resid).float().cpu()  # [T, d_model], as Backbone.forward_windows returns
            ids, prompt = row.ids, row.prompt_tokens
            if bos is not None and ids and ids[0] == bos:  # the sidecar's BOS: context, not content
                ids, resid, prompt = ids[1:], resid[1:], prompt - 1
            text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            offsets = char_offsets(self.tokenizer, ids, text)
            enc = Encoded(np.asarray(ids, dtype=np.int64), offsets)
            self._backbone.hold(text, enc, resid)
            try:
                (spans,) = self.guard.detect([text], labels=labels)
            finally:
                self._backbone.release()
            prompt_chars = int(offsets[prompt - 1, 1]) if prompt > 0 else 0
            out.append(Reading(text, prompt_chars, spans, len(ids), unread))
        return out

    def reset(self) -> None:
        """Forget what was read (a new sequence also starts afresh on its own)."""
        self._rows, self._pending, self._broken, self._passes = [], None, None, 0

    def remove(self) -> None:
        """Take the hooks off the model; the agent's model is as it was before :func:`attach`."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> Piggyback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def attach(
    model: torch.nn.Module,
    bundle: str | Path | Bundle = DEFAULT_BUNDLE,
    *,
    tokenizer: Any = None,
    probe: str | None = None,
    patterns: bool = True,
) -> Piggyback:
    """Hook ``model`` (a ``transformers`` causal LM the agent runs) at ``bundle``'s probe layer.

    The bundle must have been trained for this model (same number of blocks and width). ``tokenizer``
    is the model's fast tokenizer (loaded from the model's folder when omitted).
    """
    from guardrail.pipeline import Guardrail

    decoder_layers(model)  # a model of another shape fails here, before anything is loaded
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    ref = b.manifest.backbone
    cfg = _text_config(model)
    n_layers, d_model = int(cfg.num_hidden_layers), int(cfg.hidden_size)
    if ref.n_layers is not None and ref.n_layers != n_layers:
        raise AttachError(
            f"bundle {b.manifest.name!r} was trained for a {ref.n_layers}-block {ref.id!r}; "
            f"this model has {n_layers} blocks"
        )
    if not 1 <= ref.layer <= n_layers:
        raise AttachError(f"bundle layer {ref.layer} is outside this model's 1..{n_layers}")
    if ref.mlp_keep is not None:
        raise AttachError(
            f"bundle {b.manifest.name!r} reads a pruned backbone ({ref.mlp_keep} MLP neurons per block), "
            "not the agent's model: load it with Guardrail.load instead"
        )
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model.config._name_or_path)
    if not getattr(tokenizer, "is_fast", False):
        raise AttachError("piggyback needs the model's fast tokenizer (character offsets)")
    param = next(model.parameters())
    backbone = CapturedBackbone(tokenizer, ref.layer, d_model, param.device, param.dtype)
    guard = Guardrail(b, backbone, probe=probe, patterns=patterns)
    weight = getattr(guard.probe, "weight", None)
    width = weight.shape[1] // max(1, len(guard.probe.context)) if weight is not None else d_model
    if guard.probe.source == "raw" and width != d_model:
        raise AttachError(f"bundle probe reads width {width}; this model's residual is {d_model} wide")
    return Piggyback(model, guard, tokenizer, ref.layer)
