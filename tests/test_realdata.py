"""Real training corpora: loading, the deterministic mix with its held-out slice, and the trust mask
that keeps unannotated types from being trained as ``O``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guardrail import realdata
from guardrail.data import DataError, Record
from guardrail.spans import Span


def _write(folder: Path, name: str, rows: list[dict]) -> None:
    with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _row(
    i: int, text: str, spans: list[tuple[int, int, str]], lang: str = "en", lic: str = "CC-BY-4.0"
) -> dict:
    return {
        "id": f"r{i}",
        "text": text,
        "lang": lang,
        "licence": lic,
        "source": "github:owner/repo@abc123:data/file.conll",
        "spans": [{"start": a, "end": b, "label": lab} for a, b, lab in spans],
    }


@pytest.fixture()
def corpora(tmp_path: Path) -> Path:
    _write(tmp_path, "tweets", [_row(i, f"met Ana {i} today", [(4, 7, "PERSON")]) for i in range(200)])
    _write(
        tmp_path,
        "booking",
        [
            _row(i, f"table for Bob at Nandos on {i} May", [(10, 13, "PERSON")], lic="CC0-1.0")
            for i in range(100)
        ],
    )
    return tmp_path


def test_load_and_draw_is_deterministic_and_disjoint(corpora: Path) -> None:
    sources = realdata.load_sources(corpora)
    assert [s.name for s in sources] == ["booking", "tweets"]
    assert sources[1].annotates == frozenset({"PERSON"})
    mix = {"tweets": 3.0, "booking": 1.0}
    a = realdata.draw(sources, 80, mix, seed=1)
    b = realdata.draw(sources, 80, mix, seed=1)
    assert [r.id for r in a] == [r.id for r in b]
    counts = realdata.counts_by_source(a)
    assert counts == {"tweets": 60, "booking": 20}
    held = realdata.draw(sources, 30, mix, seed=1, calib=True)
    train_ids = {(r.extra["corpus"], r.id) for r in realdata.draw(sources, 10_000, mix, seed=1)}
    # the held-out slice never meets the training slice, whatever the draw size
    assert not train_ids & {(r.extra["corpus"], r.id) for r in held}
    assert all(realdata.is_calib(r) for r in held)


def test_card_lists_every_used_source_with_licence(corpora: Path) -> None:
    sources = realdata.load_sources(corpora)
    used = realdata.counts_by_source(realdata.draw(sources, 50, {"booking": 1.0}, seed=0))
    rows = realdata.card_sources(sources, used)
    assert [r["source"] for r in rows] == ["booking"]
    assert rows[0]["licence"] == "CC0-1.0" and rows[0]["origin"] == ["github:owner/repo@abc123"]


def test_missing_folder_and_bad_mix_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no training corpora"):
        realdata.load_sources(tmp_path / "nope")
    (tmp_path / "x.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="not found"):
        realdata.load_sources(tmp_path, names=["y"])
    with pytest.raises(DataError, match="JSON"):
        realdata.mix_from_json("{bad")
    with pytest.raises(DataError, match="non-negative"):
        realdata.mix_from_json('{"a": -1}')


def _offsets(text: str) -> np.ndarray:
    """One token per whitespace-separated word (with its leading space, as SentencePiece would)."""
    out, pos = [], 0
    for w in text.split(" "):
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return np.array(out)


def test_trust_mask_leaves_out_what_the_source_never_labels() -> None:
    text = "mail ana@x.org or call 555 0100 about Nandos with Ana"
    spans = [Span(text.index("Ana"), text.index("Ana") + 3, "PERSON")]
    off = _offsets(text)
    words = text.split(" ")
    # a source that labels persons only: digits, e-mail and other capitalised words are in doubt
    m = realdata.trust_mask(text, spans, off, frozenset({"PERSON"}))
    doubt = {w for w, ok in zip(words, m, strict=True) if not ok}
    assert doubt == {"ana@x.org", "555", "0100", "Nandos"}
    # a source that labels persons, places and organisations: capitalised words are trusted
    m = realdata.trust_mask(text, spans, off, frozenset({"PERSON", "LOCATION", "ORGANIZATION"}))
    assert {w for w, ok in zip(words, m, strict=True) if not ok} == {"ana@x.org", "555", "0100"}
    # gold span tokens are always trusted
    assert m[words.index("Ana")]


def test_trust_mask_doubts_the_number_not_the_unspaced_clause_around_it() -> None:
    # one token per character: a digit run, a Latin word or an @ inside Chinese or Japanese text is a
    # word of its own; the clause around it carries no digit and stays trusted as O
    text = "北京地鐵全長17公里，共設有車站19座。聯絡a@b.cnまたはGoogleへ"
    spans = [Span(0, 2, "LOCATION")]
    off = np.array([(i, i + 1) for i in range(len(text))])
    m = realdata.trust_mask(text, spans, off, frozenset({"LOCATION", "ORGANIZATION", "PERSON"}))
    doubt = "".join(ch for ch, ok in zip(text, m, strict=True) if not ok)
    assert doubt == "1719a@b.cn"
    assert m[text.index("公")] and m[text.index("座")] and m[0]
    # where the source labels no names, the capitalised Latin word in the clause is in doubt too
    m = realdata.trust_mask(text, [], off, frozenset({"DATE"}))
    assert "".join(ch for ch, ok in zip(text, m, strict=True) if not ok) == "1719a@b.cnGoogle"


def test_collect_marks_masked_tokens_and_fitting_skips_them(tiny_model_dir: Path) -> None:
    from guardrail.backbone import Backbone
    from guardrail.realdata import MASKED
    from guardrail.train import collect, design_matrix

    tiny_backbone = Backbone.load(str(tiny_model_dir), layer=1)
    rec = Record("t1", "call Bob at 555 0100 now", [Span(5, 8, "PERSON")], "en", {"corpus": "booking"})
    acts = collect(tiny_backbone, [rec], "test", annotates={"booking": frozenset({"PERSON"})})
    y = acts.labels[0]
    assert (y == MASKED).any() and (y > 0).any()
    _, ys = design_matrix(acts, (0,), o_keep=1.0)
    assert (ys >= 0).all() and len(ys) == int((y >= 0).sum())


def test_nationality_words_are_other_in_every_source(tmp_path: Path) -> None:
    # the Broad Twitter Corpus tags "Russian" as a place; the project (and its generator) says OTHER
    text = "Russian embassy in Kuala Lumpur; Israelis and Gibraltar"
    _write(
        tmp_path,
        "btc",
        [
            _row(
                0,
                text,
                [(0, 7, "LOCATION"), (19, 31, "LOCATION"), (33, 41, "LOCATION"), (46, 55, "LOCATION")],
            )
        ],
    )
    (source,) = realdata.load_sources(tmp_path)
    got = [(text[s.start : s.end], s.label) for s in source.records[0].spans]
    # a demonym and its plural change; a place (even one whose demonym is its own name) does not
    assert got == [
        ("Russian", "OTHER"),
        ("Kuala Lumpur", "LOCATION"),
        ("Israelis", "OTHER"),
        ("Gibraltar", "LOCATION"),
    ]
    words = realdata.nationality_words()
    assert {"Israeli", "Palestinian", "South Korean", "Iraqis"} <= words
    assert not {"Gibraltar", "Djibouti", "Christmas Island", "Japan"} & words
