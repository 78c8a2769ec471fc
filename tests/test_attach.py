"""Piggyback mode: spans from the agent's own forward passes equal those of a separate guardrail run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from guardrail.attach import AttachError, Piggyback, attach, char_offsets, decoder_layers
from guardrail.backbone import WINDOW, pick_dtype
from guardrail.bundle import Bundle
from guardrail.pipeline import Guardrail


@pytest.fixture(scope="module")
def agent(tiny_model_dir: Path):
    """The tiny model as an agent would hold it: the full causal LM (head included), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def sidecar(tiny_bundle_dir: Path) -> Guardrail:
    return Guardrail.load(tiny_bundle_dir, dtype="fp32")


def _ids(tok, text: str) -> list[int]:
    return [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]


def test_prompt_then_cached_steps_equal_a_sidecar_run(agent, sidecar, tiny_bundle_dir) -> None:
    model, tok = agent
    text = "I met Ana Silva thanks, send it to Jun Sato please call 4111 1111 1111 1111"
    ids = _ids(tok, text)
    k = len(_ids(tok, "I met Ana Silva thanks,"))  # the prompt; the rest comes one token at a time
    with attach(model, tiny_bundle_dir, tokenizer=tok) as h, torch.inference_mode():
        out = model(input_ids=torch.tensor([ids[:k]]), use_cache=True)
        cache = out.past_key_values
        for t in ids[k:]:
            cache = model(
                input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True
            ).past_key_values
        (r,) = h.readings()
    assert r.text == text and r.tokens == len(ids) - 1
    assert r.input_text == "I met Ana Silva thanks," and r.input_text + r.output_text == text
    assert r.spans == sidecar.detect([text])[0]
    got_in = {(r.input_text[s.start : s.end], s.label) for s in r.input_spans}
    got_out = {(r.output_text[s.start : s.end], s.label) for s in r.output_spans}
    assert ("Ana Silva", "PERSON") in got_in
    assert ("Jun Sato", "PERSON") in got_out and ("4111 1111 1111 1111", "CREDIT_CARD") in got_out


def test_captured_residuals_are_the_backbone_s(agent, sidecar, tiny_bundle_dir) -> None:
    model, tok = agent
    text = "please call Lena Vogt the order for Bob Stone"
    with attach(model, tiny_bundle_dir, tokenizer=tok) as h, torch.inference_mode():
        model(input_ids=torch.tensor([_ids(tok, text)]))
        row = h._rows[0]
    (mine,) = sidecar.backbone.residuals(sidecar.backbone.encode([text]))
    torch.testing.assert_close(torch.cat(row.resid)[1:].float(), mine, rtol=1e-4, atol=1e-4)


def test_generate_reads_prompt_and_every_new_token(agent, tiny_bundle_dir) -> None:
    model, tok = agent
    prompt = _ids(tok, "thanks Jun Sato see you soon")
    with attach(model, tiny_bundle_dir, tokenizer=tok) as h:
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
        )
        (r,) = h.readings(sequences=out)
    seq = out[0].tolist()
    # every token once, but the last: generate returns it without running the model over it
    assert r.tokens == len(seq) - 2
    decode = lambda ids: tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)  # noqa: E731
    assert r.text == decode(seq[1:-1]) and r.output_text == decode(seq[len(prompt) : -1])
    assert r.unread == decode(seq[-1:])
    assert ("Jun Sato", "PERSON") in {(r.input_text[s.start : s.end], s.label) for s in r.input_spans}
    for s in r.output_spans:
        assert 0 <= s.start < s.end <= len(r.output_text)


def test_left_padded_batch_reads_each_row_alone(agent, sidecar, tiny_bundle_dir) -> None:
    model, tok = agent
    texts = ["I met Bob Stone", "send it to Ana Silva see you soon, the order for Lena Vogt"]
    rows = [_ids(tok, t) for t in texts]
    n = max(map(len, rows))
    ids = torch.tensor([[0] * (n - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
    with attach(model, tiny_bundle_dir, tokenizer=tok) as h, torch.inference_mode():
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        model(input_ids=ids, attention_mask=mask, position_ids=pos)
        got = h.readings()
    assert [r.text for r in got] == texts
    assert [r.spans for r in got] == sidecar.detect(texts)


def test_new_sequence_starts_afresh_and_remove_restores_the_model(agent, tiny_bundle_dir) -> None:
    model, tok = agent
    layer = decoder_layers(model)[1][1]
    before = model(input_ids=torch.tensor([_ids(tok, "I met Jun Sato")])).logits
    h = attach(model, tiny_bundle_dir, tokenizer=tok)
    with torch.inference_mode():
        model(input_ids=torch.tensor([_ids(tok, "I met Ana Silva")]))
        model(input_ids=torch.tensor([_ids(tok, "thanks")]))
    assert [r.text for r in h.readings()] == ["thanks"]
    h.remove()
    assert not layer._forward_hooks and not decoder_layers(model)[0]._forward_pre_hooks
    after = model(input_ids=torch.tensor([_ids(tok, "I met Jun Sato")])).logits
    torch.testing.assert_close(before, after)


def test_non_canonical_tokens_are_aligned_by_prefix(agent) -> None:
    _, tok = agent
    text = "Ana café 🎉"
    ids = [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]  # one char at a time
    assert ids != tok(text, add_special_tokens=False)["input_ids"]
    offs = char_offsets(tok, ids, tok.decode(ids))
    assert offs[0, 0] == 0 and offs[-1, 1] == len(text)
    assert np.all(offs[1:, 0] == offs[:-1, 1]) and np.all(offs[:, 1] >= offs[:, 0])
    assert "".join(text[a:b] for a, b in offs) == text


def test_mismatched_model_or_input_is_a_clear_error(agent, tiny_bundle_dir, tmp_path) -> None:
    model, tok = agent
    b = Bundle.load(tiny_bundle_dir)
    b.manifest.backbone.n_layers = 30
    with pytest.raises(AttachError, match="30-block"):
        attach(model, b, tokenizer=tok)
    with pytest.raises(AttachError, match="decoder blocks"):
        attach(torch.nn.Linear(2, 2), tiny_bundle_dir, tokenizer=tok)
    b = Bundle.load(tiny_bundle_dir)
    b.manifest.backbone.mlp_keep = 8
    with pytest.raises(AttachError, match="pruned backbone"):
        attach(model, b, tokenizer=tok)
    with attach(model, tiny_bundle_dir, tokenizer=tok) as h, torch.inference_mode():
        model(inputs_embeds=model.get_input_embeddings()(torch.tensor([_ids(tok, "thanks")])))
        with pytest.raises(AttachError, match="input_ids"):
            h.readings()
    assert isinstance(h, Piggyback)


# ---- the real thing: SmolLM2-135M-Instruct answering chat prompts, with the bundle trained for it --------

CHATS = [
    "My name is Ana Silva and my email is ana.silva@example.com. Write a short greeting to me.",
    "Please draft a one-line note to John Miller at +1 415 555 0100 saying the parcel arrived.",
    "Repeat this address back to me: 221B Baker Street, London NW1 6XE.",
]


@pytest.fixture(scope="module")
def smol():
    """The agent: SmolLM2-135M-Instruct with its LM head, in the dtype the sidecar picks here."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from guardrail.backbone import resolve

    path, _ = resolve("smollm2-135m")
    cfg = AutoConfig.from_pretrained(path)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # the converted cache holds plain bf16 weights
    dtype = pick_dtype(torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(path, config=cfg, dtype=dtype).eval()
    return model, AutoTokenizer.from_pretrained(path)


@pytest.mark.model
def test_smollm2_chat_pii_in_and_out_equals_sidecar(smol) -> None:
    model, tok = smol
    sidecar = Guardrail.load("smollm2-135m")
    flagged_out = 0
    for chat in CHATS:
        enc = tok.apply_chat_template(
            [{"role": "user", "content": chat}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with attach(model, "smollm2-135m", tokenizer=tok) as h:
            out = model.generate(**enc, max_new_tokens=40, do_sample=False)
            (r,) = h.readings(sequences=out)
        assert r.tokens == out.shape[1] - 2 and r.tokens < WINDOW  # one window: the sidecar reads the same
        assert r.unread in ("<|im_end|>", tok.decode(out[0, -1:]))
        side = sidecar.detect([r.text])[0]
        # bf16: the agent's passes (unpadded prompt, KV-cached steps) round unlike the sidecar's padded
        # batch (residuals ~1% apart): the spans are equal, a mid-range score moves (0.04 seen on chat markup)
        assert [(s.start, s.end, s.label) for s in r.spans] == [(s.start, s.end, s.label) for s in side]
        assert all(abs(a.score - b.score) < 0.05 for a, b in zip(r.spans, side, strict=True))
        user = r.input_text.index(chat)
        found = [r.input_text[s.start : s.end] for s in r.input_spans if s.start >= user]
        assert found, "no PII flagged in the user's message"
        flagged_out += len(r.output_spans)
    assert flagged_out > 0, "the model's answers repeat the PII; none of it was flagged"
