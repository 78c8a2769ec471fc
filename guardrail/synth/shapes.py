"""Shapes of text (chat turn, transcript, email, ticket, tool call, log, form, ...), each a builder.

A shape builder writes one record into a :class:`Builder` and returns the name of the frame it
used; frames are split between the train and calib families by :func:`engine.family_of`.
"""

from __future__ import annotations

from collections.abc import Callable

from guardrail.synth import frames_chat as fc
from guardrail.synth import frames_docs as fd
from guardrail.synth import frames_intl as fi
from guardrail.synth import hardneg, prose, structured
from guardrail.synth.engine import Builder, Ctx, chance, pick, render, stable_hash
from guardrail.synth.frames_people import people

ShapeFn = Callable[[Ctx, Builder], str]


def frame_id(shape: str, template: str) -> str:
    """A short stable name for a frame: shape and a hash of its text."""
    return f"{shape}:{stable_hash(template):08x}"


def _frame(ctx: Ctx, b: Builder, shape: str, frames: tuple[str, ...]) -> str:
    t = pick(ctx, frames)
    render(t, ctx, b)
    return frame_id(shape, t)


def end_punct(ctx: Ctx, b: Builder) -> None:
    """Vary the end of a message: drop the full stop, double the '?', add '!!' or an emoji."""
    r = ctx.rng.random()
    if r < 0.15 and b.last_char() in ".!":
        b.chop(1)  # refuses when a value ends the text
    elif r < 0.2:
        b.add(ctx.rng.choice((" :)", " 🙏", "!!", " thx", " pls", " ??", " 😊")))


def _filler(ctx: Ctx, b: Builder) -> None:
    """PII-free prose, or (a third of the time) a hard negative from real text shapes."""
    render("{HARDNEG}" if chance(ctx, 0.35) else pick(ctx, prose.PLAIN), ctx, b)


def _with_prose(ctx: Ctx, b: Builder, fn: Callable[[], str]) -> str:
    """Mix PII-free prose (and its hard negatives) before or after a PII-bearing frame."""
    r = ctx.rng.random()
    if r < 0.15:
        _filler(ctx, b)
        b.add(" ")
        return fn()
    if r < 0.22:
        render("{ACK}", ctx, b)  # "Sure. My email is ..."
        b.add(ctx.rng.choice((". ", ", ", "! ", " - ", "\n")))
        return fn()
    name = fn()
    if r > 0.85:
        b.add(ctx.rng.choice((" ", " ", "\n")))
        if chance(ctx, 0.7):
            _filler(ctx, b)
        else:
            render(pick(ctx, prose.ENTITY), ctx, b)
    return name


def chat(ctx: Ctx, b: Builder) -> str:
    """One user turn to an assistant."""
    lang = ctx.locale[:2]
    if chance(ctx, 0.05):
        b.case = "lower"  # typed on a phone
    if lang in fi.INTL and chance(ctx, 0.5):
        name = _frame(ctx, b, f"chat-{lang}", fi.INTL[lang])
        if chance(ctx, 0.1):
            b.add(" ")  # dropped between CJK characters
            render("{HARDNEG}", ctx, b)
    else:
        if chance(ctx, 0.3):
            b.add(ctx.rng.choice(("Hi, ", "Hello! ", "Hey, ", "Hi there. ", "Good morning, ", "Quick one: ")))
        name = _with_prose(ctx, b, lambda: _frame(ctx, b, "chat", fc.CHAT))
    end_punct(ctx, b)
    _maybe_treebank(ctx, b)
    return name


def _maybe_treebank(ctx: Ctx, b: Builder, p: float = 0.04) -> None:
    """Rewrite an English record in treebank tokens now and then (real corpora come that way)."""
    if ctx.locale[:2] == "en" and chance(ctx, p):
        hardneg.treebank(b)


def clean_chat(ctx: Ctx, b: Builder) -> str:
    """A request with no personal data: orders, products, works, code, trivia."""
    if chance(ctx, 0.08):
        b.case = "lower"
    name = _frame(ctx, b, "clean", fc.CLEAN)
    if chance(ctx, 0.2):
        b.add(" ")
        render(pick(ctx, prose.PLAIN), ctx, b)
    end_punct(ctx, b)
    return name


def social(ctx: Ctx, b: Builder) -> str:
    """A tweet or comment: often lowercase, with handles, hashtags and emoji."""
    if chance(ctx, 0.35):
        b.case = "lower"
    name = _frame(ctx, b, "social", fc.SOCIAL)
    if chance(ctx, 0.15):
        b.add(" " + ctx.rng.choice(("#tbt", "#blessed", "😂😂", "🙌", "#mondaymotivation", "lol")))
    return name


def search(ctx: Ctx, b: Builder) -> str:
    """A search-box query: short, often lowercase, no punctuation."""
    if chance(ctx, 0.5):
        b.case = "lower"
    return _frame(ctx, b, "search", fc.SEARCH)


def fragment(ctx: Ctx, b: Builder) -> str:
    """A short fragment: a lone name, number or reply."""
    return _frame(ctx, b, "fragment", fc.FRAGMENT)


def plain(ctx: Ctx, b: Builder) -> str:
    """One to three PII-free sentences (hard negatives only, no spans)."""
    first = ""
    for i in range(ctx.rng.choice((1, 1, 2, 3))):
        if i:
            b.add(ctx.rng.choice((" ", " ", "\n")))
        t = pick(ctx, prose.PLAIN)
        render(t, ctx, b)
        first = first or frame_id("prose", t)
    return first


def entity_prose(ctx: Ctx, b: Builder) -> str:
    """Prose that names organisations, dates, public URLs, places; no private person."""
    name = _frame(ctx, b, "eprose", prose.ENTITY)
    if chance(ctx, 0.4):
        b.add(" ")
        render(pick(ctx, prose.PLAIN), ctx, b)
    return name


_SPEAKERS = (
    ("User", "Assistant"), ("Human", "AI"), ("Customer", "Agent"), ("user", "assistant"), ("Q", "A"),
    ("Me", "Bot"), ("[user]", "[assistant]"), ("Client", "Support"),
)  # fmt: skip

_REPLIES: tuple[str, ...] = (
    "(Sure|Of course|Done)[!] I've (sent|forwarded) it to {EMAIL}.",
    "(Got it|Thanks|Understood). I've updated (your|the) address to {ADDRESS}.",
    "(I can help with that|Happy to help). Could you confirm your date of birth?",
    "(Thanks|Thank you), {FIRST}. (Your|The) (ticket|case) {TICKET} is (open|being handled).",
    "I (can't|cannot) (share|look up) personal details, but (I can|let me) (explain|summarise) the process.",
    "(Here is|Here's) a (summary|draft):[ {PROSE}]",
    "(Okay|OK), I (called|will call) {PHONE} {WHEN}.",
    "(The|Your) order {ORDER} (ships|shipped) {WHEN}.",
    "Is there anything else I can help (with|you with)?",
    "(I've|I have) (scheduled|booked) it for {DATE}.",
    "(Which|What) (email|phone number|address) should I use?",
    "(Noted|Saved). Your username is {USERNAME}.",
    "{PROSE}",
    "{ACK}",
    "{HARDNEG}",
)


def transcript(ctx: Ctx, b: Builder) -> str:
    """A multi-turn conversation, one turn a line."""
    u, a = ctx.rng.choice(_SPEAKERS)
    sep = ctx.rng.choice((": ", ": ", " - ", ":\n"))
    first = ""
    for turn in range(ctx.rng.randint(2, 6)):
        if turn:
            b.add(ctx.rng.choice(("\n", "\n", "\n\n")))
        if turn % 2 == 0:
            b.add(u + sep)
            t = pick(ctx, fc.CHAT)
            render(t, ctx, b)
            first = first or frame_id("transcript", t)
        else:
            b.add(a + sep)
            render(pick(ctx, _REPLIES), ctx, b)
    return first


def _body(ctx: Ctx, b: Builder, shape: str, frames: tuple[str, ...], n: int, sep: str = " ") -> str:
    """``n`` sentences of ``frames`` mixed with PII-free prose; returns the first frame's name."""
    first = ""
    for i in range(n):
        if i:
            b.add(sep)
        if i and chance(ctx, 0.3):
            _filler(ctx, b)
            continue
        t = pick(ctx, frames)
        render(t, ctx, b)
        first = first or frame_id(shape, t)
    return first


def _mailbox(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    if r < 0.5:
        render("{NAME} <{EMAIL}>", ctx, b)
    elif r < 0.65:
        render('"{NAME}" <{EMAIL}>', ctx, b)
    else:
        render("{EMAIL}", ctx, b)


def email(ctx: Ctx, b: Builder) -> str:
    """An email: optional headers, greeting, body, closing and signature."""
    if chance(ctx, 0.6):
        b.add("From: ")
        _mailbox(ctx, b)
        b.add("\nTo: ")
        _mailbox(ctx, b)
        if chance(ctx, 0.2):
            b.add("\nCc: ")
            _mailbox(ctx, b)
        if chance(ctx, 0.4):
            b.add("\nDate: ")
            render("{DATETIME}", ctx, b)
        b.add("\nSubject: ")
        render(pick(ctx, fd.EMAIL_SUBJECT), ctx, b)
        b.add("\n\n")
    elif chance(ctx, 0.3):
        b.add("Subject: ")
        render(pick(ctx, fd.EMAIL_SUBJECT), ctx, b)
        b.add("\n\n")
    if chance(ctx, 0.8):
        render(ctx.rng.choice(fd.GREETING), ctx, b)
        b.add(ctx.rng.choice(("\n\n", "\n", " ")))
    name = _body(ctx, b, "email", fd.EMAIL_BODY, ctx.rng.randint(1, 4), ctx.rng.choice((" ", "\n", "\n\n")))
    if chance(ctx, 0.85):
        b.add("\n\n" + ctx.rng.choice(fd.CLOSING) + "\n")
        render(ctx.rng.choice(("{NAME}", "{FIRST}", "{NAME}", "{FIRST} {LAST}")), ctx, b)
        for line in ("{JOB}[, {COMPANY}]", "{PHONE}", "{EMAIL}", "{URL}", "({ADDRESS}|{ADDRESS_ML})"):
            if chance(ctx, 0.3):
                b.add("\n")
                render(line, ctx, b)
    return name


def ticket(ctx: Ctx, b: Builder) -> str:
    """A support ticket: header fields then a description."""
    style = ctx.rng.randrange(3)
    if style == 0:
        render(
            "Ticket {TICKET} | Priority: (High|Low|Medium|P1|P2|P3) | Status: (Open|New|Pending)\n", ctx, b
        )
        b.add("Reporter: ")
        render("{NAME}[ ({EMAIL})]\n", ctx, b)
    elif style == 1:
        render("\\[{TICKET}\\] (Opened|Created) {DATETIME} by {USERNAME}\n", ctx, b)
    else:
        render("#{NUM} (bug|incident|request) - (opened|filed) by {HANDLE}\n", ctx, b)
    b.add(ctx.rng.choice(("Description: ", "Summary:\n", "Details: ", "")))
    name = _body(ctx, b, "ticket", fd.TICKET_BODY, ctx.rng.randint(1, 3), ctx.rng.choice((" ", "\n")))
    if chance(ctx, 0.3):
        render("\n(Agent|Assignee|Owner): {TNAME}", ctx, b)
    return name


def narrative(ctx: Ctx, b: Builder) -> str:
    """Free narrative text about people, places and things."""
    name = _body(ctx, b, "narrative", fd.NARRATIVE, ctx.rng.randint(1, 3))
    _maybe_treebank(ctx, b, 0.08)
    return name


def people_text(ctx: Ctx, b: Builder) -> str:
    """The ``people`` shape, now and then in treebank tokens."""
    name = people(ctx, b)
    _maybe_treebank(ctx, b)
    return name


SHAPES: dict[str, tuple[float, ShapeFn]] = {
    "chat": (0.135, chat),
    "email": (0.0675, email),
    "ticket": (0.0522, ticket),
    "narrative": (0.0594, narrative),
    "toolcall": (0.0594, structured.toolcall),
    "log": (0.045, structured.log),
    "form": (0.0522, structured.form),
    "transcript": (0.0594, transcript),
    "social": (0.0522, social),
    "search": (0.0297, search),
    "fragment": (0.0378, fragment),
    "prose": (0.0675, plain),
    "clean": (0.045, clean_chat),
    "eprose": (0.0297, entity_prose),
    "people": (0.108, people_text),
    "hardneg": (0.100, hardneg.hard_negative),
}
"""Shape name -> (weight, builder); the weights sum to 1 (``people`` took 12% from the others pro rata,
then ``hardneg`` 10% from all of them)."""
