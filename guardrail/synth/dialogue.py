"""Dialogue with speaker tags: chat logs, screenplays, interviews, quoted speech in prose.

Speaker names in the tags are PERSON spans (role tags such as "Interviewer" or "Me" are not); the
lines mention the person spoken to ("Thanks, Omar!") and third people by bare given name or surname.
"""

from __future__ import annotations

from collections.abc import Callable

from guardrail.synth.engine import Builder, Ctx, chance, family_of, pick, render
from guardrail.synth.names_intl import Name, full, new_name
from guardrail.synth.values import _vary_case

LINES: tuple[str, ...] = (
    "Remember me?",
    "(Of course|Obviously|How could I forget)[, {ADDR}]!",
    "(Thanks|Cheers|Thank you)[ so much], {ADDR}!",
    "{ADDR}, (wait|hold on|listen|come here)!",
    "(Morning|Hey|Hi|Evening|Hello) {ADDR}[, how was the trip]?",
    "Have you seen {P}? (She|He) was (looking for you|here a minute ago).",
    "(I|We) (ran into|bumped into) {PF} at the (station|market|gym) {WHEN}.",
    "{P} and {P} are (coming|bringing the cake|running late).",
    "Tell {P} I said (hi|sorry|congrats).",
    "Is that {POSS} (car|dog|jacket|laptop)?",
    "(Ask|Call) {PL} (about it|before noon|first).",
    "(Who's coming|Who else is coming)? (Just|Only) {LFIRST}.",
    "(Did|Has) {P} (call|text|email) you back?",
    "(No idea|Not sure|Don't ask me). Ask {P}.",
    "I thought {PL} (was|would be) (handling|in charge of) that.",
    "(Okay|Fine|Alright), see you {WHEN}.",
    "(What time|When) does the (train|film|match) (start|leave)?",
    "(Yes|Yeah|Yep|No|Nope)[, {ADDR}].",
    "Where did you put the (keys|charger|tickets)?",
    "(Sorry|My bad), I (forgot|was stuck in traffic).",
    "{ADDR}? Is that (you|really you)?",
    "(Long time no see|It's been ages)[, {ADDR}]!",
    "(Say hi|Give my love) to {P} and the kids.",
    "{P} (got|took) the job at {COMPANY}!",
    "We watched {WORK} with {P} (last night|on Sunday).",
    "(Don't|Do not) tell {P}, it's a surprise.",
    "You sound just like {POSS} (mum|dad|brother|sister).",
    "Is {PL} (joining|on the call|coming) {WHEN}?",
    "{LINE}",
    "{LINE}",
    "(Ha|Lol|Haha), (classic|typical) {P}.",
    "I (lent|gave) {P} my {PRODUCT} and never saw it again.",
    "{ADDR}, this is {PC}. {PC}, {ADDR}.",
    "(Is|Was) it {POSS} (birthday|turn|idea)?",
    "(Let's|We should) (invite|call) {LFIRST}.",
    "(I'm|I am) not (talking to|covering for) {P} (again|anymore).",
)

_ROLES: tuple[str, ...] = (
    "Interviewer", "Host", "Q", "Moderator", "Reporter", "Me", "Agent", "THE COURT", "Officer", "Teacher",
)  # fmt: skip


def _tag(ctx: Ctx, n: Name) -> str:
    r = ctx.rng.random()
    if r < 0.64:
        return _vary_case(ctx, n.first)
    if r < 0.8:
        return full(ctx, n)
    if r < 0.9:
        return n.last
    return n.first.upper()


def _line(ctx: Ctx, b: Builder, speakers: list[Name], i: int) -> None:
    others = [s.first for j, s in enumerate(speakers) if j != i]
    ctx.memo["addr"] = ctx.rng.choice(others) if others else None
    render(pick(ctx, LINES), ctx, b)


def _turns(ctx: Ctx, k: int, lo: int = 2, hi: int = 6) -> list[int]:
    """Who speaks each turn: alternating, with the odd interruption when there are three."""
    order, last = [], -1
    for _ in range(ctx.rng.randint(lo, hi)):
        i = (last + 1) % k if chance(ctx, 0.75) else ctx.rng.randrange(k)
        order.append(i)
        last = i
    return order


Style = Callable[[Ctx, Builder, list[Name]], None]


def _colon(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    tags = [_tag(ctx, n) for n in sp]
    sep = ctx.rng.choice((": ", ": ", ":  ", " - ", ": "))
    nl = ctx.rng.choice(("\n", "\n", "\n\n"))
    for t, i in enumerate(_turns(ctx, len(sp))):
        b.add(nl if t else "")
        b.add(tags[i], "PERSON").add(sep)
        _line(ctx, b, sp, i)


def _screenplay(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    tags = [(n.last if chance(ctx, 0.2) else n.first).upper() for n in sp]
    if chance(ctx, 0.5):
        b.add(
            ctx.rng.choice(("INT. KITCHEN - NIGHT", "EXT. STATION - DAY", "INT. OFFICE - MORNING")) + "\n\n"
        )
    for t, i in enumerate(_turns(ctx, len(sp))):
        b.add("\n\n" if t else "")
        b.add(tags[i], "PERSON")
        if chance(ctx, 0.15):
            b.add(" (V.O.)" if chance(ctx, 0.3) else " (CONT'D)")
        b.add("\n")
        if chance(ctx, 0.25):
            b.add(ctx.rng.choice(("(beat)", "(laughing)", "(quietly)", "(beat)")) + "\n")
        _line(ctx, b, sp, i)


def _chatlog(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    low = chance(ctx, 0.3)
    tags = [n.first.lower() if low else _tag(ctx, n) for n in sp]
    fmt = ctx.rng.randrange(3)
    h, m = ctx.rng.randrange(24), ctx.rng.randrange(60)
    for t, i in enumerate(_turns(ctx, len(sp), 3, 7)):
        m += ctx.rng.randrange(3)
        hm = f"{(h + m // 60) % 24:02d}:{m % 60:02d}"
        b.add("\n" if t else "")
        b.add(f"[{hm}] " if fmt == 0 else f"{hm} - " if fmt == 1 else "")
        b.add(tags[i], "PERSON")
        b.add(f" ({hm}): " if fmt == 2 else ": ")
        _line(ctx, b, sp, i)


def _interview(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    role = ctx.rng.choice(_ROLES)
    n = sp[0]
    title = ctx.rng.choice(("MR. ", "MS. ", "DR. ", "", "", "")) if role == "THE COURT" else ""
    tag = n.last.upper() if title else _tag(ctx, n)
    for t in range(ctx.rng.randint(2, 6)):
        b.add("\n" if t else "")
        if t % 2 == 0:
            b.add(role + ": ")
            ctx.memo["addr"] = n.first
            render(pick(ctx, LINES), ctx, b)
        else:
            b.add(title)
            b.add(tag, "PERSON").add(": ")
            _line(ctx, b, [n], 0)


def _quoted(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    """Speech in prose: '"Remember me?" asked Lisa.' / 'Tom shouted at Ana: "..."'."""
    names = [_vary_case(ctx, n.first) for n in sp]
    for t, i in enumerate(_turns(ctx, len(sp), 2, 4)):
        b.add(" " if t else "")
        j = (i + 1) % len(sp)
        r = ctx.rng.random()
        verb = ctx.rng.choice(("said", "asked", "replied", "whispered", "shouted", "muttered", "snapped"))
        if r < 0.4:
            b.add('"')
            _line(ctx, b, sp, i)
            b.add(f'" {verb} ')
            b.add(names[i], "PERSON")
            if chance(ctx, 0.4):
                b.add(" to ").add(names[j], "PERSON")
            b.add(".")
        elif r < 0.7:
            b.add(names[i], "PERSON")
            b.add(ctx.rng.choice((" shouted at ", " turned to ", " said to ", " yelled at ", " told ")))
            b.add(names[j], "PERSON").add(': "')
            _line(ctx, b, sp, i)
            b.add('"')
        else:
            b.add(names[i], "PERSON").add(f' {verb}, "')
            _line(ctx, b, sp, i)
            b.add('"')


def _forum(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    """A quoted post and a reply: 'Lisa wrote:\n> ...\n\nTom here - ...'."""
    b.add(ctx.rng.choice(("Quote from ", "", "Originally posted by ")))
    b.add(_tag(ctx, sp[0]), "PERSON").add(ctx.rng.choice((" wrote:\n> ", " said:\n> ", ":\n> ")))
    _line(ctx, b, sp, 0)
    b.add("\n\n")
    if chance(ctx, 0.5):
        b.add(ctx.rng.choice(("@", "", "")))
        b.add(sp[1].first, "PERSON").add(ctx.rng.choice((" here - ", ": ", ", ")))
    _line(ctx, b, sp, 1)


def _sms(ctx: Ctx, b: Builder, sp: list[Name]) -> None:
    """A text thread with "Me"/"You" on one side: role tags stay unlabelled."""
    other = _tag(ctx, sp[0])
    me = ctx.rng.choice(("Me", "You", "me"))
    start = ctx.rng.randrange(2)
    for t in range(ctx.rng.randint(2, 6)):
        b.add("\n" if t else "")
        if (t + start) % 2 == 0:
            b.add(other, "PERSON").add(": ")
        else:
            b.add(me + ": ")
        _line(ctx, b, sp, 1 if (t + start) % 2 == 0 else 0)


_STYLE_FNS: dict[str, tuple[int, Style]] = {
    "colon": (3, _colon),
    "chatlog": (2, _chatlog),
    "quoted": (2, _quoted),
    "sms": (2, _sms),
    "screenplay": (1, _screenplay),
    "interview": (1, _interview),
    "forum": (1, _forum),
}
"""Style -> (how many train variants, builder); frequent styles get more variants."""


def _variants(base: str, n_train: int) -> list[str]:
    """``n_train`` train names and one calib name for a style, so both families see every style."""
    names = [f"{base}-{i}" for i in range(1, 40)]
    train = [x for x in names if family_of(x) == "train"][:n_train]
    return [*train, next(x for x in names if family_of(x) == "calib")]


STYLES: dict[str, Style] = {v: fn for base, (k, fn) in _STYLE_FNS.items() for v in _variants(base, k)}
"""Style variant name -> builder (the variant name is the frame)."""
_STYLE_NAMES = tuple(STYLES)


def dialogue(ctx: Ctx, b: Builder) -> str:
    """A dialogue in one of :data:`STYLES` (split by family); returns the style's name."""
    style = pick(ctx, _STYLE_NAMES)
    k = 3 if chance(ctx, 0.25) else 2
    speakers = [new_name(ctx) for _ in range(k)]
    STYLES[style](ctx, b, speakers)
    ctx.memo.pop("addr", None)
    return style
