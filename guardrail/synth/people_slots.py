"""Slots of the ``people`` shape: bare given names and surnames, possessives, lists of names.

Only the name is labelled: a title, the possessive "'s" and list punctuation are written as plain
text beside it, and every name of a list is its own PERSON span. Lists of works, products and
landmarks (unlabelled), of cities (LOCATION) and of bands or companies (ORGANIZATION) use the same
joiners, so that the list shape alone is no evidence of people.
"""

from __future__ import annotations

from collections.abc import Callable

from guardrail.synth import lexicon as lx
from guardrail.synth.engine import Builder, Ctx, chance, slot
from guardrail.synth.names_intl import Name, full, new_name
from guardrail.synth.values import _add_org, _vary_case

# ------------------------------------------------------------------------------------ single names


def _cased(ctx: Ctx, s: str) -> str:
    return _vary_case(ctx, s)


@slot("P")
def _given(ctx: Ctx, b: Builder) -> None:
    b.add(_cased(ctx, new_name(ctx).first), "PERSON")


@slot("PL")
def _surname(ctx: Ctx, b: Builder) -> None:
    b.add(_cased(ctx, new_name(ctx).last), "PERSON")


@slot("PF")
def _fullname(ctx: Ctx, b: Builder) -> None:
    b.add(_cased(ctx, full(ctx, new_name(ctx))), "PERSON")


@slot("PN")
def _any_form(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    (_given if r < 0.5 else _surname if r < 0.68 else _fullname)(ctx, b)


def _cast(ctx: Ctx, key: str) -> str:
    """The surface of recurring person ``key`` ("A", "B", "C", "X"), fixed on its first use."""
    cast = ctx.memo.setdefault("cast", {})
    if key not in cast:
        n = new_name(ctx)
        cast[key] = _cased(ctx, n.last if key == "X" else n.first)
    return cast[key]


def _cast_slot(key: str) -> Callable[[Ctx, Builder], None]:
    def fill(ctx: Ctx, b: Builder) -> None:
        b.add(_cast(ctx, key), "PERSON")

    return fill


for _k in ("A", "B", "C", "X"):
    slot(f"P{_k}")(_cast_slot(_k))


@slot("ADDR")
def _addressee(ctx: Ctx, b: Builder) -> None:
    """The person spoken to in a dialogue line (set by the dialogue builder)."""
    b.add(ctx.memo.get("addr") or _cast(ctx, "B"), "PERSON")


# ------------------------------------------------------------------------------------ possessives


def _possessive(ctx: Ctx, b: Builder, name: str) -> None:
    b.add(name, "PERSON")
    apos = "’" if chance(ctx, 0.1) else "'"
    b.add(apos if name.endswith("s") and chance(ctx, 0.5) else f"{apos}s")


@slot("POSS")
def _poss_given(ctx: Ctx, b: Builder) -> None:
    _possessive(ctx, b, _cased(ctx, new_name(ctx).first))


@slot("PLPOSS")
def _poss_surname(ctx: Ctx, b: Builder) -> None:
    _possessive(ctx, b, _cased(ctx, new_name(ctx).last))


@slot("PFPOSS")
def _poss_full(ctx: Ctx, b: Builder) -> None:
    _possessive(ctx, b, _cased(ctx, full(ctx, new_name(ctx))))


@slot("PAPOSS")
def _poss_a(ctx: Ctx, b: Builder) -> None:
    _possessive(ctx, b, _cast(ctx, "A"))


@slot("PBPOSS")
def _poss_b(ctx: Ctx, b: Builder) -> None:
    _possessive(ctx, b, _cast(ctx, "B"))


# ------------------------------------------------------------------------------------------ lists

_NUM_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
_CONJ = {"en": " and ", "de": " und ", "fr": " et ", "es": " y ", "it": " e ", "ja": "と", "zh": "和"}


def _count(ctx: Ctx) -> int:
    n = ctx.memo.pop("list_n", None)
    if n is None:
        n = ctx.rng.choice((2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 6, 7))
    return n


@slot("LN")
def _list_count(ctx: Ctx, b: Builder) -> None:
    """The size of the next list, as a digit or a word; the next list slot uses it."""
    n = ctx.rng.choice((2, 3, 3, 4, 4, 5, 6))
    ctx.memo["list_n"] = n
    english = ctx.memo.get("lang", "en") == "en"
    b.add(_NUM_WORDS[n] if english and chance(ctx, 0.5) else str(n))


def _joiners(ctx: Ctx, n: int) -> list[str]:
    """The ``n - 1`` separators of an inline list: "A, B and C", "A & B", "A / B / C", ..."""
    lang = ctx.memo.get("lang", "en")
    if lang in ("ja", "zh"):
        return ["、"] * (n - 2) + [ctx.rng.choice((_CONJ[lang], "、"))]
    r = ctx.rng.random()
    if r < 0.72:
        conj = _CONJ.get(lang, " and ")
        finals = (
            (conj, conj, conj, " & ")
            if n == 2
            else (conj, conj, conj, ", and " if lang == "en" else conj, " & ", ", ")
        )
        final = ctx.rng.choice(finals)
        return [", "] * (n - 2) + [final]
    same = ctx.rng.choice((" / ", "; ", " + ", " & ", ",", " · ", " | "))
    return [same] * (n - 1)


ItemFn = Callable[[Ctx, Builder, str], None]


def _write_inline(ctx: Ctx, b: Builder, item: ItemFn, mode: str = "") -> None:
    n = _count(ctx)
    for sep in ["", *_joiners(ctx, n)]:
        b.add(sep)
        item(ctx, b, mode)


def _write_bullets(ctx: Ctx, b: Builder, item: ItemFn, mode: str = "") -> None:
    n = _count(ctx)
    style = ctx.rng.choice(("- ", "* ", "• ", "#", "", "– "))
    for i in range(n):
        b.add("\n" + (f"{i + 1}. " if style == "#" else style))
        item(ctx, b, mode)
        if chance(ctx, 0.12):
            b.add(ctx.rng.choice((" (chair)", " (remote)", " - notes", " (late)", " (host)", " ✔")))


def _list_mode(ctx: Ctx) -> str:
    """How a whole list is cased: as written, lower, upper, or each name on its own."""
    r = ctx.rng.random()
    return "" if r < 0.7 else "lower" if r < 0.84 else "upper" if r < 0.88 else "each"


def _person_item(form: Callable[[Ctx, Name], str], titles: bool) -> ItemFn:
    def item(ctx: Ctx, b: Builder, mode: str) -> None:
        n = new_name(ctx)
        s = form(ctx, n)
        s = s.lower() if mode == "lower" else s.upper() if mode == "upper" else s
        if mode == "each":
            s = _cased(ctx, s)
        if titles and ctx.memo.get("lang", "en") == "en" and chance(ctx, 0.1):
            b.add(ctx.rng.choice(lx.TITLES["en"]) + " ")
        b.add(s, "PERSON")
        ctx.memo.setdefault("list", []).append(s)

    return item


def _mixed_form(ctx: Ctx, n: Name) -> str:
    r = ctx.rng.random()
    return n.first if r < 0.45 else n.last if r < 0.6 else full(ctx, n)


_ITEMS: dict[str, ItemFn] = {
    "FIRST": _person_item(lambda ctx, n: n.first, False),
    "LAST": _person_item(lambda ctx, n: n.last, True),
    "FULL": _person_item(lambda ctx, n: full(ctx, n), True),
    "MIX": _person_item(_mixed_form, True),
}


def _list_slot(kind: str, bullets: bool) -> Callable[[Ctx, Builder], None]:
    item = _ITEMS[kind]

    def fill(ctx: Ctx, b: Builder) -> None:
        ctx.memo["list"] = []
        (_write_bullets if bullets else _write_inline)(ctx, b, item, _list_mode(ctx))

    return fill


for _kind in _ITEMS:
    slot(f"L{_kind}")(_list_slot(_kind, False))
    slot(f"B{_kind}")(_list_slot(_kind, True))


# -------------------------------------------------------------------------- look-alike lists

EPONYMS: tuple[str, ...] = lx.items(
    """
    Parkinson's disease | Alzheimer's | the Doppler effect | the Fibonacci sequence | Newton's third law |
    Murphy's law | the Heimlich manoeuvre | Halley's Comet | the Nobel Prize | Boolean logic | a Caesar
    salad | Earl Grey | the Ferris wheel | a Bunsen burner | the Richter scale | the Gregorian calendar |
    a Rubik's Cube | the Turing test | eggs Benedict | Morse code | a Petri dish | the Pulitzer Prize |
    the Kelvin scale | Down syndrome | the Marshall Plan | a Wellington boot | the Cartesian plane |
    Pascal's triangle | a Diesel engine | the Hubble telescope
    """
)


def _pool_item(pool: tuple[str, ...], label: str | None) -> ItemFn:
    def item(ctx: Ctx, b: Builder, mode: str) -> None:
        s = ctx.rng.choice(pool)
        s = s.lower() if mode == "lower" else s
        if label == "ORGANIZATION":
            _add_org(b, s)
        else:
            b.add(s, label)

    return item


_POOLS: dict[str, ItemFn] = {
    "WORK": _pool_item(lx.WORKS, None),
    "PRODUCT": _pool_item(lx.PRODUCTS, None),
    "LANDMARK": _pool_item(lx.LANDMARKS, None),
    "EPONYM": _pool_item(EPONYMS, None),
    "CITY": _pool_item(lx.CITIES, "LOCATION"),
    "BAND": _pool_item(lx.BANDS, "ORGANIZATION"),
    "COMPANY": _pool_item(lx.COMPANIES, "ORGANIZATION"),
}


def _pool_slot(item: ItemFn) -> Callable[[Ctx, Builder], None]:
    def fill(ctx: Ctx, b: Builder) -> None:
        _write_inline(ctx, b, item, "lower" if chance(ctx, 0.08) else "")

    return fill


for _kind, _item in _POOLS.items():
    slot(f"L{_kind}")(_pool_slot(_item))


@slot("EPONYM")
def _eponym(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(EPONYMS))


# ---------------------------------------------------------------------------- PII-free utterances

LINES: tuple[str, ...] = lx.items(
    """
    Remember me? | Of course! | Where have you been? | Not now. | Are you coming or not? | I told you
    so. | We're going to be late. | Did you lock the door? | That's not what I meant. | Come here,
    quickly! | I can't find my keys. | It's not my fault! | Can we talk later? | You did what? | Get out
    of my kitchen! | Nobody asked you. | Let's just go home. | Have you eaten yet? | Is it raining
    again? | I'll be right back. | You're early. | Why is the door open? | Wait for me! | Shh, the baby
    is asleep. | Happy anniversary. | I'm so sorry. | Don't touch that. | Who ate the last slice?
    """
)


@slot("LINE")
def _line(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(LINES))
