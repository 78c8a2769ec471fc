"""Word edges for scripts written without spaces, from dictionary segmenters (part of the span stage).

In Japanese and Chinese a name is a whole word of a few characters, but the backbone's tokens are often
single characters, and the probe may flag only some of them ("山田" of "山田太郎") or one character of a
common word ("パ" of "ラッパ"). :func:`words` gives the dictionary words of a text so a span can be set
on word edges: grown over a word the probe flagged enough of, dropped where it flagged only a sliver.

Japanese (a text with any kana) goes through MeCab with UniDic Lite (``fugashi`` + ``unidic-lite``),
Chinese through jieba's dictionary (``rjieba``); both ship their dictionaries in the wheel, so nothing
is downloaded at run time. Thai and other unspaced scripts keep the backbone's token edges.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import regex

_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}]")
_HAN = regex.compile(r"\p{Han}")

_local = threading.local()


class SegmenterError(RuntimeError):
    """A segmenter that is not installed or cannot start."""


@cache
def _tagger_class() -> Any:
    try:
        import fugashi
        import unidic_lite  # noqa: F401
    except ImportError as e:  # a broken install, not a user's mistake: say what is missing
        raise SegmenterError(f"Japanese word edges need fugashi and unidic-lite ({e.name} missing)") from None
    return fugashi.Tagger


def _tagger() -> Any:
    # MeCab taggers are not safe to share between threads (the sidecar detects in a pool): one each.
    tagger = getattr(_local, "tagger", None)
    if tagger is None:
        tagger = _local.tagger = _tagger_class()()
    return tagger


def _japanese(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    for node in _tagger()(text):
        surface = node.surface
        at = text.find(surface, pos) if surface else -1
        if at < 0:  # MeCab drops whitespace and may normalise a character: skip what it cannot place
            continue
        out.append((at, at + len(surface)))
        pos = at + len(surface)
    return out


def _chinese(text: str) -> list[tuple[int, int]]:
    try:
        import rjieba
    except ImportError:
        raise SegmenterError("Chinese word edges need rjieba (not installed)") from None
    out: list[tuple[int, int]] = []
    pos = 0
    for piece in rjieba.cut(text):
        at = text.find(piece, pos)
        if at < 0:
            continue
        out.append((at, at + len(piece)))
        pos = at + len(piece)
    return out


def language(text: str) -> str | None:
    """``ja`` when ``text`` has kana, ``zh`` when it has Han characters only, else None (no dictionary
    segmenter: keep the backbone's token edges)."""
    if _KANA.search(text):
        return "ja"
    if _HAN.search(text):
        return "zh"
    return None


def words(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character ranges of the dictionary words of ``text``, in order and
    non-overlapping; empty when the text has no Japanese or Chinese."""
    lang = language(text)
    if lang == "ja":
        return _japanese(text)
    if lang == "zh":
        return _chinese(text)
    return []
