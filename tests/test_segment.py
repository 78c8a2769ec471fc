"""Word edges for Japanese and Chinese: dictionary segmenters, offsets into the original text."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import segment
from guardrail.segment import language, words


def surfaces(text: str) -> list[str]:
    return [text[a:b] for a, b in words(text)]


def test_japanese_and_chinese_words() -> None:
    assert surfaces("ラッパを吹く山田太郎さん") == ["ラッパ", "を", "吹く", "山田", "太郎", "さん"]
    assert surfaces("呂衛倫在紐西蘭工作期間") == ["呂衛倫", "在", "紐西蘭", "工作", "期間"]
    assert language("東京") == "zh" and language("東京へ") == "ja" and language("Tokyo") is None
    assert words("no unspaced script here") == [] and words("") == []


@given(st.text(alphabet="山田太郎東京都にはのラッパ吹く呂衛倫在紐西蘭工作 ,.Ana1\n、。", max_size=40))
@settings(max_examples=200, deadline=None)
def test_property_words_index_the_original_text_in_order(text: str) -> None:
    ws = words(text)
    assert all(0 <= a < b <= len(text) for a, b in ws)
    assert all(b1 <= a2 for (_, b1), (a2, _) in pairwise(ws))
    # every letter of an unspaced script lies in some word (nothing is skipped but whitespace)
    inside = {i for a, b in ws for i in range(a, b)}
    assert all(i in inside for i, ch in enumerate(text) if segment._HAN.match(ch) or segment._KANA.match(ch))


def test_words_are_safe_from_many_threads() -> None:
    texts = ["ラッパを吹く山田太郎さん", "東京都に住む佐藤花子です", "呂衛倫在紐西蘭工作期間"] * 30
    want = [words(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(words, texts)) == want


def test_missing_segmenter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_rjieba(name: str, *args: object, **kwargs: object) -> object:
        if name == "rjieba":
            raise ImportError(name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rjieba)
    with pytest.raises(segment.SegmenterError, match="rjieba"):
        words("東京")
